//! What `mianshen resolve` writes, and its summary.
//!
//! ```text
//! OUT/links.csv         source,record_id,entity_key,kind,confidence,doubtful,method,evidence
//! OUT/entities.csv      entity,key,kind,identified,records
//! OUT/minted_keys.csv   key,kind,source,record_id   (read back by the next build)
//! OUT/model.txt         the estimated m, u and weights per field and level
//! OUT/events/*.seg      per event or reference source: the entity of every row
//! ```
//!
//! Every file is written under a temporary name and renamed into place.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::cluster::{Entity, Linked, Method, Thresholds, explain, resolve_records};
use super::compare::Field;
use super::events::{EventReport, attribute_events};
use super::keys::{KeyStore, write_minted};
use super::records::{Kind, Records, segments_dir};
use crate::error::ResolveError;

#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    /// Where earlier minted keys are read from (default: `OUT/minted_keys.csv`).
    pub previous_keys: Option<PathBuf>,
    pub thresholds: Option<Thresholds>,
    /// Skip event attribution.
    pub skip_events: bool,
}

/// The summary of a resolve run.
#[derive(Debug)]
pub struct ResolveReport {
    pub records: usize,
    pub entities: usize,
    pub by_kind: [usize; 3],
    pub linked: Linked,
    pub events: Vec<EventReport>,
    /// Seconds per stage: load, resolve, write, events.
    pub seconds: [f64; 4],
    /// Heap bytes of the records' features, record ids and interned strings.
    pub feature_bytes: usize,
    /// Heap bytes of the resolution state: links, entities, evidence, block indexes.
    pub state_bytes: usize,
    pub sources: Vec<(String, usize)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResolveError + '_ {
    move |e| ResolveError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Resolves the segments under `ingested/segments` and writes the result to `out`.
pub fn resolve_dir(
    ingested: &Path,
    out: &Path,
    opts: &ResolveOptions,
) -> Result<ResolveReport, ResolveError> {
    let seg_dir = segments_dir(ingested);
    let t0 = Instant::now();
    let recs = Records::load(&seg_dir)?;
    if recs.is_empty() {
        return Err(ResolveError::Input(format!(
            "no identity records under {}: ingest sources with kind = \"identity\" first",
            seg_dir.display()
        )));
    }
    let t1 = Instant::now();
    std::fs::create_dir_all(out).map_err(io(out))?;
    let store_path = opts
        .previous_keys
        .clone()
        .unwrap_or_else(|| out.join(KeyStore::FILE));
    let store = KeyStore::load(&store_path)?;
    let linked = resolve_records(&recs, &store, opts.thresholds.unwrap_or_default());
    let t2 = Instant::now();
    // The three files are independent: write them side by side.
    let (links, (entities, minted)) = rayon::join(
        || write_links(&recs, &linked, &out.join("links.csv")),
        || {
            rayon::join(
                || write_entities(&recs, &linked, &out.join("entities.csv")),
                || {
                    write_minted(
                        &out.join(KeyStore::FILE),
                        (0..recs.len())
                            .filter(|&r| !linked.entities[linked.entity_of[r] as usize].identified)
                            .map(|r| {
                                let e = &linked.entities[linked.entity_of[r] as usize];
                                (
                                    e.key.clone(),
                                    e.kind,
                                    recs.source_name(r).to_string(),
                                    recs.record_id(r).to_string(),
                                )
                            }),
                    )
                },
            )
        },
    );
    links?;
    entities?;
    minted?;
    write_model(&linked, &out.join("model.txt"))?;
    write_atomic(&out.join("model.tsv"), |w| {
        w.write_all(linked.model.to_tsv().as_bytes())
    })?;
    let t3 = Instant::now();
    let events = if opts.skip_events {
        Vec::new()
    } else {
        attribute_events(&seg_dir, &recs, &linked, &out.join("events"))?
    };
    let t4 = Instant::now();
    let mut by_kind = [0; 3];
    for e in &linked.entities {
        by_kind[e.kind as usize] += 1;
    }
    // The resolution state beyond the records' own features: links, entities, evidence and
    // the block indexes at their peak.
    let state_bytes = linked.entity_of.capacity() * (4 + 4 + 1 + 1)
        + linked.evidence.capacity() * (4 + std::mem::size_of::<super::cluster::Evidence>())
        + linked
            .entities
            .iter()
            .map(|e| e.key.capacity() + std::mem::size_of::<super::cluster::Entity>())
            .sum::<usize>()
        + linked.stats.index_bytes;
    Ok(ResolveReport {
        records: recs.len(),
        entities: linked.entities.len(),
        by_kind,
        sources: recs
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.len as usize))
            .collect(),
        linked,
        events,
        seconds: [
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t4 - t3).as_secs_f64(),
        ],
        feature_bytes: recs.heap_bytes(),
        state_bytes,
    })
}

/// Writes `path` through a temporary file renamed into place.
pub(crate) fn write_atomic(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), ResolveError> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    body(&mut w).map_err(io(&tmp))?;
    w.flush().map_err(io(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// CSV field quoting for values that may hold commas or quotes.
pub(crate) fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    // The four are ASCII, so a byte scan finds them (a char pattern decodes UTF-8 first).
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn write_links(recs: &Records, linked: &Linked, path: &Path) -> Result<(), ResolveError> {
    // Lines are formatted in parallel, in chunks, and written in order.
    let chunks: Vec<Vec<u8>> = (0..recs.len())
        .collect::<Vec<_>>()
        .par_chunks(1 << 15)
        .map(|rows| {
            let mut buf = Vec::with_capacity(rows.len() * 64);
            for &r in rows {
                let e = &linked.entities[linked.entity_of[r] as usize];
                let ev = linked
                    .evidence
                    .get(&(r as u32))
                    .map(|ev| (linked.confidence[r], explain(&linked.model, ev)));
                push_link(
                    &mut buf,
                    recs,
                    r,
                    e,
                    linked.method[r],
                    linked.doubtful[r],
                    ev,
                );
            }
            buf
        })
        .collect();
    write_atomic(path, |w| {
        writeln!(
            w,
            "source,record_id,entity_key,kind,confidence,doubtful,method,evidence"
        )?;
        for c in &chunks {
            w.write_all(c)?;
        }
        Ok(())
    })
}

/// Appends one line of `links.csv` for record `r`. A link with evidence (placed or
/// clustered) has the confidence the model gave it; one without (by key, or alone) has 1.
pub(crate) fn push_link(
    buf: &mut Vec<u8>,
    recs: &Records,
    r: usize,
    entity: &Entity,
    method: Method,
    doubtful: bool,
    evidence: Option<(f32, String)>,
) {
    for part in [
        recs.source_name(r),
        &csv_field(recs.record_id(r)),
        &csv_field(&entity.key),
        entity.kind.as_str(),
    ] {
        buf.extend_from_slice(part.as_bytes());
        buf.push(b',');
    }
    match &evidence {
        // Writing into a Vec cannot fail.
        Some((confidence, _)) => {
            let _ = write!(buf, "{confidence:.4}");
        }
        None => buf.push(b'1'),
    }
    buf.extend_from_slice(if doubtful { b",1," } else { b",0," });
    buf.extend_from_slice(method.as_str().as_bytes());
    buf.push(b',');
    if let Some((_, text)) = &evidence {
        buf.extend_from_slice(csv_field(text).as_bytes());
    }
    buf.push(b'\n');
}

/// One line of `entities.csv`.
pub(crate) fn entity_line(index: u32, e: &Entity, records: u32) -> String {
    format!(
        "{index},{},{},{},{records}\n",
        csv_field(&e.key),
        e.kind.as_str(),
        u8::from(e.identified)
    )
}

fn write_entities(recs: &Records, linked: &Linked, path: &Path) -> Result<(), ResolveError> {
    let mut counts = vec![0u32; linked.entities.len()];
    for r in 0..recs.len() {
        counts[linked.entity_of[r] as usize] += 1;
    }
    write_atomic(path, |w| {
        writeln!(w, "entity,key,kind,identified,records")?;
        for (i, e) in linked.entities.iter().enumerate() {
            w.write_all(entity_line(i as u32, e, counts[i]).as_bytes())?;
        }
        Ok(())
    })
}

fn write_model(linked: &Linked, path: &Path) -> Result<(), ResolveError> {
    let m = &linked.model;
    write_atomic(path, |w| {
        writeln!(
            w,
            "# Fellegi–Sunter model estimated by this build (EM, keys as labels)"
        )?;
        writeln!(
            w,
            "# labelled matches {:.0}, labelled non-matches {:.0}, unlabelled candidate pairs {:.0}",
            m.labelled_matches, m.labelled_non_matches, m.unlabelled
        )?;
        writeln!(
            w,
            "# lambda {:.5}, {} EM iterations; accept at {:+.2} bits, review from {:+.2}",
            m.lambda, m.iterations, linked.thresholds.accept, linked.thresholds.review
        )?;
        let p = &linked.priors;
        writeln!(
            w,
            "# priors (one in the keyed entities of the record's kinds): person {:+.2}, enterprise {:+.2}, person or enterprise {:+.2}, household {:+.2} bits",
            p.bits(1 << Kind::Person as u8),
            p.bits(1 << Kind::Enterprise as u8),
            p.bits((1 << Kind::Person as u8) | (1 << Kind::Enterprise as u8)),
            p.bits(1 << Kind::Household as u8)
        )?;
        writeln!(w, "field\tlevel\tm\tu\tweight_bits")?;
        for f in Field::ALL {
            for l in 0..f.levels() {
                writeln!(
                    w,
                    "{}\t{}\t{:.5}\t{:.6}\t{:+.2}",
                    f.as_str(),
                    f.level_name(l as u8),
                    m.m[f as usize][l],
                    m.u[f as usize][l],
                    m.weight[f as usize][l]
                )?;
            }
        }
        Ok(())
    })
}

impl ResolveReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        let s = &self.linked.stats;
        let mut o = String::new();
        let total: f64 = self.seconds.iter().sum();
        o.push_str(&format!(
            "{} identity records from {} sources → {} entities ({} persons, {} enterprises, {} households)\n",
            self.records,
            self.sources.len(),
            self.entities,
            self.by_kind[0],
            self.by_kind[1],
            self.by_kind[2]
        ));
        o.push_str(&format!(
            "  keyed {} · placed {} ({} through a near-valid id, {} in the second pass) · clustered {} · alone {} · doubtful {}\n",
            s.keyed_records,
            s.placed,
            s.placed_by_near_id,
            s.placed_second_pass,
            s.clustered,
            s.single,
            s.doubtful
        ));
        o.push_str(&format!(
            "  candidate pairs {} (placement) + {} (clustering), {} blocks over their cap skipped, {} merges refused by constraints\n",
            s.candidate_pairs, s.cluster_pairs, s.skipped_blocks, s.merges_refused
        ));
        o.push_str(&format!(
            "  minted keys {} new, {} reused from the previous build\n",
            s.minted_keys, s.reused_keys
        ));
        o.push_str(&format!(
            "  model: λ = {:.4}, {} EM iterations over {:.0} labelled and {:.0} unlabelled pairs\n",
            self.linked.model.lambda,
            self.linked.model.iterations,
            self.linked.model.labelled_matches + self.linked.model.labelled_non_matches,
            self.linked.model.unlabelled
        ));
        if !self.events.is_empty() {
            let rows: u64 = self.events.iter().map(|e| e.rows).sum();
            let hit: u64 = self.events.iter().map(|e| e.attributed).sum();
            o.push_str(&format!(
                "  events: {} rows in {} sources, {} attributed ({:.2}%), {:.1} M rows/s\n",
                rows,
                self.events.len(),
                hit,
                100.0 * hit as f64 / rows.max(1) as f64,
                rows as f64 / self.seconds[3].max(1e-9) / 1e6
            ));
        }
        let phases: Vec<String> = s
            .phases
            .iter()
            .map(|(n, t)| format!("{n} {t:.2}"))
            .collect();
        o.push_str(&format!("  resolve phases (s): {}\n", phases.join(", ")));
        o.push_str(&format!(
            "  time: load {:.2} s, resolve {:.2} s, write {:.2} s, events {:.2} s, total {:.2} s\n",
            self.seconds[0], self.seconds[1], self.seconds[2], self.seconds[3], total,
        ));
        let per = |b: usize| b as f64 / self.records.max(1) as f64;
        o.push_str(&format!(
            "  memory per record: {:.0} bytes of features and strings, {:.0} bytes of resolution state (links, entities, evidence, block indexes)\n",
            per(self.feature_bytes),
            per(self.state_bytes)
        ));
        o
    }
}
