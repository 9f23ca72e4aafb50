//! Identity records as resolution sees them: one compact row of features per record, read from
//! the normalized segments ingest wrote.
//!
//! A source's columns are found by their roles (the source config travels in the segment's
//! metadata), so any identity table resolves, not only the generator's. Strings that repeat
//! (names, identifiers) are interned once; phones and addresses become 64-bit fingerprints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pinyin::ToPinyin;
use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::ResolveError;
use crate::ids::{PidStatus, UsccStatus};
use crate::ingest::fields::normalize_category;
use crate::ingest::segment::{ColumnType, Segment};
use crate::source::config::{PartyKind, Role, SourceConfig, Subject, TableKind};

/// "No value" for the interned-index columns.
pub const NONE: u32 = u32::MAX;
/// "No date" (dates are `YYYYMMDD` numbers).
pub const NO_DATE: u32 = 0;

/// What kind of entity a record can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    Person = 0,
    Enterprise = 1,
    Household = 2,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Enterprise => "enterprise",
            Kind::Household => "household",
        }
    }

    /// The prefix of keys minted for entities of this kind that have no identifier.
    pub fn mint_prefix(self) -> &'static str {
        match self {
            Kind::Person => "P",
            Kind::Enterprise => "E",
            Kind::Household => "H",
        }
    }
}

/// The state of a record's own identifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum IdState {
    /// No identifier.
    #[default]
    None = 0,
    /// A valid id number, USCC or household number: a deterministic key.
    Key = 1,
    /// A person id number that failed its checks: evidence, not a key.
    BrokenPid = 2,
    /// A USCC that failed its check: evidence, not a key.
    BrokenUscc = 3,
    /// A source-local identifier (a benchmark file's id column): evidence only.
    Local = 4,
    /// A legacy enterprise registration number (注册号): the same enterprise may carry a USCC
    /// elsewhere, so it is evidence, compared only with other registration numbers.
    RegNo = 5,
}

/// One identity source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub name: String,
    pub subject: Subject,
    /// First record of the source in [`Records`].
    pub first: u32,
    pub len: u32,
    /// Which of the folders given to [`Records::load_many`] it came from.
    pub folder: usize,
}

/// A hasher for keys that are already hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // Rotated: hashbrown reads its control byte from the top bits, which the keys of
        // one interner shard share.
        self.0 = v.rotate_left(32);
    }
}

type PassThroughMap = HashMap<u64, u32, std::hash::BuildHasherDefault<PassThrough>>;

/// Shards of an interner's index, by the hash's top bits.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// The interning hash of a string (never 0).
fn string_hash(s: &str) -> u64 {
    xxh3_64(s.as_bytes()).max(1)
}

/// Interned strings with per-string counts (how many records carry each). The index is
/// sharded by hash so that a whole column can be interned in parallel ([`Interner::bulk`]).
#[derive(Debug)]
pub struct Interner {
    /// xxh3 of the string → index, per shard; the key is a hash already, used as it is.
    shards: Vec<PassThroughMap>,
    offsets: Vec<u32>,
    text: String,
    pub count: Vec<u32>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            shards: (0..SHARDS).map(|_| PassThroughMap::default()).collect(),
            offsets: vec![0],
            text: String::new(),
            count: Vec::new(),
        }
    }
}

impl Interner {
    fn shard(h: u64) -> usize {
        (h >> (64 - SHARD_BITS)) as usize
    }

    /// Interns items `0..n` at once, in parallel by shard: `text(i)` is item `i`'s string,
    /// `None` for no value. Returns the interner and each item's index ([`NONE`] for none).
    /// Indices are numbered shard by shard, in order of first appearance within a shard.
    pub fn bulk<'a>(
        n: usize,
        text: impl Fn(usize) -> Option<&'a str> + Sync,
    ) -> (Interner, Vec<u32>) {
        let hashes: Vec<u64> = (0..n)
            .into_par_iter()
            .map(|i| text(i).filter(|s| !s.is_empty()).map_or(0, string_hash))
            .collect();
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); SHARDS];
        for (i, &h) in hashes.iter().enumerate() {
            if h != 0 {
                by_shard[Self::shard(h)].push(i as u32);
            }
        }
        // Per shard: the distinct strings (by first item), their counts, each item's slot.
        // (hash → local index, first item of each, count of each, each item's local index)
        type Shard = (PassThroughMap, Vec<u32>, Vec<u32>, Vec<u32>);
        let done: Vec<Shard> = by_shard
            .par_iter()
            .map(|items| {
                let mut map = PassThroughMap::default();
                map.reserve(items.len() / 2);
                let (mut first, mut count, mut slot) = (Vec::new(), Vec::new(), Vec::new());
                slot.reserve_exact(items.len());
                for &i in items {
                    let h = hashes[i as usize];
                    let local = *map.entry(h).or_insert_with(|| {
                        first.push(i);
                        count.push(0);
                        (first.len() - 1) as u32
                    });
                    count[local as usize] += 1;
                    slot.push(local);
                }
                (map, first, count, slot)
            })
            .collect();
        let mut bases = Vec::with_capacity(SHARDS);
        let mut total = 0u32;
        for d in &done {
            bases.push(total);
            total += d.1.len() as u32;
        }
        let mut index = vec![NONE; n];
        for (s, d) in done.iter().enumerate() {
            for (&item, &local) in by_shard[s].iter().zip(&d.3) {
                index[item as usize] = bases[s] + local;
            }
        }
        // Texts, shard by shard, built in parallel and joined.
        let pieces: Vec<(String, Vec<u32>)> = done
            .par_iter()
            .map(|d| {
                let mut t = String::new();
                let mut ends = Vec::with_capacity(d.1.len());
                for &i in &d.1 {
                    t.push_str(text(i as usize).unwrap_or(""));
                    ends.push(t.len() as u32);
                }
                (t, ends)
            })
            .collect();
        let mut out = Interner::default();
        out.count.reserve_exact(total as usize);
        out.offsets.reserve_exact(total as usize + 1);
        for ((t, ends), d) in pieces.iter().zip(&done) {
            let at = out.text.len() as u32;
            out.text.push_str(t);
            out.offsets.extend(ends.iter().map(|e| at + e));
            out.count.extend_from_slice(&d.2);
        }
        out.shards = done
            .into_par_iter()
            .zip(bases.into_par_iter())
            .map(|(d, base)| {
                let mut map = d.0;
                for v in map.values_mut() {
                    *v += base;
                }
                map
            })
            .collect();
        (out, index)
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        let h = string_hash(s);
        self.shards[Self::shard(h)].get(&h).copied()
    }

    pub fn text(&self, i: u32) -> &str {
        let i = i as usize;
        &self.text[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    pub fn len(&self) -> usize {
        self.count.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(|m| m.capacity() * 16).sum::<usize>()
            + self.offsets.capacity() * 4
            + self.text.capacity()
            + self.count.capacity() * 4
    }
}

/// Names: interned text plus what comparison needs of each distinct name.
#[derive(Debug, Default)]
pub struct Names {
    pub strings: Interner,
    /// Fingerprint of the name's sound: toneless pinyin for Chinese characters, a simple
    /// consonant skeleton for Latin letters. Homophones (张伟/章伟) share it.
    pub sound: Vec<u64>,
    /// The characters of names of at most [`SHORT_NAME`] characters (most person names),
    /// for a quick character distance; longer names have `len` 0 here.
    pub short: Vec<ShortName>,
}

/// Names up to this many characters get [`ShortName`]s.
pub const SHORT_NAME: usize = 6;

/// A short name's characters, inline.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortName {
    pub chars: [char; SHORT_NAME],
    pub len: u8,
}

impl ShortName {
    fn of(s: &str) -> ShortName {
        let mut n = ShortName::default();
        for c in s.chars() {
            if n.len as usize == SHORT_NAME {
                return ShortName::default();
            }
            n.chars[n.len as usize] = c;
            n.len += 1;
        }
        n
    }

    pub fn as_slice(&self) -> &[char] {
        &self.chars[..self.len as usize]
    }
}

impl Names {
    /// The interned names with their sounds and characters, computed in parallel.
    fn new(strings: Interner) -> Names {
        let (sound, short) = (0..strings.len())
            .into_par_iter()
            .map(|i| {
                let s = strings.text(i as u32);
                (sound_of(s), ShortName::of(s))
            })
            .unzip();
        Names {
            strings,
            sound,
            short,
        }
    }

    pub fn text(&self, i: u32) -> &str {
        self.strings.text(i)
    }
}

/// The sound fingerprint of a name.
pub fn sound_of(name: &str) -> u64 {
    let mut key = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if let Some(p) = c.to_pinyin() {
            key.push_str(p.plain());
            key.push(' ');
        } else if c.is_ascii_alphabetic() {
            let l = c.to_ascii_lowercase();
            // A consonant skeleton: the first letter kept, vowels and h/w/y dropped after it,
            // doubled letters collapsed (smith/smyth, jon/john).
            let first = key.is_empty() || key.ends_with(' ');
            let drop = !first && matches!(l, 'a' | 'e' | 'i' | 'o' | 'u' | 'y' | 'h' | 'w');
            if !drop && !key.ends_with(l) {
                key.push(l);
            }
        } else if c == ' ' {
            if !key.ends_with(' ') {
                key.push(' ');
            }
        } else {
            key.push(c);
        }
    }
    xxh3_64(key.as_bytes())
}

/// One identity record's features: everything a comparison reads, in one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct Rec {
    /// Fingerprint of the normalized phone, 0 when missing.
    pub phone: u64,
    /// Address fingerprints: the full address (down to the room), the building (estate or
    /// village and building, or road and number), the area (district and road, village or
    /// estate). 0 when missing.
    pub addr_full: u64,
    pub addr_building: u64,
    pub addr_area: u64,
    /// The identifier (key or evidence), interned in [`Records::ids`].
    pub id: u32,
    /// The subject's name; for enterprises, the registered name.
    pub name: u32,
    /// A second name the subject answers to: an enterprise's legal representative.
    pub alt_name: u32,
    /// Birth date as `YYYYMMDD`, [`NO_DATE`] when unknown.
    pub birth: u32,
    /// District or county: its division code (Chinese addresses, region columns), or a
    /// fingerprint of the locality or postcode (Western addresses); 0 when unknown.
    pub district: u32,
    pub source: u16,
    /// Kinds the record may belong to, as a bit set of `1 << Kind`.
    pub kinds: u8,
    pub id_state: IdState,
    /// 0 unknown, 1 male, 2 female.
    pub gender: u8,
}

impl Rec {
    fn blank() -> Rec {
        Rec {
            id: NONE,
            name: NONE,
            alt_name: NONE,
            ..Rec::default()
        }
    }
}

/// Every identity record: features, record ids, and the interned strings they point to.
#[derive(Debug, Default)]
pub struct Records {
    pub sources: Vec<SourceInfo>,
    pub f: Vec<Rec>,
    record_id_offsets: Vec<u32>,
    record_id_text: String,
    pub ids: Interner,
    /// Interned identifiers of 18 characters (id numbers, USCCs), inline for comparison;
    /// zeros for other lengths.
    pub id18: Vec<[u8; 18]>,
    pub names: Names,
}

impl Records {
    pub fn len(&self) -> usize {
        self.f.len()
    }

    pub fn is_empty(&self) -> bool {
        self.f.is_empty()
    }

    pub fn record_id(&self, r: usize) -> &str {
        &self.record_id_text
            [self.record_id_offsets[r] as usize..self.record_id_offsets[r + 1] as usize]
    }

    pub fn source_name(&self, r: usize) -> &str {
        &self.sources[self.f[r].source as usize].name
    }

    pub fn id_text(&self, r: usize) -> Option<&str> {
        let id = self.f[r].id;
        (id != NONE).then(|| self.ids.text(id))
    }

    pub fn name_text(&self, r: usize) -> Option<&str> {
        let n = self.f[r].name;
        (n != NONE).then(|| self.names.text(n))
    }

    /// Bytes held by the feature columns and interners.
    pub fn heap_bytes(&self) -> usize {
        self.f.capacity() * std::mem::size_of::<Rec>()
            + self.record_id_offsets.capacity() * 4
            + self.record_id_text.capacity()
            + self.ids.heap_bytes()
            + self.names.strings.heap_bytes()
            + self.names.sound.capacity() * 8
            + self.names.short.capacity() * std::mem::size_of::<ShortName>()
            + self.id18.capacity() * 18
    }

    /// Reads every identity segment under `segments`, in file-name order.
    pub fn load(segments: &Path) -> Result<Records, ResolveError> {
        Records::load_many(&[segments])
    }

    /// Reads every identity segment under each folder, folder by folder.
    pub fn load_many(folders: &[&Path]) -> Result<Records, ResolveError> {
        let mut paths = Vec::new();
        for (i, f) in folders.iter().enumerate() {
            paths.extend(segment_paths(f)?.into_iter().map(|p| (i, p)));
        }
        let loaded: Vec<Option<Loaded>> = paths
            .par_iter()
            .map(|(i, p)| {
                load_source(p).map(|l| {
                    l.map(|mut l| {
                        l.folder = *i;
                        l
                    })
                })
            })
            .collect::<Result<_, _>>()?;
        let loaded: Vec<Loaded> = loaded.into_iter().flatten().collect();
        let mut recs = Records::default();
        let total: usize = loaded.iter().map(|l| l.rows).sum();
        recs.f.reserve_exact(total);
        recs.record_id_offsets.reserve_exact(total + 1);
        recs.record_id_offsets.push(0);
        for (src, l) in loaded.iter().enumerate() {
            recs.sources.push(SourceInfo {
                name: l.source_name.clone(),
                subject: l.subject,
                first: recs.f.len() as u32,
                len: l.rows as u32,
                folder: l.folder,
            });
            for (i, rec) in l.recs.iter().enumerate() {
                let mut f = *rec;
                f.source = src as u16;
                recs.f.push(f);
                recs.record_id_text.push_str(l.strings.text(l.record_id[i]));
                recs.record_id_offsets
                    .push(recs.record_id_text.len() as u32);
            }
        }
        // Identifiers and names are interned in parallel, shard by shard. Until then they
        // point into their source's local strings.
        let local = |i: usize, field: u32| {
            (field != NONE).then(|| loaded[recs.f[i].source as usize].strings.text(field))
        };
        let f = &recs.f;
        let (ids, id_index) = Interner::bulk(total, |i| local(i, f[i].id));
        let (names, name_index) = Interner::bulk(2 * total, |i| {
            let r = &f[i / 2];
            local(i / 2, if i % 2 == 0 { r.name } else { r.alt_name })
        });
        for (i, r) in recs.f.iter_mut().enumerate() {
            r.id = id_index[i];
            r.name = name_index[2 * i];
            r.alt_name = name_index[2 * i + 1];
        }
        recs.id18 = (0..ids.len())
            .into_par_iter()
            .map(|i| <[u8; 18]>::try_from(ids.text(i as u32).as_bytes()).unwrap_or([0; 18]))
            .collect();
        recs.ids = ids;
        recs.names = Names::new(names);
        Ok(recs)
    }
}

/// The segments folder of an ingest output (`DIR/segments`), or `DIR` itself when it holds
/// the segments directly.
pub fn segments_dir(ingested: &Path) -> PathBuf {
    let s = ingested.join("segments");
    if s.is_dir() {
        s
    } else {
        ingested.to_path_buf()
    }
}

/// The `.seg` files of a folder, in file-name order.
pub fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, ResolveError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ResolveError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// A segment opened with the source config it carries.
#[derive(Debug)]
pub struct SourceSegment {
    pub path: PathBuf,
    pub seg: Segment,
    pub config: SourceConfig,
}

impl SourceSegment {
    /// Opens a segment and parses its source config (ingest writes it into the metadata).
    pub fn open(path: &Path) -> Result<SourceSegment, ResolveError> {
        let seg = Segment::open(path).map_err(seg_err(path))?;
        let Some(toml) = seg.meta("config") else {
            return Err(ResolveError::Input(format!(
                "{} has no source config in its metadata; re-ingest it",
                path.display()
            )));
        };
        let config =
            SourceConfig::from_toml(toml, path).map_err(|e| ResolveError::Input(e.to_string()))?;
        Ok(SourceSegment {
            path: path.to_path_buf(),
            seg,
            config,
        })
    }

    /// Every segment of a folder, in file-name order.
    pub fn open_all(dir: &Path) -> Result<Vec<SourceSegment>, ResolveError> {
        segment_paths(dir)?
            .iter()
            .map(|p| SourceSegment::open(p))
            .collect()
    }
}

/// One source's records before interning into the shared tables.
#[derive(Debug, Default)]
struct Loaded {
    source_name: String,
    subject: Subject,
    rows: usize,
    folder: usize,
    /// Features, with `id`, `name` and `alt_name` pointing into `strings` until appended.
    recs: Vec<Rec>,
    record_id: Vec<u32>,
    /// Local strings (names, ids, record ids), not deduplicated.
    strings: LocalStrings,
}

#[derive(Debug, Default)]
struct LocalStrings {
    offsets: Vec<u32>,
    text: String,
}

impl LocalStrings {
    fn push(&mut self, s: &str) -> u32 {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.text.push_str(s);
        self.offsets.push(self.text.len() as u32);
        (self.offsets.len() - 2) as u32
    }
    fn text(&self, i: u32) -> &str {
        if i == NONE {
            return "";
        }
        let i = i as usize;
        &self.text[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// Reads a string column into `strings`, calling `set` on the row's record with the index of
/// every non-empty value.
fn read_strings(
    seg: &Segment,
    column: &str,
    strings: &mut LocalStrings,
    recs: &mut [Rec],
    set: impl Fn(&mut Rec, u32),
) -> Result<(), crate::error::SegmentError> {
    seg.for_each_str(column, |r, v| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            set(&mut recs[r], strings.push(v));
        }
    })
}

fn col_of(config: &SourceConfig, roles: &[Role]) -> Option<String> {
    config
        .columns
        .iter()
        .find(|c| roles.contains(&c.role))
        .map(|c| c.name.clone())
}

fn cols_of(config: &SourceConfig, role: Role) -> Vec<String> {
    config
        .columns
        .iter()
        .filter(|c| c.role == role)
        .map(|c| c.name.clone())
        .collect()
}

pub(crate) fn seg_err(path: &Path) -> impl Fn(crate::error::SegmentError) -> ResolveError + '_ {
    move |e| ResolveError::Segment {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Reads one segment if it is an identity table; `None` for the others.
fn load_source(path: &Path) -> Result<Option<Loaded>, ResolveError> {
    let SourceSegment { seg, config, .. } = SourceSegment::open(path)?;
    if config.kind != TableKind::Identity {
        return Ok(None);
    }
    let n = seg.rows() as usize;
    let err = seg_err(path);
    let mut l = Loaded {
        source_name: config.source_name(),
        subject: config.subject,
        rows: n,
        recs: vec![Rec::blank(); n],
        record_id: vec![NONE; n],
        ..Loaded::default()
    };
    let base_kinds = match config.subject {
        Subject::Person => 1 << Kind::Person as u8,
        Subject::Enterprise => 1 << Kind::Enterprise as u8,
        Subject::Household => 1 << Kind::Household as u8,
        Subject::Party => (1 << Kind::Person as u8) | (1 << Kind::Enterprise as u8),
        Subject::Other => return Ok(None),
    };
    for f in &mut l.recs {
        f.kinds = base_kinds;
    }

    // Record ids: the record-id column, else the line number.
    match col_of(&config, &[Role::RecordId]) {
        Some(c) => {
            let (strings, ids) = (&mut l.strings, &mut l.record_id);
            seg.for_each_str(&c, |r, v| ids[r] = strings.push(v.unwrap_or("")))
                .map_err(&err)?;
        }
        None => {
            let lines = seg.ints("_line").map_err(&err)?;
            for (r, v) in lines.into_iter().enumerate() {
                l.record_id[r] = l.strings.push(&v.unwrap_or(0).to_string());
            }
        }
    }

    // The subject's identifier.
    let id_col = match config.subject {
        Subject::Person => col_of(&config, &[Role::PersonId]),
        Subject::Enterprise => col_of(&config, &[Role::EnterpriseId]),
        Subject::Party => col_of(&config, &[Role::PartyId]),
        Subject::Household => col_of(&config, &[Role::RecordId]),
        Subject::Other => None,
    };
    let status_col = id_col.as_ref().map(|c| format!("{c}.status"));
    let has_status = status_col
        .as_ref()
        .is_some_and(|s| seg.schema().iter().any(|c| &c.name == s));
    if let Some(c) = &id_col {
        read_strings(&seg, c, &mut l.strings, &mut l.recs, |f, v| f.id = v).map_err(&err)?;
        if config.subject == Subject::Household {
            for r in 0..n {
                if l.recs[r].id != NONE {
                    l.recs[r].id_state = IdState::Key;
                }
            }
        }
    }
    if let (Some(s), true) = (&status_col, has_status) {
        let kind_col = format!("{}.kind", id_col.as_deref().unwrap_or(""));
        let recs = &mut l.recs;
        let subject = config.subject;
        seg.for_each_str(s, |r, v| {
            recs[r].id_state = id_state_of(v.unwrap_or("missing"), subject);
        })
        .map_err(&err)?;
        if seg.schema().iter().any(|c| c.name == kind_col) {
            let recs = &mut l.recs;
            seg.for_each_str(&kind_col, |r, v| {
                let f = &mut recs[r];
                match v {
                    Some("person") => {
                        f.kinds = 1 << Kind::Person as u8;
                        if f.id_state == IdState::BrokenUscc {
                            f.id_state = IdState::BrokenPid;
                        }
                    }
                    Some("enterprise") => {
                        f.kinds = 1 << Kind::Enterprise as u8;
                        if f.id_state == IdState::BrokenPid {
                            f.id_state = IdState::BrokenUscc;
                        }
                    }
                    _ => {}
                }
            })
            .map_err(&err)?;
        }
        for r in 0..n {
            if l.recs[r].id_state == IdState::None {
                l.recs[r].id = NONE;
            }
        }
    } else if id_col.is_none() {
        // No subject identifier: a local key column is still evidence.
        if let Some(c) = col_of(&config, &[Role::Key]) {
            read_strings(&seg, &c, &mut l.strings, &mut l.recs, |f, v| f.id = v).map_err(&err)?;
            for r in 0..n {
                if l.recs[r].id != NONE {
                    l.recs[r].id_state = IdState::Local;
                }
            }
        }
    }

    // A category that says which kind of party the record is (a residential tariff: a
    // person's account). A kind a valid id number or USCC gave stands; one read from the form
    // of an id that failed its checks (18 digits taken for an id number, when a USCC can be
    // all digits too) gives way.
    if config.subject == Subject::Party {
        for c in config.columns.iter().filter(|c| !c.party_kind.is_empty()) {
            let said: HashMap<String, u8> = c
                .party_kind
                .iter()
                .map(|(v, k)| {
                    let kind = match k {
                        PartyKind::Person => Kind::Person,
                        PartyKind::Enterprise => Kind::Enterprise,
                    };
                    (normalize_category(v).into_owned(), 1 << kind as u8)
                })
                .collect();
            let recs = &mut l.recs;
            seg.for_each_str(&c.name, |r, v| {
                if let Some(&k) = v.and_then(|v| said.get(v)) {
                    let f = &mut recs[r];
                    let broken = matches!(f.id_state, IdState::BrokenPid | IdState::BrokenUscc);
                    if f.kinds & k != 0 || broken {
                        f.kinds = k;
                    }
                    if broken {
                        f.id_state = if k == 1 << Kind::Person as u8 {
                            IdState::BrokenPid
                        } else {
                            IdState::BrokenUscc
                        };
                    }
                }
            })
            .map_err(&err)?;
        }
    }

    // Names: the subject's own name, and for enterprises the representative's.
    let (name_col, alt_col) = match config.subject {
        Subject::Enterprise => (
            col_of(&config, &[Role::OrgName]),
            col_of(&config, &[Role::Name]),
        ),
        _ => (col_of(&config, &[Role::Name, Role::OrgName]), None),
    };
    if let Some(c) = name_col {
        read_strings(&seg, &c, &mut l.strings, &mut l.recs, |f, v| f.name = v).map_err(&err)?;
    } else {
        // Surname and given name in separate columns (benchmark files).
        let (sur, given) = (
            cols_of(&config, Role::Surname),
            cols_of(&config, Role::GivenName),
        );
        if !sur.is_empty() || !given.is_empty() {
            let mut parts: Vec<Vec<Option<String>>> = Vec::new();
            for c in given.iter().chain(&sur) {
                parts.push(seg.strings(c).map_err(&err)?);
            }
            for r in 0..n {
                let words: Vec<&str> = parts
                    .iter()
                    .filter_map(|p| p[r].as_deref())
                    .filter(|s| !s.is_empty())
                    .collect();
                if !words.is_empty() {
                    l.recs[r].name = l.strings.push(&words.join(" "));
                }
            }
        }
    }
    if let Some(c) = alt_col {
        read_strings(&seg, &c, &mut l.strings, &mut l.recs, |f, v| f.alt_name = v).map_err(&err)?;
    }

    // Birth date and gender: the record's own, else what a (possibly broken) id encodes.
    if let Some(c) = col_of(&config, &[Role::BirthDate]) {
        for (r, v) in seg.ints(&c).map_err(&err)?.into_iter().enumerate() {
            if let Some(v) = v {
                l.recs[r].birth =
                    i32::try_from(v).map_or(NO_DATE, |d| crate::date::Date(d).yyyymmdd());
            }
        }
    }
    if let Some(c) = col_of(&config, &[Role::Gender]) {
        let recs = &mut l.recs;
        seg.for_each_str(&c, |r, v| {
            recs[r].gender = match v {
                Some("男") | Some("m") | Some("male") => 1,
                Some("女") | Some("f") | Some("female") => 2,
                _ => 0,
            }
        })
        .map_err(&err)?;
    }
    for r in 0..n {
        if matches!(l.recs[r].id_state, IdState::Key | IdState::BrokenPid)
            && l.recs[r].kinds & (1 << Kind::Person as u8) != 0
        {
            let id = l.strings.text(l.recs[r].id).as_bytes();
            if id.len() == 18 && id[..17].iter().all(u8::is_ascii_digit) {
                if l.recs[r].birth == NO_DATE
                    && let Some(d) = crate::date::Date::from_yyyymmdd(&id[6..14])
                {
                    l.recs[r].birth = d.yyyymmdd();
                }
                if l.recs[r].gender == 0 && l.recs[r].id_state == IdState::Key {
                    l.recs[r].gender = if (id[16] - b'0') % 2 == 1 { 1 } else { 2 };
                }
            }
        }
    }

    // Phone.
    if let Some(c) = col_of(&config, &[Role::Phone]) {
        let recs = &mut l.recs;
        seg.for_each_str(&c, |r, v| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                recs[r].phone = xxh3_64(v.as_bytes()) | 1;
            }
        })
        .map_err(&err)?;
    }

    // Address: components when the column is a full address, else the joined lines.
    if let Some(c) = col_of(&config, &[Role::Address]) {
        // Component by component, folded into per-row fingerprints: no row of nine
        // strings is ever held.
        let mut acc = vec![AddressFold::default(); n];
        for (i, part) in ADDRESS_FOLD_ORDER.iter().enumerate() {
            seg.for_each_str(&format!("{c}.{part}"), |r, v| {
                acc[r].add(i, v.filter(|v| !v.is_empty()))
            })
            .map_err(&err)?;
        }
        for (r, a) in acc.iter().enumerate() {
            [
                l.recs[r].addr_full,
                l.recs[r].addr_building,
                l.recs[r].addr_area,
            ] = a.prints();
        }
        // The district as a division code where the parser knew it, so that it meets the
        // region columns of other tables. (A district name alone is not used: the same
        // district written two ways must not look like two districts.)
        let region = format!("{c}.region");
        if has_column(&seg, &region, ColumnType::Int) {
            for (r, v) in seg.ints(&region).map_err(&err)?.into_iter().enumerate() {
                if let Some(code) = v.and_then(|v| u32::try_from(v).ok()) {
                    l.recs[r].district = code;
                }
            }
        }
    } else {
        let lines = cols_of(&config, Role::AddressLine);
        let locality = col_of(&config, &[Role::Locality]);
        let postcode = col_of(&config, &[Role::Postcode]);
        if !lines.is_empty() || locality.is_some() {
            let mut line_vals = Vec::new();
            for c in &lines {
                line_vals.push(seg.strings(c).map_err(&err)?);
            }
            let loc = match &locality {
                Some(c) => seg.strings(c).map_err(&err)?,
                None => vec![None; n],
            };
            let post = match &postcode {
                Some(c) => seg.strings(c).map_err(&err)?,
                None => vec![None; n],
            };
            for r in 0..n {
                let street: Vec<&str> = line_vals
                    .iter()
                    .filter_map(|v| v[r].as_deref())
                    .filter(|s| !s.is_empty())
                    .collect();
                let area = [loc[r].as_deref(), post[r].as_deref()];
                let f = &mut l.recs[r];
                [f.addr_full, f.addr_building, f.addr_area] = latin_address_prints(&street, area);
                if let Some(p) = post[r].as_deref().or(loc[r].as_deref()) {
                    f.district = xxh3_64(p.as_bytes()) as u32 | 1;
                }
            }
        }
    }
    // A division code column gives the district of records that lack one.
    if let Some(c) = col_of(&config, &[Role::Region]) {
        for (r, v) in seg.ints(&c).map_err(&err)?.into_iter().enumerate() {
            if let Some(code) = v.and_then(|v| u32::try_from(v).ok())
                && l.recs[r].district == 0
            {
                l.recs[r].district = code;
            }
        }
    }
    Ok(Some(l))
}

/// The state of an identifier from the status ingest gave it.
pub(crate) fn id_state_of(status: &str, subject: Subject) -> IdState {
    if status == UsccStatus::LegacyRegNo.as_str() {
        return IdState::RegNo;
    }
    let valid_key = [PidStatus::Valid, PidStatus::Upgraded15]
        .iter()
        .any(|s| s.as_str() == status)
        || status == UsccStatus::Valid.as_str();
    if valid_key {
        return IdState::Key;
    }
    let broken = status == PidStatus::BadCheck.as_str()
        || status == PidStatus::BadBirthDate.as_str()
        || status == PidStatus::BirthMismatch.as_str()
        || status == PidStatus::GenderMismatch.as_str();
    match (broken, subject) {
        (true, Subject::Enterprise) => IdState::BrokenUscc,
        (true, _) => IdState::BrokenPid,
        _ => IdState::None,
    }
}

/// The order address components are folded in. The road, village and estate come first so
/// that the first of them present is the place (road before village before estate).
pub const ADDRESS_FOLD_ORDER: [&str; 8] = [
    "road", "village", "estate", "town", "number", "building", "unit", "room",
];

/// One address's fingerprints under construction, fed its components one at a time in
/// [`ADDRESS_FOLD_ORDER`]. Three levels of detail, 0 where a level has no content:
/// - full: town, village, road, number, estate, building, unit, room (down to the room);
/// - building: village, road, number, estate, building;
/// - area: the place (road, else village, else estate).
///
/// The district is in none of them: variants often drop it, and a road, number, estate and
/// room together name one home in the city. It is compared on its own, as a division code
/// ([`Rec::district`]), so that the same road name in two districts does not agree.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddressFold {
    present: u16,
    full: u64,
    building: u64,
    place: u64,
}

impl AddressFold {
    /// Road, village, estate, number, building (bits in fold order).
    const IN_BUILDING: u16 = 0b0011_0111;

    /// Adds component `i` of [`ADDRESS_FOLD_ORDER`] (`None` when absent).
    pub fn add(&mut self, i: usize, v: Option<&str>) {
        let h = match v {
            Some(v) => {
                self.present |= 1 << i;
                xxh3_64_with_seed(v.as_bytes(), i as u64 + 1)
            }
            None => i as u64 + 0x5151,
        };
        let fold = |acc: u64| {
            (acc ^ h)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29)
        };
        self.full = fold(self.full);
        if Self::IN_BUILDING & (1 << i) != 0 {
            self.building = fold(self.building);
        }
        if i < 3 && v.is_some() && self.place == 0 {
            self.place = h | 1;
        }
    }

    /// The finished prints: [full, building, area].
    pub fn prints(&self) -> [u64; 3] {
        let has = |i: usize| self.present & (1 << i) != 0;
        let (number, building, room) = (has(4), has(5), has(7));
        let place = self.place != 0;
        let full = if room || number || building {
            self.full | 1
        } else {
            0
        };
        let bldg = if place && (building || number) {
            self.building | 1
        } else {
            0
        };
        let area = if place {
            xxh3_64_with_seed(&self.place.to_le_bytes(), 3) | 1
        } else {
            0
        };
        [full, bldg, area]
    }
}

/// Fingerprints of a Western-style address: street lines, then locality and postcode.
fn latin_address_prints(street: &[&str], area: [Option<&str>; 2]) -> [u64; 3] {
    let norm = |s: &str| {
        s.to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let street = norm(&street.join(" "));
    let area_s: Vec<String> = area.iter().map(|a| norm(a.unwrap_or(""))).collect();
    let full = if street.is_empty() {
        0
    } else {
        xxh3_64_with_seed(format!("{street}\x1f{}", area_s[0]).as_bytes(), 1) | 1
    };
    let bldg = if street.is_empty() {
        0
    } else {
        xxh3_64_with_seed(street.as_bytes(), 2) | 1
    };
    let area = if area_s.iter().all(String::is_empty) {
        0
    } else {
        xxh3_64_with_seed(area_s.join("\x1f").as_bytes(), 3) | 1
    };
    [full, bldg, area]
}

/// Whether a segment column exists with the given type (used by event attribution).
pub fn has_column(seg: &Segment, name: &str, ty: ColumnType) -> bool {
    seg.schema().iter().any(|c| c.name == name && c.ty == ty)
}
