//! Writing a snapshot from ingested segments and a resolve build.
//!
//! Every source table becomes a snapshot table:
//! - its rows re-ordered so that each entity's rows are contiguous (stable within an entity),
//!   attributed rows first; the order is kept as entity runs (`run_entity`, `run_start`);
//! - its normalized value columns (raw text, validation status and address components other
//!   than the region are left in the segments), re-encoded as blocked integers, dictionaries
//!   and decimal text (`column`, `blocks`), streamed from the segment in entity order, a
//!   column per core at a time, the next table's row order made while the last columns of
//!   the one before are encoded (one queue of items, written in queue order, so the file
//!   does not depend on which finishes first): the stage holds at most two tables' row
//!   orders and a few columns' encodings, never a whole table. Rows are read in runs: where consecutive positions of the entity
//!   order are consecutive rows of the segment (an export clustered by entity, as the
//!   city's event tables are to 96–99.9%), a run is decoded a block at a time rather than a
//!   row at a time;
//! - every identifier or local-key column whose values are entity keys (a spouse's id number,
//!   an employer's USCC, a person's household number) resolved to entities (`ref/`): the
//!   relation arrays that policies project through;
//! - for identity tables, each row's link: doubtful rows as a bitmap, confidence and method;
//! - for dictionary columns, one bitmap of entities per value (`index/`).
//!
//! Then the entity table (kind, stable key, key hash index), the universes, and provenance.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use roaring::RoaringBitmap;
use xxhash_rust::xxh3::{Xxh3DefaultBuilder, xxh3_64};

use super::column::{ColumnValues, ColumnWriter, Linear, Text, decimal, encode, encode_flat};
use super::container::ContainerWriter;
use super::{FILE_NAME, KINDS, Snapshot, kind_code};
use crate::date::Date;
use crate::error::SnapshotError;
use crate::ingest::segment::{ColumnType, Segment};
use crate::parallel::in_order;
use crate::resolve::eval::split_csv;
use crate::resolve::records::{NONE, SourceSegment, seg_err, segments_dir};
use crate::source::config::{Role, SourceConfig, TableKind};

/// What a snapshot build wrote.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub path: PathBuf,
    pub generation: u64,
    pub entities: usize,
    pub tables: Vec<TableReport>,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct TableReport {
    pub name: String,
    pub rows: usize,
    pub attributed: usize,
    pub bytes: u64,
    /// Seconds spent writing the table.
    pub seconds: f64,
}

impl SnapshotReport {
    pub fn records(&self) -> usize {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<28} {:>12} {:>12} {:>12} {:>8}\n",
            "table", "rows", "attributed", "bytes", "B/row"
        );
        for t in &self.tables {
            s += &format!(
                "{:<28} {:>12} {:>12} {:>12} {:>8.2}\n",
                t.name,
                t.rows,
                t.attributed,
                t.bytes,
                t.bytes as f64 / t.rows.max(1) as f64
            );
        }
        s += &format!(
            "snapshot generation {} at {}: {} entities, {} records, {:.1} MB ({:.2} bytes/record), written in {:.1} s\n",
            self.generation,
            self.path.display(),
            self.entities,
            self.records(),
            self.bytes as f64 / 1e6,
            self.bytes as f64 / self.records().max(1) as f64,
            self.seconds
        );
        s
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SnapshotError + '_ {
    move |e| SnapshotError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// The entity table of a resolve build.
struct Entities {
    keys: Vec<String>,
    kinds: Vec<u8>,
    identified: Vec<bool>,
    by_key: HashMap<String, u32, Xxh3DefaultBuilder>,
    /// Bit `n` set when some key is `n` bytes long (`n` < 64): a value of any other length
    /// is no entity's key without a lookup (an invoice number is not; a billion of them are
    /// looked at).
    key_lengths: u64,
}

impl Entities {
    fn new() -> Entities {
        Entities {
            keys: Vec::new(),
            kinds: Vec::new(),
            identified: Vec::new(),
            by_key: HashMap::default(),
            key_lengths: 0,
        }
    }

    /// The entity whose stable key is `text`.
    fn by_text(&self, text: Text<'_>) -> Option<u32> {
        let len = match text {
            Text::Str(s) => s.len(),
            Text::Digits(n) => n.checked_ilog10().map_or(1, |d| d as usize + 1),
        };
        if len >= 64 || self.key_lengths >> len & 1 == 0 {
            return None;
        }
        let mut digits = [0u8; 20];
        let key = std::str::from_utf8(text.bytes(&mut digits)).ok()?;
        self.by_key.get(key).copied()
    }

    fn push(&mut self, key: &str, kind: u8, identified: bool) {
        self.by_key.insert(key.to_string(), self.keys.len() as u32);
        self.key_lengths |= 1u64.checked_shl(key.len() as u32).unwrap_or(0);
        self.keys.push(key.to_string());
        self.kinds.push(kind);
        self.identified.push(identified);
    }
}

fn read_entities(resolved: &Path) -> Result<Entities, SnapshotError> {
    let path = resolved.join("entities.csv");
    let f = std::fs::File::open(&path).map_err(io(&path))?;
    let mut e = Entities::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(io(&path))?;
        if i == 0 {
            continue;
        }
        let f = split_csv(&line);
        let bad = |msg: &str| SnapshotError::Input(format!("{}:{}: {msg}", path.display(), i + 1));
        let [idx, key, kind, identified, ..] = f.as_slice() else {
            return Err(bad("expected entity,key,kind,identified,records"));
        };
        if idx.parse::<usize>().ok() != Some(e.keys.len()) {
            return Err(bad("entities must be numbered 0, 1, 2, … in order"));
        }
        let kind = kind_code(kind).ok_or_else(|| bad("unknown entity kind"))?;
        e.push(key, kind, identified == "1");
    }
    Ok(e)
}

/// One identity record's link.
#[derive(Clone, Copy)]
struct Link {
    entity: u32,
    doubtful: bool,
    /// Confidence in thousandths.
    confidence: u16,
    method: u8,
}

const METHODS: [&str; 5] = ["key", "placed", "clustered", "single", "minted"];

/// One source's links: record id → link.
type SourceLinks = HashMap<String, Link, Xxh3DefaultBuilder>;

/// Pieces `links.csv` is cut into, at line ends, to be parsed on every core.
const LINK_PIECES: usize = 64;

/// `links.csv` by source: record id → link. The file (26.6M links, 1.9 GB for the city) is
/// parsed in pieces on every core, each link's entity found as it is parsed; then each
/// source's map is built on its own.
fn read_links(
    resolved: &Path,
    entities: &Entities,
) -> Result<HashMap<String, SourceLinks>, SnapshotError> {
    let path = resolved.join("links.csv");
    let bytes = crate::mmap::FileBytes::open(&path).map_err(io(&path))?;
    let text = simdutf8::basic::from_utf8(&bytes)
        .map_err(|_| SnapshotError::Input(format!("{}: not UTF-8", path.display())))?;
    // The header is line 1; pieces start after it, each at the start of a line.
    let mut at = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut pieces = Vec::new();
    while at < text.len() {
        let want = (at + text.len().div_ceil(LINK_PIECES)).min(text.len());
        let end = memchr::memchr(b'\n', &text.as_bytes()[want.saturating_sub(1)..])
            .map_or(text.len(), |i| want.saturating_sub(1) + i + 1);
        pieces.push(&text[at..end]);
        at = end;
    }
    let mut first_line = Vec::with_capacity(pieces.len());
    let mut line = 2;
    for p in &pieces {
        first_line.push(line);
        line += memchr::memchr_iter(b'\n', p.as_bytes()).count();
    }
    let parsed = pieces
        .par_iter()
        .zip(&first_line)
        .map(|(piece, &first)| {
            // By source (a piece holds one or a few: the file is written source by source).
            let mut out: HashMap<&str, Vec<(&str, Link)>> = HashMap::new();
            for (k, line) in piece.lines().enumerate() {
                let bad = |msg: String| {
                    SnapshotError::Input(format!("{}:{}: {msg}", path.display(), first + k))
                };
                // source,record_id,entity_key,kind,confidence,doubtful,method,evidence
                let mut it = line.splitn(8, ',');
                let (
                    Some(source),
                    Some(rid),
                    Some(key),
                    _,
                    Some(conf),
                    Some(doubtful),
                    Some(method),
                ) = (
                    it.next(),
                    it.next(),
                    it.next(),
                    it.next(),
                    it.next(),
                    it.next(),
                    it.next(),
                )
                else {
                    return Err(bad("expected the links columns".into()));
                };
                let Some(&entity) = entities.by_key.get(key) else {
                    return Err(bad(format!("entity key {key} is not in entities.csv")));
                };
                let confidence =
                    (conf.parse::<f64>().unwrap_or(0.0).clamp(0.0, 1.0) * 1000.0).round();
                out.entry(source).or_default().push((
                    rid,
                    Link {
                        entity,
                        doubtful: doubtful == "1",
                        confidence: confidence as u16,
                        method: METHODS.iter().position(|m| *m == method).unwrap_or(0) as u8,
                    },
                ));
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let sources: HashSet<&str> = parsed.iter().flat_map(|p| p.keys().copied()).collect();
    Ok(sources
        .into_par_iter()
        .map(|source| {
            let pieces: Vec<&Vec<(&str, Link)>> =
                parsed.iter().filter_map(|p| p.get(source)).collect();
            let mut map = SourceLinks::with_capacity_and_hasher(
                pieces.iter().map(|v| v.len()).sum(),
                Default::default(),
            );
            // In file order: a later line for the same record wins, as read one by one.
            for &(rid, link) in pieces.iter().flat_map(|v| v.iter()) {
                map.insert(rid.to_string(), link);
            }
            (source.to_string(), map)
        })
        .collect())
}

/// Columns of a segment the snapshot keeps: normalized values, plus an address's region.
pub fn kept(name: &str) -> bool {
    if name.starts_with('_') {
        return false;
    }
    match name.rsplit_once('.') {
        None => true,
        Some((_, suffix)) => suffix == "region",
    }
}

/// Roles whose values may name another entity.
/// (The subject's own id column is how the row was linked or joined, not a reference.)
fn may_reference(role: Option<Role>) -> bool {
    matches!(
        role,
        Some(Role::PersonRef | Role::EnterpriseRef | Role::PartyRef | Role::Key)
    )
}

/// Options of a snapshot build.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Print one line per table as it is written.
    pub progress: bool,
}

/// Writes `out_dir/snapshot.msnap` from `ingested` (segments) and `resolved` (a resolve
/// build), as the next generation of whatever snapshot the folder holds.
pub fn write_snapshot(
    ingested: &Path,
    resolved: &Path,
    out_dir: &Path,
    opts: &SnapshotOptions,
) -> Result<SnapshotReport, SnapshotError> {
    let started = Instant::now();
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let dest = out_dir.join(FILE_NAME);
    let generation = Snapshot::open(&dest).map_or(0, |s| s.generation()) + 1;
    let entities = read_entities(resolved)?;
    let links = Mutex::new(read_links(resolved, &entities)?);
    let sources = SourceSegment::open_all(&segments_dir(ingested))?;
    let mut w = ContainerWriter::create(&dest)?;
    let mut reports = Vec::new();
    let mut table_lines = String::new();
    let mut meta = String::new();
    for src in &sources {
        if let Some(a) = &src.config.as_of {
            meta += &format!("as_of.{}\t{a}\n", src.config.source_name());
        }
    }
    let jobs: Vec<TableJob> = sources.into_iter().map(TableJob::new).collect();
    // Each table is one item (its row order, runs and link sections), then one item per
    // column, all in one queue: a table's order is made while the one before it finishes its
    // last columns, so neither core waits at a table's edges. Items are written in queue
    // order, so the file does not depend on the scheduling.
    let items: Vec<(usize, Option<usize>)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(t, j)| {
            std::iter::once((t, None)).chain((0..j.cols.len()).map(move |c| (t, Some(c))))
        })
        .collect();
    let slots = Slots::new(jobs.len());
    let mut schema = String::new();
    let mut table_begun = (w.position(), 0usize, 0usize);
    let mut last_done = Instant::now();
    in_order(
        items.len(),
        rayon::current_num_threads(),
        ITEMS_IN_FLIGHT,
        |i| match items[i] {
            (t, None) => slots.prepare(t, || prepare_table(&jobs[t], &entities, &links, resolved)),
            (t, Some(c)) => {
                let job = &jobs[t];
                let p = slots.wait(t, &job.name)?;
                let (cname, ty, role) = &job.cols[c];
                let stream = Stream {
                    table: &job.name,
                    seg: &p.src.seg,
                    order: &p.order,
                    predicted: &p.predicted,
                };
                let serr = |e| SnapshotError::from(seg_err(&p.src.path)(e));
                stream
                    .encode(cname, *ty, *role, &entities, &serr)
                    .map(Done::Column)
            }
        },
        |i, done| {
            let (t, c) = items[i];
            let job = &jobs[t];
            match done {
                Done::Table {
                    sections,
                    rows,
                    attributed,
                } => {
                    table_begun = (w.position(), rows, attributed);
                    schema.clear();
                    for s in sections {
                        s.write(&mut w)?;
                    }
                }
                Done::Column(enc) => {
                    let flags = enc.write(&mut w)?;
                    let (cname, ty, role) = &job.cols[c.unwrap_or(0)];
                    schema += &format!(
                        "{cname}\t{}\t{}\t{flags}\n",
                        ty.as_str(),
                        role.map_or_else(|| "derived".to_string(), Role::name)
                    );
                }
            }
            if c.map_or(0, |c| c + 1) < job.cols.len() {
                return Ok(());
            }
            // The table's last item: its schema, and its segment unmapped (the pages the
            // gather touched leave the process's resident set with it).
            w.section(&format!("table/{}/schema", job.name), schema.as_bytes())?;
            slots.release(t);
            let (before, rows, attributed) = table_begun;
            table_lines += &format!(
                "{}\t{}\t{}\t{rows}\t{attributed}\t{}\n",
                job.name,
                job.config.kind.as_str(),
                job.config.subject.as_str(),
                job.config.as_of.clone().unwrap_or_default()
            );
            let report = TableReport {
                name: job.name.clone(),
                rows,
                attributed,
                bytes: w.position() - before,
                seconds: last_done.elapsed().as_secs_f64(),
            };
            last_done = Instant::now();
            if opts.progress {
                eprintln!(
                    "  snapshot {:<28} {:>12} rows {:>10.1} MB {:>8.1} s",
                    report.name,
                    report.rows,
                    report.bytes as f64 / 1e6,
                    report.seconds
                );
            }
            reports.push(report);
            Ok(())
        },
    )?;
    w.section("tables", table_lines.as_bytes())?;
    write_entities(&mut w, &entities)?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = Date((now / 86_400) as i32);
    let secs = now % 86_400;
    meta = format!(
        "generation\t{generation}\nbuilt_at\t{day}T{:02}:{:02}:{:02}Z\nbuilt_at_unix\t{now}\nresolver_version\tmianshen {} (links {})\nentities\t{}\nrecords\t{}\n{meta}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        env!("CARGO_PKG_VERSION"),
        model_fingerprint(resolved),
        entities.keys.len(),
        reports.iter().map(|t| t.rows).sum::<usize>(),
    );
    for (k, name) in KINDS.iter().enumerate() {
        let n = entities.kinds.iter().filter(|&&x| x as usize == k).count();
        meta += &format!("entities.{name}\t{n}\n");
    }
    w.section("meta", meta.as_bytes())?;
    let bytes = w.finish()?;
    Ok(SnapshotReport {
        path: dest,
        generation,
        entities: entities.keys.len(),
        tables: reports,
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A short fingerprint of the resolve build's model, so provenance says which model linked.
fn model_fingerprint(resolved: &Path) -> String {
    std::fs::read(resolved.join("model.tsv"))
        .map(|b| format!("model {:016x}", xxh3_64(&b)))
        .unwrap_or_else(|_| "no model".into())
}

fn write_entities(w: &mut ContainerWriter, e: &Entities) -> Result<(), SnapshotError> {
    let mut b = Vec::new();
    encode_flat(
        &ColumnValues::Int(e.kinds.iter().map(|&k| Some(i64::from(k))).collect()),
        &mut b,
    );
    w.section("entities/kind", &b)?;
    b.clear();
    encode(
        &ColumnValues::Bytes(e.keys.iter().map(|k| Some(k.as_str())).collect()),
        &mut b,
    );
    w.section("entities/key", &b)?;
    // Key hashes as stored (i64), sorted, with the entity of each: a binary search finds a key.
    let mut signed: Vec<(i64, u32)> = e
        .keys
        .par_iter()
        .enumerate()
        .map(|(i, k)| (xxh3_64(k.as_bytes()) as i64, i as u32))
        .collect();
    signed.par_sort_unstable();
    b.clear();
    encode_flat(
        &ColumnValues::Int(signed.iter().map(|&(h, _)| Some(h)).collect()),
        &mut b,
    );
    w.section("entities/key_hash", &b)?;
    b.clear();
    encode_flat(
        &ColumnValues::Int(signed.iter().map(|&(_, i)| Some(i64::from(i))).collect()),
        &mut b,
    );
    w.section("entities/key_order", &b)?;
    let mut bitmap = |name: &str, pred: &dyn Fn(usize) -> bool| -> Result<(), SnapshotError> {
        let bm = RoaringBitmap::from_sorted_iter(
            (0..e.keys.len()).filter(|&i| pred(i)).map(|i| i as u32),
        )
        .map_err(|err| SnapshotError::Input(format!("{name}: {err}")))?;
        let mut b = Vec::with_capacity(bm.serialized_size());
        bm.serialize_into(&mut b)
            .map_err(|err| SnapshotError::Input(err.to_string()))?;
        w.section(name, &b)
    };
    bitmap("entities/identified", &|i| e.identified[i])?;
    for (k, name) in KINDS.iter().enumerate() {
        bitmap(&format!("universe/{name}"), &|i| e.kinds[i] as usize == k)?;
    }
    Ok(())
}

/// The entity runs of a table in entity order: each run's entity and first position.
fn run_sections(name: &str, order: &EntityOrder) -> Vec<Section> {
    let ints = |v: &[u32]| ColumnValues::Int(v.iter().map(|&x| Some(i64::from(x))).collect());
    let section = |what: &str, v: &[u32]| {
        let mut b = Vec::new();
        encode_flat(&ints(v), &mut b);
        Section::whole(format!("table/{name}/{what}"), b)
    };
    vec![
        section("run_entity", &order.run_entity),
        section("run_start", &order.run_start),
    ]
}

/// Visits the entity of each row of a range of rows, in row order (`f(row, entity)`).
type EachEntity<'a> =
    dyn Fn(Range<usize>, &mut dyn FnMut(usize, u32)) -> Result<(), SnapshotError> + Sync + 'a;
type RowEntities<'a> = &'a EachEntity<'a>;

/// Rows in entity order, and the runs of each entity's rows.
struct EntityOrder {
    /// Row numbers: each entity's rows together in source order, entities ascending, rows of
    /// no entity last.
    perm: Vec<u32>,
    /// Each run's entity, and its first position in `perm` (then `attributed`).
    run_entity: Vec<u32>,
    run_start: Vec<u32>,
    attributed: usize,
}

impl EntityOrder {
    /// The entity of each attributed position in order, as a cursor over the runs.
    fn entities(&self) -> impl Iterator<Item = u32> + '_ {
        self.run_entity.iter().enumerate().flat_map(|(i, &e)| {
            let (s, t) = (self.run_start[i], self.run_start[i + 1]);
            (s..t).map(move |_| e)
        })
    }
}

/// Orders rows by entity with a counting sort: stable, linear, and no buffer beside the order
/// itself (a billion-row table's order is 4 GB; a merge sort would want as much again). The
/// rows' entities are visited twice rather than held (another 4 GB). The rows are cut into
/// `parts` ranges, each counted and then placed on its own core: within an entity, the
/// rows of one part go after those of the parts before it, so the order is the same as one
/// part's. An entity at or past `entities` (callers refuse them) counts as none.
fn entity_order(
    rows: usize,
    each: RowEntities<'_>,
    entities: usize,
    parts: usize,
) -> Result<EntityOrder, SnapshotError> {
    if u32::try_from(rows).is_err() {
        return Err(SnapshotError::Input(format!(
            "{rows} rows: a table holds at most 2^32 - 1"
        )));
    }
    let bucket = |e: u32| (e as usize).min(entities);
    let parts = parts.clamp(1, rows.max(1));
    let ranges: Vec<Range<usize>> = (0..parts)
        .map(|p| rows * p / parts..rows * (p + 1) / parts)
        .collect();
    // Each part's rows per entity (the last bucket: rows of none).
    let mut counts = ranges
        .par_iter()
        .map(|range| {
            let mut count = vec![0u32; entities + 1];
            let mut seen = 0usize;
            each(range.clone(), &mut |_, e| {
                count[bucket(e)] += 1;
                seen += 1;
            })?;
            if seen != range.len() {
                return Err(SnapshotError::Input(format!(
                    "{seen} row entities for rows {range:?}"
                )));
            }
            Ok(count)
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    // Counts become each part's first position per entity; the runs are the entities with
    // rows.
    let mut run_entity = Vec::new();
    let mut run_start = Vec::new();
    let mut at = 0u32;
    let mut attributed = 0;
    for b in 0..=entities {
        if b == entities {
            attributed = at as usize;
        } else if counts.iter().any(|c| c[b] > 0) {
            run_entity.push(b as u32);
            run_start.push(at);
        }
        for c in &mut counts {
            let n = c[b];
            c[b] = at;
            at += n;
        }
    }
    run_start.push(attributed as u32);
    // Each part places its rows: positions are disjoint across parts, so relaxed stores do.
    let perm: Vec<AtomicU32> = (0..rows).map(|_| AtomicU32::new(0)).collect();
    ranges
        .into_par_iter()
        .zip(counts.into_par_iter())
        .try_for_each(|(range, mut next)| {
            each(range, &mut |r, e| {
                let at = &mut next[bucket(e)];
                if let Some(p) = perm.get(*at as usize) {
                    p.store(r as u32, Ordering::Relaxed);
                }
                *at += 1;
            })
        })?;
    Ok(EntityOrder {
        perm: perm.into_iter().map(AtomicU32::into_inner).collect(),
        run_entity,
        run_start,
        attributed,
    })
}

/// Row entities held in memory, as [`entity_order`] visits them.
fn each_of(entity: &[u32]) -> Box<EachEntity<'_>> {
    Box::new(move |range: Range<usize>, f: &mut dyn FnMut(usize, u32)| {
        let first = range.start;
        entity[range]
            .iter()
            .enumerate()
            .for_each(|(r, &e)| f(first + r, e));
        Ok(())
    })
}

fn serialize(bm: &RoaringBitmap) -> Vec<u8> {
    let mut b = Vec::with_capacity(bm.serialized_size());
    // Writing into a Vec cannot fail.
    let _ = bm.serialize_into(&mut b);
    b
}

/// Items being made or waiting to be written at once (each core makes one). A column item
/// holds its encoding (at the city's size up to ~1.9 GB: SW.invoice's `tax`, 2 B a row), and
/// a table item its row order until the table's last column is written (4 B a row), so this
/// is also the bound on the stage's extra memory: the orders of at most two tables.
const ITEMS_IN_FLIGHT: usize = 3;

/// One table of the snapshot: its segment until the table's first item takes it, and what
/// the writer knows of it from the start.
struct TableJob {
    src: Mutex<Option<SourceSegment>>,
    name: String,
    config: SourceConfig,
    /// The kept columns, in schema order, with their roles (none for a derived column).
    cols: Vec<(String, ColumnType, Option<Role>)>,
}

impl TableJob {
    fn new(src: SourceSegment) -> TableJob {
        let config = src.config.clone();
        let role_of = |col: &str| -> Option<Role> {
            let base = col.split('.').next().unwrap_or(col);
            config
                .columns
                .iter()
                .find(|c| c.name == base)
                .map(|c| c.role)
        };
        let cols = src
            .seg
            .schema()
            .iter()
            .filter(|c| kept(&c.name))
            .map(|c| (c.name.clone(), c.ty, role_of(&c.name)))
            .collect();
        TableJob {
            name: config.source_name(),
            src: Mutex::new(Some(src)),
            config,
            cols,
        }
    }
}

/// A table ready for its columns: the segment they are read from, its rows in entity order,
/// and its predicted columns.
struct Prepared {
    src: SourceSegment,
    order: EntityOrder,
    predicted: HashMap<String, Linear>,
}

/// What an item made, for the writer.
enum Done {
    /// A table's first sections (entity runs, doubtful rows, links), before its columns.
    Table {
        sections: Vec<Section>,
        rows: usize,
        attributed: usize,
    },
    Column(Encoded),
}

/// Each table's preparation, shared by its column items.
enum Slot {
    Pending,
    Ready(Arc<Prepared>),
    /// Preparing failed (its item reports why) or the table is written.
    Gone,
}

struct Slots {
    slots: Mutex<Vec<Slot>>,
    changed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            slots: Mutex::new((0..n).map(|_| Slot::Pending).collect()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, t: usize, slot: Slot) {
        self.lock()[t] = slot;
        self.changed.notify_all();
    }

    /// Prepares table `t` and shares the result with its columns. The table's item is taken
    /// before its columns' (items are taken in order), so a column waiting in [`Slots::wait`]
    /// always waits for a preparation under way.
    fn prepare(
        &self,
        t: usize,
        f: impl FnOnce() -> Result<(Prepared, Done), SnapshotError>,
    ) -> Result<Done, SnapshotError> {
        // A panic in `f` must not leave the columns waiting.
        struct Abandon<'a>(&'a Slots, usize);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                let mut s = self.0.lock();
                if matches!(s[self.1], Slot::Pending) {
                    s[self.1] = Slot::Gone;
                    self.0.changed.notify_all();
                }
            }
        }
        let _abandon = Abandon(self, t);
        let (p, done) = f()?;
        self.set(t, Slot::Ready(Arc::new(p)));
        Ok(done)
    }

    /// Table `t`'s preparation, once it is made.
    fn wait(&self, t: usize, name: &str) -> Result<Arc<Prepared>, SnapshotError> {
        let mut s = self.lock();
        loop {
            match &s[t] {
                Slot::Pending => s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner()),
                Slot::Ready(p) => return Ok(Arc::clone(p)),
                Slot::Gone => {
                    return Err(SnapshotError::Input(format!(
                        "table {name} could not be prepared"
                    )));
                }
            }
        }
    }

    /// Drops table `t`'s preparation once its last column is written.
    fn release(&self, t: usize) {
        self.set(t, Slot::Gone);
    }
}

/// A table's first item: each row's entity (for identity rows, with the link), the rows in
/// entity order, and the sections that come before the columns.
fn prepare_table(
    job: &TableJob,
    entities: &Entities,
    links: &Mutex<HashMap<String, SourceLinks>>,
    resolved: &Path,
) -> Result<(Prepared, Done), SnapshotError> {
    let Some(src) = job.src.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return Err(SnapshotError::Input(format!(
            "table {} prepared twice",
            job.name
        )));
    };
    let config = &src.config;
    let name = &job.name;
    let seg = &src.seg;
    let n = seg.rows() as usize;
    let serr = |e| SnapshotError::from(seg_err(&src.path)(e));

    let known = entities.keys.len();
    let mut link_of: Vec<Option<Link>> = Vec::new();
    let order = if config.kind == TableKind::Identity {
        let mut entity = vec![NONE; n];
        link_of = vec![None; n];
        // A source's links are needed by its table only.
        let by_rid = links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .unwrap_or_default();
        let mut note = |r: usize, rid: &str| {
            if let Some(l) = by_rid.get(rid) {
                entity[r] = l.entity;
                link_of[r] = Some(*l);
            }
        };
        match config.columns.iter().find(|c| c.role == Role::RecordId) {
            Some(c) => seg
                .for_each_str(&c.name, |r, v| note(r, v.unwrap_or("")))
                .map_err(serr)?,
            None => {
                for (r, l) in seg.ints("_line").map_err(serr)?.iter().enumerate() {
                    note(r, &l.unwrap_or(0).to_string());
                }
            }
        }
        entity_order(n, &each_of(&entity), known, rayon::current_num_threads())?
    } else {
        let path = resolved.join("events").join(format!("{name}.seg"));
        let ev = if path.exists() {
            let ev = crate::ingest::segment::Segment::open(&path)
                .map_err(|e| SnapshotError::from(seg_err(&path)(e)))?;
            if ev.rows() as usize != n {
                return Err(SnapshotError::Input(format!(
                    "{}: {} rows, but the segment has {n}: the resolve build is not of these segments",
                    path.display(),
                    ev.rows()
                )));
            }
            Some(ev)
        } else {
            None
        };
        // The event→entity column is streamed from the resolve build's segment, twice, not
        // held (4 bytes a row: 3.7 GB for the city's invoices).
        let each = |range: Range<usize>, f: &mut dyn FnMut(usize, u32)| {
            let Some(ev) = &ev else {
                range.for_each(|r| f(r, NONE));
                return Ok(());
            };
            let mut unknown = None;
            ev.for_each_int_in("entity", range, |r, v| match v.map(usize::try_from) {
                None => f(r, NONE),
                Some(Ok(e)) if e < known => f(r, e as u32),
                Some(_) => {
                    unknown = unknown.or(v);
                    f(r, NONE)
                }
            })
            .map_err(|e| SnapshotError::from(seg_err(&path)(e)))?;
            match unknown {
                Some(v) => Err(SnapshotError::Input(format!(
                    "{}: a row names entity {v}, but entities.csv has {known}: the resolve build is not of these segments",
                    path.display()
                ))),
                None => Ok(()),
            }
        };
        entity_order(n, &each, known, rayon::current_num_threads())?
    };
    let mut sections = run_sections(name, &order);
    let perm = &order.perm;
    if config.kind == TableKind::Identity {
        let doubtful = RoaringBitmap::from_sorted_iter(
            perm.iter()
                .enumerate()
                .filter(|&(_, &r)| link_of[r as usize].is_some_and(|l| l.doubtful))
                .map(|(i, _)| i as u32),
        )
        .map_err(|e| SnapshotError::Input(e.to_string()))?;
        sections.push(Section::whole(
            format!("table/{name}/doubtful"),
            serialize(&doubtful),
        ));
        let mut b = Vec::new();
        encode(
            &ColumnValues::Int(
                perm.iter()
                    .map(|&r| link_of[r as usize].map(|l| i64::from(l.confidence)))
                    .collect(),
            ),
            &mut b,
        );
        sections.push(Section::whole(format!("table/{name}/link/confidence"), b));
        let mut b = Vec::new();
        encode(
            &ColumnValues::Dict(
                perm.iter()
                    .map(|&r| link_of[r as usize].map(|l| METHODS[l.method as usize]))
                    .collect(),
            ),
            &mut b,
        );
        sections.push(Section::whole(format!("table/{name}/link/method"), b));
    } else {
        sections.push(Section::whole(
            format!("table/{name}/doubtful"),
            serialize(&RoaringBitmap::new()),
        ));
    }
    let predicted = predictions(seg).map_err(serr)?;
    let done = Done::Table {
        sections,
        rows: n,
        attributed: order.attributed,
    };
    Ok((
        Prepared {
            src,
            order,
            predicted,
        },
        done,
    ))
}

/// Rows of a table sampled to choose its predicted columns: all of a small table, 16 spans
/// of 4,096 rows spread over a large one.
fn sample_rows(n: usize) -> Vec<usize> {
    const SPAN: usize = 4096;
    const SPANS: usize = 16;
    if n <= SPAN * SPANS {
        return (0..n).collect();
    }
    (0..SPANS)
        .flat_map(|k| {
            let start = k * (n - SPAN) / (SPANS - 1);
            start..start + SPAN
        })
        .collect()
}

/// The table's integer columns that are stored predicted from others, by name
/// ([`super::predict`]), chosen on a sample of its rows.
fn predictions(seg: &Segment) -> Result<HashMap<String, Linear>, crate::error::SegmentError> {
    let names: Vec<&str> = seg
        .schema()
        .iter()
        .filter(|c| c.ty == ColumnType::Int && kept(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    let rows = sample_rows(seg.rows() as usize);
    let cols = names
        .iter()
        .map(|n| {
            let r = seg.reader(n)?;
            Ok(rows.iter().map(|&i| r.int(i)).collect())
        })
        .collect::<Result<Vec<Vec<Option<i64>>>, crate::error::SegmentError>>()?;
    Ok(super::predict::choose(&names, &cols)
        .into_iter()
        .map(|(x, l)| (names[x].to_string(), l))
        .collect())
}

/// A column's section from its writer: its head, then its blocks from where the writer built
/// them (a column of a billion rows is not held twice), then the padding to a word.
fn column_section(name: String, cw: ColumnWriter<'_>) -> Section {
    let mut head = Vec::new();
    let blocks = cw.finish_split(&mut head);
    let pad = (8 - (head.len() + blocks.len()) % 8) % 8;
    Section {
        name,
        parts: vec![head, blocks, vec![0u8; pad]],
    }
}

/// A section encoded, not yet written: its name and its bytes in parts.
struct Section {
    name: String,
    parts: Vec<Vec<u8>>,
}

impl Section {
    fn whole(name: String, bytes: Vec<u8>) -> Section {
        Section {
            name,
            parts: vec![bytes],
        }
    }

    fn write(self, w: &mut ContainerWriter) -> Result<(), SnapshotError> {
        w.begin(&self.name)?;
        for p in &self.parts {
            w.write(p)?;
        }
        w.end()
    }
}

/// A column's sections (the column, and its `ref/` and `index/` when it has them) and its
/// schema flags.
struct Encoded {
    sections: Vec<Section>,
    flags: String,
}

impl Encoded {
    fn write(self, w: &mut ContainerWriter) -> Result<String, SnapshotError> {
        for s in self.sections {
            s.write(w)?;
        }
        Ok(self.flags)
    }
}

/// Rows streamed from a segment into snapshot columns, in entity order.
struct Stream<'a> {
    table: &'a str,
    seg: &'a Segment,
    /// The table's rows in entity order, and the entity runs.
    order: &'a EntityOrder,
    /// The columns stored predicted from others, by name.
    predicted: &'a HashMap<String, Linear>,
}

/// Rows read from a segment per step, then encoded in order.
const STREAM_ROWS: usize = 1 << 16;

impl Stream<'_> {
    /// Encodes column `cname`'s section, and its `ref/` and `index/` sections when it has
    /// them, with its schema flags.
    fn encode(
        &self,
        cname: &str,
        ty: ColumnType,
        role: Option<Role>,
        entities: &Entities,
        serr: &dyn Fn(crate::error::SegmentError) -> SnapshotError,
    ) -> Result<Encoded, SnapshotError> {
        let name = self.table;
        let col_name = format!("table/{name}/col/{cname}");
        let reader = self.seg.reader(cname).map_err(serr)?;
        let mut flags = String::from("-");
        if let Some(l) = self.predicted.get(cname) {
            // Each row's value and the prediction from its base values, which the reader
            // finds in the bases' own sections in the same order.
            let ra = self.seg.reader(&l.a).map_err(serr)?;
            let rb =
                l.b.as_ref()
                    .map(|b| self.seg.reader(b))
                    .transpose()
                    .map_err(serr)?;
            let coef = l.coef;
            let mut cw = ColumnWriter::predicted(l.clone());
            let (mut v, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for chunk in self.order.perm.chunks(STREAM_ROWS) {
                v.clear();
                a.clear();
                b.clear();
                reader.ints_at(chunk, &mut v);
                ra.ints_at(chunk, &mut a);
                match &rb {
                    Some(rb) => rb.ints_at(chunk, &mut b),
                    None => b.resize(chunk.len(), None),
                }
                for ((&v, &a), &b) in v.iter().zip(&a).zip(&b) {
                    cw.push_predicted(v, coef.at(a.unwrap_or(0), b.unwrap_or(0)));
                }
            }
            flags.push('p');
            return Ok(Encoded {
                sections: vec![column_section(col_name, cw)],
                flags,
            });
        }
        if ty == ColumnType::Int {
            let mut cw = ColumnWriter::int();
            let mut buf = Vec::with_capacity(STREAM_ROWS);
            for chunk in self.order.perm.chunks(STREAM_ROWS) {
                buf.clear();
                reader.ints_at(chunk, &mut buf);
                buf.iter().for_each(|&v| cw.push_int(v));
            }
            return Ok(Encoded {
                sections: vec![column_section(col_name, cw)],
                flags,
            });
        }

        // A first pass in row order: a dictionary column's values, or whether free text is
        // all decimal numbers.
        let dict = ty == ColumnType::Dict;
        let mut distinct: HashSet<String, Xxh3DefaultBuilder> = HashSet::default();
        // Text the segment stores as numbers is decimal without a look.
        let mut numbers = true;
        let mut last = String::new();
        if dict || !reader.all_digits() {
            self.seg
                .for_each_str_while(cname, |_, v| {
                    if let Some(v) = v {
                        if dict {
                            if v != last && !distinct.contains(v) {
                                distinct.insert(v.to_string());
                            }
                            if v != last {
                                last.clear();
                                last.push_str(v);
                            }
                        } else if numbers && decimal(v).is_none() {
                            numbers = false;
                        }
                    }
                    // Free text stops at its first value that is not a number.
                    dict || numbers
                })
                .map_err(serr)?;
        }
        let mut sorted: Vec<&str> = distinct.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut cw = if dict {
            ColumnWriter::dict(sorted.clone())
        } else if numbers {
            ColumnWriter::digits()
        } else {
            ColumnWriter::text()
        };
        let mut refs = (may_reference(role) && !cname.contains('.')).then(Refs::default);
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); if dict { sorted.len() } else { 0 }];
        let mut buf = Vec::with_capacity(STREAM_ROWS);
        // Each attributed position's entity, in order.
        let mut entity_at = self.order.entities();
        // The last value's entity reference: an entity's rows mostly repeat its own key (an
        // enterprise's USCC on each of its invoices).
        let mut last_ref: Option<(Text, Option<i64>)> = None;
        for chunk in self.order.perm.chunks(STREAM_ROWS) {
            buf.clear();
            reader.texts_at(chunk, &mut buf).map_err(serr)?;
            for &v in &buf {
                let Some(code) = cw.push_coded(v) else {
                    return Err(SnapshotError::Input(format!(
                        "{name}.{cname}: the value {v:?} changed between two reads of the segment"
                    )));
                };
                if let Some(rw) = refs.as_mut() {
                    let e = match (v, last_ref) {
                        (Some(t), Some((l, e))) if l == t => e,
                        _ => {
                            let e = v.and_then(|t| entities.by_text(t)).map(i64::from);
                            last_ref = v.map(|t| (t, e));
                            e
                        }
                    };
                    rw.push(e);
                }
                // Positions past the attributed rows have no entity.
                let e = entity_at.next();
                // A dictionary column's code is its value's place in `sorted`.
                if dict
                    && let Some(e) = e
                    && let Some(list) = code.and_then(|c| lists.get_mut(c as usize))
                    && list.last() != Some(&e)
                {
                    list.push(e);
                }
            }
        }
        let mut sections = vec![column_section(col_name, cw)];
        if let Some(Refs {
            writer: Some(rw), ..
        }) = refs
        {
            let mut values = Vec::new();
            rw.finish(&mut values);
            sections.push(Section {
                name: format!("table/{name}/ref/{cname}"),
                parts: vec![values],
            });
            flags.push('r');
        }
        if dict {
            sections.push(Section {
                name: format!("table/{name}/index/{cname}"),
                parts: vec![index_section(lists)],
            });
            flags.push('i');
        }
        Ok(Encoded { sections, flags })
    }
}

/// A column's references to entities, written from its first one on: a column that names
/// none (a billion invoice numbers) costs nothing past the lookups.
#[derive(Default)]
struct Refs<'s> {
    /// Rows before the first reference.
    before: usize,
    writer: Option<ColumnWriter<'s>>,
}

impl Refs<'_> {
    fn push(&mut self, e: Option<i64>) {
        match (&mut self.writer, e) {
            (Some(w), _) => w.push_int(e),
            (None, None) => self.before += 1,
            (None, Some(_)) => {
                let mut w = ColumnWriter::int();
                (0..self.before).for_each(|_| w.push_int(None));
                w.push_int(e);
                self.writer = Some(w);
            }
        }
    }
}

/// One entity bitmap per dictionary value (values in sorted order, as the dictionary),
/// laid out as `u64:n (u64:offset u64:len){n} roaring*`.
fn equality_index(
    sorted: &[Option<&str>],
    perm: &[u32],
    entity: &[u32],
    attributed: usize,
) -> Vec<u8> {
    let mut dict: Vec<&str> = sorted.iter().flatten().copied().collect();
    dict.sort_unstable();
    dict.dedup();
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); dict.len()];
    for (i, v) in sorted.iter().enumerate().take(attributed) {
        if let Some(v) = v
            && let Ok(code) = dict.binary_search(v)
        {
            let e = entity[perm[i] as usize];
            if lists[code].last() != Some(&e) {
                lists[code].push(e);
            }
        }
    }
    index_section(lists)
}

/// The index section of the sorted entity lists of every dictionary value.
fn index_section(lists: Vec<Vec<u32>>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(lists.len() as u64).to_le_bytes());
    let header = 8 + 16 * lists.len();
    let blobs: Vec<Vec<u8>> = lists
        .into_iter()
        .map(|l| serialize(&RoaringBitmap::from_sorted_iter(l).unwrap_or_default()))
        .collect();
    let mut at = header;
    for b in &blobs {
        out.extend_from_slice(&(at as u64).to_le_bytes());
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        at += b.len().div_ceil(8) * 8;
    }
    for b in blobs {
        out.extend_from_slice(&b);
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
    }
    out
}

/// A table given in memory (case tests, property tests): rows in any order.
#[derive(Debug, Clone, Default)]
pub struct MemTable {
    pub name: String,
    /// `identity`, `event` or `reference`.
    pub kind: String,
    pub subject: String,
    /// Each row's entity (`NONE`: unattributed).
    pub entity: Vec<u32>,
    pub doubtful: Vec<bool>,
    pub columns: Vec<MemColumn>,
}

#[derive(Debug, Clone)]
pub struct MemColumn {
    pub name: String,
    /// The source role (`date`, `amount`, `category`, …).
    pub role: String,
    pub values: MemValues,
    /// The entity each value names, for reference columns.
    pub refs: Option<Vec<Option<u32>>>,
}

#[derive(Debug, Clone)]
pub enum MemValues {
    Int(Vec<Option<i64>>),
    /// Dictionary-encoded strings.
    Dict(Vec<Option<String>>),
}

/// Writes a snapshot of in-memory entities `(key, kind)` and tables to `dest` (a file path).
pub fn write_memory(
    dest: &Path,
    entities: &[(String, String)],
    tables: &[MemTable],
) -> Result<u64, SnapshotError> {
    let mut ents = Entities::new();
    for (key, kind) in entities {
        let k =
            kind_code(kind).ok_or_else(|| SnapshotError::Input(format!("unknown kind {kind}")))?;
        ents.push(key, k, true);
    }
    let mut w = ContainerWriter::create(dest)?;
    let mut lines = String::new();
    for t in tables {
        let n = t.entity.len();
        let name = &t.name;
        if let Some(e) = t
            .entity
            .iter()
            .find(|&&e| e != NONE && e as usize >= ents.keys.len())
        {
            return Err(SnapshotError::Input(format!(
                "table {name}: a row names entity {e}, but there are {}",
                ents.keys.len()
            )));
        }
        let order = entity_order(t.entity.len(), &each_of(&t.entity), ents.keys.len(), 1)?;
        for s in run_sections(name, &order) {
            s.write(&mut w)?;
        }
        let (perm, attributed) = (order.perm, order.attributed);
        let mut b = Vec::new();
        let doubtful = RoaringBitmap::from_sorted_iter(
            perm.iter()
                .enumerate()
                .filter(|&(_, &r)| t.doubtful.get(r as usize).copied().unwrap_or(false))
                .map(|(i, _)| i as u32),
        )
        .map_err(|e| SnapshotError::Input(e.to_string()))?;
        w.section(&format!("table/{name}/doubtful"), &serialize(&doubtful))?;
        let mut schema = String::new();
        for c in &t.columns {
            let mut flags = String::from("-");
            b.clear();
            let ty = match &c.values {
                MemValues::Int(v) => {
                    encode(
                        &ColumnValues::Int(
                            perm.iter()
                                .map(|&r| v.get(r as usize).copied().flatten())
                                .collect(),
                        ),
                        &mut b,
                    );
                    "int"
                }
                MemValues::Dict(v) => {
                    let sorted: Vec<Option<&str>> = perm
                        .iter()
                        .map(|&r| v.get(r as usize).and_then(|s| s.as_deref()))
                        .collect();
                    let ix = equality_index(&sorted, &perm, &t.entity, attributed);
                    encode(&ColumnValues::Dict(sorted), &mut b);
                    w.section(&format!("table/{name}/col/{}", c.name), &b)?;
                    w.section(&format!("table/{name}/index/{}", c.name), &ix)?;
                    flags.push('i');
                    b.clear();
                    "dict"
                }
            };
            if ty == "int" {
                w.section(&format!("table/{name}/col/{}", c.name), &b)?;
            }
            if let Some(refs) = &c.refs {
                b.clear();
                encode(
                    &ColumnValues::Int(
                        perm.iter()
                            .map(|&r| refs.get(r as usize).copied().flatten().map(i64::from))
                            .collect(),
                    ),
                    &mut b,
                );
                w.section(&format!("table/{name}/ref/{}", c.name), &b)?;
                flags.push('r');
            }
            schema += &format!("{}\t{ty}\t{}\t{flags}\n", c.name, c.role);
        }
        w.section(&format!("table/{name}/schema"), schema.as_bytes())?;
        lines += &format!("{name}\t{}\t{}\t{n}\t{attributed}\t\n", t.kind, t.subject);
    }
    w.section("tables", lines.as_bytes())?;
    write_entities(&mut w, &ents)?;
    w.section(
        "meta",
        format!(
            "generation\t1\nresolver_version\tin-memory\nentities\t{}\n",
            ents.keys.len()
        )
        .as_bytes(),
    )?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// References written from the first one on are the column written row by row; a
    /// column with none writes nothing.
    #[test]
    fn references_start_at_the_first_one() {
        for rows in [
            vec![None; 5],
            vec![Some(3), None],
            vec![None, None, Some(7), Some(7), None, Some(1)],
            (0..70_000)
                .map(|i| (i > 66_000).then_some(i % 11))
                .collect(),
        ] {
            let mut refs = Refs::default();
            let mut direct = ColumnWriter::int();
            for &e in &rows {
                refs.push(e);
                direct.push_int(e);
            }
            let (mut got, mut want) = (Vec::new(), Vec::new());
            if let Some(w) = refs.writer {
                w.finish(&mut got);
            }
            if rows.iter().any(Option::is_some) {
                direct.finish(&mut want);
            }
            assert_eq!(got, want, "{} rows", rows.len());
        }
    }

    /// `links.csv` read in pieces on every core is `links.csv` read line by line: every
    /// source, every record, the later line for a record repeated; and a bad line is named
    /// by its number.
    #[test]
    fn links_read_in_pieces_are_the_file_read_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut entities = "entity,key,kind,identified,records\n".to_string();
        for e in 0..50 {
            entities += &format!("{e},K{e},person,1,1\n");
        }
        std::fs::write(dir.path().join("entities.csv"), entities).unwrap();
        let ents = read_entities(dir.path()).unwrap();
        let mut links =
            "source,record_id,entity_key,kind,confidence,doubtful,method,evidence\n".to_string();
        type ByRecord = HashMap<String, HashMap<String, (u32, bool, u16, u8)>>;
        let mut want = ByRecord::new();
        // More lines than pieces, sources in long and short stretches, records repeated.
        for i in 0..5000u32 {
            let source = ["A.x", "B.y", "C.z"][(i / 1700 + i % 97 / 90) as usize % 3];
            let rid = (i * 7919 % 3001).to_string();
            let (e, doubtful, conf) = (i % 50, i % 11 == 0, i % 1001);
            let method = i as usize % METHODS.len();
            links += &format!(
                "{source},{rid},K{e},person,{},{},{},name+birth,x\n",
                conf as f64 / 1000.0,
                u8::from(doubtful),
                METHODS[method]
            );
            want.entry(source.into())
                .or_default()
                .insert(rid, (e, doubtful, conf as u16, method as u8));
        }
        std::fs::write(dir.path().join("links.csv"), &links).unwrap();
        let got = read_links(dir.path(), &ents).unwrap();
        let got: ByRecord = got
            .into_iter()
            .map(|(s, m)| {
                let m = m
                    .into_iter()
                    .map(|(r, l)| (r, (l.entity, l.doubtful, l.confidence, l.method)))
                    .collect();
                (s, m)
            })
            .collect();
        assert_eq!(got, want);

        let mut lines: Vec<&str> = links.lines().collect();
        lines[4321] = "A.x,1,K999,person,1,0,key,";
        std::fs::write(dir.path().join("links.csv"), lines.join("\n")).unwrap();
        let err = read_links(dir.path(), &ents).err().unwrap().to_string();
        assert!(err.contains("links.csv:4322: entity key K999"), "{err}");
    }

    proptest! {
        /// The counting sort is the stable sort by entity, and its runs are the sorted rows'.
        #[test]
        fn entity_order_is_the_stable_sort(
            entities in 1usize..40,
            rows in proptest::collection::vec(prop_oneof![0u32..40, Just(NONE)], 0..300),
            parts in 1usize..5,
        ) {
            let entity: Vec<u32> = rows
                .iter()
                .map(|&e| if e != NONE && e as usize >= entities { NONE } else { e })
                .collect();
            let order = entity_order(entity.len(), &each_of(&entity), entities, parts).unwrap();
            let mut want: Vec<u32> = (0..entity.len() as u32).collect();
            want.sort_by_key(|&r| entity[r as usize]);
            prop_assert_eq!(&order.perm, &want);
            let attributed = entity.iter().filter(|&&e| e != NONE).count();
            prop_assert_eq!(order.attributed, attributed);
            let mut runs = Vec::new();
            for (i, &r) in want[..attributed].iter().enumerate() {
                let e = i64::from(entity[r as usize]);
                if runs.last().map(|&(x, _)| x) != Some(e) {
                    runs.push((e, i as i64));
                }
            }
            let got: Vec<(i64, i64)> = order
                .run_entity
                .iter()
                .zip(&order.run_start)
                .map(|(&e, &s)| (i64::from(e), i64::from(s)))
                .collect();
            prop_assert_eq!(got, runs);
            prop_assert_eq!(order.run_start.last().copied(), Some(attributed as u32));
            // Each attributed position's entity, from the runs.
            let at: Vec<u32> = order.entities().collect();
            let want_at: Vec<u32> = want[..attributed].iter().map(|&r| entity[r as usize]).collect();
            prop_assert_eq!(at, want_at);
        }
    }
}
