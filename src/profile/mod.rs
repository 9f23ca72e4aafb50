//! Profiles: one entity as the city's departments know it.
//!
//! `mianshen profile KEY` reads a resolve build (`entities.csv`, `links.csv`, `events/`) and
//! the ingested segments, and prints:
//! - the entity's source records, every normalized field, with each link's method,
//!   confidence, doubtful flag and evidence;
//! - relations: identifiers its records point to (spouse, employer, household), and records
//!   elsewhere that point to it (enterprises it represents, employees, children);
//! - its events per source: rows, period, and sums of amounts and quantities. Missing values
//!   stay missing: a sum over no values is shown as "–", never 0.
//!
//! This is the per-entity view of the hotline; the columnar profile tables that the policy
//! engine reads are built with the snapshot.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::date::{Date, Month};
use crate::error::ResolveError;
use crate::ingest::segment::{ColumnType, Segment};
use crate::resolve::eval::split_csv;
use crate::resolve::records::{SourceSegment, seg_err, segment_paths, segments_dir};
use crate::source::config::{Role, SourceConfig, TableKind};

/// One entity's source record.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub source: String,
    pub record_id: String,
    pub method: String,
    pub confidence: String,
    pub doubtful: bool,
    pub evidence: String,
    /// Normalized fields, as `(column, value)`.
    pub fields: Vec<(String, String)>,
}

/// A relation to another entity or record.
#[derive(Debug, Clone)]
pub struct Relation {
    /// `DEPT.table.column` of the pointing value.
    pub via: String,
    /// The other side: an entity key, or `source#record_id` for a record without one.
    pub other: String,
    /// `out`: this entity's record points at `other`; `in`: `other` points at this entity.
    pub incoming: bool,
}

/// One event source's rows for the entity.
#[derive(Debug, Clone)]
pub struct EventSummary {
    pub source: String,
    pub rows: u64,
    pub first: Option<String>,
    pub last: Option<String>,
    /// Sums of amount (yuan) and quantity columns over the rows that have a value; `None`
    /// when no row has one.
    pub sums: Vec<(String, Option<f64>)>,
}

/// Everything `mianshen profile` prints.
#[derive(Debug, Clone)]
pub struct Profile {
    pub key: String,
    pub kind: String,
    pub identified: bool,
    pub records: Vec<SourceRecord>,
    pub relations: Vec<Relation>,
    pub events: Vec<EventSummary>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResolveError + '_ {
    move |e| ResolveError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The role of a segment column, from the config (`col`, `col.raw`, `col.status`, …).
fn role_of(config: &SourceConfig, column: &str) -> Option<Role> {
    let base = column.split('.').next().unwrap_or(column);
    config
        .columns
        .iter()
        .find(|c| c.name == base)
        .map(|c| c.role)
}

/// An int value as its role reads.
fn show_int(role: Option<Role>, v: i64) -> String {
    match role {
        Some(Role::BirthDate | Role::Date) => i32::try_from(v)
            .map(|d| Date(d).to_string())
            .unwrap_or_else(|_| v.to_string()),
        Some(Role::Month) => i32::try_from(v)
            .map(|m| Month(m).to_string())
            .unwrap_or_else(|_| v.to_string()),
        Some(Role::Amount) => format!("{:.2}", v as f64 / 100.0),
        Some(Role::Quantity) => format!("{}", v as f64 / 1000.0),
        _ => v.to_string(),
    }
}

/// The rows of `record_ids` in a source (by its record-id column, else its line number), in
/// one pass over the column.
fn find_rows(src: &SourceSegment, record_ids: &[&str]) -> Result<Vec<Option<usize>>, ResolveError> {
    let mut found = vec![None; record_ids.len()];
    let mut note = |r: usize, v: &str| {
        for (i, id) in record_ids.iter().enumerate() {
            if found[i].is_none() && *id == v {
                found[i] = Some(r);
            }
        }
    };
    match src.config.columns.iter().find(|c| c.role == Role::RecordId) {
        Some(c) => src
            .seg
            .for_each_str(&c.name, |r, v| note(r, v.unwrap_or("")))
            .map_err(seg_err(&src.path))?,
        None => {
            let lines = src.seg.ints("_line").map_err(seg_err(&src.path))?;
            for (r, l) in lines.iter().enumerate() {
                note(r, &l.unwrap_or(0).to_string());
            }
        }
    }
    Ok(found)
}

/// Every non-empty normalized field of the given rows (raw and status columns, address
/// components and the line number left out: the canonical value says it), reading each
/// column once.
fn rows_fields(
    src: &SourceSegment,
    rows: &[usize],
) -> Result<Vec<Vec<(String, String)>>, ResolveError> {
    let mut out = vec![Vec::new(); rows.len()];
    for col in src.seg.schema() {
        let name = &col.name;
        if name == "_line" || (name.contains('.') && !name.ends_with(".status")) {
            continue;
        }
        let role = role_of(&src.config, name);
        let mut values: Vec<Option<String>> = vec![None; rows.len()];
        match col.ty {
            ColumnType::Int => {
                let ints = src.seg.ints(name).map_err(seg_err(&src.path))?;
                for (v, &row) in values.iter_mut().zip(rows) {
                    *v = ints.get(row).copied().flatten().map(|x| show_int(role, x));
                }
            }
            _ => src
                .seg
                .for_each_str(name, |r, s| {
                    for (v, &row) in values.iter_mut().zip(rows) {
                        if row == r {
                            *v = s.map(str::to_string);
                        }
                    }
                })
                .map_err(seg_err(&src.path))?,
        }
        for (fields, v) in out.iter_mut().zip(values) {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                fields.push((name.clone(), v));
            }
        }
    }
    Ok(out)
}

/// Builds the profile of the entity whose key (id number, USCC, household number or
/// minted key) is `key`.
pub fn profile(ingested: &Path, resolved: &Path, key: &str) -> Result<Profile, ResolveError> {
    let seg_dir = segments_dir(ingested);
    // The entity.
    let ent_path = resolved.join("entities.csv");
    let file = std::fs::File::open(&ent_path).map_err(io(&ent_path))?;
    let mut entity: Option<(u32, String, bool)> = None;
    let mut kinds: HashMap<String, String> = HashMap::new();
    for line in BufReader::new(file).lines().skip(1) {
        let line = line.map_err(io(&ent_path))?;
        let f = split_csv(&line);
        if f.len() < 4 {
            continue;
        }
        if f[1] == key {
            entity = Some((f[0].parse().unwrap_or(u32::MAX), f[2].clone(), f[3] == "1"));
        }
        kinds.insert(f[1].clone(), f[2].clone());
    }
    let Some((index, kind, identified)) = entity else {
        return Err(ResolveError::Input(format!(
            "no entity with key {key:?} in {}",
            ent_path.display()
        )));
    };

    // Its records.
    let sources = SourceSegment::open_all(&seg_dir)?;
    let by_name: HashMap<String, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.config.source_name(), i))
        .collect();
    let links_path = resolved.join("links.csv");
    let file = std::fs::File::open(&links_path).map_err(io(&links_path))?;
    let mut records = Vec::new();
    for line in BufReader::with_capacity(1 << 20, file).lines().skip(1) {
        let line = line.map_err(io(&links_path))?;
        // Cheap test before the full split: the key is the third field.
        if !line.contains(key) {
            continue;
        }
        let f = split_csv(&line);
        if f.len() < 8 || f[2] != key {
            continue;
        }
        records.push(SourceRecord {
            source: f[0].clone(),
            record_id: f[1].clone(),
            confidence: f[4].clone(),
            doubtful: f[5] == "1",
            method: f[6].clone(),
            evidence: f[7].clone(),
            fields: Vec::new(),
        });
    }
    // Their fields, source by source: each source's columns are read once.
    for (name, &s) in &by_name {
        let mine: Vec<usize> = (0..records.len())
            .filter(|&i| &records[i].source == name)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let ids: Vec<&str> = mine
            .iter()
            .map(|&i| records[i].record_id.as_str())
            .collect();
        let found = find_rows(&sources[s], &ids)?;
        let rows: Vec<usize> = found.iter().flatten().copied().collect();
        let mut fields = rows_fields(&sources[s], &rows)?.into_iter();
        for (&i, row) in mine.iter().zip(&found) {
            if row.is_some() {
                records[i].fields = fields.next().unwrap_or_default();
            }
        }
    }

    // Relations: what its records point to, and what points to it.
    let mut relations = Vec::new();
    let is_ref = |r: Role| matches!(r, Role::PersonRef | Role::EnterpriseRef | Role::PartyRef);
    for rec in &records {
        let Some(&s) = by_name.get(&rec.source) else {
            continue;
        };
        let config = &sources[s].config;
        for (col, value) in &rec.fields {
            if col.contains('.') {
                continue;
            }
            let role = role_of(config, col);
            let points = role.is_some_and(is_ref)
                || (role == Some(Role::Key) && kinds.get(value).is_some_and(|k| k == "household"));
            if points && value != key {
                relations.push(Relation {
                    via: format!("{}.{col}", rec.source),
                    other: format!(
                        "{value} ({})",
                        kinds.get(value).map_or("not resolved", String::as_str)
                    ),
                    incoming: false,
                });
            }
        }
    }
    if identified {
        for src in &sources {
            // Who the pointing row is about: its subject's identifier, else its record id.
            let subject_col = [
                Role::PersonId,
                Role::EnterpriseId,
                Role::PartyId,
                Role::RecordId,
            ]
            .iter()
            .find_map(|&role| src.config.columns.iter().find(|c| c.role == role))
            .map(|c| c.name.clone());
            for c in src.config.columns.iter().filter(|c| is_ref(c.role)) {
                let mut rows = Vec::new();
                src.seg
                    .for_each_str(&c.name, |r, v| {
                        if v == Some(key) {
                            rows.push(r);
                        }
                    })
                    .map_err(seg_err(&src.path))?;
                if rows.is_empty() {
                    continue;
                }
                let subjects = match &subject_col {
                    Some(sc) => src.seg.strings(sc).map_err(seg_err(&src.path))?,
                    None => Vec::new(),
                };
                for r in rows {
                    let other = subjects
                        .get(r)
                        .cloned()
                        .flatten()
                        .map(|v| match kinds.get(&v) {
                            Some(k) => format!("{v} ({k})"),
                            None => v,
                        })
                        .unwrap_or_else(|| format!("{}#{}", src.config.source_name(), r + 1));
                    relations.push(Relation {
                        via: format!("{}.{}", src.config.source_name(), c.name),
                        other,
                        incoming: true,
                    });
                }
            }
        }
    }

    // Events attributed to it.
    let mut events = Vec::new();
    let ev_dir = resolved.join("events");
    if ev_dir.is_dir() {
        for path in segment_paths(&ev_dir)? {
            let seg = Segment::open(&path).map_err(seg_err(&path))?;
            let Some(source) = seg.meta("source").map(str::to_string) else {
                continue;
            };
            let rows: Vec<usize> = seg
                .ints("entity")
                .map_err(seg_err(&path))?
                .iter()
                .enumerate()
                .filter(|(_, e)| **e == Some(i64::from(index)))
                .map(|(r, _)| r)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let Some(&s) = by_name.get(&source) else {
                continue;
            };
            let src = &sources[s];
            if src.config.kind == TableKind::Identity {
                continue;
            }
            // What these rows point to: a spouse in a marriage record, the employer of
            // every month's contribution.
            for col in src.config.columns.iter().filter(|c| is_ref(c.role)) {
                let mut seen: Vec<String> = Vec::new();
                let mut at = 0usize;
                src.seg
                    .for_each_str(&col.name, |r, v| {
                        while at < rows.len() && rows[at] < r {
                            at += 1;
                        }
                        if at < rows.len()
                            && rows[at] == r
                            && let Some(v) = v.filter(|v| !v.is_empty() && *v != key)
                            && !seen.iter().any(|s| s == v)
                        {
                            seen.push(v.to_string());
                        }
                    })
                    .map_err(seg_err(&src.path))?;
                for v in seen {
                    let kind = kinds.get(&v).map_or("not resolved", String::as_str);
                    relations.push(Relation {
                        via: format!("{source}.{}", col.name),
                        other: format!("{v} ({kind})"),
                        incoming: false,
                    });
                }
            }
            let mut summary = EventSummary {
                source: source.clone(),
                rows: rows.len() as u64,
                first: None,
                last: None,
                sums: Vec::new(),
            };
            for col in &src.config.columns {
                let values = match col.role {
                    Role::Month | Role::Date | Role::Amount | Role::Quantity => {
                        src.seg.ints(&col.name).map_err(seg_err(&src.path))?
                    }
                    _ => continue,
                };
                let picked: Vec<i64> = rows.iter().filter_map(|&r| values[r]).collect();
                match col.role {
                    Role::Month | Role::Date if summary.first.is_none() => {
                        summary.first = picked.iter().min().map(|&v| show_int(Some(col.role), v));
                        summary.last = picked.iter().max().map(|&v| show_int(Some(col.role), v));
                    }
                    Role::Amount => summary.sums.push((
                        col.name.clone(),
                        (!picked.is_empty())
                            .then(|| picked.iter().map(|&v| v as f64).sum::<f64>() / 100.0),
                    )),
                    Role::Quantity => summary.sums.push((
                        col.name.clone(),
                        (!picked.is_empty())
                            .then(|| picked.iter().map(|&v| v as f64).sum::<f64>() / 1000.0),
                    )),
                    _ => {}
                }
            }
            events.push(summary);
        }
    }
    relations.sort_by(|a, b| (a.incoming, &a.via, &a.other).cmp(&(b.incoming, &b.via, &b.other)));
    relations.dedup_by(|a, b| a.incoming == b.incoming && a.via == b.via && a.other == b.other);
    Ok(Profile {
        key: key.to_string(),
        kind,
        identified,
        records,
        relations,
        events,
    })
}

impl Profile {
    pub fn render(&self) -> String {
        let mut o = format!(
            "{} {} ({}), {} source records\n",
            self.kind,
            self.key,
            if self.identified {
                "identifier"
            } else {
                "minted key"
            },
            self.records.len()
        );
        o.push_str("\nrecords:\n");
        for r in &self.records {
            o.push_str(&format!(
                "  {} #{}: {} {}{}\n",
                r.source,
                r.record_id,
                r.method,
                r.confidence,
                if r.doubtful { " DOUBTFUL" } else { "" }
            ));
            if !r.evidence.is_empty() {
                o.push_str(&format!("    evidence: {}\n", r.evidence));
            }
            let fields: Vec<String> = r.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            o.push_str(&format!("    {}\n", fields.join("  ")));
        }
        if !self.relations.is_empty() {
            o.push_str("\nrelations:\n");
            for rel in &self.relations {
                let arrow = if rel.incoming { "←" } else { "→" };
                o.push_str(&format!("  {arrow} {} via {}\n", rel.other, rel.via));
            }
        }
        if !self.events.is_empty() {
            o.push_str("\nevents:\n");
            for e in &self.events {
                let period = match (&e.first, &e.last) {
                    (Some(a), Some(b)) => format!(" {a} … {b}"),
                    _ => String::new(),
                };
                let sums: Vec<String> = e
                    .sums
                    .iter()
                    .map(|(c, v)| match v {
                        Some(v) => format!("{c} Σ {v:.2}"),
                        None => format!("{c} –"),
                    })
                    .collect();
                o.push_str(&format!(
                    "  {}: {} rows{}  {}\n",
                    e.source,
                    e.rows,
                    period,
                    sums.join("  ")
                ));
            }
        }
        o
    }
}
