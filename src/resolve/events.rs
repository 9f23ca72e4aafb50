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
use crate::codec::Text;
use crate::error::{ResolveError, SegmentError};
use crate::ingest::segment::{ColumnSchema, ColumnType, Segment, SegmentWriter};
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
    let mut broken_of: HashMap<(u16, u32), u32> = HashMap::new();
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
                broken_of.insert(
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
            // The job maps the segment for itself and unmaps it when done: the pages its
            // scan touched leave the resident set with it (gigabytes for the invoices).
            let path = &src.path;
            let seg = Segment::open(path).map_err(seg_err(path))?;
            let out = out_dir.join(format!("{source}.seg"));
            // Each row's entity is written as the scan reaches it, a group at a time.
            let mut w = EntityWriter::create(&out)?;
            let via = match join {
                Join::Id { column, dept } => {
                    // Rows whose identifier is not a key join the department's own records
                    // with the same value, as resolution read them.
                    let status = format!("{column}.status");
                    let status = seg
                        .schema()
                        .iter()
                        .any(|c| c.name == status)
                        .then(|| seg.reader(&status))
                        .transpose()
                        .map_err(seg_err(path))?;
                    let subject = src.config.subject;
                    let mut bad = None;
                    seg.for_each_str(column, |r, v| {
                        let Some(i) = v.and_then(|v| recs.ids.get(v)) else {
                            return w.push(NONE);
                        };
                        let broken = match status.as_ref().map(|s| s.text(r)) {
                            // Statuses are words: a number is no status.
                            Some(Ok(t)) => {
                                let t = match t {
                                    Some(Text::Str(t)) => t,
                                    _ => "missing",
                                };
                                matches!(
                                    id_state_of(t, subject),
                                    IdState::BrokenPid | IdState::BrokenUscc | IdState::RegNo
                                )
                            }
                            Some(Err(e)) => {
                                bad.get_or_insert(e);
                                false
                            }
                            None => false,
                        };
                        w.push(if broken {
                            dept.and_then(|d| broken_of.get(&(d, i)).copied())
                                .unwrap_or(NONE)
                        } else {
                            by_id[i as usize]
                        });
                    })
                    .map_err(seg_err(path))?;
                    if let Some(e) = bad {
                        return Err(seg_err(path)(e));
                    }
                    column.clone()
                }
                Join::Local {
                    column,
                    map,
                    target,
                } => {
                    seg.for_each_str(column, |_, v| {
                        w.push(v.and_then(|v| map.get(v)).copied().unwrap_or(NONE));
                    })
                    .map_err(seg_err(path))?;
                    format!("{column} → {target}")
                }
            };
            let n = seg.rows();
            let attributed = w.finish(
                n,
                &[
                    ("source".into(), source.clone()),
                    ("joined_on".into(), via.clone()),
                ],
            )?;
            Ok(EventReport {
                source: source.clone(),
                rows: n,
                attributed,
                via,
            })
        })
        .collect()
}

/// The `entity` column of an attribution segment, written a group at a time as rows come.
struct EntityWriter {
    path: std::path::PathBuf,
    w: SegmentWriter,
    group: Vec<crate::ingest::segment::ColumnData>,
    rows: u64,
    attributed: u64,
    /// The first write that failed (the scan's callback cannot return it).
    failed: Option<SegmentError>,
}

impl EntityWriter {
    fn create(path: &Path) -> Result<EntityWriter, ResolveError> {
        let w = SegmentWriter::create(
            path,
            vec![ColumnSchema {
                name: "entity".into(),
                ty: ColumnType::Int,
            }],
        )
        .map_err(seg_err(path))?;
        Ok(EntityWriter {
            path: path.to_path_buf(),
            group: w.new_group(),
            w,
            rows: 0,
            attributed: 0,
            failed: None,
        })
    }

    fn push(&mut self, e: u32) {
        self.attributed += u64::from(e != NONE);
        self.rows += 1;
        self.group[0].push_int((e != NONE).then_some(i64::from(e)));
        if self.group[0].rows() == GROUP_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.group[0].rows() > 0
            && self.failed.is_none()
            && let Err(e) = self.w.write_group(&self.group)
        {
            self.failed = Some(e);
        }
        self.group[0].clear();
    }

    /// Writes the last group and the segment's trailer; the rows attributed. `rows` is the
    /// source's row count, which the scan must have reached.
    fn finish(mut self, rows: u64, meta: &[(String, String)]) -> Result<u64, ResolveError> {
        self.flush();
        if let Some(e) = self.failed {
            return Err(seg_err(&self.path)(e));
        }
        if self.rows != rows {
            return Err(seg_err(&self.path)(SegmentError::Corrupt {
                path: self.path.clone(),
                msg: format!("{} entities written for {rows} rows", self.rows),
            }));
        }
        let path = self.path;
        self.w.finish(meta).map_err(seg_err(&path))?;
        Ok(self.attributed)
    }
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
