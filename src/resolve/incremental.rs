//! `mianshen resolve --add CONFIG`: places new identity records into the entities of an
//! earlier build, one record at a time, without re-resolving anything.
//!
//! The new source is ingested into `OUT/added/NNNN/`. The earlier build's records are read
//! back from their segments (and those of earlier additions) in the order `links.csv` lists
//! them, so line *i* of `links.csv` is record *i*: a mismatch means the build and the
//! segments disagree, and the command refuses. The earlier model (`model.tsv`) scores the
//! new records: a valid key joins its entity (or starts one); anything else goes to the best
//! candidate entity above the threshold, or starts a new entity with a minted key. Each
//! placed record joins a small side index, so a later new record can find it. New links,
//! entities and minted keys are appended to the build's files.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::block::{BlockIndex, Side, keys_of};
use super::cluster::{
    Entity, Frequencies, Members, Method, Priors, Thresholds, best_of, cluster_kind, decide,
    explain, kind_of_keyed, kind_ok, linkable, near_id_entities,
};
use super::compare::compare_best;
use super::keys::{KeyStore, mint_unique};
use super::links::{entity_line, push_link};
use super::records::{IdState, Kind, NONE, Records, segments_dir};
use super::weights::Model;
use crate::error::ResolveError;
use crate::ingest::{IngestOptions, ingest_source};
use crate::source::config::{SourceConfig, SourceFile};

/// What an addition did.
#[derive(Debug, Clone, Default)]
pub struct AddReport {
    pub records: usize,
    pub by_key: usize,
    pub placed: usize,
    pub doubtful: usize,
    pub new_entities: usize,
    /// Seconds to ingest the new source and load the earlier build.
    pub setup_seconds: f64,
    /// Microseconds to place each new record, sorted.
    pub latencies_us: Vec<f64>,
    pub quarantined: u64,
}

impl AddReport {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i]
    }

    pub fn render(&self) -> String {
        format!(
            "added {} records ({} quarantined): {} by key, {} placed ({} doubtful), {} new entities\n  \
             setup {:.2} s (ingest the new source, load the earlier build); per record: median {:.0} µs, p99 {:.0} µs, max {:.0} µs\n",
            self.records,
            self.quarantined,
            self.by_key,
            self.placed,
            self.doubtful,
            self.new_entities,
            self.setup_seconds,
            self.percentile(0.5),
            self.percentile(0.99),
            self.latencies_us.last().copied().unwrap_or(0.0)
        )
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResolveError + '_ {
    move |e| ResolveError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Folders of earlier additions under `out/added`, oldest first.
fn added_folders(out: &Path) -> Result<Vec<PathBuf>, ResolveError> {
    let dir = out.join("added");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("segments").is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// Adds the source described by `config_path` to the build in `out`, made from `ingested`.
pub fn add_source(
    ingested: &Path,
    out: &Path,
    config_path: &Path,
    th: Thresholds,
) -> Result<AddReport, ResolveError> {
    let started = Instant::now();
    let config = SourceConfig::load(config_path).map_err(|e| ResolveError::Input(e.to_string()))?;
    let folder = config_path.parent().unwrap_or(Path::new("."));
    let csv = folder.join(
        config
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.csv", config.table)),
    );
    let earlier = added_folders(out)?;
    let target = out.join("added").join(format!("{:04}", earlier.len() + 1));
    let summary = ingest_source(
        &SourceFile {
            config,
            config_path: config_path.to_path_buf(),
            csv_path: csv,
        },
        &target,
        &IngestOptions {
            progress: false,
            ..Default::default()
        },
        None,
    )
    .map_err(|e| ResolveError::Input(e.to_string()))?;

    let mut folders: Vec<PathBuf> = vec![segments_dir(ingested)];
    folders.extend(earlier.iter().map(|f| f.join("segments")));
    folders.push(target.join("segments"));
    let folder_refs: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
    let recs = Records::load_many(&folder_refs)?;
    let new_folder = folders.len() - 1;
    let first_new = recs
        .sources
        .iter()
        .find(|s| s.folder == new_folder)
        .map_or(recs.len(), |s| s.first as usize);

    // The earlier build: entities, then the entity of every earlier record, line by line.
    let mut entities: Vec<Entity> = Vec::new();
    let mut by_key: HashMap<String, u32> = HashMap::new();
    let ent_path = out.join("entities.csv");
    let file = std::fs::File::open(&ent_path).map_err(io(&ent_path))?;
    for (n, line) in BufReader::new(file).lines().enumerate().skip(1) {
        let line = line.map_err(io(&ent_path))?;
        let f: Vec<&str> = line.split(',').collect();
        let kind = match f.get(2) {
            Some(&"person") => Kind::Person,
            Some(&"enterprise") => Kind::Enterprise,
            Some(&"household") => Kind::Household,
            _ => {
                return Err(ResolveError::Input(format!(
                    "{}:{}: expected entity,key,kind,identified,records",
                    ent_path.display(),
                    n + 1
                )));
            }
        };
        by_key.insert(f[1].to_string(), entities.len() as u32);
        entities.push(Entity {
            kind,
            key: f[1].to_string(),
            identified: f.get(3) == Some(&"1"),
        });
    }
    let links_path = out.join("links.csv");
    let mut entity_of = vec![NONE; recs.len()];
    let file = std::fs::File::open(&links_path).map_err(io(&links_path))?;
    let mut r = 0usize;
    for line in BufReader::with_capacity(1 << 20, file).lines().skip(1) {
        let line = line.map_err(io(&links_path))?;
        let mut f = line.splitn(4, ',');
        let (source, rid, key) = (f.next(), f.next(), f.next());
        let matches = r < first_new
            && source == Some(recs.source_name(r))
            && rid.map(|x| x.trim_matches('"')) == Some(recs.record_id(r));
        if !matches {
            return Err(ResolveError::Input(format!(
                "{}: line {} does not match the ingested records; resolve the sources again \
                 before adding to them",
                links_path.display(),
                r + 2
            )));
        }
        entity_of[r] = key.and_then(|k| by_key.get(k)).copied().unwrap_or(NONE);
        r += 1;
    }
    if r != first_new {
        return Err(ResolveError::Input(format!(
            "{} lists {r} records but the build has {first_new}; resolve again",
            links_path.display()
        )));
    }
    let model_path = out.join("model.tsv");
    let model = Model::from_tsv(&std::fs::read_to_string(&model_path).map_err(io(&model_path))?)
        .map_err(|e| ResolveError::Input(format!("{}: {e}", model_path.display())))?;

    let mut by_id = vec![NONE; recs.ids.len()];
    for r in 0..first_new {
        if recs.f[r].id_state == IdState::Key && entity_of[r] != NONE {
            by_id[recs.f[r].id as usize] = entity_of[r];
        }
    }
    let members = Members::build_distinct(&recs, &entity_of, entities.len());
    let index = BlockIndex::build(
        &recs,
        (0..first_new).filter(|&r| entity_of[r] != NONE),
        Side::Keyed,
    );
    let freq = Frequencies::new(&recs);
    let priors = Priors::of(&entities);
    let mut report = AddReport {
        records: recs.len() - first_new,
        quarantined: summary.quarantined,
        setup_seconds: started.elapsed().as_secs_f64(),
        ..AddReport::default()
    };

    // New records, one at a time, each visible to the next through the side index.
    let mut side_index: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut side_members: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut lines: Vec<u8> = Vec::new();
    let mut new_entity_lines = Vec::new();
    let mut minted_lines = Vec::new();
    let mut buf = Vec::new();
    for r in first_new..recs.len() {
        let t = Instant::now();
        let f = recs.f[r];
        let mut method = Method::Key;
        let mut placement = None;
        let e = if f.id_state == IdState::Key {
            report.by_key += 1;
            match by_id[f.id as usize] {
                NONE => {
                    let e = entities.len() as u32;
                    entities.push(Entity {
                        kind: kind_of_keyed(&recs, r),
                        key: recs.ids.text(f.id).to_string(),
                        identified: true,
                    });
                    by_id[f.id as usize] = e;
                    new_entity_lines.push(e);
                    report.new_entities += 1;
                    e
                }
                e => e,
            }
        } else {
            // Candidates: valid ids one edit away, the main index, the side index.
            let mut cands: Vec<(u32, bool)> = Vec::new();
            near_id_entities(&recs, r, &by_id, &mut cands);
            index.for_each_candidate(&recs, r, Side::Keyed, &mut buf, |s| {
                cands.push((entity_of[s], false))
            });
            keys_of(&recs, r, Side::Keyed, &mut buf);
            for k in &buf {
                if let Some(v) = side_index.get(k) {
                    cands.extend(v.iter().map(|&s| (entity_of[s as usize], false)));
                }
            }
            cands.retain(|c| c.0 != NONE);
            cands.sort_unstable_by_key(|&(e, near)| (e, !near));
            cands.dedup_by_key(|c| c.0);
            cands.retain(|&(e, _)| kind_ok(&recs, r, entities[e as usize].kind));
            let prior = priors.bits(f.kinds);
            let compared = cands.iter().map(|&(e, near)| {
                let group = members.of(e).chain(
                    side_members
                        .get(&e)
                        .into_iter()
                        .flatten()
                        .map(|&s| s as usize),
                );
                (e, near, compare_best(&recs, r, group))
            });
            let (best, second) = best_of(compared, |g| {
                linkable(g).then(|| {
                    let (tn, tp) = freq.adjust(&recs, r, g);
                    (model.weight_of(g) + tn + tp + prior, tn, tp)
                })
            });
            match decide(best, second, &th, prior) {
                Some(p) => {
                    method = Method::Placed;
                    report.placed += 1;
                    report.doubtful += usize::from(p.doubtful);
                    placement = Some(p);
                    p.entity
                }
                None => {
                    method = Method::Single;
                    let kind = cluster_kind(&recs, &[r]);
                    let key = mint_unique(kind, recs.source_name(r), recs.record_id(r), |k| {
                        by_key.contains_key(k)
                    });
                    let e = entities.len() as u32;
                    by_key.insert(key.clone(), e);
                    entities.push(Entity {
                        kind,
                        key,
                        identified: false,
                    });
                    new_entity_lines.push(e);
                    report.new_entities += 1;
                    e
                }
            }
        };
        entity_of[r] = e;
        keys_of(&recs, r, Side::Keyed, &mut buf);
        for &k in &buf {
            side_index.entry(k).or_default().push(r as u32);
        }
        side_members.entry(e).or_default().push(r as u32);
        report.latencies_us.push(t.elapsed().as_secs_f64() * 1e6);

        let ent = &entities[e as usize];
        push_link(
            &mut lines,
            &recs,
            r,
            ent,
            method,
            placement.is_some_and(|p| p.doubtful),
            placement.map(|p| (p.confidence, explain(&model, &p.evidence))),
        );
        if !ent.identified {
            minted_lines.push(format!(
                "{},{},{},{}\n",
                ent.key,
                ent.kind.as_str(),
                recs.source_name(r),
                recs.record_id(r)
            ));
        }
    }
    report.latencies_us.sort_unstable_by(|a, b| a.total_cmp(b));

    // Append to the build's files.
    let append = |path: &Path, text: &[u8]| -> Result<(), ResolveError> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io(path))?;
        f.write_all(text).map_err(io(path))?;
        f.sync_all().map_err(io(path))
    };
    append(&links_path, &lines)?;
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &e in &entity_of[first_new..] {
        *counts.entry(e).or_insert(0) += 1;
    }
    let ent_lines: String = new_entity_lines
        .iter()
        .map(|&e| {
            entity_line(
                e,
                &entities[e as usize],
                counts.get(&e).copied().unwrap_or(0),
            )
        })
        .collect();
    append(&ent_path, ent_lines.as_bytes())?;
    let minted = out.join(KeyStore::FILE);
    if !minted.exists() {
        std::fs::write(&minted, "key,kind,source,record_id\n").map_err(io(&minted))?;
    }
    append(&minted, minted_lines.concat().as_bytes())?;
    Ok(report)
}
