//! Columnar kernels for atoms, so that a changed threshold costs the values it reads, not an
//! interpretation per entity.
//!
//! - **Field columns.** A primary-row field of every entity, as a *rank* into the field's
//!   distinct `(value, link doubtful)` keys, each with a representative row. An atom that reads
//!   one field and constants (`age(GA.person.birth_date) >= 80`, `status in {…}`, `month(x + k
//!   years) < month(as_of)`) is evaluated once per distinct key — a few thousand evaluations at
//!   any city size — and then mapped onto the entities by a table lookup. The same holds for an
//!   amount that reads one field (`band age(birth_date) {…}`).
//! - **Value columns.** The per-entity value of an expensive expression (a relation count, an
//!   aggregate over a table's rows), kept so that comparing it with a new constant (`count(…) >=
//!   min_hires`) is one pass over numbers.
//!
//! Both give exactly the interpreter's answer: each key is evaluated by the interpreter itself,
//! on a row that holds it (the property test in `engine` compares with the row-by-row oracle).

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::ast::Tri;
use super::eval::{At, Env, Evaluator, NO_ENTITY, NoTrace, Node, V, Val};

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
}

impl FieldColumn {
    /// Builds the column of `env.cols[col]` (a field of `env.tables[table]`); `None` for a
    /// free-text column (its distinct values are about as many as its rows).
    pub fn build(env: &Env<'_>, table: usize, col: usize) -> Option<FieldColumn> {
        let c = &env.cols.get(col)?.1.col;
        let int = match c.type_name() {
            "int" => true,
            "dict" => false,
            _ => return None,
        };
        let t = env.tables.get(table)?;
        let n = env.snap.entity_count();
        let runs: Vec<(u32, Range<usize>)> = t.t.runs().collect();
        // (key, entity, row): the key orders missing values last and doubtful after sure ones.
        let mut keyed: Vec<((u8, i64, bool), u32, usize)> = runs
            .par_iter()
            .filter(|(e, rows)| (*e as usize) < n && !rows.is_empty())
            .map(|(e, rows)| {
                // The primary row: the first whose link is not doubtful, else the first.
                let (row, doubt) = match rows.clone().find(|&r| !t.doubtful.contains(r as u32)) {
                    Some(r) => (r, false),
                    None => (rows.start, true),
                };
                let raw = if int {
                    c.int(row)
                } else {
                    c.code(row).map(i64::from)
                };
                let key = match raw {
                    Some(v) => (0, v, doubt),
                    None => (1, 0, doubt),
                };
                (key, *e, row)
            })
            .collect();
        keyed.par_sort_unstable_by_key(|k| k.0);
        let mut ranks = vec![NO_ROW; n];
        let mut reps: Vec<(usize, bool)> = Vec::new();
        let mut last = None;
        for (key, e, row) in keyed {
            if last != Some(key) {
                reps.push((row, key.2));
                last = Some(key);
            }
            ranks[e as usize] = (reps.len() - 1) as u32;
        }
        Some(FieldColumn {
            table,
            col,
            ranks,
            reps,
        })
    }

    /// Where to evaluate an expression for rank `r`: on its representative row.
    fn at(&self, r: usize) -> At {
        let (row, doubt) = self.reps[r];
        At {
            e: NO_ENTITY,
            row: Some((self.table, row)),
            row_doubt: doubt,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.ranks.len() * 4 + self.reps.len() * 16
    }
}

/// The one field `(table, col)` a node reads from primary rows, when it reads exactly one and
/// nothing else that depends on the entity (no rows of other tables, relations or policies).
pub fn single_field(n: &Node) -> Option<(usize, usize)> {
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
    if walk(n, &mut f) { f } else { None }
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

/// TRUE and UNKNOWN entities of `ids` (a universe, ascending) for an atom reading only the
/// field of `fc`.
pub fn field_atom(
    env: &Env<'_>,
    atom: &Node,
    fc: &FieldColumn,
    ids: &[u32],
) -> (RoaringBitmap, RoaringBitmap) {
    let ev = Evaluator::new(env);
    let table: Vec<u8> = (0..fc.reps.len())
        .into_par_iter()
        .with_min_len(1024)
        .map(|r| tri_code(ev.tri(atom, fc.at(r), &mut NoTrace)))
        .collect();
    let no_row = tri_code(ev.tri(atom, At::entity(NO_ENTITY), &mut NoTrace));
    split(ids, |_, e| match fc.ranks.get(e as usize) {
        Some(&r) if r != NO_ROW => table[r as usize],
        _ => no_row,
    })
}

/// The numeric value of a single-field expression for each of `ids` (ascending), evaluated
/// once per distinct key among them; `None` where it is missing or not an exact number.
pub fn field_values(env: &Env<'_>, expr: &Node, fc: &FieldColumn, ids: &[u32]) -> Vec<Option<f64>> {
    let ev = Evaluator::new(env);
    let rank = |e: u32| fc.ranks.get(e as usize).copied().unwrap_or(NO_ROW);
    let mut needed: Vec<u32> = ids.iter().map(|&e| rank(e)).collect();
    needed.par_sort_unstable();
    needed.dedup();
    let exact = |v: Val<'_>| match v.v {
        V::Num(l, h) if l == h && l.is_finite() => Some(l),
        _ => None,
    };
    let values: Vec<Option<f64>> = needed
        .par_iter()
        .with_min_len(256)
        .map(|&r| {
            let at = if r == NO_ROW {
                At::entity(NO_ENTITY)
            } else {
                fc.at(r as usize)
            };
            exact(ev.val(expr, at, &mut NoTrace))
        })
        .collect();
    ids.par_iter()
        .map(|&e| {
            let i = needed.binary_search(&rank(e)).unwrap_or(0);
            values.get(i).copied().flatten()
        })
        .collect()
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
    fn of(v: V<'_>) -> Option<Kept> {
        Some(match v {
            V::Missing => Kept::Missing,
            V::Num(l, h) => Kept::Num(l, h),
            V::Date(d) => Kept::Date(d),
            V::Month(m) => Kept::Month(m),
            V::Bool(b) => Kept::Bool(b),
            V::Str(_) | V::Offset(..) => return None,
        })
    }

    fn v(self) -> V<'static> {
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
        let ev = Evaluator::new(env);
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
    let expensive = |n: &Node| contains_aggregate(n) && !matches!(n, Node::Const(_));
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
