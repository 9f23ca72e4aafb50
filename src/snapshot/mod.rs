//! Snapshots: one immutable, memory-mapped generation of everything the policy engine and the
//! server read (DESIGN.md §3.5; the byte layout is in `FORMAT.md` beside this file).
//!
//! - [`container`](mod@container): header, aligned sections, footer with xxh3 per section, atomic publish.
//! - [`column`](mod@column): integer, dictionary and text columns with validity; their integers
//!   are [`blocks`](crate::codec::blocks): 256-row blocks, each in its smallest encoding (frame of
//!   reference, line, dictionary, runs), every value read in constant time.
//! - [`build`](mod@build): ingested segments + a resolve build → a snapshot: every table's rows grouped by
//!   entity, references resolved to entities, equality indexes, universes, the key map.
//! - [`export`](mod@export): tables as CSV, for other tools (the DuckDB comparison).
//! - this module: the reader. `Snapshot::open` is constant work (header, trailer, footer,
//!   section table, a few small sections); `verify` checks every checksum.
//!
//! Entities have dense `u32` ids (their row in the resolve build's `entities.csv`), shared by
//! persons, households and enterprises; each kind's ids form its universe bitmap.

pub mod build;
pub mod column;
pub mod container;
pub mod export;
pub mod predict;

use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::SnapshotError;
use column::Column;
use container::Container;

/// The snapshot file inside a snapshot folder.
pub const FILE_NAME: &str = "snapshot.msnap";

/// Entity kinds, by their code in `entities/kind`.
pub const KINDS: [&str; 3] = ["person", "household", "enterprise"];

/// The code of a kind name.
pub fn kind_code(kind: &str) -> Option<u8> {
    KINDS.iter().position(|k| *k == kind).map(|k| k as u8)
}

/// One column of a table, as the schema section lists it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    /// `int`, `dict` or `bytes`.
    pub ty: String,
    /// The column's role in the source config (`date`, `amount`, `category`, …).
    pub role: String,
    /// Whether a `ref/` section resolves the values to entities.
    pub reference: bool,
    /// Whether an `index/` section holds one entity bitmap per dictionary value.
    pub indexed: bool,
    /// Whether the values are stored as residuals of a prediction from other columns of the
    /// table (FORMAT.md, type 7).
    pub predicted: bool,
}

/// A table's description.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// `DEPT.table`.
    pub name: String,
    /// `identity`, `event` or `reference`.
    pub kind: String,
    /// The kind of entity its rows are about.
    pub subject: String,
    pub rows: usize,
    /// Rows attributed to an entity; they come first, grouped by entity.
    pub attributed: usize,
    pub as_of: Option<String>,
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// An open snapshot.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    c: Container,
    meta: Vec<(String, String)>,
    tables: Vec<TableInfo>,
    entities: usize,
}

/// Parses `key\tvalue` lines.
fn parse_tsv(b: &[u8]) -> Option<Vec<Vec<String>>> {
    let text = std::str::from_utf8(b).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect(),
    )
}

impl Snapshot {
    /// Opens `dir/snapshot.msnap` (or a snapshot file given directly): checks the structure
    /// and reads the table directory; constant work whatever the size.
    pub fn open(dir: &Path) -> Result<Snapshot, SnapshotError> {
        let path = if dir.is_dir() {
            dir.join(FILE_NAME)
        } else {
            dir.to_path_buf()
        };
        let c = Container::open(&path)?;
        Snapshot::from_container(dir, c)
    }

    /// Opens a snapshot held in memory (tests: arbitrary bytes must never panic).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Snapshot, SnapshotError> {
        let c = Container::from_bytes(Path::new("<memory>"), bytes)?;
        Snapshot::from_container(Path::new("<memory>"), c)
    }

    fn from_container(dir: &Path, c: Container) -> Result<Snapshot, SnapshotError> {
        let meta = parse_tsv(c.section("meta")?)
            .ok_or_else(|| c.corrupt("meta", "not UTF-8 text"))?
            .into_iter()
            .filter_map(|mut f| (f.len() == 2).then(|| (f.remove(0), f.remove(0))))
            .collect();
        let lines =
            parse_tsv(c.section("tables")?).ok_or_else(|| c.corrupt("tables", "not UTF-8 text"))?;
        let mut tables = Vec::with_capacity(lines.len());
        for f in lines {
            let [name, kind, subject, rows, attributed, as_of] = f.as_slice() else {
                return Err(c.corrupt("tables", "a line without six fields"));
            };
            let num = |s: &str| {
                s.parse::<usize>()
                    .map_err(|_| c.corrupt("tables", format!("{name}: bad count {s:?}")))
            };
            let schema = format!("table/{name}/schema");
            let columns = parse_tsv(c.section(&schema)?)
                .ok_or_else(|| c.corrupt(&schema, "not UTF-8 text"))?
                .into_iter()
                .map(|f| match f.as_slice() {
                    [n, t, r, flags] => Ok(ColumnInfo {
                        name: n.clone(),
                        ty: t.clone(),
                        role: r.clone(),
                        reference: flags.contains('r'),
                        indexed: flags.contains('i'),
                        predicted: flags.contains('p'),
                    }),
                    _ => Err(c.corrupt(&schema, "a line without four fields")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            tables.push(TableInfo {
                name: name.clone(),
                kind: kind.clone(),
                subject: subject.clone(),
                rows: num(rows)?,
                attributed: num(attributed)?,
                as_of: (!as_of.is_empty()).then(|| as_of.clone()),
                columns,
            });
        }
        let kinds = Column::parse(c.section("entities/kind")?)
            .ok_or_else(|| c.corrupt("entities/kind", "column layout does not fit"))?;
        Ok(Snapshot {
            dir: dir.to_path_buf(),
            entities: kinds.rows(),
            c,
            meta,
            tables,
        })
    }

    /// Checks every section's checksum; the error names the section at fault.
    pub fn verify(&self) -> Result<(), SnapshotError> {
        self.c.verify()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn container(&self) -> &Container {
        &self.c
    }

    /// A provenance or summary value (`generation`, `built_at`, `as_of.GA.person`, …).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn meta_all(&self) -> &[(String, String)] {
        &self.meta
    }

    /// The generation number: 1 for the first build into a folder, then one more per build.
    pub fn generation(&self) -> u64 {
        self.meta("generation")
            .and_then(|g| g.parse().ok())
            .unwrap_or(0)
    }

    pub fn entity_count(&self) -> usize {
        self.entities
    }

    pub fn tables(&self) -> &[TableInfo] {
        &self.tables
    }

    /// A column section; a predicted column finds its bases beside it (`table/T/col/<base>`).
    fn column_section(&self, name: &str) -> Result<Column<'_>, SnapshotError> {
        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
        let base = |c: &str| self.c.get(&format!("{dir}/{c}")).and_then(Column::parse);
        Column::parse_in(self.c.section(name)?, &base)
            .ok_or_else(|| self.c.corrupt(name, "column layout does not fit"))
    }

    fn bitmap_section(&self, name: &str) -> Result<RoaringBitmap, SnapshotError> {
        RoaringBitmap::deserialize_from(self.c.section(name)?)
            .map_err(|e| self.c.corrupt(name, format!("not a roaring bitmap: {e}")))
    }

    /// The kind of entity `e` (`person`, `household`, `enterprise`).
    pub fn kind(&self, e: u32) -> Option<&'static str> {
        let k = self.column_section("entities/kind").ok()?.int(e as usize)?;
        KINDS.get(usize::try_from(k).ok()?).copied()
    }

    /// The stable key of entity `e`.
    pub fn key(&self, e: u32) -> Option<&str> {
        self.column_section("entities/key").ok()?.str(e as usize)
    }

    /// The entity with stable key `key`: a binary search over key hashes.
    pub fn entity_of_key(&self, key: &str) -> Result<Option<u32>, SnapshotError> {
        Ok(self.keys()?.entity_of(key))
    }

    /// The entity columns that key lookups read, parsed once: for callers that look up many
    /// keys (a server). [`KeyIndex::fenced`] also keeps every 64th key hash in memory.
    pub fn keys(&self) -> Result<KeyIndex<'_>, SnapshotError> {
        Ok(KeyIndex {
            hashes: self.column_section("entities/key_hash")?,
            order: self.column_section("entities/key_order")?,
            keys: self.column_section("entities/key")?,
            kinds: self.column_section("entities/kind")?,
            fence: Vec::new(),
        })
    }

    /// Every entity of a kind.
    pub fn universe(&self, kind: &str) -> Result<RoaringBitmap, SnapshotError> {
        self.bitmap_section(&format!("universe/{kind}"))
    }

    /// Entities whose stable key is an identifier (id number, USCC, household number) rather
    /// than a minted key.
    pub fn identified(&self) -> Result<RoaringBitmap, SnapshotError> {
        self.bitmap_section("entities/identified")
    }

    /// A table by `DEPT.table` name.
    pub fn table(&self, name: &str) -> Result<Table<'_>, SnapshotError> {
        let info = self
            .tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| SnapshotError::Input(format!("the snapshot has no table {name}")))?;
        let runs_entity = self.column_section(&format!("table/{name}/run_entity"))?;
        let runs_start = self.column_section(&format!("table/{name}/run_start"))?;
        Ok(Table {
            snap: self,
            info,
            runs_entity,
            runs_start,
        })
    }
}

/// The entity runs of a table ([`Table::runs`]): run `i` is entity `run_entity[i]`'s rows
/// `run_start[i] .. run_start[i + 1]`; a missing value reads as 0.
#[derive(Debug, Clone)]
pub struct Runs<'a> {
    entity: Column<'a>,
    start: Column<'a>,
    n: usize,
    /// The next run to yield.
    next: usize,
    /// The first run in the buffers.
    from: usize,
    entities: Vec<i64>,
    /// One more than `entities`: the start of the run after the last one.
    starts: Vec<i64>,
    /// Which decoded values are present (a word per 64).
    present: Vec<u64>,
}

impl Runs<'_> {
    /// Runs decoded at a time.
    const BLOCK: usize = 1024;

    /// Decodes the runs from `self.next` on into the buffers.
    fn fill(&mut self) {
        let len = Self::BLOCK.min(self.n - self.next);
        let present = &mut self.present;
        let mut decode = |col: &Column<'_>, len: usize, out: &mut Vec<i64>, start: usize| {
            out.resize(len, 0);
            present.resize(len.div_ceil(64), 0);
            col.decode_raw(start, out, present);
            for (k, v) in out.iter_mut().enumerate() {
                if present[k / 64] >> (k % 64) & 1 == 0 {
                    *v = 0;
                }
            }
        };
        decode(&self.entity, len, &mut self.entities, self.next);
        decode(&self.start, len + 1, &mut self.starts, self.next);
        self.from = self.next;
    }
}

impl Iterator for Runs<'_> {
    type Item = (u32, Range<usize>);

    fn next(&mut self) -> Option<(u32, Range<usize>)> {
        if self.next >= self.n {
            return None;
        }
        if self.next >= self.from + self.entities.len() || self.next < self.from {
            self.fill();
        }
        let k = self.next - self.from;
        self.next += 1;
        let (s, t) = (self.starts[k] as usize, self.starts[k + 1] as usize);
        Some((self.entities[k] as u32, s..t.max(s)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.n.saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Runs<'_> {}

/// One table of a snapshot: rows grouped by entity (attributed rows first, in entity order).
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    snap: &'a Snapshot,
    pub info: &'a TableInfo,
    runs_entity: Column<'a>,
    runs_start: Column<'a>,
}

impl<'a> Table<'a> {
    /// The first run whose entity is `e` or after it (the run count when none is).
    fn first_run_from(&self, e: u32) -> usize {
        let at = |i: usize| self.runs_entity.int(i).unwrap_or(i64::MAX);
        let (mut lo, mut hi) = (0usize, self.runs_entity.rows());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid) < i64::from(e) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The rows of entity `e` (empty when it has none).
    pub fn rows_of(&self, e: u32) -> Range<usize> {
        let n = self.runs_entity.rows();
        let at = |i: usize| self.runs_entity.int(i).unwrap_or(i64::MAX);
        let lo = self.first_run_from(e);
        if lo < n && at(lo) == i64::from(e) {
            let s = self.runs_start.int(lo).unwrap_or(0) as usize;
            let t = self.runs_start.int(lo + 1).unwrap_or(0) as usize;
            s..t.max(s)
        } else {
            0..0
        }
    }

    /// How many entities have rows.
    pub fn run_count(&self) -> usize {
        self.runs_entity.rows()
    }

    /// Entity runs: `(entity, rows)` in entity order, decoded a block of runs at a time.
    pub fn runs(&self) -> Runs<'a> {
        Runs {
            entity: self.runs_entity,
            start: self.runs_start,
            n: self.runs_entity.rows(),
            next: 0,
            from: 0,
            entities: Vec::new(),
            starts: Vec::new(),
            present: Vec::new(),
        }
    }

    /// Entity runs from entity `e` on (its own, if it has rows): a parallel reader's share of
    /// the table, from where its entities begin.
    pub fn runs_from(&self, e: u32) -> Runs<'a> {
        let first = self.first_run_from(e);
        Runs {
            next: first,
            from: first,
            ..self.runs()
        }
    }

    /// Entity runs of the entities `entities` (`first..=last`): a parallel reader's share of
    /// the table, read from its first entity's runs on, without a list of every run.
    pub fn runs_within(
        &self,
        entities: RangeInclusive<u32>,
    ) -> impl Iterator<Item = (u32, Range<usize>)> + 'a {
        let (first, last) = entities.into_inner();
        self.runs_from(first)
            .take_while(move |(e, _)| *e <= last)
            .filter(move |(e, _)| *e >= first)
    }

    /// The entity of every row, in row order (`None` for rows nothing joined).
    pub fn row_entities(&self) -> Vec<Option<u32>> {
        let mut out = vec![None; self.info.rows];
        for (e, rows) in self.runs() {
            for r in rows {
                if let Some(x) = out.get_mut(r) {
                    *x = Some(e);
                }
            }
        }
        out
    }

    /// A value column.
    pub fn column(&self, name: &str) -> Result<Column<'a>, SnapshotError> {
        self.snap
            .column_section(&format!("table/{}/col/{name}", self.info.name))
    }

    /// A reference column: the entity each row's value names.
    pub fn reference(&self, name: &str) -> Result<Column<'a>, SnapshotError> {
        self.snap
            .column_section(&format!("table/{}/ref/{name}", self.info.name))
    }

    /// Rows whose link to their entity is doubtful.
    pub fn doubtful(&self) -> Result<RoaringBitmap, SnapshotError> {
        self.snap
            .bitmap_section(&format!("table/{}/doubtful", self.info.name))
    }

    /// The entities having a row with `value` in dictionary column `column`.
    pub fn entities_with(&self, column: &str, value: &str) -> Result<RoaringBitmap, SnapshotError> {
        let col = self.column(column)?;
        let Some(code) = col.code_of(value) else {
            return Ok(RoaringBitmap::new());
        };
        let name = format!("table/{}/index/{column}", self.info.name);
        let b = self.snap.c.section(&name)?;
        let corrupt = || self.snap.c.corrupt(&name, "offsets run past the section");
        let n = column::le_u64(b, 0).ok_or_else(corrupt)? as usize;
        if code as usize >= n {
            return Err(corrupt());
        }
        let at = 8 + code as usize * 16;
        let (off, len) = (
            column::le_u64(b, at).ok_or_else(corrupt)? as usize,
            column::le_u64(b, at + 8).ok_or_else(corrupt)? as usize,
        );
        let bytes = b
            .get(off..off.checked_add(len).ok_or_else(corrupt)?)
            .ok_or_else(corrupt)?;
        RoaringBitmap::deserialize_from(bytes).map_err(|e| {
            self.snap
                .c
                .corrupt(&name, format!("not a roaring bitmap: {e}"))
        })
    }
}

/// Rows of the key hashes between two fence posts of [`KeyIndex::fenced`].
const FENCE: usize = 64;

/// The number of fence posts below `h`. Key hashes are uniform (xxh3), so the search starts
/// where `h` would fall and widens its window until the window holds the answer: a few probes
/// within a cache line or two, where a binary search over the whole fence misses the cache at
/// most of its ~15 probes.
fn fence_point(fence: &[i64], h: i64) -> usize {
    let n = fence.len();
    // Order-preserving i64 → u64, then the share of the hash space below h.
    let at = ((((h as u64) ^ (1 << 63)) as u128 * n as u128) >> 64) as usize;
    let mut w = 8;
    loop {
        let (lo, hi) = (at.saturating_sub(w), (at + w).min(n));
        // The answer lies in lo..=hi when the post before lo is below h and the post at hi
        // is not.
        if (lo == 0 || fence[lo - 1] < h) && (hi == n || fence[hi] >= h) {
            return lo + fence[lo..hi].partition_point(|&x| x < h);
        }
        w *= 4;
    }
}

/// Stable key ↔ entity, and each entity's kind, over the snapshot's entity columns parsed once.
#[derive(Debug)]
pub struct KeyIndex<'s> {
    /// Key hashes (xxh3, as i64) in ascending order, and the entity of each.
    hashes: Column<'s>,
    order: Column<'s>,
    keys: Column<'s>,
    kinds: Column<'s>,
    /// Every [`FENCE`]th hash (empty: not fenced).
    fence: Vec<i64>,
}

impl<'s> KeyIndex<'s> {
    /// The same index with every 64th key hash in memory (8 bytes per 64 entities), so that a
    /// lookup searches one stretch of 64 hashes in the column instead of all of them.
    pub fn fenced(mut self) -> KeyIndex<'s> {
        let n = self.hashes.rows();
        self.fence = (0..n)
            .step_by(FENCE)
            .map(|i| self.hashes.int(i).unwrap_or(i64::MAX))
            .collect();
        self
    }

    /// The entity with stable key `key`.
    pub fn entity_of(&self, key: &str) -> Option<u32> {
        let h = xxh3_64(key.as_bytes()) as i64;
        let n = self.hashes.rows();
        let at = |i: usize| self.hashes.int(i).unwrap_or(i64::MAX);
        // The first row whose hash is not below h lies after the last fence post below h and
        // at or before the next post.
        let (mut lo, mut hi) = if self.fence.is_empty() {
            (0, n)
        } else {
            let j = fence_point(&self.fence, h);
            (j.saturating_sub(1) * FENCE, (j * FENCE).min(n))
        };
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid) < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while lo < n && at(lo) == h {
            if let Some(e) = self.order.int(lo).and_then(|e| u32::try_from(e).ok())
                && self.keys.str(e as usize) == Some(key)
            {
                return Some(e);
            }
            lo += 1;
        }
        None
    }

    /// The stable key of entity `e`.
    pub fn key(&self, e: u32) -> Option<&'s str> {
        self.keys.str(e as usize)
    }

    /// The kind of entity `e`.
    pub fn kind(&self, e: u32) -> Option<&'static str> {
        let k = self.kinds.int(e as usize)?;
        KINDS.get(usize::try_from(k).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::fence_point;
    use proptest::prelude::*;

    proptest! {
        /// The widening search finds what a binary search over the whole fence finds, for
        /// uniform hashes and for fences crowded into one corner of the hash space.
        #[test]
        fn fence_point_is_the_partition_point(
            mut fence in prop::collection::vec(any::<i64>(), 1..2000),
            crowded in prop::collection::vec(-1000i64..1000, 1..2000),
            probes in prop::collection::vec(any::<i64>(), 1..50),
        ) {
            fence.sort_unstable();
            let mut crowded = crowded;
            crowded.sort_unstable();
            for f in [&fence, &crowded] {
                let edges = [i64::MIN, i64::MAX, f[0], f[f.len() - 1], 0];
                for &h in probes.iter().chain(&edges).chain(f.iter().step_by(7)) {
                    prop_assert_eq!(fence_point(f, h), f.partition_point(|&x| x < h), "h {}", h);
                }
            }
        }
    }
}
