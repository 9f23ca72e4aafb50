//! Event attribution: every row of an event or reference source inherits the entity of the
//! identity record with its key. A join, not a matching problem:
//! - a valid id number or USCC joins the entity with that key;
//! - a broken one joins the identity record of the same department with the same broken
//!   value (a department repeats its own typo in every row about that person), and so does
//!   a legacy registration number;
//! - a local key (an account number) joins the identity table it names with `of =
//!   "DEPT.table.column"`, or else the department's identity table with a `key` column.
//!
//! The result is one segment per source, `events/<source>.seg`, with an `entity` column
//! (the entity's row in `entities.csv`; missing where nothing joined).

use std::collections::HashMap;
use std::path::Path;

use rayon::prelude::*;

use super::cluster::Linked;
use super::records::{IdState, NONE, Records, SourceSegment, id_state_of, seg_err};
use crate::error::ResolveError;
use crate::ingest::segment::{ColumnSchema, ColumnType, SegmentWriter};
use crate::source::config::{Role, TableKind};

/// Attribution of one source.
#[derive(Debug, Clone)]
pub struct EventReport {
    pub source: String,
    pub rows: u64,
    pub attributed: u64,
    /// The column joined on.
    pub via: String,
}

const GROUP_ROWS: usize = 1 << 16;

/// Attributes every event and reference source under `seg_dir`, writing `out_dir`.
pub fn attribute_events(
    seg_dir: &Path,
    recs: &Records,
    linked: &Linked,
    out_dir: &Path,
) -> Result<Vec<EventReport>, ResolveError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ResolveError::Io {
        path: out_dir.to_path_buf(),
        source: e,
    })?;
    // Identifier → entity, for valid keys; (department, broken id) → entity.
    let mut by_id = vec![NONE; recs.ids.len()];
    let mut broken: HashMap<(u16, u32), u32> = HashMap::new();
    let mut dept_of_source: Vec<u16> = Vec::with_capacity(recs.sources.len());
    let mut depts: Vec<String> = Vec::new();
    for s in &recs.sources {
        let d = s.name.split('.').next().unwrap_or("").to_string();
        let i = depts.iter().position(|x| *x == d).unwrap_or_else(|| {
            depts.push(d);
            depts.len() - 1
        });
        dept_of_source.push(i as u16);
    }
    for r in 0..recs.len() {
        match recs.f[r].id_state {
            IdState::Key => by_id[recs.f[r].id as usize] = linked.entity_of[r],
            IdState::BrokenPid | IdState::BrokenUscc | IdState::RegNo => {
                broken.insert(
                    (dept_of_source[recs.f[r].source as usize], recs.f[r].id),
                    linked.entity_of[r],
                );
            }
            _ => {}
        }
    }

    // Every segment, opened once.
    let sources = SourceSegment::open_all(seg_dir)?;

    // Local keys of identity tables, read once per table that some event source joins.
    let mut identity_keys: HashMap<String, (String, String)> = HashMap::new();
    for SourceSegment { config, .. } in &sources {
        if config.kind == TableKind::Identity
            && let Some(c) = config.columns.iter().find(|c| c.role == Role::Key)
        {
            identity_keys
                .entry(config.department.clone())
                .or_insert((config.source_name(), c.name.clone()));
        }
    }
    let local_index = |source: &str, column: &str| -> Result<HashMap<String, u32>, ResolveError> {
        let Some(si) = recs.sources.iter().position(|s| s.name == source) else {
            return Ok(HashMap::new());
        };
        let first = recs.sources[si].first as usize;
        let Some(src) = sources.iter().find(|s| s.config.source_name() == source) else {
            return Ok(HashMap::new());
        };
        let (path, seg) = (&src.path, &src.seg);
        let mut map = HashMap::with_capacity(seg.rows() as usize);
        seg.for_each_str(column, |r, v| {
            if let Some(v) = v {
                map.insert(v.to_string(), linked.entity_of[first + r]);
            }
        })
        .map_err(seg_err(path))?;
        Ok(map)
    };

    let mut jobs = Vec::new();
    for src in &sources {
        let config = &src.config;
        if config.kind == TableKind::Identity {
            continue;
        }
        let subject_id = config
            .columns
            .iter()
            .find(|c| matches!(c.role, Role::PersonId | Role::EnterpriseId | Role::PartyId));
        let key_col = config.columns.iter().find(|c| c.role == Role::Key);
        let join = match (subject_id, key_col) {
            (Some(c), _) => Join::Id {
                column: c.name.clone(),
                dept: depts
                    .iter()
                    .position(|d| *d == config.department)
                    .map(|d| d as u16),
            },
            (None, Some(c)) => {
                let target = match c.of.as_deref() {
                    Some(of) => {
                        let mut parts = of.rsplitn(2, '.');
                        let col = parts.next().unwrap_or("").to_string();
                        let src = parts.next().unwrap_or("").to_string();
                        Some((src, col))
                    }
                    None => identity_keys.get(&config.department).cloned(),
                };
                match target {
                    Some((src, col)) => Join::Local {
                        column: c.name.clone(),
                        map: local_index(&src, &col)?,
                        target: format!("{src}.{col}"),
                    },
                    None => continue,
                }
            }
            (None, None) => continue,
        };
        jobs.push((src, config.source_name(), join));
    }

    jobs.par_iter()
        .map(|(src, source, join)| {
            let (path, seg) = (&src.path, &src.seg);
            let n = seg.rows() as usize;
            let mut entity = vec![NONE; n];
            let via = match join {
                Join::Id { column, dept } => {
                    // Rows whose identifier is not a key join the department's own records
                    // with the same value, as resolution read them.
                    let status = format!("{column}.status");
                    let mut broken_row = vec![false; n];
                    if seg.schema().iter().any(|c| c.name == status) {
                        let subject = src.config.subject;
                        seg.for_each_str(&status, |r, v| {
                            broken_row[r] = matches!(
                                id_state_of(v.unwrap_or("missing"), subject),
                                IdState::BrokenPid | IdState::BrokenUscc | IdState::RegNo
                            )
                        })
                        .map_err(seg_err(path))?;
                    }
                    seg.for_each_str(column, |r, v| {
                        let Some(i) = v.and_then(|v| recs.ids.get(v)) else {
                            return;
                        };
                        entity[r] = if broken_row[r] {
                            dept.and_then(|d| broken.get(&(d, i)).copied())
                                .unwrap_or(NONE)
                        } else {
                            by_id[i as usize]
                        };
                    })
                    .map_err(seg_err(path))?;
                    column.clone()
                }
                Join::Local {
                    column,
                    map,
                    target,
                } => {
                    seg.for_each_str(column, |r, v| {
                        if let Some(&e) = v.and_then(|v| map.get(v)) {
                            entity[r] = e;
                        }
                    })
                    .map_err(seg_err(path))?;
                    format!("{column} → {target}")
                }
            };
            let out = out_dir.join(format!("{source}.seg"));
            let mut w = SegmentWriter::create(
                &out,
                vec![ColumnSchema {
                    name: "entity".into(),
                    ty: ColumnType::Int,
                }],
            )
            .map_err(seg_err(&out))?;
            let mut attributed = 0u64;
            for chunk in entity.chunks(GROUP_ROWS) {
                let mut cols = w.new_group();
                for &e in chunk {
                    attributed += u64::from(e != NONE);
                    cols[0].push_int((e != NONE).then_some(i64::from(e)));
                }
                w.write_group(&cols).map_err(seg_err(&out))?;
            }
            w.finish(&[
                ("source".into(), source.clone()),
                ("joined_on".into(), via.clone()),
            ])
            .map_err(seg_err(&out))?;
            Ok(EventReport {
                source: source.clone(),
                rows: n as u64,
                attributed,
                via,
            })
        })
        .collect()
}

enum Join {
    Id {
        column: String,
        dept: Option<u16>,
    },
    Local {
        column: String,
        map: HashMap<String, u32>,
        target: String,
    },
}
