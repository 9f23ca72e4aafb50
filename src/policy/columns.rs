//! Columnar kernels for atoms, so that a changed threshold costs the values it reads, not an
//! interpretation per entity.
//!
//! - **Field columns.** A primary-row field of every entity, as a *rank* into the field's
//!   distinct `(value, link doubtful)` keys, each with a representative row. An atom that reads
//!   one field and constants (`age(GA.person.birth_date) >= 80`, `status in {…}`, `month(x + k
//!   years) < month(as_of)`) is evaluated once per distinct key — a few thousand evaluations at
//!   any city size, or a few dozen when the atom is a threshold (binary search over the sorted
//!   values) — and its entities are gathered from the ranks' lists. The same holds for an
//!   amount that reads one field (`band age(birth_date) {…}`).
//! - **Value columns.** The per-entity value of an expensive expression (a relation count, an
//!   aggregate over a table's rows), kept so that comparing it with a new constant (`count(…) >=
//!   min_hires`) is one pass over numbers, and an amount reading it reads the kept values.
//!
//! Both give exactly the interpreter's answer: each key is evaluated by the interpreter itself,
//! on a row that holds it (the property tests in `tests/policy.rs` compare every kernel with the
//! row-by-row oracle).

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::ast::Tri;
use super::dense::{self, BLOCK, Part, Parts, Span};
use super::eval::{At, Env, Evaluator, NO_ENTITY, NoTrace, Node, RowFilters, TableRef, V, Val};
use super::scan::{AggValues, RowWindow};
use crate::snapshot::column::Column;

/// An entity with no row in the field's table.
pub const NO_ROW: u32 = u32::MAX;

/// Entities per parallel task: one roaring container.
const CHUNK: usize = 1 << 16;

/// A primary-row field of every entity, by rank.
#[derive(Debug)]
pub struct FieldColumn {
    pub table: usize,
    pub col: usize,
    /// Each entity's rank (dense by entity id), or [`NO_ROW`].
    pub ranks: Vec<u32>,
    /// Per rank: a row holding the key, and whether the key is from a doubtful link.
    pub reps: Vec<(usize, bool)>,
    /// The ranks of sure, present values, in ascending value order (ranks of an int column
    /// follow its values; of a dictionary column, its sorted dictionary).
    pub sure: Vec<u32>,
    /// The other ranks (missing values, doubtful links), ascending.
    pub unsure: Vec<u32>,
    /// The entities of each rank, ascending: `entities[starts[r]..starts[r + 1]]`.
    pub entities: Vec<u32>,
    pub starts: Vec<u32>,
    /// Entities with a row in the table.
    pub with_rows: RoaringBitmap,
}

impl FieldColumn {
    /// Builds the column of `env.cols[col]` (a field of `env.tables[table]`); `None` for a
    /// free-text column (its distinct values are about as many as its rows).
    pub fn build(env: &Env<'_>, table: usize, col: usize) -> Option<FieldColumn> {
        let c = &env.cols.get(col)?.1.col;
        if !matches!(c.type_name(), "int" | "dict") {
            return None;
        }
        let t = env.tables.get(table)?;
        let n = env.snap.entity_count();
        let coding = Coding::of(c, t, n)?;
        // Each entity's bucket (NO_ROW: no rows), a chunk of entities at a time: only the
        // column's own arrays are written, no list of runs or of rows.
        let mut ranks = vec![NO_ROW; n];
        ranks
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, out)| {
                let mut w = RowWindow::new(c, &t.doubtful, t.t.info.rows);
                for_each_primary(t, &mut w, i * CHUNK, out.len(), |e, v, doubt| {
                    out[e - i * CHUNK] = coding.bucket(v, doubt);
                });
            });
        // Ranks are the non-empty buckets, in order.
        let mut next = vec![0u32; coding.buckets()];
        for &b in ranks.iter().filter(|&&b| b != NO_ROW) {
            next[b as usize] += 1;
        }
        let mut rank_of = vec![NO_ROW; next.len()];
        let mut starts = Vec::new();
        let mut listed = 0u32;
        for (b, count) in next.iter_mut().enumerate() {
            if *count > 0 {
                rank_of[b] = starts.len() as u32;
                starts.push(listed);
                (*count, listed) = (listed, listed + *count);
            }
        }
        starts.push(listed);
        // Each rank's entities in entity order, its first entity's primary row representing it.
        let mut reps = vec![(0usize, false); starts.len() - 1];
        let mut is_sure = vec![false; reps.len()];
        let mut entities = vec![0u32; listed as usize];
        for (e, slot) in ranks.iter_mut().enumerate() {
            let b = *slot;
            if b == NO_ROW {
                continue;
            }
            let r = rank_of[b as usize];
            let at = &mut next[b as usize];
            if *at == starts[r as usize] {
                let (row, _) =
                    primary_row(t.t.rows_of(e as u32), |x| t.doubtful.contains(x as u32));
                reps[r as usize] = (row, coding.doubtful(b));
                is_sure[r as usize] = coding.sure(b);
            }
            entities[*at as usize] = e as u32;
            *at += 1;
            *slot = r;
        }
        let (sure, unsure): (Vec<u32>, Vec<u32>) =
            (0..reps.len() as u32).partition(|&r| is_sure[r as usize]);
        let ids = (0..n as u32).filter(|&e| ranks[e as usize] != NO_ROW);
        let with_rows = RoaringBitmap::from_sorted_iter(ids).ok()?;
        Some(FieldColumn {
            table,
            col,
            ranks,
            reps,
            sure,
            unsure,
            entities,
            starts,
            with_rows,
        })
    }

    /// Where to evaluate an expression for rank `r`: on its representative row.
    fn at(&self, r: usize) -> At {
        let (row, doubt) = self.reps[r];
        At {
            row: Some((self.table, row)),
            row_doubt: doubt,
            ..At::entity(NO_ENTITY)
        }
    }

    /// The entities of rank `r`.
    fn of_rank(&self, r: usize) -> &[u32] {
        &self.entities[self.starts[r] as usize..self.starts[r + 1] as usize]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.ranks.len()
            + self.entities.len()
            + self.starts.len()
            + self.sure.len()
            + self.unsure.len())
            * 4
            + self.reps.len() * 16
            + self.with_rows.serialized_size()
    }
}

/// For each entity `first..first + len` with rows in `t`: its [primary row](primary_row)'s
/// value in `w`'s column and whether the row's link is doubtful.
fn for_each_primary(
    t: &TableRef<'_>,
    w: &mut RowWindow<'_, '_>,
    first: usize,
    len: usize,
    mut f: impl FnMut(usize, Option<i64>, bool),
) {
    if len == 0 {
        return;
    }
    for (e, rows) in t.t.runs_within(first as u32..=(first + len - 1) as u32) {
        let e = e as usize;
        if rows.is_empty() {
            continue;
        }
        let (row, doubt) = primary_row(rows, |r| w.doubtful(r));
        f(e, w.value(row), doubt);
    }
}

/// An entity's primary row among `rows` (not empty): the first whose link is not doubtful,
/// else the first; and whether it is doubtful.
fn primary_row(rows: Range<usize>, mut doubtful: impl FnMut(usize) -> bool) -> (usize, bool) {
    match rows.clone().find(|&r| !doubtful(r)) {
        Some(r) => (r, false),
        None => (rows.start, true),
    }
}

/// Buckets a counting sort may use, per entity (and at least this many): past it, the
/// column's distinct values are listed.
const BUCKETS_PER_ENTITY: u64 = 4;
const BUCKETS_MIN: u64 = 1 << 16;

/// How a field column's keys map to buckets that follow the order fields are ranked in: by
/// value, missing values last, doubtful links after sure ones at each value; one bucket per key.
#[derive(Debug, Clone, PartialEq)]
enum Coding {
    /// Values `lo..=lo + span`, a bucket each (empty ones too): dictionary codes, dates,
    /// regions: any column whose values' range is a few buckets per entity.
    Offset { lo: i64, span: u64 },
    /// The distinct values, ascending (amounts, whose range is wide).
    Distinct(Vec<i64>),
}

impl Coding {
    /// The coding of column `c` of `t`: by the column's range, or by the distinct values of
    /// its primary rows when the range is too wide. `None` if the column has no range (free
    /// text).
    fn of(c: &Column<'_>, t: &TableRef<'_>, n: usize) -> Option<Coding> {
        let (lo, count) = c.raw_domain()?;
        let limit = (t.t.run_count() as u64 * BUCKETS_PER_ENTITY).max(BUCKETS_MIN);
        if count
            .checked_add(1)
            .and_then(|k| k.checked_mul(2))
            .is_some_and(|b| b <= limit)
        {
            return Some(Coding::Offset {
                lo,
                span: count.saturating_sub(1),
            });
        }
        let chunks: Vec<Vec<i64>> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|i| {
                let mut w = RowWindow::new(c, &t.doubtful, t.t.info.rows);
                let mut values = Vec::new();
                let len = CHUNK.min(n - i * CHUNK);
                for_each_primary(t, &mut w, i * CHUNK, len, |_, v, _| values.extend(v));
                values.sort_unstable();
                values.dedup();
                values
            })
            .collect();
        let mut values = chunks.concat();
        values.par_sort_unstable();
        values.dedup();
        Some(Coding::Distinct(values))
    }

    /// The values' count: the missing values' place.
    fn missing(&self) -> u64 {
        match self {
            Coding::Offset { span, .. } => span + 1,
            Coding::Distinct(values) => values.len() as u64,
        }
    }

    fn buckets(&self) -> usize {
        (2 * (self.missing() + 1)) as usize
    }

    /// The bucket of a value (a missing one: `None`), sure or doubtful.
    fn bucket(&self, v: Option<i64>, doubt: bool) -> u32 {
        let at = match (self, v) {
            (Coding::Offset { lo, span }, Some(v)) => (v.wrapping_sub(*lo) as u64).min(*span),
            (Coding::Distinct(values), Some(v)) => match values.binary_search(&v) {
                Ok(i) => i as u64,
                // Not among the values listed (they were read from these rows): missing.
                Err(_) => self.missing(),
            },
            (_, None) => self.missing(),
        };
        (2 * at + u64::from(doubt)) as u32
    }

    fn doubtful(&self, bucket: u32) -> bool {
        bucket % 2 == 1
    }

    /// Whether a bucket's key is a present value from a sure link.
    fn sure(&self, bucket: u32) -> bool {
        !self.doubtful(bucket) && u64::from(bucket / 2) < self.missing()
    }
}

/// The one field `(table, col)` a node reads from primary rows, when it reads exactly one and
/// nothing else that depends on the entity (no rows of other tables, relations or policies).
pub fn single_field(n: &Node) -> Option<(usize, usize)> {
    reads(n).flatten()
}

/// Whether `n` reads nothing of the entity (a constant, maybe not folded: `month(as_of)`).
pub fn constant(n: &Node) -> bool {
    matches!(reads(n), Some(None))
}

/// What a node reads: `Some(None)` nothing, `Some(Some(field))` one field of primary rows,
/// `None` anything else.
fn reads(n: &Node) -> Option<Option<(usize, usize)>> {
    fn walk(n: &Node, f: &mut Option<(usize, usize)>) -> bool {
        let note = |x: (usize, usize), f: &mut Option<(usize, usize)>| match f {
            Some(y) if *y != x => false,
            _ => {
                *f = Some(x);
                true
            }
        };
        match n {
            Node::Field { table, col } | Node::DictIn { table, col, .. } => note((*table, *col), f),
            Node::TableAgg { .. } | Node::RelAgg { .. } | Node::Policy(_) => false,
            Node::Const(_) => true,
            Node::Not(x) | Node::Neg(x) | Node::Offset(x, _) => walk(x, f),
            Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
                walk(a, f) && walk(b, f)
            }
            Node::InSet(x, items) => walk(x, f) && items.iter().all(|i| walk(i, f)),
            Node::InRange(x, lo, hi) => {
                walk(x, f) && [lo, hi].into_iter().flatten().all(|b| walk(b, f))
            }
            Node::Call(_, args) => args.iter().all(|a| walk(a, f)),
            Node::If(c, a, b) => walk(c, f) && walk(a, f) && walk(b, f),
            Node::Band { of, arms } => walk(of, f) && arms.iter().all(|a| walk(&a.2, f)),
        }
    }
    let mut f = None;
    walk(n, &mut f).then_some(f)
}

fn tri_code(t: Tri) -> u8 {
    match t {
        Tri::False => 0,
        Tri::True => 1,
        Tri::Unknown => 2,
    }
}

/// Splits `ids` (ascending) into TRUE and UNKNOWN sets by `state(entity)` (a [`tri_code`]),
/// in parallel.
fn split(ids: &[u32], state: impl Fn(usize, u32) -> u8 + Sync) -> (RoaringBitmap, RoaringBitmap) {
    let parts: Vec<(Vec<u32>, Vec<u32>)> = ids
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(ci, chunk)| {
            let (mut t, mut u) = (Vec::new(), Vec::new());
            for (i, &e) in chunk.iter().enumerate() {
                match state(ci * CHUNK + i, e) {
                    1 => t.push(e),
                    2 => u.push(e),
                    _ => {}
                }
            }
            (t, u)
        })
        .collect();
    let (mut t, mut u) = (RoaringBitmap::new(), RoaringBitmap::new());
    for (pt, pu) in parts {
        // Chunks are in ascending entity order.
        let _ = t.append(pt);
        let _ = u.append(pu);
    }
    (t, u)
}

/// Splits `ids` (ascending) into TRUE and UNKNOWN sets by `state(index, entity)`, in
/// parallel.
pub(super) fn split_tri(
    ids: &[u32],
    state: impl Fn(usize, u32) -> Tri + Sync,
) -> (RoaringBitmap, RoaringBitmap) {
    split(ids, |i, e| tri_code(state(i, e)))
}

/// A field atom's TRUE and UNKNOWN sets within a universe, as the parts combining reads
/// ([`Parts`], within the universe's words); roaring sets are read back from them on demand.
#[derive(Debug)]
pub struct AtomSets {
    pub t_parts: Parts,
    /// TRUE or UNKNOWN; `None` when nothing is UNKNOWN.
    pub p_parts: Option<Parts>,
}

/// TRUE and UNKNOWN entities of `universe` for an atom reading only the field of `fc`.
///
/// The atom is evaluated per rank (by runs of values when it is a threshold); then the
/// entities of the two smaller classes (of FALSE, TRUE, UNKNOWN) are gathered as words over
/// the universe's span (`Within::class_bits`) and the largest is the rest, so a selective
/// threshold costs its result, not the city. The classes' words are read out a block at a
/// time, in parallel, into the condition's parts.
///
/// `universe_words` are the universe's words over `span`, the containers from its least to
/// its greatest id ([`dense::words`]); `within` is the column's within that universe.
pub fn field_atom(
    env: &Env<'_>,
    atom: &Node,
    fc: &FieldColumn,
    within: &Within,
    universe_words: &[u64],
    span: Span,
) -> AtomSets {
    let ev = Evaluator::new(env);
    let table = threshold_table(&ev, atom, fc).unwrap_or_else(|| {
        (0..fc.reps.len())
            .into_par_iter()
            .with_min_len(1024)
            .map(|r| tri_code(ev.tri(atom, fc.at(r), &mut NoTrace)))
            .collect()
    });
    let no_row = tri_code(ev.tri(atom, At::entity(NO_ENTITY), &mut NoTrace));
    // Entities per class (FALSE, TRUE, UNKNOWN) among those with rows.
    let mut count = [0usize; 3];
    for (r, &t) in table.iter().enumerate() {
        count[t as usize] += fc.of_rank(r).len();
    }
    // The two smaller classes are gathered, the largest is the rest.
    let largest = (0..3u8).max_by_key(|&c| count[c as usize]).unwrap_or(0);
    let gathered: [Option<ClassBits<'_>>; 3] = std::array::from_fn(|c| {
        let c = c as u8;
        (c != largest && count[c as usize] > 0).then(|| within.class_bits(fc, &table, c, span))
    });
    read_out(&gathered, largest, no_row, within, universe_words, span)
}

/// The TRUE and TRUE-or-UNKNOWN parts from the classes' bits (`gathered`, all but the
/// `largest` class's), the rest of the column's entities being the largest class and those
/// without a row `no_row`'s, within the universe's words `x`.
fn read_out(
    gathered: &[Option<ClassBits<'_>>; 3],
    largest: u8,
    no_row: u8,
    within: &Within,
    x: &[u64],
    span: Span,
) -> AtomSets {
    fn at(w: &[u64], b: usize) -> &[u64; BLOCK] {
        &w.as_chunks().0[b]
    }
    let block = |b: usize| {
        let at = |w| at(w, b);
        let x = at(x);
        let wr = at(&within.with_words);
        // Each gathered class's words in the block.
        let mut words = [[0u64; BLOCK]; 2];
        let mut slot = [None; 3];
        let classes = gathered
            .iter()
            .enumerate()
            .filter_map(|(c, g)| Some((c, g.as_ref()?)));
        for ((c, bits), w) in classes.zip(words.iter_mut()) {
            bits.block_into(b, w);
            slot[c] = Some(&*w);
        }
        let word = |c: Option<&[u64; BLOCK]>, i: usize| c.map_or(0, |w| w[i]);
        let [g0, g1, g2] = slot;
        let (mut t, mut u) = ([0u64; BLOCK], [0u64; BLOCK]);
        for i in 0..BLOCK {
            let (ti, ui) = match largest {
                0 => (word(g1, i) & x[i], word(g2, i) & x[i]),
                1 => {
                    let ui = word(g2, i) & x[i];
                    (wr[i] & !word(g0, i) & !ui, ui)
                }
                _ => {
                    let ti = word(g1, i) & x[i];
                    (ti, wr[i] & !word(g0, i) & !ti)
                }
            };
            let without = x[i] & !wr[i];
            t[i] = ti | if no_row == 1 { without } else { 0 };
            u[i] = ui | if no_row == 2 { without } else { 0 };
        }
        let (t_part, t_count) = Part::of(&t, x);
        let u_count: u32 = u.iter().map(|w| w.count_ones()).sum();
        // TRUE or UNKNOWN: `u` becomes it.
        let p = (u_count > 0).then(|| {
            u.iter_mut().zip(t.iter()).for_each(|(u, t)| *u |= t);
            Part::of(&u, x)
        });
        ((t_part, t_count), p, u_count)
    };
    let blocks: Vec<_> = (0..span.count).into_par_iter().map(block).collect();
    let any_unknown = blocks.iter().any(|b| b.2 > 0);
    let mut t_parts = Parts {
        parts: Vec::with_capacity(span.count),
        counts: Vec::with_capacity(span.count),
    };
    let mut p_parts = any_unknown.then(|| t_parts.clone());
    for ((t_part, t_count), p, u_count) in blocks {
        if let Some(pp) = &mut p_parts {
            let (p_part, p_count) = p.unwrap_or_else(|| (t_part.clone(), t_count));
            debug_assert_eq!(p_count, t_count + u_count);
            pp.parts.push(p_part);
            pp.counts.push(p_count);
        }
        t_parts.parts.push(t_part);
        t_parts.counts.push(t_count);
    }
    AtomSets { t_parts, p_parts }
}

/// A field column's entities within one universe, as words over the universe's span: those
/// with a row in its table (those without are the rest of the universe), and, once the
/// column's values are thresholded again and again, checkpoints of its sorted values. The
/// same for every atom on the field, so the engine keeps them per column and subject kind.
#[derive(Debug)]
pub struct Within {
    /// Entities of the universe with a row.
    with_words: Vec<u64>,
    /// Large classes gathered so far, until the checkpoints are built.
    large: AtomicU32,
    checkpoints: OnceLock<Checkpoints>,
    /// Bytes all columns' checkpoints may still take (shared by the engine's columns).
    budget: Arc<AtomicUsize>,
}

/// Bytes the checkpoints of all of an engine's columns take at most (about eleven columns'
/// over the persons of the 7.8M-person city); past it, classes are listed.
pub const CHECKPOINT_BUDGET: usize = 512 << 20;

/// The large class gathered that builds a column's checkpoints: the second, so that a
/// catalogue's one threshold on a column does not build them and an analyst's next does.
/// Debug builds (the tests') build them at the first.
const CHECKPOINT_AT: u32 = if cfg!(debug_assertions) { 1 } else { 2 };

/// Checkpoints a column's sure values are cut into, by entities (each a bit per id of the
/// universe's span: 46 MB in all for the persons of the 7.8M-person city).
const CHECKPOINTS: usize = if cfg!(debug_assertions) { 4 } else { 32 };

/// Prefixes of a field column's sure values, in ascending value order: the entities of
/// `sure[..at[k]]` as words over a span, at positions cut into about equal numbers of
/// entities. A class that is a few runs of values (a threshold's TRUE: `sure[i..]`) is the
/// XOR of the prefixes at its ends; each prefix is its nearest checkpoint's words with the
/// entities in between toggled, so that a new threshold costs reading the words and
/// listing a 64th of the column's entities at most, not all the class's entities.
#[derive(Debug)]
struct Checkpoints {
    /// Entities of `sure[..i]`, for `i` in `0..=sure.len()`.
    before: Vec<u32>,
    /// Positions in `sure`, ascending, from 0 to `sure.len()`.
    at: Vec<usize>,
    /// The words of each position's prefix (empty for position 0).
    words: Vec<Vec<u64>>,
}

impl Checkpoints {
    fn build(fc: &FieldColumn, span: Span) -> Checkpoints {
        let mut before = Vec::with_capacity(fc.sure.len() + 1);
        let mut n = 0u32;
        before.push(0);
        for &r in &fc.sure {
            n += fc.of_rank(r as usize).len() as u32;
            before.push(n);
        }
        let step = (n as usize).div_ceil(CHECKPOINTS).max(1);
        let mut at = vec![0];
        let mut words = vec![Vec::new()];
        let mut cur = vec![0u64; span.words()];
        let first = (span.first as usize) << 16;
        for (i, &r) in fc.sure.iter().enumerate() {
            if before[i] as usize >= at.len() * step && i > 0 {
                at.push(i);
                words.push(cur.clone());
            }
            toggle(&mut cur, first, fc.of_rank(r as usize));
        }
        // The whole column (every checkpoint above lies below it).
        at.push(fc.sure.len());
        words.push(cur);
        Checkpoints { before, at, words }
    }

    /// The checkpoint nearest position `x` by entities.
    fn nearest(&self, x: usize) -> usize {
        let e = self.before[x];
        let k = self.at.partition_point(|&a| self.before[a] <= e);
        let below = k.saturating_sub(1);
        match self.at.get(k) {
            Some(&a) if self.before[a] - e < e - self.before[self.at[below]] => k,
            _ => below,
        }
    }

    fn bytes(&self) -> usize {
        4 * self.before.len()
            + 8 * self.at.len()
            + self.words.iter().map(|w| 8 * w.len()).sum::<usize>()
    }
}

/// Flips the bits of `ids` in `words` (whose bit 0 is id `first`); ids outside are skipped.
fn toggle(words: &mut [u64], first: usize, ids: &[u32]) {
    for &e in ids {
        if let Some(w) = (e as usize)
            .checked_sub(first)
            .and_then(|i| words.get_mut(i >> 6))
        {
            *w ^= 1 << (e & 63);
        }
    }
}

impl Within {
    /// The column's entities within `universe` (over its `span`); its checkpoints, when
    /// built, are taken out of `budget` (bytes that all columns' checkpoints may still take).
    pub fn of(
        fc: &FieldColumn,
        universe: &RoaringBitmap,
        span: Span,
        budget: Arc<AtomicUsize>,
    ) -> Within {
        Within {
            with_words: dense::words(&(&fc.with_rows & universe), span),
            large: AtomicU32::new(0),
            checkpoints: OnceLock::new(),
            budget,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        8 * self.with_words.len() + self.checkpoints.get().map_or(0, Checkpoints::bytes)
    }

    /// Whether the budget has room for this column's checkpoints over `span`, taking it if
    /// so; without room, its classes are listed as before.
    fn take_from_budget(&self, span: Span) -> bool {
        let need = CHECKPOINTS * span.words() * 8;
        self.budget
            .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |left| {
                left.checked_sub(need)
            })
            .is_ok()
    }

    /// The entities in the ranks of `class` in `table`, over `span` (some may lie outside
    /// the universe).
    ///
    /// From the checkpoints when the class's sure ranks are a few runs and that costs less
    /// than listing its entities; else listed by block, split between two threads when there
    /// are many.
    fn class_bits<'a>(
        &'a self,
        fc: &FieldColumn,
        table: &[u8],
        class: u8,
        span: Span,
    ) -> ClassBits<'a> {
        let ranks: Vec<usize> = (0..table.len()).filter(|&r| table[r] == class).collect();
        let total: usize = ranks.iter().map(|&r| fc.of_rank(r).len()).sum();
        if total > span.words() || cfg!(debug_assertions) {
            let checkpoints = match self.checkpoints.get() {
                Some(c) => Some(c),
                None if self.large.fetch_add(1, AtomicOrdering::Relaxed) + 1 == CHECKPOINT_AT
                    && self.take_from_budget(span) =>
                {
                    Some(
                        self.checkpoints
                            .get_or_init(|| Checkpoints::build(fc, span)),
                    )
                }
                None => None,
            };
            if let Some(Toggled { words, ranks, n }) =
                checkpoints.and_then(|c| from_checkpoints(c, fc, table, class, total, span))
            {
                let lists = listed(fc, &ranks, n, span);
                return ClassBits { words, lists };
            }
        }
        ClassBits {
            words: Vec::new(),
            lists: listed(fc, &ranks, total, span),
        }
    }
}

/// The entities of `ranks` (`n` of them) listed by block of `span`, split between two
/// threads when there are many.
fn listed(fc: &FieldColumn, ranks: &[usize], n: usize, span: Span) -> Vec<ByBlock> {
    let list = |ranks: &[usize]| ByBlock::of(ranks.iter().map(|&r| fc.of_rank(r)), span);
    if n > GATHER_SPLIT {
        // Halves by entities, not ranks.
        let mut seen = 0;
        let half = ranks
            .iter()
            .position(|&r| {
                seen += fc.of_rank(r).len();
                seen * 2 >= n
            })
            .map_or(ranks.len(), |i| i + 1);
        let (a, b) = rayon::join(|| list(&ranks[..half]), || list(&ranks[half..]));
        vec![a, b]
    } else {
        vec![list(ranks)]
    }
}

/// A class's entities over a span: the XOR of a few checkpoints' words and of ids listed by
/// block, so that a block's bits are put together in a block-sized buffer (within a core's
/// L1) as it is read out, with no words over the whole span written.
struct ClassBits<'a> {
    words: Vec<&'a [u64]>,
    lists: Vec<ByBlock>,
}

impl ClassBits<'_> {
    /// Block `b`'s words into `out`.
    fn block_into(&self, b: usize, out: &mut [u64; BLOCK]) {
        match self.words.as_slice() {
            [] => out.fill(0),
            [first, rest @ ..] => {
                out.copy_from_slice(&first[b * BLOCK..(b + 1) * BLOCK]);
                for w in rest {
                    for (o, w) in out.iter_mut().zip(&w[b * BLOCK..(b + 1) * BLOCK]) {
                        *o ^= w;
                    }
                }
            }
        }
        for list in &self.lists {
            for &o in list.block(b) {
                let (i, m) = dense::bit(o);
                out[i] ^= m;
            }
        }
    }
}

/// Ids within a span, listed by block: block `b`'s offsets are `offs[starts[b]..starts[b +
/// 1]]`.
struct ByBlock {
    starts: Vec<u32>,
    offs: Vec<u16>,
}

impl ByBlock {
    /// The ids of `lists` within `span` (others are left out), in two passes: counted per
    /// block, then placed.
    fn of<'a>(lists: impl Iterator<Item = &'a [u32]> + Clone, span: Span) -> ByBlock {
        let block = |e: u32| {
            ((e >> 16) as usize)
                .checked_sub(span.first as usize)
                .filter(|&b| b < span.count)
        };
        let mut starts = vec![0u32; span.count + 1];
        // Internal iteration (`for_each`): a chain of flattened lists is walked list by
        // list, not through the chain's state at every id.
        lists.clone().flatten().for_each(|&e| {
            if let Some(b) = block(e) {
                starts[b + 1] += 1;
            }
        });
        for b in 0..span.count {
            starts[b + 1] += starts[b];
        }
        let mut next = starts.clone();
        let mut offs = vec![0u16; starts[span.count] as usize];
        lists.flatten().for_each(|&e| {
            if let Some(b) = block(e) {
                offs[next[b] as usize] = e as u16;
                next[b] += 1;
            }
        });
        ByBlock { starts, offs }
    }

    fn block(&self, b: usize) -> &[u16] {
        &self.offs[self.starts[b] as usize..self.starts[b + 1] as usize]
    }
}

/// The class from the checkpoints (see [`Checkpoints`]). `None` when its sure ranks are more
/// than two runs or listing its `total` entities costs less.
fn from_checkpoints<'a>(
    c: &'a Checkpoints,
    fc: &FieldColumn,
    table: &[u8],
    class: u8,
    total: usize,
    span: Span,
) -> Option<Toggled<'a>> {
    // Where membership flips along the sure ranks: the class is the XOR of those prefixes.
    let mut ends = Vec::new();
    let mut inside = false;
    for (i, &r) in fc.sure.iter().enumerate() {
        if (table[r as usize] == class) != inside {
            inside = !inside;
            ends.push(i);
            if ends.len() > 4 {
                return None;
            }
        }
    }
    if inside {
        ends.push(fc.sure.len());
    }
    let nearest: Vec<usize> = ends.iter().map(|&x| c.nearest(x)).collect();
    let toggled: usize = ends
        .iter()
        .zip(&nearest)
        .map(|(&x, &k)| c.before[x].abs_diff(c.before[c.at[k]]) as usize)
        .sum();
    let words: Vec<&[u64]> = nearest
        .iter()
        .map(|&k| c.words[k].as_slice())
        .filter(|w| !w.is_empty())
        .collect();
    // A word read costs about an eighth of an entity listed.
    if words.len() * span.words() / 8 + toggled >= total && !cfg!(debug_assertions) {
        return None;
    }
    // Between each end and its checkpoint, and the class's missing values and doubtful links.
    let ranks: Vec<usize> = ends
        .iter()
        .zip(&nearest)
        .flat_map(|(&x, &k)| fc.sure[x.min(c.at[k])..x.max(c.at[k])].iter())
        .chain(fc.unsure.iter().filter(|&&r| table[r as usize] == class))
        .map(|&r| r as usize)
        .collect();
    let n = ranks.iter().map(|&r| fc.of_rank(r).len()).sum();
    Some(Toggled { words, ranks, n })
}

/// A class from the checkpoints: their words to XOR, and the ranks whose entities (`n`) are
/// toggled.
struct Toggled<'a> {
    words: Vec<&'a [u64]>,
    ranks: Vec<usize>,
    n: usize,
}

/// Ranks' entities listed by one thread at most; more are split between two. Debug builds
/// (the tests') split small classes too, so that the tests' small cities take both paths.
const GATHER_SPLIT: usize = if cfg!(debug_assertions) { 4 } else { 1 << 16 };

/// Direction of an expression in its one field, over present values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Flat,
    Up,
    Down,
}

impl Dir {
    fn flip(self) -> Dir {
        match self {
            Dir::Up => Dir::Down,
            Dir::Down => Dir::Up,
            Dir::Flat => Dir::Flat,
        }
    }

    /// The direction of a sum of two expressions.
    fn plus(self, o: Dir) -> Option<Dir> {
        match (self, o) {
            (Dir::Flat, d) | (d, Dir::Flat) => Some(d),
            (a, b) if a == b => Some(a),
            _ => None,
        }
    }
}

/// Whether `n` is monotone (non-decreasing or non-increasing) in the field it reads, as far as
/// its structure shows: sums and differences, multiplication and division by constants,
/// offsets, `age`, `year`, `month`, rounding, `min` and `max`.
fn direction(n: &Node) -> Option<Dir> {
    use super::ast::{ArithOp, Func};
    let constant = |n: &Node| match n {
        Node::Const(super::eval::ConstVal::Num(k)) => Some(*k),
        _ => None,
    };
    match n {
        Node::Field { .. } => Some(Dir::Up),
        Node::Const(_) => Some(Dir::Flat),
        Node::Offset(x, _) => (direction(x)? == Dir::Flat).then_some(Dir::Flat),
        Node::Neg(x) => Some(direction(x)?.flip()),
        Node::Arith(ArithOp::Add, a, b) => direction(a)?.plus(direction(b)?),
        Node::Arith(ArithOp::Sub, a, b) => direction(a)?.plus(direction(b)?.flip()),
        Node::Arith(ArithOp::Mul, a, b) => {
            let (x, k) = match (constant(a), constant(b)) {
                (_, Some(k)) => (a, k),
                (Some(k), _) => (b, k),
                _ => return None,
            };
            let d = direction(x)?;
            Some(if k > 0.0 {
                d
            } else if k < 0.0 {
                d.flip()
            } else {
                Dir::Flat
            })
        }
        Node::Arith(ArithOp::Div, a, b) => match constant(b) {
            Some(k) if k > 0.0 => direction(a),
            Some(k) if k < 0.0 => Some(direction(a)?.flip()),
            _ => None,
        },
        Node::Call(f, args) => match (f, args.as_slice()) {
            // Older birth dates, higher ages.
            (Func::Age, [x]) => Some(direction(x)?.flip()),
            (Func::Year | Func::Month | Func::Round | Func::Floor | Func::Ceil, [x]) => {
                direction(x)
            }
            (Func::Min | Func::Max, [a, b]) => direction(a)?.plus(direction(b)?),
            _ => None,
        },
        _ => None,
    }
}

/// The truth table of an atom that compares a monotone expression of the field with
/// constants (`age(birth_date) >= 80`, `month(birth_date + 80 years) < month(as_of)`, `x in lo
/// .. hi`, `x in {…}`): over the sorted present values, the expression's order against each
/// constant changes at most twice, found by binary search, so the atom is evaluated once per
/// run of values instead of once per value. Missing values and doubtful links are evaluated
/// one by one. `None` when the atom has another shape or a value does not compare.
fn threshold_table(ev: &Evaluator<'_, '_>, atom: &Node, fc: &FieldColumn) -> Option<Vec<u8>> {
    use std::cell::Cell;
    use std::cmp::Ordering;
    // Small columns gain nothing.
    if fc.sure.len() < 64 {
        return None;
    }
    let (x, consts): (&Node, Vec<&Node>) = match atom {
        Node::Cmp(_, a, b) if constant(b) => (a, vec![b]),
        Node::Cmp(_, a, b) if constant(a) => (b, vec![a]),
        Node::InRange(x, lo, hi) => {
            let bounds: Vec<&Node> = [lo, hi].into_iter().flatten().map(|b| &**b).collect();
            (x, bounds)
        }
        Node::InSet(x, items) => (x, items.iter().collect()),
        _ => return None,
    };
    if !consts.iter().all(|k| constant(k)) {
        return None;
    }
    let dir = direction(x)?;
    if dir == Dir::Flat {
        return None;
    }
    let nowhere = At::entity(NO_ENTITY);
    let failed = Cell::new(false);
    // The expression's order against `k` at the i-th present value.
    let order = |i: usize, k: V<'_>| -> Ordering {
        let v = ev.val(x, fc.at(fc.sure[i] as usize), &mut NoTrace).v;
        let exact = match v {
            V::Num(l, h) => l == h,
            V::Date(_) | V::Month(_) | V::Str(_) | V::Bool(_) => true,
            _ => false,
        };
        let is = |op| super::eval::compare(op, v, k) == Tri::True;
        use super::ast::CmpOp;
        if exact && is(CmpOp::Lt) {
            Ordering::Less
        } else if exact && is(CmpOp::Gt) {
            Ordering::Greater
        } else if exact && is(CmpOp::Eq) {
            Ordering::Equal
        } else {
            failed.set(true);
            Ordering::Equal
        }
    };
    let n = fc.sure.len();
    let mut cuts = vec![0, n];
    for k in consts {
        let k = ev.val(k, nowhere, &mut NoTrace).v;
        let (first, last) = match dir {
            Dir::Up => (Ordering::Less, Ordering::Greater),
            _ => (Ordering::Greater, Ordering::Less),
        };
        cuts.push(partition_point(n, |i| order(i, k) == first));
        cuts.push(partition_point(n, |i| order(i, k) != last));
    }
    if failed.get() {
        return None;
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut table = vec![0u8; fc.reps.len()];
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Within a run every value orders alike against every constant: the atom agrees at
        // both ends (checked) and so in between.
        let at = |i: usize| tri_code(ev.tri(atom, fc.at(fc.sure[i] as usize), &mut NoTrace));
        let t = at(a);
        if at(b - 1) != t {
            return None;
        }
        for &r in &fc.sure[a..b] {
            table[r as usize] = t;
        }
    }
    // Missing values and doubtful links, one by one.
    for &r in &fc.unsure {
        table[r as usize] = tri_code(ev.tri(atom, fc.at(r as usize), &mut NoTrace));
    }
    Some(table)
}

/// The first `i` in `0..n` where `pred` turns false (`pred` holds on a prefix).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// A single-field numeric expression (an amount) evaluated for every rank of its field:
/// `None` where it is missing or not an exact number.
///
/// When the expression takes few distinct values (a band: 50, 100, 300), each entity's value
/// is also kept as a one-byte code into them, so that a total over candidates reads a byte
/// per candidate, not the field's four-byte rank and then the rank's value. With only a
/// few codes, a block of candidates in words is tallied with the entities of each code kept
/// as words too (`CodeMasks`): an AND and a population count a word, no read per
/// candidate.
#[derive(Debug)]
pub struct RankValues {
    per_rank: Vec<Option<f64>>,
    no_row: Option<f64>,
    /// Per entity, its value's index in `values`, or [`NO_VALUE`].
    codes: Option<Vec<u8>>,
    values: Vec<f64>,
    /// Built when a block of words is first tallied.
    masks: OnceLock<Option<CodeMasks>>,
}

/// The entities of each value code but the commonest, as words over all entity ids (bit
/// `e % 64` of word `e / 64`); the commonest code's count is the rest of a block's.
#[derive(Debug)]
struct CodeMasks {
    common: u8,
    masks: Vec<(u8, Vec<u64>)>,
}

/// Codes are kept as words when there are at most this many besides the commonest.
const MASKED_MAX: usize = 8;

impl CodeMasks {
    fn build(codes: &[u8]) -> Option<CodeMasks> {
        let per_code = codes
            .par_chunks(1 << 16)
            .fold(
                || vec![0u64; 256],
                |mut n, chunk| {
                    chunk.iter().for_each(|&c| n[usize::from(c)] += 1);
                    n
                },
            )
            .reduce(
                || vec![0u64; 256],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        let common = (0..=u8::MAX).max_by_key(|&c| per_code[usize::from(c)])?;
        let others: Vec<u8> = (0..=u8::MAX)
            .filter(|&c| c != common && per_code[usize::from(c)] > 0)
            .collect();
        if others.len() > MASKED_MAX {
            return None;
        }
        let masks = others
            .into_iter()
            .map(|code| {
                let words = codes
                    .par_chunks(64)
                    .map(|chunk| {
                        chunk
                            .iter()
                            .enumerate()
                            .filter(|&(_, &c)| c == code)
                            .fold(0u64, |w, (j, _)| w | 1 << j)
                    })
                    .collect();
                (code, words)
            })
            .collect();
        Some(CodeMasks { common, masks })
    }

    /// Adds the `n` ids set in `words` (a block starting at id `base`, a multiple of 64) to
    /// `per_code`; `None` when the block reaches past the codes.
    fn tally(&self, base: usize, words: &[u64; BLOCK], n: u64, per_code: &mut [u64]) -> Option<()> {
        let at = base / 64;
        let mut others = 0;
        for (code, mask) in &self.masks {
            let mask = mask.get(at..at + BLOCK)?;
            let k: u64 = mask
                .iter()
                .zip(words)
                .map(|(m, w)| u64::from((m & w).count_ones()))
                .sum();
            per_code[usize::from(*code)] += k;
            others += k;
        }
        per_code[usize::from(self.common)] += n - others;
        Some(())
    }
}

/// The code of an entity whose value is missing.
const NO_VALUE: u8 = u8::MAX;

/// Expressions with at most this many distinct values are coded per entity. Debug builds (the
/// tests') code only a few, so that the tests' small cities take both paths.
const CODED_MAX: usize = if cfg!(debug_assertions) {
    8
} else {
    NO_VALUE as usize
};

/// Values of some ids, added up: per value code, or summed when there are no codes.
#[derive(Debug, Default)]
pub struct Tally {
    per_code: Vec<u64>,
    sum: f64,
    missing: u64,
}

impl RankValues {
    pub fn build(env: &Env<'_>, expr: &Node, fc: &FieldColumn) -> RankValues {
        let ev = Evaluator::new(env);
        let per_rank: Vec<Option<f64>> = (0..fc.reps.len())
            .into_par_iter()
            .with_min_len(1024)
            .map(|r| ev.val(expr, fc.at(r), &mut NoTrace).v.amount())
            .collect();
        let no_row = ev.val(expr, At::entity(NO_ENTITY), &mut NoTrace).v.amount();
        // Distinct values (by their bits), in order of first appearance.
        let mut values: Vec<f64> = Vec::new();
        let mut code_of = |v: Option<f64>| -> Option<u8> {
            let Some(v) = v else {
                return Some(NO_VALUE);
            };
            match values.iter().position(|x| x.to_bits() == v.to_bits()) {
                Some(i) => Some(i as u8),
                None if values.len() < CODED_MAX => {
                    values.push(v);
                    Some((values.len() - 1) as u8)
                }
                None => None,
            }
        };
        let rank_codes: Option<Vec<u8>> = per_rank.iter().map(|&v| code_of(v)).collect();
        let no_row_code = code_of(no_row);
        let codes = rank_codes
            .zip(no_row_code)
            .map(|(rank_codes, no_row_code)| {
                fc.ranks
                    .par_iter()
                    .with_min_len(1 << 16)
                    .map(|&r| match r {
                        NO_ROW => no_row_code,
                        r => rank_codes[r as usize],
                    })
                    .collect()
            });
        RankValues {
            per_rank,
            no_row,
            codes,
            values,
            masks: OnceLock::new(),
        }
    }

    /// Adds `ids`' values to `tally`.
    pub fn tally(&self, fc: &FieldColumn, ids: &[u32], tally: &mut Tally) {
        match &self.codes {
            Some(codes) => {
                tally.per_code.resize(256, 0);
                for &e in ids {
                    let c = codes.get(e as usize).copied().unwrap_or(NO_VALUE);
                    tally.per_code[usize::from(c)] += 1;
                }
            }
            None => {
                for &e in ids {
                    match self.of_entity(fc, e) {
                        Some(v) => tally.sum += v,
                        None => tally.missing += 1,
                    }
                }
            }
        }
    }

    /// Adds to `tally` the ids set in `words`, a block of words whose first id is `base`
    /// (the candidates of one block while they are combined, still in the core's cache).
    /// `n`: how many ids `words` holds.
    pub fn tally_words(
        &self,
        fc: &FieldColumn,
        base: u32,
        words: &[u64; BLOCK],
        n: u64,
        tally: &mut Tally,
    ) {
        let base = base as usize;
        match &self.codes {
            Some(codes) => {
                tally.per_code.resize(256, 0);
                let per_code: &mut [u64] = &mut tally.per_code;
                let masks = self.masks.get_or_init(|| CodeMasks::build(codes));
                if masks
                    .as_ref()
                    .and_then(|m| m.tally(base, words, n, per_code))
                    .is_none()
                {
                    dense::for_each_offset(words, |o| {
                        let c = codes.get(base + usize::from(o)).copied();
                        per_code[usize::from(c.unwrap_or(NO_VALUE))] += 1;
                    });
                }
            }
            None => dense::for_each_offset(words, |o| {
                match self.of_entity(fc, (base + usize::from(o)) as u32) {
                    Some(v) => tally.sum += v,
                    None => tally.missing += 1,
                }
            }),
        }
    }

    /// The total of the tallies and how many of their ids have no value: with codes, counted
    /// per value and then multiplied.
    pub fn total(&self, tallies: &[Tally]) -> (f64, u64) {
        let mut per_code = vec![0u64; 256];
        let (mut sum, mut missing) = (0.0, 0);
        for t in tallies {
            per_code
                .iter_mut()
                .zip(&t.per_code)
                .for_each(|(a, b)| *a += b);
            sum += t.sum;
            missing += t.missing;
        }
        sum += self
            .values
            .iter()
            .zip(&per_code)
            .map(|(v, &n)| v * n as f64)
            .sum::<f64>();
        (sum, missing + per_code[usize::from(NO_VALUE)])
    }

    /// The value for entity `e`.
    pub fn of_entity(&self, fc: &FieldColumn, e: u32) -> Option<f64> {
        match fc.ranks.get(e as usize) {
            Some(&r) if r != NO_ROW => self.per_rank.get(r as usize).copied().flatten(),
            _ => self.no_row,
        }
    }
}

/// A value of an expensive expression, kept per entity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kept {
    Missing,
    Num(f64, f64),
    Date(i32),
    Month(i32),
    Bool(bool),
}

impl Kept {
    pub(crate) fn of(v: V<'_>) -> Option<Kept> {
        Some(match v {
            V::Missing => Kept::Missing,
            V::Num(l, h) => Kept::Num(l, h),
            V::Date(d) => Kept::Date(d),
            V::Month(m) => Kept::Month(m),
            V::Bool(b) => Kept::Bool(b),
            V::Str(_) | V::Offset(..) => return None,
        })
    }

    pub(crate) fn v(self) -> V<'static> {
        match self {
            Kept::Missing => V::Missing,
            Kept::Num(l, h) => V::Num(l, h),
            Kept::Date(d) => V::Date(d),
            Kept::Month(m) => V::Month(m),
            Kept::Bool(b) => V::Bool(b),
        }
    }
}

/// The values of an expression for every entity of a universe (in its order), with whether
/// each came from a doubtful link.
#[derive(Debug)]
pub struct ValueColumn {
    pub values: Vec<(Kept, bool)>,
}

impl ValueColumn {
    /// Evaluates `expr` for each of `ids`; `None` when some value is not kept (a string).
    pub fn build(env: &Env<'_>, expr: &Node, ids: &[u32]) -> Option<ValueColumn> {
        let filters = RowFilters::of(env, expr);
        let scope = RoaringBitmap::from_sorted_iter(ids.iter().copied()).ok();
        let aggs = AggValues::of(env, expr, &filters, scope.as_ref());
        let ev = Evaluator::new(env).with_filters(&filters).with_aggs(&aggs);
        let values: Option<Vec<(Kept, bool)>> = ids
            .par_iter()
            .with_min_len(1024)
            .map(|&e| {
                let v = ev.val(expr, At::entity(e), &mut NoTrace);
                Kept::of(v.v).map(|k| (k, v.doubt))
            })
            .collect();
        values.map(|values| ValueColumn { values })
    }

    pub fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<(Kept, bool)>()
    }
}

/// An atom that compares an expensive expression with constants: the expression (to keep)
/// and how to finish the comparison from its value.
pub fn kept_comparison(atom: &Node) -> Option<&Node> {
    let expensive = contains_aggregate;
    match atom {
        Node::Cmp(_, a, b) if expensive(a) && matches!(**b, Node::Const(_)) => Some(a),
        Node::Cmp(_, a, b) if expensive(b) && matches!(**a, Node::Const(_)) => Some(b),
        Node::InRange(x, lo, hi)
            if expensive(x)
                && [lo, hi]
                    .into_iter()
                    .flatten()
                    .all(|b| matches!(**b, Node::Const(_))) =>
        {
            Some(x)
        }
        _ => None,
    }
}

fn contains_aggregate(n: &Node) -> bool {
    match n {
        Node::TableAgg { .. } | Node::RelAgg { .. } => true,
        Node::Policy(_) | Node::Const(_) | Node::Field { .. } | Node::DictIn { .. } => false,
        Node::Not(x) | Node::Neg(x) | Node::Offset(x, _) => contains_aggregate(x),
        Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
            contains_aggregate(a) || contains_aggregate(b)
        }
        Node::InSet(x, items) => contains_aggregate(x) || items.iter().any(contains_aggregate),
        Node::InRange(x, lo, hi) => {
            contains_aggregate(x)
                || [lo, hi]
                    .into_iter()
                    .flatten()
                    .any(|b| contains_aggregate(b))
        }
        Node::Call(_, args) => args.iter().any(contains_aggregate),
        Node::If(c, a, b) => {
            contains_aggregate(c) || contains_aggregate(a) || contains_aggregate(b)
        }
        Node::Band { of, arms } => {
            contains_aggregate(of) || arms.iter().any(|a| contains_aggregate(&a.2))
        }
    }
}

/// The one aggregate an expression reads, when everything else in it is constant
/// (`per_hire_quarter * count(employees: …)`): the node whose kept values can stand in.
pub fn aggregate_operand(n: &Node) -> Option<&Node> {
    if !contains_aggregate(n) {
        return None;
    }
    let children: Vec<&Node> = match n {
        Node::TableAgg { .. } | Node::RelAgg { .. } => return Some(n),
        Node::Not(x) | Node::Neg(x) | Node::Offset(x, _) => vec![x],
        Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
            vec![a, b]
        }
        Node::Call(_, args) => args.iter().collect(),
        Node::If(c, a, b) => vec![c, a, b],
        Node::Band { of, arms } => std::iter::once(&**of)
            .chain(arms.iter().map(|a| &a.2))
            .collect(),
        _ => return None,
    };
    let mut operand = None;
    for c in children {
        if contains_aggregate(c) {
            if operand.is_some() {
                return None;
            }
            operand = Some(aggregate_operand(c)?);
        } else if !constant(c) {
            return None;
        }
    }
    operand
}

/// The amount `expr` gives each of `who`, its aggregate operand `x` given by `value_of`
/// for each one's position in `who` (a kept value, a kept count; `None`: no amount).
pub fn given_values(
    env: &Env<'_>,
    expr: &Node,
    x: &Node,
    who: &[u32],
    value_of: impl Fn(usize) -> Option<Val<'static>> + Sync,
) -> Vec<Option<f64>> {
    who.par_iter()
        .enumerate()
        .with_min_len(1024)
        .map(|(i, &e)| {
            Evaluator::giving(env, x, value_of(i)?)
                .val(expr, At::entity(e), &mut NoTrace)
                .v
                .amount()
        })
        .collect()
}

/// TRUE and UNKNOWN entities of `ids` for a [`kept_comparison`] atom, from the kept values of
/// its expression: the comparison itself is evaluated by the interpreter on each value.
pub fn kept_atom(
    env: &Env<'_>,
    atom: &Node,
    kept: &Arc<ValueColumn>,
    ids: &[u32],
) -> (RoaringBitmap, RoaringBitmap) {
    let ev = Evaluator::new(env);
    split(ids, |i, _| {
        let (k, doubt) = kept.values[i];
        tri_code(ev.tri_with(atom, Val { v: k.v(), doubt }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Per code, how many of the ids set in `words` (a block from `base`) have it, one id
    /// at a time; ids past the codes have no value.
    fn tally_by_ids(codes: &[u8], base: usize, words: &[u64; BLOCK]) -> Vec<u64> {
        let mut per_code = vec![0u64; 256];
        dense::for_each_offset(words, |o| {
            let c = codes
                .get(base + usize::from(o))
                .copied()
                .unwrap_or(NO_VALUE);
            per_code[usize::from(c)] += 1;
        });
        per_code
    }

    /// Whether `coding`'s buckets order every pair of `keys` as the keys are ordered
    /// (missing values last, sure before doubtful), equal keys in one bucket, all below the
    /// count of buckets; and say which are sure and doubtful.
    fn buckets_follow_keys(coding: &Coding, keys: &[(Option<i64>, bool)]) -> bool {
        let order = |&(v, d): &(Option<i64>, bool)| (v.is_none(), v, d);
        let b: Vec<u32> = keys.iter().map(|&(v, d)| coding.bucket(v, d)).collect();
        keys.iter().zip(&b).all(|(&(v, d), &x)| {
            (x as usize) < coding.buckets()
                && coding.doubtful(x) == d
                && coding.sure(x) == (v.is_some() && !d)
        }) && (0..keys.len()).all(|i| {
            (0..keys.len()).all(|j| order(&keys[i]).cmp(&order(&keys[j])) == b[i].cmp(&b[j]))
        })
    }

    proptest! {
        /// Buckets of a column's range follow the keys.
        #[test]
        fn offset_buckets_follow_keys(
            keys in prop::collection::vec(
                (prop::option::weighted(0.8, -40i64..40), any::<bool>()),
                0..120,
            )
        ) {
            let coding = Coding::Offset { lo: -40, span: 79 };
            prop_assert!(buckets_follow_keys(&coding, &keys));
        }

        /// So do buckets of distinct values (a wide range, up to `i64`'s ends).
        #[test]
        fn distinct_buckets_follow_keys(
            keys in prop::collection::vec(
                (prop::option::weighted(0.8, prop_oneof![
                    -40i64..40,
                    -5_000_000_000i64..5_000_000_000,
                    Just(i64::MIN),
                    Just(i64::MAX),
                ]), any::<bool>()),
                0..120,
            )
        ) {
            let mut values: Vec<i64> = keys.iter().filter_map(|k| k.0).collect();
            values.sort_unstable();
            values.dedup();
            prop_assert!(buckets_follow_keys(&Coding::Distinct(values), &keys));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A block's candidates tallied by the codes' words, as one id at a time: whichever
        /// code is the commonest, with up to MASKED_MAX others, in any block of the codes.
        #[test]
        fn code_masks_tally_as_ids_do(
            weights in proptest::collection::vec(0u32..100, 1..MASKED_MAX + 2),
            len in (64 * BLOCK)..(3 * 64 * BLOCK),
            seed in any::<u64>(),
            density in 0u32..64,
            block in 0usize..3,
        ) {
            let mut x = seed | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let total: u32 = weights.iter().sum::<u32>().max(1);
            let codes: Vec<u8> = (0..len)
                .map(|_| {
                    let mut r = (next() % u64::from(total)) as u32;
                    // The last weight stands for entities without a value.
                    for (i, &w) in weights.iter().enumerate() {
                        if r < w {
                            return if i + 1 == weights.len() { NO_VALUE } else { i as u8 };
                        }
                        r -= w;
                    }
                    NO_VALUE
                })
                .collect();
            let mut words = [0u64; BLOCK];
            for w in words.iter_mut() {
                for j in 0..64 {
                    if (next() % 64) < u64::from(density) {
                        *w |= 1 << j;
                    }
                }
            }
            let n: u64 = words.iter().map(|w| u64::from(w.count_ones())).sum();
            let base = block * 64 * BLOCK;
            let want = tally_by_ids(&codes, base, &words);
            let masks = CodeMasks::build(&codes).expect("at most MASKED_MAX codes besides one");
            let mut got = vec![0u64; 256];
            match masks.tally(base, &words, n, &mut got) {
                Some(()) => prop_assert_eq!(got, want),
                // Only a block reaching past the codes is left to the ids.
                None => prop_assert!(base + 64 * BLOCK > len),
            }
        }
    }

    #[test]
    fn many_codes_are_not_masked() {
        let codes: Vec<u8> = (0..5000u32).map(|i| (i % 40) as u8).collect();
        assert!(CodeMasks::build(&codes).is_none());
        assert!(CodeMasks::build(&[]).is_some_and(|m| m.masks.is_empty()));
    }
}
