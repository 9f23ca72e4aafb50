//! Aggregates over a table's rows (`sum(SW.invoice.amount where SW.invoice.month within 12
//! months)`, `count(RS.contrib where …)`, `exists(…)`) computed for every entity by one scan
//! of the table's columns, instead of one interpretation per row.
//!
//! The scan cuts the table's entity runs into parallel tasks and reads each task's rows a
//! window at a time: every column the aggregate reads is decoded a block at a time
//! ([`Column::decode_raw`](crate::snapshot::column::Column::decode_raw)); every part of the
//! row filter that reads one field of the row becomes the TRUE / FALSE masks of the window
//! through its [`RowFilters`] table (two such parts of one column under `and` / `or`, as a
//! window's `month > x and month <= y`, are first merged into one table, and a `not` of a
//! table swaps its TRUE and FALSE, so the column is decoded once); `and`, `or` and `not`
//! combine the masks a word (64 rows) at a time; a part the tables do not cover is
//! interpreted row by row. The rows of each
//! entity are then folded by [`RowFold`], the accumulator the interpreter itself uses, so the
//! values are the interpreter's bit for bit (the property tests of `tests/policy.rs` compare
//! the engine, which reads these values, with the plain interpreter).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::ast::{Agg, Tri};
use super::columns::Kept;
use super::eval::{
    At, ColRef, Env, Evaluator, NO_BATCH, NoTrace, Node, RowFilters, RowFold, V, and3, not3, or3,
};
use super::schema::{Scale, Ty};
use crate::snapshot::column::Column;

/// Rows decoded at a time (a multiple of 64).
pub(super) const WINDOW: usize = 4096;

/// Entities per parallel task of a reader that starts each task at its first entity's runs
/// ([`Table::runs_from`](crate::snapshot::Table::runs_from)).
pub(super) const ENTITY_CHUNK: usize = 1 << 16;

/// Rows per parallel task, at most (fewer for small tables, so that they split too).
const TASK_ROWS: usize = 1 << 18;

/// Which aggregate a scan computed: counts serve `count` and `exists` alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Count,
    Fold(Agg, usize),
}

/// One aggregate's values.
#[derive(Debug)]
struct Scanned {
    what: What,
    table: usize,
    /// Only these entities were scanned (others fall back to the interpreter).
    scope: Option<RoaringBitmap>,
    /// Entities with rows, ascending, and their values.
    entities: Vec<u32>,
    values: Values,
    /// For a scan that covers a large share of the entities: every entity's position in
    /// `entities` ([`NO_ROWS`], [`OUT_OF_SCOPE`]), so that a lookup is one read instead of a
    /// roaring test and a binary search (the interpreter looks up every entity). Built on the
    /// first lookup: a count read whole ([`AggValues::counts`]) never needs it.
    dense: OnceLock<Option<Vec<u32>>>,
    /// The snapshot's entity count (the dense index's length).
    entity_count: usize,
}

/// In [`Scanned::dense`]: an entity of the scope without rows.
const NO_ROWS: u32 = u32::MAX;
/// In [`Scanned::dense`]: an entity outside the scope (the interpreter reads its rows).
const OUT_OF_SCOPE: u32 = u32::MAX - 1;

impl Scanned {
    fn new(
        env: &Env<'_>,
        what: What,
        table: usize,
        scope: Option<RoaringBitmap>,
        entities: Vec<u32>,
        values: Values,
    ) -> Scanned {
        Scanned {
            what,
            table,
            scope,
            entities,
            values,
            dense: OnceLock::new(),
            entity_count: env.snap.entity_count(),
        }
    }

    /// [`Scanned::dense`], when the scan found rows for at least one entity in 64 of the
    /// entities (it costs 4 bytes per entity while the aggregate is in use).
    fn dense(&self) -> Option<&[u32]> {
        self.dense.get_or_init(|| self.build_dense()).as_deref()
    }

    /// Whether a dense index is worth its 4 bytes per entity.
    fn dense_pays(&self) -> bool {
        self.entities.len() >= self.entity_count / 64 && self.entities.len() < OUT_OF_SCOPE as usize
    }

    /// Bytes the values take, with the dense index they may build (not the scope).
    fn bytes(&self) -> usize {
        self.entities.len() * 4
            + if self.dense_pays() {
                self.entity_count * 4
            } else {
                0
            }
            + match &self.values {
                Values::Counts(c) => c.len() * 16,
                Values::Folds(v) => v.len() * std::mem::size_of::<Kept>(),
            }
    }

    fn build_dense(&self) -> Option<Vec<u32>> {
        let n = self.entity_count;
        if !self.dense_pays() {
            return None;
        }
        let mut dense = match &self.scope {
            None => vec![NO_ROWS; n],
            Some(scope) => {
                let mut d = vec![OUT_OF_SCOPE; n];
                for e in scope.iter().take_while(|&e| (e as usize) < n) {
                    d[e as usize] = NO_ROWS;
                }
                d
            }
        };
        for (i, &e) in self.entities.iter().enumerate() {
            if let Some(x) = dense.get_mut(e as usize) {
                *x = i as u32;
            }
        }
        Some(dense)
    }
}

/// Entities with rows (ascending) and their rows surely / possibly passing a filter.
pub type EntityCounts<'a> = (&'a [u32], &'a [(u64, u64)]);

/// [`EntityCounts`], owned.
pub type OwnedCounts = (Vec<u32>, Vec<(u64, u64)>);

#[derive(Debug)]
enum Values {
    Counts(Vec<(u64, u64)>),
    Folds(Vec<Kept>),
}

/// Aggregates over tables of one expression, computed beforehand for an
/// [`Evaluator::with_aggs`].
#[derive(Debug, Default)]
pub struct AggValues {
    scans: Vec<Entry>,
}

/// One scan and the filter nodes (by address; 0 for no filter) it stands for.
#[derive(Debug)]
struct Entry {
    scan: Arc<Scanned>,
    filters: Vec<usize>,
    /// Whether it is read for the entities themselves (not inside a relation's body).
    subject: bool,
    /// Once aligned with a batch of entities ([`AggValues::align`]): each one's position in
    /// the scan's entities, or [`NO_ROWS`] / [`OUT_OF_SCOPE`].
    positions: Option<Vec<u32>>,
}

/// Scans kept between evaluations of one engine (one snapshot, one as-of date), by what they
/// computed, their table and their filter's compiled text: an amount computed again over the
/// same candidates (its policy recombined, a what-if on a rate or a cap) reads its aggregates
/// here instead of the table. A scan serves any scope within its own.
#[derive(Debug, Default)]
pub struct ScanCache {
    scans: HashMap<String, Arc<Scanned>>,
    bytes: usize,
}

/// Bytes of scanned values a [`ScanCache`] holds at most; past them it starts again.
const SCAN_CACHE_BYTES: usize = 1 << 30;

impl ScanCache {
    fn get(&self, key: &str, scope: Option<&RoaringBitmap>) -> Option<Arc<Scanned>> {
        let s = self.scans.get(key)?;
        let covers = match (&s.scope, scope) {
            (None, _) => true,
            (Some(have), Some(want)) => want.is_subset(have),
            (Some(_), None) => false,
        };
        covers.then(|| s.clone())
    }

    fn put(&mut self, key: String, scan: Arc<Scanned>) {
        let bytes = scan.bytes();
        if self.bytes + bytes > SCAN_CACHE_BYTES {
            self.clear();
        }
        self.bytes += bytes;
        if let Some(old) = self.scans.insert(key, scan) {
            self.bytes -= old.bytes();
        }
    }

    pub fn clear(&mut self) {
        self.scans.clear();
        self.bytes = 0;
    }

    /// Bytes of the values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

fn addr(n: Option<&Node>) -> usize {
    n.map_or(0, |n| n as *const Node as usize)
}

/// Whether a filter reads only its rows and entities' fields (no aggregate or policy inside).
fn flat(n: &Node) -> bool {
    let mut ok = true;
    n.visit(&mut |x| {
        if matches!(
            x,
            Node::TableAgg { .. } | Node::RelAgg { .. } | Node::Policy(_)
        ) {
            ok = false;
        }
    });
    ok
}

impl AggValues {
    /// Scans every aggregate over a table in `n` whose filter holds no other aggregate,
    /// reading the filters' parts from `filters` (`RowFilters::of(env, n)`) where tabulated.
    /// Aggregates read for the entities themselves are scanned over `scope` (all entities
    /// when `None`); those inside a relation's body, for every entity.
    pub fn of(
        env: &Env<'_>,
        n: &Node,
        filters: &RowFilters,
        scope: Option<&RoaringBitmap>,
    ) -> AggValues {
        Self::kept_in(env, n, filters, scope, None, &[])
    }

    /// [`AggValues::of`], reading scans from `cache` where it has them and keeping the new
    /// ones there, and leaving out the nodes `given` (by address) whose values the evaluator
    /// is given.
    pub fn kept_in(
        env: &Env<'_>,
        n: &Node,
        filters: &RowFilters,
        scope: Option<&RoaringBitmap>,
        mut cache: Option<&mut ScanCache>,
        given: &[usize],
    ) -> AggValues {
        let mut found: Vec<(&Node, bool)> = Vec::new();
        fn walk<'n>(n: &'n Node, in_rel: bool, given: &[usize], found: &mut Vec<(&'n Node, bool)>) {
            if !in_rel && given.contains(&(n as *const Node as usize)) {
                return;
            }
            match n {
                Node::TableAgg {
                    agg: Agg::Exists | Agg::Count | Agg::Sum | Agg::Min | Agg::Max,
                    filter,
                    ..
                } if filter.as_deref().is_none_or(flat) => found.push((n, in_rel)),
                Node::RelAgg { body: Some(b), .. } => walk(b, true, given, found),
                Node::TableAgg { .. } | Node::RelAgg { .. } => {}
                Node::Const(_) | Node::Field { .. } | Node::DictIn { .. } | Node::Policy(_) => {}
                Node::Not(x) | Node::Neg(x) | Node::Offset(x, _) => walk(x, in_rel, given, found),
                Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
                    walk(a, in_rel, given, found);
                    walk(b, in_rel, given, found);
                }
                Node::InSet(x, items) => {
                    walk(x, in_rel, given, found);
                    items.iter().for_each(|i| walk(i, in_rel, given, found));
                }
                Node::InRange(x, lo, hi) => {
                    walk(x, in_rel, given, found);
                    [lo, hi]
                        .into_iter()
                        .flatten()
                        .for_each(|b| walk(b, in_rel, given, found));
                }
                Node::Call(_, args) => args.iter().for_each(|a| walk(a, in_rel, given, found)),
                Node::If(c, a, b) => {
                    walk(c, in_rel, given, found);
                    walk(a, in_rel, given, found);
                    walk(b, in_rel, given, found);
                }
                Node::Band { of, arms } => {
                    walk(of, in_rel, given, found);
                    arms.iter().for_each(|a| walk(&a.2, in_rel, given, found));
                }
            }
        }
        walk(n, false, given, &mut found);
        let ev = Evaluator::new(env).with_filters(filters);
        let mut out = AggValues::default();
        // The same aggregate written twice (`max(…)` in a condition and in an amount) is
        // scanned once.
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (node, in_rel) in found {
            let Node::TableAgg {
                agg,
                table,
                col,
                filter,
            } = node
            else {
                continue;
            };
            let what = match (agg, col) {
                (Agg::Count | Agg::Exists, _) => What::Count,
                (_, Some(c)) => What::Fold(*agg, *c),
                (_, None) => continue,
            };
            let scope = if in_rel { None } else { scope };
            let text = format!("{what:?}|{table}|{filter:?}");
            let key = format!("{text}|{}", scope.is_some());
            if let Some((_, i)) = seen.iter().find(|s| s.0 == key) {
                out.scans[*i].filters.push(addr(filter.as_deref()));
                continue;
            }
            let kept = cache.as_deref().and_then(|c| c.get(&text, scope));
            let scanned = match kept {
                Some(s) => s,
                None => {
                    let calendared = match (what, filter.as_deref()) {
                        (What::Count, Some(f)) => by_calendar(&ev, filters, *table, f, scope),
                        _ => None,
                    };
                    let s = Arc::new(match calendared {
                        Some(s) => s,
                        None => scan(&ev, filters, *table, what, filter.as_deref(), scope),
                    });
                    if let Some(c) = cache.as_deref_mut() {
                        c.put(text, s.clone());
                    }
                    s
                }
            };
            seen.push((key, out.scans.len()));
            out.scans.push(Entry {
                scan: scanned,
                filters: vec![addr(filter.as_deref())],
                subject: !in_rel,
                positions: None,
            });
        }
        out
    }

    /// Where the scan of `what` over `table` for `filter` is.
    fn position(&self, what: What, table: usize, filter: Option<&Node>) -> Option<usize> {
        let f = addr(filter);
        self.scans
            .iter()
            .position(|s| s.scan.what == what && s.scan.table == table && s.filters.contains(&f))
    }

    /// Aligns the aggregates read for the entities themselves with `ids` (ascending, the set
    /// `batch`), so that
    /// an entity evaluated at its position in them ([`At::in_batch`]) finds its value by that
    /// position: one merge of `ids` with each scan's entities, instead of a lookup per entity
    /// scattered over the whole id space.
    pub fn align(&mut self, ids: &[u32], batch: &RoaringBitmap) {
        for entry in self.scans.iter_mut().filter(|s| s.subject) {
            let s = &entry.scan;
            let covered = s.scope.as_ref().is_none_or(|scope| batch.is_subset(scope));
            let positions = ids
                .iter()
                .zip(positions_in(&s.entities, ids))
                .map(|(&e, at)| match at {
                    Some(j) => j as u32,
                    None if covered || s.scope.as_ref().is_some_and(|sc| sc.contains(e)) => NO_ROWS,
                    None => OUT_OF_SCOPE,
                })
                .collect();
            entry.positions = Some(positions);
        }
    }

    /// Where the value of the entity `at` is in `entry`'s scan (`None`: out of its scope).
    fn found(entry: &Entry, at: At) -> Option<Found<'_>> {
        let s = &entry.scan;
        if at.batch != NO_BATCH
            && let Some(p) = &entry.positions
            && let Some(&i) = p.get(at.batch as usize)
        {
            return match i {
                OUT_OF_SCOPE => None,
                NO_ROWS => Some(Found::NoRows),
                i => Some(Found::At(s, i as usize)),
            };
        }
        let e = at.e;
        if let Some(dense) = s.dense() {
            return match dense.get(e as usize).copied() {
                Some(OUT_OF_SCOPE) => None,
                Some(NO_ROWS) => Some(Found::NoRows),
                Some(i) => Some(Found::At(s, i as usize)),
                // Past the entity table (the id that stands for "no row anywhere").
                None => match &s.scope {
                    Some(sc) if !sc.contains(e) => None,
                    _ => Some(Found::NoRows),
                },
            };
        }
        if s.scope.as_ref().is_some_and(|sc| !sc.contains(e)) {
            return None;
        }
        Some(match s.entities.binary_search(&e) {
            Ok(i) => Found::At(s, i),
            Err(_) => Found::NoRows,
        })
    }

    /// Every scanned entity with rows in `table` (ascending) and its rows surely / possibly
    /// passing `filter`, when that count was scanned.
    pub fn counts(&self, table: usize, filter: Option<&Node>) -> Option<EntityCounts<'_>> {
        let s = &self.scans[self.position(What::Count, table, filter)?].scan;
        match &s.values {
            Values::Counts(c) => Some((&s.entities, c)),
            Values::Folds(_) => None,
        }
    }

    /// [`AggValues::counts`], taken out of the values (copied only when a [`ScanCache`]
    /// shares the scan).
    pub fn into_counts(mut self, table: usize, filter: Option<&Node>) -> Option<OwnedCounts> {
        let i = self.position(What::Count, table, filter)?;
        let scan = self.scans.swap_remove(i).scan;
        match Arc::try_unwrap(scan) {
            Ok(Scanned {
                entities,
                values: Values::Counts(c),
                ..
            }) => Some((entities, c)),
            Ok(_) => None,
            Err(shared) => match &shared.values {
                Values::Counts(c) => Some((shared.entities.clone(), c.clone())),
                Values::Folds(_) => None,
            },
        }
    }

    /// Rows of `table` for the entity `at` surely / possibly passing `filter`, when scanned.
    pub fn count(&self, table: usize, filter: Option<&Node>, at: At) -> Option<(u64, u64)> {
        self.count_reader(table, filter)?(at)
    }

    /// `agg` of `col` over the rows of `table` for the entity `at` passing `filter`, when
    /// scanned.
    pub fn fold<'a>(
        &self,
        agg: Agg,
        table: usize,
        col: usize,
        filter: Option<&Node>,
        at: At,
    ) -> Option<V<'a>> {
        self.fold_reader(agg, table, col, filter)?(at)
    }

    /// [`AggValues::count`] for many entities: the scan is looked up once.
    pub fn count_reader(
        &self,
        table: usize,
        filter: Option<&Node>,
    ) -> Option<impl Fn(At) -> Option<(u64, u64)> + '_> {
        let entry = &self.scans[self.position(What::Count, table, filter)?];
        Some(move |at| match Self::found(entry, at)? {
            Found::At(s, i) => match &s.values {
                Values::Counts(c) => c.get(i).copied(),
                Values::Folds(_) => None,
            },
            Found::NoRows => Some((0, 0)),
        })
    }

    /// [`AggValues::fold`] for many entities: the scan is looked up once.
    pub fn fold_reader(
        &self,
        agg: Agg,
        table: usize,
        col: usize,
        filter: Option<&Node>,
    ) -> Option<impl Fn(At) -> Option<V<'static>> + '_> {
        let entry = &self.scans[self.position(What::Fold(agg, col), table, filter)?];
        Some(move |at| match Self::found(entry, at)? {
            Found::At(s, i) => match &s.values {
                Values::Folds(v) => v.get(i).map(|k| k.v()),
                Values::Counts(_) => None,
            },
            Found::NoRows => Some(V::Missing),
        })
    }

    /// Bytes the values take.
    pub fn bytes(&self) -> usize {
        self.scans.iter().map(|s| s.scan.bytes()).sum()
    }
}

/// The position of each of `ids` in `sorted` (both ascending), if there, by one merge that
/// gallops over `sorted`: what a lookup per id costs in binary searches over all of `sorted`,
/// it does in one pass over `ids` and a skip over `sorted`.
pub fn positions_in<'a>(
    sorted: &'a [u32],
    ids: &'a [u32],
) -> impl Iterator<Item = Option<usize>> + 'a {
    let mut j = 0;
    ids.iter().map(move |&e| {
        j += gallop(&sorted[j..], e);
        (sorted.get(j) == Some(&e)).then_some(j)
    })
}

/// How many of `sorted` (ascending) are below `e`, found by galloping from the start: the
/// cost grows with the log of that count, so a merge of a few ids into many entities skips
/// ahead instead of walking every entity.
fn gallop(sorted: &[u32], e: u32) -> usize {
    let mut hi = 1;
    while hi < sorted.len() && sorted[hi - 1] < e {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(sorted.len());
    lo + sorted[lo..hi].partition_point(|&x| x < e)
}

enum Found<'a> {
    At(&'a Scanned, usize),
    NoRows,
}

/// A row filter as a postfix program over masks.
#[derive(Debug)]
enum Op<'n> {
    /// A tabulated part: its column, first raw value, the state of each raw value from
    /// there as bits (1 TRUE, 2 FALSE, 0 UNKNOWN), the state of a missing value.
    Part {
        col: usize,
        first: i64,
        codes: Vec<u64>,
        missing: Tri,
        node: &'n Node,
    },
    /// A part interpreted row by row.
    Rows(&'n Node),
    Not,
    And,
    Or,
}

fn program<'n>(filters: &'n RowFilters, table: usize, f: &'n Node, out: &mut Vec<Op<'n>>) {
    match f {
        Node::And(a, b) | Node::Or(a, b) => {
            let and = matches!(f, Node::And(..));
            let at = out.len();
            program(filters, table, a, out);
            let mid = out.len();
            program(filters, table, b, out);
            // Two tables of the same column (`month > x and month <= y`) become one: the
            // column is decoded and looked up once per window.
            if let (
                [
                    Op::Part {
                        col,
                        first,
                        codes: x,
                        missing: mx,
                        ..
                    },
                ],
                [
                    Op::Part {
                        col: col_b,
                        first: first_b,
                        codes: y,
                        missing: my,
                        ..
                    },
                ],
            ) = (&out[at..mid], &out[mid..])
                && col == col_b
                && first == first_b
                && x.len() == y.len()
            {
                let part = Op::Part {
                    col: *col,
                    first: *first,
                    codes: x.iter().zip(y).map(|(&x, &y)| combine(x, y, and)).collect(),
                    missing: if and { and3(*mx, *my) } else { or3(*mx, *my) },
                    node: f,
                };
                out.truncate(at);
                out.push(part);
                return;
            }
            out.push(if and { Op::And } else { Op::Or });
        }
        Node::Not(x) => {
            program(filters, table, x, out);
            // A table's negation is the table with TRUE and FALSE swapped.
            if let Some(Op::Part {
                codes,
                missing,
                node,
                ..
            }) = out.last_mut()
                && std::ptr::eq(*node, &**x)
            {
                codes
                    .iter_mut()
                    .for_each(|c| *c = (*c & 1) << 1 | (*c >> 1 & 1));
                *missing = not3(*missing);
                *node = f;
                return;
            }
            out.push(Op::Not);
        }
        _ => out.push(match filters.part(f, table) {
            Some((col, first, states, missing)) => Op::Part {
                col,
                first,
                codes: states.iter().map(|s| tri_bits(*s)).collect(),
                missing,
                node: f,
            },
            None => Op::Rows(f),
        }),
    }
}

/// Kleene's `and` (or `or`) of two states as bits.
fn combine(x: u64, y: u64, and: bool) -> u64 {
    if and {
        (x & y & 1) | ((x | y) & 2)
    } else {
        ((x | y) & 1) | (x & y & 2)
    }
}

/// A state as bits: 1 TRUE, 2 FALSE, 0 UNKNOWN.
fn tri_bits(s: Tri) -> u64 {
    match s {
        Tri::True => 1,
        Tri::False => 2,
        Tri::Unknown => 0,
    }
}

/// The masks of a tabulated part from its column's raw values (`present` as bits), branch
/// free: each value's state is `codes[raw - first]`. Returns whether some present value is
/// outside the table (left UNKNOWN for the caller to interpret).
fn states(
    raw: &[i64],
    present: &[u64],
    codes: &[u64],
    first: i64,
    missing: u64,
    m: &mut Masks,
) -> bool {
    let mut odd = 0u64;
    for (q, chunk) in raw.chunks(64).enumerate() {
        let p = present[q];
        let (mut t, mut f) = (0u64, 0u64);
        for (b, &r) in chunk.iter().enumerate() {
            let i = (r as u64).wrapping_sub(first as u64) as usize;
            // 4: outside the table.
            let c = codes.get(i).copied().unwrap_or(4);
            let c = if p >> b & 1 == 1 { c } else { missing };
            odd |= c;
            t |= (c & 1) << b;
            f |= (c >> 1 & 1) << b;
        }
        m.t[q] = t;
        m.f[q] = f;
    }
    odd & 4 != 0
}

/// The bits of rows `start..start + len` that are in `doubtful` (a table's doubtful rows).
pub(super) fn doubtful_words(doubtful: &RoaringBitmap, start: usize, len: usize, out: &mut [u64]) {
    out.fill(0);
    for r in doubtful.range(start as u32..(start + len) as u32) {
        let k = r as usize - start;
        out[k / 64] |= 1 << (k % 64);
    }
}

/// One column's raw values and its table's doubtful rows, decoded a window of rows at a time,
/// for a reader that walks rows mostly in ascending order (a parallel task's runs): each read
/// outside the window decodes the [`WINDOW`] rows from it, instead of one value at a time.
pub(super) struct RowWindow<'c, 's> {
    column: &'c Column<'s>,
    doubtful: &'c RoaringBitmap,
    /// Rows in the table.
    rows: usize,
    start: usize,
    len: usize,
    values: Vec<i64>,
    present: Vec<u64>,
    doubt: Vec<u64>,
}

impl<'c, 's> RowWindow<'c, 's> {
    pub(super) fn new(
        column: &'c Column<'s>,
        doubtful: &'c RoaringBitmap,
        rows: usize,
    ) -> RowWindow<'c, 's> {
        RowWindow {
            column,
            doubtful,
            rows,
            start: 0,
            len: 0,
            values: vec![0; WINDOW],
            present: vec![0; WINDOW / 64],
            doubt: vec![0; WINDOW / 64],
        }
    }

    /// `row`'s place in the window, decoding the window from it when it is outside; `None`
    /// past the table.
    fn at(&mut self, row: usize) -> Option<usize> {
        if row < self.start || row >= self.start + self.len {
            if row >= self.rows {
                return None;
            }
            (self.start, self.len) = (row, (self.rows - row).min(WINDOW));
            let (len, w) = (self.len, self.len.div_ceil(64));
            self.column
                .decode_raw(row, &mut self.values[..len], &mut self.present[..w]);
            doubtful_words(self.doubtful, row, len, &mut self.doubt);
        }
        Some(row - self.start)
    }

    /// The raw value of `row` (see [`Column::raw`]), if present.
    pub(super) fn value(&mut self, row: usize) -> Option<i64> {
        let k = self.at(row)?;
        (self.present[k / 64] >> (k % 64) & 1 == 1).then(|| self.values[k])
    }

    /// Whether `row`'s link to its entity is doubtful.
    pub(super) fn doubtful(&mut self, row: usize) -> bool {
        self.at(row)
            .is_some_and(|k| self.doubt[k / 64] >> (k % 64) & 1 == 1)
    }
}

/// TRUE and FALSE bits of a window's rows (neither: UNKNOWN).
#[derive(Debug, Clone)]
struct Masks {
    t: Vec<u64>,
    f: Vec<u64>,
}

impl Masks {
    fn new() -> Masks {
        Masks {
            t: vec![0; WINDOW / 64],
            f: vec![0; WINDOW / 64],
        }
    }

    fn clear(&mut self) {
        self.t.fill(0);
        self.f.fill(0);
    }

    #[inline]
    fn set(&mut self, k: usize, s: Tri) {
        let c = tri_bits(s);
        self.t[k / 64] |= (c & 1) << (k % 64);
        self.f[k / 64] |= (c >> 1) << (k % 64);
    }
}

/// How a folded column's raw values become numbers, as the interpreter reads them
/// (`eval::value_of`).
#[derive(Debug, Clone, Copy)]
enum Conv {
    /// Numbers: as stored, or divided (fen → yuan, thousandths → units).
    Num(Option<f64>),
    /// Dates (kind 1) and months (kind 2).
    Day(u8),
    /// Text and flags: no number (the row still counts as seen).
    Skip,
}

impl Conv {
    fn of(c: &ColRef<'_>) -> Conv {
        match c.ty {
            Ty::Str | Ty::Bool => Conv::Skip,
            Ty::Date => Conv::Day(1),
            Ty::Month => Conv::Day(2),
            Ty::Num | Ty::Offset => Conv::Num(match c.scale {
                Scale::One => None,
                Scale::Money => Some(100.0),
                Scale::Milli => Some(1000.0),
            }),
        }
    }
}

#[inline]
fn bit(words: &[u64], k: usize) -> bool {
    words[k / 64] >> (k % 64) & 1 == 1
}

/// Set bits of `words` in bit range `a..b`.
fn ones(words: &[u64], a: usize, b: usize) -> u64 {
    if a >= b {
        return 0;
    }
    let (wa, wb) = (a / 64, (b - 1) / 64);
    let lo_mask = u64::MAX << (a % 64);
    let hi_mask = u64::MAX >> (63 - (b - 1) % 64);
    if wa == wb {
        return u64::from((words[wa] & lo_mask & hi_mask).count_ones());
    }
    let mut n = u64::from((words[wa] & lo_mask).count_ones());
    n += words[wa + 1..wb]
        .iter()
        .map(|w| u64::from(w.count_ones()))
        .sum::<u64>();
    n + u64::from((words[wb] & hi_mask).count_ones())
}

/// One task's window: rows `start..start + len` decoded.
struct Window<'p, 'n> {
    start: usize,
    len: usize,
    /// The entity of each row (`u32::MAX` for rows between the task's runs).
    entity: Vec<u32>,
    doubtful: Vec<u64>,
    pass: Masks,
    /// Rows surely passing (TRUE and not doubtful).
    sure: Vec<u64>,
    values: Vec<i64>,
    present: Vec<u64>,
    raw: Vec<i64>,
    raw_present: Vec<u64>,
    stack: Vec<Masks>,
    pool: Vec<Masks>,
    program: &'p [Op<'n>],
}

impl<'p, 'n> Window<'p, 'n> {
    fn new(program: &'p [Op<'n>]) -> Self {
        Window {
            start: 0,
            len: 0,
            entity: vec![u32::MAX; WINDOW],
            doubtful: vec![0; WINDOW / 64],
            pass: Masks::new(),
            sure: vec![0; WINDOW / 64],
            values: vec![0; WINDOW],
            present: vec![0; WINDOW / 64],
            raw: vec![0; WINDOW],
            raw_present: vec![0; WINDOW / 64],
            stack: Vec::new(),
            pool: Vec::new(),
            program,
        }
    }

    /// Decodes rows `start..end` of the task's runs `runs` (ascending).
    fn fill(
        &mut self,
        ev: &Evaluator<'_, '_>,
        table: usize,
        value_col: Option<usize>,
        runs: &[(u32, Range<usize>)],
        start: usize,
        end: usize,
    ) {
        let env = ev.env;
        let t = &env.tables[table];
        let len = (end - start).min(WINDOW);
        let words = len.div_ceil(64);
        self.start = start;
        self.len = len;
        // Each row's entity, from the runs that overlap the window (interpreted parts read
        // it).
        if !self.program.is_empty() {
            self.entity[..len].fill(u32::MAX);
            let first = runs.partition_point(|(_, r)| r.end <= start);
            for (e, rows) in &runs[first..] {
                if rows.start >= start + len {
                    break;
                }
                let s = rows.start.max(start) - start;
                let u = rows.end.min(start + len) - start;
                self.entity[s..u].fill(*e);
            }
        }
        doubtful_words(&t.doubtful, start, len, &mut self.doubtful);
        if let Some(c) = value_col {
            env.cols[c].1.col.decode_raw(
                start,
                &mut self.values[..len],
                &mut self.present[..words],
            );
        }
        self.filter(ev, table, len);
        for w in 0..WINDOW / 64 {
            self.sure[w] = self.pass.t[w] & !self.doubtful[w];
        }
    }

    /// The filter's masks over the window, an operation at a time.
    fn filter(&mut self, ev: &Evaluator<'_, '_>, table: usize, len: usize) {
        let env = ev.env;
        let words = len.div_ceil(64);
        if self.program.is_empty() {
            self.pass.t.fill(u64::MAX);
            self.pass.f.fill(0);
            return;
        }
        for op in self.program {
            match op {
                Op::Part {
                    col,
                    first,
                    codes,
                    missing,
                    node,
                } => {
                    let mut m = self.pool.pop().unwrap_or_else(Masks::new);
                    m.clear();
                    let c = &env.cols[*col].1.col;
                    c.decode_raw(
                        self.start,
                        &mut self.raw[..len],
                        &mut self.raw_present[..words],
                    );
                    let odd = states(
                        &self.raw[..len],
                        &self.raw_present[..words],
                        codes,
                        *first,
                        tri_bits(*missing),
                        &mut m,
                    );
                    // Present values outside the table (not in a verified snapshot):
                    // interpreted.
                    if odd {
                        for k in 0..len {
                            let i = (self.raw[k] as u64).wrapping_sub(*first as u64);
                            if bit(&self.raw_present, k) && codes.get(i as usize).is_none() {
                                let s = self.interpret(ev, node, table, k);
                                m.set(k, s);
                            }
                        }
                    }
                    self.stack.push(m);
                }
                Op::Rows(node) => {
                    let mut m = self.pool.pop().unwrap_or_else(Masks::new);
                    m.clear();
                    for k in 0..len {
                        m.set(k, self.interpret(ev, node, table, k));
                    }
                    self.stack.push(m);
                }
                Op::Not => {
                    if let Some(m) = self.stack.last_mut() {
                        std::mem::swap(&mut m.t, &mut m.f);
                    }
                }
                Op::And | Op::Or => {
                    let (Some(b), Some(a)) = (self.stack.pop(), self.stack.last_mut()) else {
                        continue;
                    };
                    let and = matches!(op, Op::And);
                    for w in 0..a.t.len() {
                        if and {
                            a.t[w] &= b.t[w];
                            a.f[w] |= b.f[w];
                        } else {
                            a.t[w] |= b.t[w];
                            a.f[w] &= b.f[w];
                        }
                    }
                    self.pool.push(b);
                }
            }
        }
        if let Some(m) = self.stack.pop() {
            let old = std::mem::replace(&mut self.pass, m);
            self.pool.push(old);
        }
        while let Some(m) = self.stack.pop() {
            self.pool.push(m);
        }
    }

    fn interpret(&self, ev: &Evaluator<'_, '_>, node: &Node, table: usize, k: usize) -> Tri {
        match self.entity[k] {
            u32::MAX => Tri::Unknown,
            e => ev.tri(node, At::row(e, table, self.start + k), &mut NoTrace),
        }
    }

    /// Window rows `a..b` (one entity's) counted.
    fn count(&self, fold: &mut RowFold, a: usize, b: usize) {
        let sure = ones(&self.sure, a, b);
        let possible = (b - a) as u64 - ones(&self.pass.f, a, b);
        fold.count_many(sure, possible);
    }

    /// Window rows `a..b` (one entity's) folded, in row order.
    fn fold(&self, fold: &mut RowFold, a: usize, b: usize, conv: Conv) {
        if a < b {
            fold.touch();
        }
        if matches!(conv, Conv::Skip) {
            return;
        }
        for k in a..b {
            if bit(&self.pass.f, k) || !bit(&self.present, k) {
                continue;
            }
            let sure = bit(&self.sure, k);
            let raw = self.values[k];
            match conv {
                Conv::Num(None) => fold.add_value(sure, raw as f64, 0),
                Conv::Num(Some(d)) => fold.add_value(sure, raw as f64 / d, 0),
                Conv::Day(kind) => fold.add_value(sure, f64::from(raw as i32), kind),
                Conv::Skip => {}
            }
        }
    }
}

/// A count of rows whose filter is definite on one or two columns of small domains (a month
/// window, and an insurance type), from the table's [`Calendar`](super::calendar::Calendar): a popcount for each entity
/// the calendar describes, a scan of the others' rows. `None` when the filter has another
/// shape, a part is UNKNOWN for some value, no calendar fits, or it describes too few of the
/// entities to be worth it; also for a small scope (an amount's candidates), whose rows a
/// scan reads directly.
fn by_calendar(
    ev: &Evaluator<'_, '_>,
    filters: &RowFilters,
    table: usize,
    filter: &Node,
    scope: Option<&RoaringBitmap>,
) -> Option<Scanned> {
    let env = ev.env;
    let t = env.tables.get(table)?;
    if scope.is_some_and(|s| (s.len() as usize) < t.t.run_count() / 32) {
        return None;
    }
    let mut prog = Vec::new();
    program(filters, table, filter, &mut prog);
    // Definite: TRUE or FALSE for every value (a missing value makes its entity irregular).
    fn part<'a>(op: &'a Op<'_>) -> Option<(usize, i64, &'a [u64])> {
        match op {
            Op::Part {
                col, first, codes, ..
            } if codes.iter().all(|&c| c == 1 || c == 2) => Some((*col, *first, codes)),
            _ => None,
        }
    }
    let (bits, split) = match prog.as_slice() {
        [a] => (part(a)?, None),
        [a, b, Op::And] => {
            let (a, b) = (part(a)?, part(b)?);
            if a.0 == b.0 {
                return None;
            }
            // The wider domain is the bitset, the narrower one splits.
            if a.2.len() >= b.2.len() {
                (a, Some(b))
            } else {
                (b, Some(a))
            }
        }
        _ => return None,
    };
    let cal = env
        .calendars
        .get(env, table, bits.0, split.as_ref().map(|s| s.0))?;
    // Mostly irregular (a table with several rows per value): a scan is cheaper.
    if cal.irregular.len() * 4 > cal.with_rows() {
        return None;
    }
    // The parts' tables and the calendar both start at the columns' first raw values.
    if bits.1 != cal.bits_first
        || bits.2.len() != cal.bits
        || split
            .as_ref()
            .is_some_and(|s| s.1 != cal.split_first || s.2.len() != cal.splits)
    {
        return None;
    }
    let mut on = vec![0u64; cal.bits.div_ceil(64)];
    for (i, _) in bits.2.iter().enumerate().filter(|(_, c)| **c == 1) {
        on[i / 64] |= 1 << (i % 64);
    }
    let splits_on: Vec<usize> = match &split {
        Some(s) => (0..s.2.len()).filter(|&i| s.2[i] == 1).collect(),
        None => vec![0],
    };
    let counts = cal.counts(&on, &splits_on);
    let others = (!cal.irregular.is_empty()).then(|| {
        scan(
            ev,
            filters,
            table,
            What::Count,
            Some(filter),
            Some(&cal.irregular),
        )
    });
    // Both sides ascending by entity: merged.
    let (other_entities, other_counts): (&[u32], &[(u64, u64)]) = match &others {
        Some(Scanned {
            entities,
            values: Values::Counts(c),
            ..
        }) => (entities, c),
        _ => (&[], &[]),
    };
    let n = cal.entities.len() + other_entities.len();
    let (mut entities, mut values) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut i, mut j) = (0, 0);
    while i < cal.entities.len() || j < other_entities.len() {
        let take_cal = j >= other_entities.len()
            || (i < cal.entities.len() && cal.entities[i] < other_entities[j]);
        if take_cal {
            entities.push(cal.entities[i]);
            values.push((counts[i], counts[i]));
            i += 1;
        } else {
            entities.push(other_entities[j]);
            values.push(other_counts.get(j).copied().unwrap_or((0, 0)));
            j += 1;
        }
    }
    // Every entity with rows is answered, whatever the scope asked for.
    Some(Scanned::new(
        env,
        What::Count,
        table,
        None,
        entities,
        Values::Counts(values),
    ))
}

/// The runs of `runs` (in entity order) whose entity is in `scope`: the two merged, the
/// scope's iterator skipping ahead to each run's entity, instead of a lookup per run.
fn within<'a>(
    runs: impl Iterator<Item = (u32, Range<usize>)> + 'a,
    scope: &'a RoaringBitmap,
) -> impl Iterator<Item = (u32, Range<usize>)> + 'a {
    let mut ids = scope.iter();
    let mut next = ids.next();
    runs.filter(move |(e, _)| {
        if next.is_some_and(|x| x < *e) {
            ids.advance_to(*e);
            next = ids.next();
        }
        next == Some(*e)
    })
}

/// Parallel tasks over `runs`: consecutive runs of about the same number of rows, 64 or more
/// tasks when the table allows.
pub(super) fn tasks(runs: &[(u32, Range<usize>)]) -> Vec<Range<usize>> {
    let total: usize = runs.iter().map(|(_, r)| r.len()).sum();
    let task_rows = (total / 64).clamp(WINDOW, TASK_ROWS);
    let mut tasks = Vec::new();
    let (mut from, mut rows) = (0, 0);
    for (i, (_, r)) in runs.iter().enumerate() {
        rows += r.len();
        if rows >= task_rows {
            tasks.push(from..i + 1);
            (from, rows) = (i + 1, 0);
        }
    }
    if from < runs.len() {
        tasks.push(from..runs.len());
    }
    tasks
}

/// Scans `table` for one aggregate: every entity with rows (within `scope`) and its value.
fn scan(
    ev: &Evaluator<'_, '_>,
    filters: &RowFilters,
    table: usize,
    what: What,
    filter: Option<&Node>,
    scope: Option<&RoaringBitmap>,
) -> Scanned {
    let env = ev.env;
    let t = &env.tables[table];
    // A small scope (an amount's candidates) looks its entities up; a large one filters the
    // runs.
    let runs: Vec<(u32, Range<usize>)> = match scope {
        Some(s) if (s.len() as usize) < t.t.run_count() / 32 => s
            .iter()
            .map(|e| (e, t.t.rows_of(e)))
            .filter(|(_, rows)| !rows.is_empty())
            .collect(),
        _ => {
            let mut runs = Vec::with_capacity(t.t.run_count());
            let all = t.t.runs().filter(|(_, rows)| !rows.is_empty());
            match scope {
                None => runs.extend(all),
                Some(s) => runs.extend(within(all, s)),
            }
            runs
        }
    };
    let mut prog = Vec::new();
    if let Some(f) = filter {
        program(filters, table, f, &mut prog);
    }
    let tasks = tasks(&runs);
    let value_col = match what {
        What::Count => None,
        What::Fold(_, c) => Some(c),
    };
    let conv = value_col.map_or(Conv::Skip, |c| Conv::of(&env.cols[c].1));
    let parts: Vec<(Vec<u32>, Values)> = tasks
        .par_iter()
        .map(|task| {
            let runs = &runs[task.clone()];
            let end = runs.last().map_or(0, |r| r.1.end);
            let mut w = Window::new(&prog);
            let mut entities = Vec::with_capacity(runs.len());
            let mut counts = Vec::new();
            let mut folds = Vec::new();
            for (e, rows) in runs {
                let mut fold = RowFold::default();
                let mut r = rows.start;
                while r < rows.end {
                    if r < w.start || r >= w.start + w.len {
                        w.fill(ev, table, value_col, runs, r, end);
                    }
                    let to = rows.end.min(w.start + w.len);
                    let (a, b) = (r - w.start, to - w.start);
                    match what {
                        What::Count => w.count(&mut fold, a, b),
                        What::Fold(..) => w.fold(&mut fold, a, b, conv),
                    }
                    r = to;
                }
                entities.push(*e);
                match what {
                    What::Count => counts.push(fold.counts()),
                    What::Fold(agg, _) => {
                        folds.push(Kept::of(fold.finish(agg)).unwrap_or(Kept::Missing))
                    }
                }
            }
            let values = match what {
                What::Count => Values::Counts(counts),
                What::Fold(..) => Values::Folds(folds),
            };
            (entities, values)
        })
        .collect();
    let mut entities = Vec::with_capacity(runs.len());
    let mut values = match what {
        What::Count => Values::Counts(Vec::with_capacity(runs.len())),
        What::Fold(..) => Values::Folds(Vec::with_capacity(runs.len())),
    };
    for (e, v) in parts {
        entities.extend(e);
        match (&mut values, v) {
            (Values::Counts(a), Values::Counts(b)) => a.extend(b),
            (Values::Folds(a), Values::Folds(b)) => a.extend(b),
            _ => {}
        }
    }
    Scanned::new(env, what, table, scope.cloned(), entities, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn gallop_counts_what_is_below(
            mut sorted in proptest::collection::vec(0u32..1000, 0..300),
            e in 0u32..1100,
        ) {
            sorted.sort_unstable();
            proptest::prop_assert_eq!(gallop(&sorted, e), sorted.partition_point(|&x| x < e));
        }

        #[test]
        fn positions_are_those_a_binary_search_finds(
            mut sorted in proptest::collection::vec(0u32..1000, 0..300),
            mut ids in proptest::collection::vec(0u32..1100, 0..300),
        ) {
            sorted.sort_unstable();
            sorted.dedup();
            ids.sort_unstable();
            ids.dedup();
            let got: Vec<Option<usize>> = positions_in(&sorted, &ids).collect();
            let want: Vec<Option<usize>> =
                ids.iter().map(|e| sorted.binary_search(e).ok()).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }
}
