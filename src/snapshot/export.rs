//! Tables of a snapshot as CSV, for other tools to read the same data the engine reads (the
//! DuckDB comparison in `benches/duckdb/` loads them).
//!
//! One file per table, `DEPT.table.csv`, its rows in snapshot order (grouped by entity) with
//! two leading columns: `entity` (the entity's dense id, empty for a row nothing joined) and
//! `doubtful` (1 when the row's link to its entity is doubtful). A column whose values name
//! entities (a household number, an employer's USCC: the columns relations follow) is followed
//! by `COLUMN_entity`, the entity the snapshot resolved the value to. Values are written as the
//! departments would read them: dates `YYYY-MM-DD`, months as their first day, amounts in
//! yuan with two decimals, quantities with three; a missing value is an empty field. A file
//! `entities.csv` lists every entity's id, kind and stable key.

use std::io::Write;
use std::path::Path;

use super::column::Value;
use super::{Snapshot, Table};
use crate::date::{Date, Month};
use crate::error::SnapshotError;

/// How an integer column's values are written, from its role.
#[derive(Debug, Clone, Copy)]
enum Format {
    Plain,
    Date,
    Month,
    /// Fixed point with this many decimals.
    Fixed(u32),
}

impl Format {
    fn of(role: &str) -> Format {
        match role {
            "date" | "birth_date" => Format::Date,
            "month" => Format::Month,
            "amount" => Format::Fixed(2),
            "quantity" => Format::Fixed(3),
            _ => Format::Plain,
        }
    }

    fn write(self, v: i64, out: &mut String) {
        use std::fmt::Write as _;
        let _ = match self {
            Format::Plain => write!(out, "{v}"),
            Format::Date => match i32::try_from(v) {
                Ok(d) => write!(out, "{}", Date(d)),
                Err(_) => write!(out, "{v}"),
            },
            Format::Month => match i32::try_from(v) {
                Ok(m) => write!(out, "{}", Month(m).first_day()),
                Err(_) => write!(out, "{v}"),
            },
            Format::Fixed(places) => {
                let scale = 10i64.pow(places);
                let sign = if v < 0 { "-" } else { "" };
                let a = v.unsigned_abs();
                let s = scale as u64;
                write!(
                    out,
                    "{sign}{}.{:0width$}",
                    a / s,
                    a % s,
                    width = places as usize
                )
            }
        };
    }
}

/// Writes the named tables (every table when `tables` is empty) and `entities.csv` into
/// `out`; returns each file written with its row count.
pub fn export(
    snap: &Snapshot,
    tables: &[String],
    out: &Path,
) -> Result<Vec<(String, usize)>, SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| SnapshotError::Input(format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let names: Vec<String> = if tables.is_empty() {
        snap.tables().iter().map(|t| t.name.clone()).collect()
    } else {
        tables.to_vec()
    };
    let mut written = Vec::new();
    for name in &names {
        let table = snap.table(name)?;
        let path = out.join(format!("{name}.csv"));
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let rows = write_table(&table, &mut w).map_err(io(&path))?;
        w.flush().map_err(io(&path))?;
        written.push((format!("{name}.csv"), rows?));
    }
    let path = out.join("entities.csv");
    let file = std::fs::File::create(&path).map_err(io(&path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(w, "entity,kind,key").map_err(io(&path))?;
    for e in 0..snap.entity_count() as u32 {
        let key = snap.key(e).unwrap_or("");
        writeln!(w, "{e},{},{}", snap.kind(e).unwrap_or(""), csv_field(key)).map_err(io(&path))?;
    }
    w.flush().map_err(io(&path))?;
    written.push(("entities.csv".into(), snap.entity_count()));
    Ok(written)
}

/// A field quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// One table's rows; the outer error is the file's, the inner the snapshot's.
fn write_table(
    table: &Table<'_>,
    w: &mut impl Write,
) -> std::io::Result<Result<usize, SnapshotError>> {
    let info = table.info;
    // Each column, and after it the entities its values name when it has a `ref/` section.
    let mut columns = Vec::with_capacity(info.columns.len());
    for c in &info.columns {
        match table.column(&c.name) {
            Ok(col) => columns.push((col, Format::of(&c.role))),
            Err(e) => return Ok(Err(e)),
        }
        if c.reference {
            match table.reference(&c.name) {
                Ok(col) => columns.push((col, Format::Plain)),
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    let doubtful = match table.doubtful() {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let mut line = String::from("entity,doubtful");
    for c in &info.columns {
        line.push(',');
        line.push_str(&csv_field(&c.name));
        if c.reference {
            line.push(',');
            line.push_str(&csv_field(&format!("{}_entity", c.name)));
        }
    }
    writeln!(w, "{line}")?;
    for (row, e) in table.row_entities().iter().enumerate() {
        line.clear();
        if let Some(e) = e {
            line.push_str(&e.to_string());
        }
        line.push_str(if doubtful.contains(row as u32) {
            ",1"
        } else {
            ",0"
        });
        for (col, format) in &columns {
            line.push(',');
            match col.value(row) {
                Value::Missing => {}
                Value::Int(v) => format.write(v, &mut line),
                Value::Str(t) => line.push_str(&csv_field(&t.to_string())),
            }
        }
        writeln!(w, "{line}")?;
    }
    Ok(Ok(info.rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_their_roles_read() {
        let cases = [
            (Format::Date, 20_089, "2025-01-01"),
            (Format::Month, 2025 * 12 + 11, "2025-12-01"),
            (Format::Fixed(2), 574_700, "5747.00"),
            (Format::Fixed(2), -5, "-0.05"),
            (Format::Fixed(3), 1_234_567, "1234.567"),
            (Format::Plain, -42, "-42"),
        ];
        for (format, v, want) in cases {
            let mut s = String::new();
            format.write(v, &mut s);
            assert_eq!(s, want, "{format:?} {v}");
        }
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv_field("平原路"), "平原路");
    }
}
