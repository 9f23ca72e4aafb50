//! Case tests: each policy's `case` blocks, run against a snapshot built from the case alone.
//!
//! The subject is entity 0; each `related REL { … }` block is one more entity, joined to the
//! subject through the relation's column. Every expected condition state and the amount are
//! compared with what the engine computes for entity 0.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use roaring::RoaringBitmap;

use super::ast::{Case, CaseRow, Direction, Lit, Policy, Tri};
use super::check::Catalogue;
use super::combine::RunSet;
use super::engine::Engine;
use super::eval::fmt_num;
use super::schema::{Scale, Schema, Ty};
use crate::date::Date;
use crate::snapshot::Snapshot;
use crate::snapshot::build::{MemColumn, MemTable, MemValues, write_memory};

/// The default as-of date of a case that names none.
pub const DEFAULT_AS_OF: (i32, u32, u32) = (2025, 12, 31);

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub policy: String,
    pub case: String,
    /// Mismatches, as sentences; empty when the case passes.
    pub failures: Vec<String>,
}

struct Builder<'a> {
    schema: &'a Schema,
    entities: Vec<(String, String)>,
    tables: Vec<MemTable>,
}

fn role_of(ty: Ty, scale: Scale) -> &'static str {
    match (ty, scale) {
        (Ty::Date, _) => "date",
        (Ty::Month, _) => "month",
        (Ty::Bool, _) => "flag",
        (Ty::Num, Scale::Money) => "amount",
        (Ty::Num, Scale::Milli) => "quantity",
        (Ty::Num, Scale::One) => "integer",
        _ => "category",
    }
}

impl Builder<'_> {
    fn table(&mut self, name: &str) -> Result<usize, String> {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return Ok(i);
        }
        let ts = self
            .schema
            .tables
            .get(name)
            .ok_or_else(|| format!("unknown table {name}"))?;
        let columns = ts
            .columns
            .iter()
            .map(|(c, cs)| MemColumn {
                name: c.clone(),
                role: role_of(cs.ty, cs.scale).into(),
                values: match cs.ty {
                    Ty::Str => MemValues::Dict(Vec::new()),
                    _ => MemValues::Int(Vec::new()),
                },
                refs: cs.reference.then(Vec::new),
            })
            .collect();
        self.tables.push(MemTable {
            name: name.to_string(),
            kind: ts.kind.clone(),
            subject: ts.subject.clone(),
            entity: Vec::new(),
            doubtful: Vec::new(),
            columns,
        });
        Ok(self.tables.len() - 1)
    }

    /// Adds a row for `entity`; returns (table, row).
    fn row(&mut self, entity: u32, row: &CaseRow) -> Result<(usize, usize), String> {
        let ti = self.table(&row.table)?;
        let t = &mut self.tables[ti];
        let r = t.entity.len();
        t.entity.push(entity);
        t.doubtful.push(row.doubtful);
        for c in &mut t.columns {
            match &mut c.values {
                MemValues::Int(v) => v.push(None),
                MemValues::Dict(v) => v.push(None),
            }
            if let Some(refs) = &mut c.refs {
                refs.push(None);
            }
        }
        for (col, lit) in &row.values {
            self.set(ti, r, col, lit)?;
        }
        Ok((ti, r))
    }

    fn set(&mut self, ti: usize, r: usize, col: &str, lit: &Lit) -> Result<(), String> {
        let t = &self.tables[ti];
        let cs = self
            .schema
            .column(&t.name, col)
            .ok_or_else(|| format!("{} has no column {col}", t.name))?
            .clone();
        let name = t.name.clone();
        let c = self.tables[ti]
            .columns
            .iter_mut()
            .find(|c| c.name == col)
            .ok_or_else(|| format!("{name} has no column {col}"))?;
        let bad = || format!("{name}.{col} is {}, not {lit}", cs.ty.as_str());
        match (&mut c.values, lit) {
            (MemValues::Dict(v), Lit::Str(s)) => v[r] = Some(s.clone()),
            (MemValues::Int(v), Lit::Num(n)) if cs.ty == Ty::Num => {
                let scaled = match cs.scale {
                    Scale::One => *n,
                    Scale::Money => n * 100.0,
                    Scale::Milli => n * 1000.0,
                };
                v[r] = Some(scaled.round() as i64);
            }
            (MemValues::Int(v), Lit::Date(d)) if cs.ty == Ty::Date => v[r] = Some(i64::from(*d)),
            (MemValues::Int(v), Lit::Date(d)) if cs.ty == Ty::Month => {
                v[r] = Some(i64::from(Date(*d).month().0))
            }
            (MemValues::Int(v), Lit::Bool(b)) if cs.ty == Ty::Bool => v[r] = Some(i64::from(*b)),
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn set_ref(&mut self, ti: usize, r: usize, col: &str, target: u32) -> Result<(), String> {
        let key = self.entities[target as usize].0.clone();
        let t = &mut self.tables[ti];
        let name = t.name.clone();
        let c = t
            .columns
            .iter_mut()
            .find(|c| c.name == col)
            .ok_or_else(|| format!("{name} has no column {col}"))?;
        if let MemValues::Dict(v) = &mut c.values {
            v[r] = Some(key);
        }
        if let Some(refs) = &mut c.refs {
            refs[r] = Some(target);
        }
        Ok(())
    }
}

/// Builds the snapshot of one case under `dir`; returns its path.
fn build_case(
    policy: &Policy,
    case: &Case,
    cat: &Catalogue,
    schema: &Schema,
    dir: &Path,
) -> Result<std::path::PathBuf, String> {
    let mut b = Builder {
        schema,
        entities: vec![("CASE-SUBJECT".into(), policy.subject.clone())],
        tables: Vec::new(),
    };
    // Every table exists in the case's snapshot, empty unless the case gives rows: absent
    // rows are data too ("no death certificate").
    for t in schema.tables.keys() {
        b.table(t)?;
    }
    let mut subject_rows: Vec<(usize, usize)> = Vec::new();
    for row in &case.rows {
        subject_rows.push(b.row(0, row)?);
    }
    for (i, (rel, rows)) in case.related.iter().enumerate() {
        let r = cat
            .relations
            .get(rel)
            .ok_or_else(|| format!("unknown relation {rel}"))?;
        let id = b.entities.len() as u32;
        b.entities.push((format!("CASE-RELATED-{i}"), r.to.clone()));
        let mut own = Vec::new();
        for row in rows {
            own.push(b.row(id, row)?);
        }
        let ti = b.table(&r.table)?;
        match r.direction {
            // The related entity's row names the subject.
            Direction::In => {
                let at = match own.iter().find(|(t, _)| *t == ti) {
                    Some(&(_, row)) => row,
                    None => {
                        b.row(
                            id,
                            &CaseRow {
                                pos: case.pos,
                                table: r.table.clone(),
                                doubtful: false,
                                values: Vec::new(),
                            },
                        )?
                        .1
                    }
                };
                b.set_ref(ti, at, &r.column, 0)?;
            }
            // A row of the subject names the related entity.
            Direction::Out => {
                let free = subject_rows.iter().position(|&(t, _)| t == ti);
                let at = match free {
                    Some(k) => subject_rows.remove(k).1,
                    None => {
                        b.row(
                            0,
                            &CaseRow {
                                pos: case.pos,
                                table: r.table.clone(),
                                doubtful: false,
                                values: Vec::new(),
                            },
                        )?
                        .1
                    }
                };
                b.set_ref(ti, at, &r.column, id)?;
            }
        }
    }
    let path = dir.join(format!("{}-{}.msnap", policy.id, case.pos.line));
    write_memory(&path, &b.entities, &b.tables).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Runs every case of every policy of `cat`; `schema` says what each table holds.
pub fn run_cases(cat: &Catalogue, schema: &Schema) -> Result<Vec<CaseResult>, String> {
    // A folder of this run's own (removed when dropped): two runs in one process, as tests
    // run in parallel, must not share one and remove it under each other.
    let dir = tempfile::Builder::new()
        .prefix("mianshen-cases-")
        .tempdir()
        .map_err(|e| format!("a temporary folder for the cases: {e}"))?;
    let mut out = Vec::new();
    for checked in &cat.policies {
        let p = &checked.policy;
        for case in &p.cases {
            out.push(run_case(p, case, cat, schema, dir.path()));
        }
    }
    Ok(out)
}

fn run_case(p: &Policy, case: &Case, cat: &Catalogue, schema: &Schema, dir: &Path) -> CaseResult {
    let mut result = CaseResult {
        policy: p.id.clone(),
        case: case.name.clone(),
        failures: Vec::new(),
    };
    let path = match build_case(p, case, cat, schema, dir) {
        Ok(path) => path,
        Err(e) => {
            result
                .failures
                .push(format!("the case cannot be built: {e}"));
            return result;
        }
    };
    let snap = match Snapshot::open(&path) {
        Ok(s) => s,
        Err(e) => {
            result
                .failures
                .push(format!("the case snapshot does not open: {e}"));
            return result;
        }
    };
    let (y, m, d) = DEFAULT_AS_OF;
    let as_of = case
        .as_of
        .map(Date)
        .or_else(|| Date::from_ymd(y, m, d))
        .unwrap_or(Date(0));
    let mut engine = Engine::new(&snap, cat.clone(), as_of);
    // Other policies' states for entity 0: as the case says, else not eligible.
    for other in &cat.policies {
        let id = &other.policy.id;
        let state = case
            .policies
            .iter()
            .find(|(x, _)| x == id)
            .map_or(Tri::False, |(_, t)| *t);
        let one: RoaringBitmap = [0u32].into_iter().collect();
        let (t, u) = match state {
            Tri::True => (one, RoaringBitmap::new()),
            Tri::Unknown => (RoaringBitmap::new(), one),
            Tri::False => (RoaringBitmap::new(), RoaringBitmap::new()),
        };
        engine.set_policy_states(id, Arc::new(t), RunSet::of(Arc::new(u)));
    }
    let run = match engine.run_policy(p, &HashMap::new()) {
        Ok(r) => r,
        Err(e) => {
            result.failures.push(e.to_string());
            return result;
        }
    };
    for (_, cond, want) in &case.expect {
        let Some(c) = run.conditions.iter().find(|c| &c.name == cond) else {
            result.failures.push(format!("no condition {cond}"));
            continue;
        };
        let got = if c.sets.t().contains(0) {
            Tri::True
        } else if c.sets.u().contains(0) {
            Tri::Unknown
        } else {
            Tri::False
        };
        if got != *want {
            result.failures.push(format!(
                "condition {cond}: expected {}, got {}",
                want.as_str(),
                got.as_str()
            ));
        }
    }
    let got = run.amount_of(0);
    match (case.amount, got) {
        (Some(want), Some(got)) if (want - got).abs() > 0.005 => result.failures.push(format!(
            "amount: expected {}, got {}",
            fmt_num(want),
            fmt_num(got)
        )),
        (Some(want), None) => result.failures.push(format!(
            "amount: expected {}, but the entity is {}",
            fmt_num(want),
            if run.candidates.contains(0) {
                "a candidate whose amount cannot be computed"
            } else {
                "not a candidate"
            }
        )),
        _ => {}
    }
    result
}
