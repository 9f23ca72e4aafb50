//! The whole build in one call: ingest → resolve → snapshot (`mianshen build`).
//!
//! Each stage writes its output under a work folder (`ingested/`, `resolved/`) that the next
//! reads, so a stage can be rerun alone, and the profile command can read the same files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::BuildError;

use crate::ingest::{self, IngestOptions};
use crate::resolve::{self, ResolveOptions};
use crate::snapshot::build::{SnapshotOptions, SnapshotReport, write_snapshot};
use crate::source::city::CityParams;

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A folder of department CSV files with their source configs.
    Sources(PathBuf),
    /// The generator's in-process stream (no CSV on disk).
    City(CityParams),
    /// An ingest output and a resolve build of it, already made.
    Built {
        ingested: PathBuf,
        resolved: PathBuf,
    },
}

/// What `build` did, stage by stage.
#[derive(Debug)]
pub struct BuildSummary {
    /// `(stage, seconds)`.
    pub stages: Vec<(&'static str, f64)>,
    pub entities: usize,
    pub snapshot: SnapshotReport,
}

impl BuildSummary {
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (stage, secs) in &self.stages {
            s += &format!("{stage:<10} {secs:>8.1} s\n");
        }
        let total: f64 = self.stages.iter().map(|s| s.1).sum();
        s += &format!(
            "built {} in {total:.1} s: {} records, {} entities, {:.1} MB, {:.2} bytes/record, generation {}\n",
            self.snapshot.path.display(),
            self.snapshot.records(),
            self.entities,
            self.snapshot.bytes as f64 / 1e6,
            self.snapshot.bytes as f64 / self.snapshot.records().max(1) as f64,
            self.snapshot.generation
        );
        s
    }
}

/// Runs every stage from `input` and publishes `out/snapshot.msnap`; intermediate outputs go
/// under `work`.
pub fn build(
    input: &Input,
    out: &Path,
    work: &Path,
    progress: bool,
) -> Result<BuildSummary, BuildError> {
    let mut stages = Vec::new();
    let (ingested, resolved) = match input {
        Input::Built { ingested, resolved } => (ingested.clone(), resolved.clone()),
        Input::Sources(_) | Input::City(_) => {
            let ingested = work.join("ingested");
            let resolved = work.join("resolved");
            let t = Instant::now();
            let opts = IngestOptions {
                progress,
                ..Default::default()
            };
            if progress {
                eprintln!("[1/3] ingest → {}", ingested.display());
            }
            let report = match input {
                Input::Sources(dir) => ingest::ingest_dir(dir, &ingested, &opts)?,
                Input::City(params) => ingest::ingest_city(params, &ingested, &opts)?,
                Input::Built { .. } => unreachable!("handled above"),
            };
            if !report.failures.is_empty() {
                return Err(BuildError::Sources {
                    count: report.failures.len(),
                    details: report
                        .failures
                        .iter()
                        .map(|(s, why)| format!("  {s}: {why}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            stages.push(("ingest", t.elapsed().as_secs_f64()));
            let t = Instant::now();
            if progress {
                eprintln!("[2/3] resolve → {}", resolved.display());
            }
            let r = resolve::resolve_dir(&ingested, &resolved, &ResolveOptions::default())?;
            if progress {
                eprintln!(
                    "      {} identity records → {} entities",
                    r.records, r.entities
                );
            }
            stages.push(("resolve", t.elapsed().as_secs_f64()));
            (ingested, resolved)
        }
    };
    let t = Instant::now();
    if progress {
        eprintln!("[3/3] snapshot → {}", out.display());
    }
    let snapshot = write_snapshot(&ingested, &resolved, out, &SnapshotOptions { progress })?;
    stages.push(("snapshot", t.elapsed().as_secs_f64()));
    Ok(BuildSummary {
        stages,
        entities: snapshot.entities,
        snapshot,
    })
}
