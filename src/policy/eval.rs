//! Compiling checked expressions against a snapshot, and evaluating them for one entity.
//!
//! Compilation resolves every field to a column handle, every relation to an adjacency array,
//! substitutes parameters and the as-of date, inlines earlier conditions, and turns windows
//! into ranges. What remains is a tree the engine can key its cache on (its `Debug` text
//! identifies it) and evaluate entity by entity.
//!
//! Semantics, three-valued (TRUE / FALSE / UNKNOWN):
//! - a bare field is the value in the entity's *primary row* of its table: the first row whose
//!   link is not doubtful, else the first row (then the value is doubtful). No row, or no
//!   value: missing. A comparison with a missing value is UNKNOWN; with a doubtful one, a
//!   definite answer becomes UNKNOWN.
//! - `exists(T where c)`: TRUE if a row satisfies c (a doubtful row only makes it UNKNOWN),
//!   FALSE if no row can; `count` is an interval [rows that surely count, rows that may];
//!   comparisons with intervals are TRUE or FALSE only when every value in them agrees.
//! - `sum`, `min`, `max` skip missing values; over an entity with no rows at all they are
//!   missing, never zero.
//! - relations: `any` / `all` / `count` over the related entities; an edge from a doubtful row
//!   makes that member uncertain.
//! - `and`, `or`, `not`: Kleene's logic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::ast::*;
use super::calendar::Calendars;
use super::check::Catalogue;
use super::combine::RunSet;
use super::prep::{Ledger, Step};
use super::scan::{AggValues, ENTITY_CHUNK, RowWindow};
use super::schema::{Scale, Schema, Ty};
use crate::date::{Date, Month};
use crate::snapshot::column::{Column, Text};
use crate::snapshot::{Snapshot, Table};

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum Node {
    Const(ConstVal),
    Field {
        table: usize,
        col: usize,
    },
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    InSet(Box<Node>, Vec<Node>),
    InRange(Box<Node>, Option<Box<Node>>, Option<Box<Node>>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Call(Func, Vec<Node>),
    Offset(Box<Node>, Unit),
    TableAgg {
        agg: Agg,
        table: usize,
        col: Option<usize>,
        filter: Option<Box<Node>>,
    },
    RelAgg {
        agg: Agg,
        rel: usize,
        body: Option<Box<Node>>,
    },
    Policy(String),
    If(Box<Node>, Box<Node>, Box<Node>),
    /// A dictionary column compared with constant strings, as codes: `in` the set (or not,
    /// for `!=`). Codes are sorted.
    DictIn {
        table: usize,
        col: usize,
        codes: Vec<u32>,
        negate: bool,
    },
    Band {
        of: Box<Node>,
        arms: Vec<(Option<f64>, Option<f64>, Node)>,
    },
}

impl Node {
    /// Calls `f` on this node and every node under it.
    pub fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        f(self);
        match self {
            Node::Const(_) | Node::Field { .. } | Node::DictIn { .. } | Node::Policy(_) => {}
            Node::Not(x) | Node::Neg(x) | Node::Offset(x, _) => x.visit(f),
            Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b) | Node::Arith(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Node::InSet(x, items) => {
                x.visit(f);
                items.iter().for_each(|i| i.visit(f));
            }
            Node::InRange(x, lo, hi) => {
                x.visit(f);
                [lo, hi].into_iter().flatten().for_each(|b| b.visit(f));
            }
            Node::Call(_, args) => args.iter().for_each(|a| a.visit(f)),
            Node::TableAgg { filter, .. } => {
                if let Some(x) = filter {
                    x.visit(f)
                }
            }
            Node::RelAgg { body, .. } => {
                if let Some(x) = body {
                    x.visit(f)
                }
            }
            Node::If(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            Node::Band { of, arms } => {
                of.visit(f);
                arms.iter().for_each(|a| a.2.visit(f));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConstVal {
    Num(f64),
    Str(String),
    Bool(bool),
    Date(i32),
    Month(i32),
}

/// A value during evaluation. Numbers are intervals `[lo, hi]` (equal when exact).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum V<'a> {
    Missing,
    Num(f64, f64),
    Str(Text<'a>),
    Bool(bool),
    Date(i32),
    Month(i32),
    Offset(f64, Unit),
}

/// A value and whether it comes from a doubtful link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Val<'a> {
    pub v: V<'a>,
    pub doubt: bool,
}

impl<'a> Val<'a> {
    fn of(v: V<'a>) -> Val<'a> {
        Val { v, doubt: false }
    }
    fn missing() -> Val<'a> {
        Val::of(V::Missing)
    }
}

impl V<'_> {
    /// The value as an amount: a number known exactly (not a range, not missing).
    pub fn amount(&self) -> Option<f64> {
        match *self {
            V::Num(l, h) if l == h && l.is_finite() => Some(l),
            _ => None,
        }
    }
}

impl std::fmt::Display for V<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Missing => write!(f, "missing"),
            V::Num(lo, hi) if lo == hi => write!(f, "{}", fmt_num(*lo)),
            V::Num(lo, hi) => write!(f, "{}..{}", fmt_num(*lo), fmt_num(*hi)),
            V::Str(s) => write!(f, "{:?}", s.to_string()),
            V::Bool(b) => write!(f, "{b}"),
            V::Date(d) => write!(f, "{}", Date(*d)),
            V::Month(m) => write!(f, "{}", Month(*m)),
            V::Offset(n, u) => write!(f, "{n} {u:?}"),
        }
    }
}

/// A number as a person writes it: no trailing `.0`, at most two decimals.
pub fn fmt_num(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "∞".into() } else { "-∞".into() };
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.2}")
    }
}

/// A resolved column.
#[derive(Debug, Clone, Copy)]
pub struct ColRef<'s> {
    pub table: usize,
    pub name_idx: usize,
    pub col: Column<'s>,
    pub ty: Ty,
    pub scale: Scale,
}

/// A resolved table.
#[derive(Debug)]
pub struct TableRef<'s> {
    pub name: String,
    pub t: Table<'s>,
    pub doubtful: RoaringBitmap,
}

/// A relation as an adjacency array: the related entities of every entity.
#[derive(Debug)]
pub struct RelIndex {
    pub name: String,
    pub from: String,
    pub to: String,
    /// `offsets[e]..offsets[e+1]` index `targets`.
    pub offsets: Vec<u32>,
    /// `(related entity, edge comes from a doubtful row)`.
    pub targets: Vec<(u32, bool)>,
}

impl RelIndex {
    pub fn of(&self, e: u32) -> &[(u32, bool)] {
        let (Some(&s), Some(&t)) = (
            self.offsets.get(e as usize),
            self.offsets.get(e as usize + 1),
        ) else {
            return &[];
        };
        &self.targets[s as usize..t as usize]
    }
}

/// An edge: the entity it is from, the entity it goes to, and whether its row is doubtful.
type Edge = (u32, u32, bool);

/// A relation's adjacency arrays: offsets per entity into the targets, and the targets
/// (related entity, whether every edge giving it is doubtful).
type Adjacency = (Vec<u32>, Vec<(u32, bool)>);

/// Every row's edge in `t` through the entity column `refs` (ids outside the entity table, as
/// in a damaged snapshot, join nothing), in `direction`: a chunk of entities per parallel
/// task, each read from its first entity's runs on ([`Table::runs_from`]) a window of rows
/// at a time, so that no list of every run is collected first (GA.person's 7.8M runs would be
/// 187 MB written and read again).
fn row_edges(
    t: &TableRef<'_>,
    refs: &Column<'_>,
    n: usize,
    direction: Direction,
) -> Vec<Vec<Edge>> {
    (0..n.div_ceil(ENTITY_CHUNK))
        .into_par_iter()
        .map(|i| {
            let (first, end) = (i * ENTITY_CHUNK, n.min((i + 1) * ENTITY_CHUNK));
            let mut w = RowWindow::new(refs, &t.doubtful, t.t.info.rows);
            let mut edges = Vec::new();
            for (e, rows) in t.t.runs_within(first as u32..=(end - 1) as u32) {
                for row in rows {
                    let Some(x) = w.value(row).and_then(|x| u32::try_from(x).ok()) else {
                        continue;
                    };
                    if (x as usize) < n {
                        let d = w.doubtful(row);
                        edges.push(match direction {
                            Direction::Out => (e, x, d),
                            Direction::In => (x, e, d),
                        });
                    }
                }
            }
            edges
        })
        .collect()
}

/// The adjacency arrays of `edges` over `n` entities: `offsets` (`n + 1`) into `targets`,
/// each entity's targets ascending, each once: doubtful only when every edge giving it is.
/// Few edges (a register of a few thousand rows) are sorted whole. Many are first split by
/// the block of `block` entities they are from ([`ENTITY_CHUNK`]); each block is then placed by
/// a counting sort over its own entities' offsets (256 KB, in a core's cache, where one over
/// all 11.6M entities wrote at random over 46 MB), the blocks in parallel, and joined.
fn adjacency(n: usize, edges: &[Vec<Edge>], block: usize) -> Adjacency {
    let total: usize = edges.iter().map(Vec::len).sum();
    if total < n / SORTED_EDGES_SHARE {
        let mut all: Vec<Edge> = edges.concat();
        all.sort_unstable();
        // Sure before doubtful: the first of each pair is kept.
        all.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let offsets = offsets_of(n, 0, all.iter());
        return (offsets, all.into_iter().map(|(_, x, d)| (x, d)).collect());
    }
    let blocks = n.div_ceil(block);
    // Each list's edges by the block they are from, each block's vector sized by a count.
    let split: Vec<Vec<Vec<Edge>>> = edges
        .par_iter()
        .map(|list| {
            let mut counts = vec![0usize; blocks];
            for &(f, _, _) in list {
                counts[f as usize / block] += 1;
            }
            let mut out: Vec<Vec<Edge>> = counts.into_iter().map(Vec::with_capacity).collect();
            for &edge in list {
                out[edge.0 as usize / block].push(edge);
            }
            out
        })
        .collect();
    let parts: Vec<Adjacency> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let first = b * block;
            let mine = || split.iter().flat_map(|list| &list[b]);
            block_adjacency(n.min(first + block) - first, first, mine)
        })
        .collect();
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u32);
    let mut targets = Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum());
    for (o, t) in parts {
        let base = targets.len() as u32;
        offsets.extend(o[1..].iter().map(|x| x + base));
        targets.extend(t);
    }
    (offsets, targets)
}

/// [`adjacency`]'s arrays for the `m` entities from `first` on, of their edges (`edges()`,
/// every one from among them): a counting sort on the entity each is from, each entity's
/// targets then sorted (sure before doubtful) and deduplicated, compacted in place.
fn block_adjacency<'e, I: Iterator<Item = &'e Edge>>(
    m: usize,
    first: usize,
    edges: impl Fn() -> I,
) -> Adjacency {
    let mut offsets = offsets_of(m, first, edges());
    let mut next = offsets.clone();
    let mut all = vec![(0u32, false); offsets[m] as usize];
    for &(f, x, d) in edges() {
        let at = &mut next[f as usize - first];
        all[*at as usize] = (x, d);
        *at += 1;
    }
    drop(next);
    // `offsets` rewritten behind the entity being compacted.
    let (mut lo, mut kept) = (0usize, 0usize);
    for f in 0..m {
        let hi = offsets[f + 1] as usize;
        all[lo..hi].sort_unstable();
        for i in lo..hi {
            if kept == offsets[f] as usize || all[kept - 1].0 != all[i].0 {
                all[kept] = all[i];
                kept += 1;
            }
        }
        offsets[f + 1] = kept as u32;
        lo = hi;
    }
    all.truncate(kept);
    (offsets, all)
}

/// Where each of the `n` entities from `first` on has its edges start among `edges` (every
/// one from among them) grouped by the entity they are from: `n + 1` offsets, a count per
/// entity, summed.
fn offsets_of<'e>(n: usize, first: usize, edges: impl Iterator<Item = &'e Edge>) -> Vec<u32> {
    let mut offsets = vec![0u32; n + 1];
    for &(f, _, _) in edges {
        offsets[f as usize - first + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    offsets
}

/// Relations with fewer edges than one per this many entities are sorted whole.
const SORTED_EDGES_SHARE: usize = 4;

/// Everything expressions are compiled against: resolved tables, columns and relations.
#[derive(Debug)]
pub struct Env<'s> {
    pub snap: &'s Snapshot,
    pub schema: Schema,
    pub tables: Vec<TableRef<'s>>,
    pub cols: Vec<(String, ColRef<'s>)>,
    pub rels: Vec<RelIndex>,
    pub as_of: Date,
    /// States of other policies, for `policy(X)`: (TRUE, UNKNOWN) sets.
    pub policy_states: HashMap<String, (Arc<RoaringBitmap>, RunSet)>,
    /// Row calendars of event tables, built on first use (they depend on the snapshot only).
    pub calendars: Calendars,
    /// What preparing the snapshot for policies has cost so far.
    pub prep: Ledger,
}

/// A compile error: a checked policy that does not fit this snapshot (a table the catalogue's
/// schema has but the snapshot lacks).
#[derive(Debug, Clone)]
pub struct CompileError(pub String);

impl<'s> Env<'s> {
    pub fn new(snap: &'s Snapshot, as_of: Date) -> Env<'s> {
        Env {
            snap,
            schema: Schema::of_snapshot(snap),
            tables: Vec::new(),
            cols: Vec::new(),
            rels: Vec::new(),
            as_of,
            policy_states: HashMap::new(),
            calendars: Calendars::default(),
            prep: Ledger::default(),
        }
    }

    fn table_idx(&mut self, name: &str) -> Result<usize, CompileError> {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return Ok(i);
        }
        let t = self
            .snap
            .table(name)
            .map_err(|e| CompileError(format!("{name}: {e}")))?;
        let doubtful = t
            .doubtful()
            .map_err(|e| CompileError(format!("{name}: {e}")))?;
        self.tables.push(TableRef {
            name: name.to_string(),
            t,
            doubtful,
        });
        Ok(self.tables.len() - 1)
    }

    /// The handle of field `table.column`, resolved on first use.
    pub fn col_idx(&mut self, table: &str, column: &str) -> Result<usize, CompileError> {
        let key = format!("{table}.{column}");
        if let Some(i) = self.cols.iter().position(|(k, _)| *k == key) {
            return Ok(i);
        }
        let ti = self.table_idx(table)?;
        let cs = self
            .schema
            .column(table, column)
            .cloned()
            .ok_or_else(|| CompileError(format!("the snapshot has no field {key}")))?;
        let col = self.tables[ti]
            .t
            .column(column)
            .map_err(|e| CompileError(format!("{key}: {e}")))?;
        let name_idx = self.cols.len();
        self.cols.push((
            key,
            ColRef {
                table: ti,
                name_idx,
                col,
                ty: cs.ty,
                scale: cs.scale,
            },
        ));
        Ok(name_idx)
    }

    /// The adjacency index of relation `r`, built on first use.
    pub fn rel_idx(&mut self, r: &Relation) -> Result<usize, CompileError> {
        if let Some(i) = self.rels.iter().position(|x| x.name == r.name) {
            return Ok(i);
        }
        let started = Instant::now();
        let ti = self.table_idx(&r.table)?;
        let t = &self.tables[ti];
        let refs =
            t.t.reference(&r.column)
                .map_err(|e| CompileError(format!("relation {}: {e}", r.name)))?;
        let n = self.snap.entity_count();
        let edges = row_edges(t, &refs, n, r.direction);
        let (offsets, targets) = adjacency(n, &edges, ENTITY_CHUNK);
        self.rels.push(RelIndex {
            name: r.name.clone(),
            from: r.from.clone(),
            to: r.to.clone(),
            offsets,
            targets,
        });
        self.prep
            .note(Step::Relation, started, || format!("relation {}", r.name));
        Ok(self.rels.len() - 1)
    }

    /// Compiles an expression with the policy's `params` (overrides already applied) and the
    /// conditions compiled before it (`earlier`, for references by name).
    pub fn compile(
        &mut self,
        e: &Expr,
        params: &HashMap<String, Lit>,
        cat: &Catalogue,
        earlier: &[(String, Node)],
    ) -> Result<Node, CompileError> {
        let mut c = |x: &Expr| self.compile(x, params, cat, earlier);
        let bx = |n: Node| Box::new(n);
        Ok(match &e.kind {
            ExprKind::Lit(l) => Node::Const(lit(l)),
            ExprKind::Name(n) if n == "as_of" => Node::Const(ConstVal::Date(self.as_of.0)),
            ExprKind::Name(n) => {
                if let Some(v) = params.get(n) {
                    Node::Const(lit(v))
                } else if let Some((_, node)) = earlier.iter().find(|(k, _)| k == n) {
                    node.clone()
                } else {
                    return Err(CompileError(format!("`{n}` has no value")));
                }
            }
            ExprKind::Field { table, column } => {
                let col = self.col_idx(table, column)?;
                Node::Field {
                    table: self.cols[col].1.table,
                    col,
                }
            }
            ExprKind::Not(x) => Node::Not(bx(c(x)?)),
            ExprKind::And(a, b) => Node::And(bx(c(a)?), bx(c(b)?)),
            ExprKind::Or(a, b) => Node::Or(bx(c(a)?), bx(c(b)?)),
            ExprKind::Cmp(op, a, b) => {
                let (a, b) = (c(a)?, c(b)?);
                match (op, &a, &b) {
                    (CmpOp::Eq | CmpOp::Ne, x, Node::Const(k))
                    | (CmpOp::Eq | CmpOp::Ne, Node::Const(k), x)
                        if self.dict_field(x).is_some() =>
                    {
                        self.dict_in(x, std::slice::from_ref(k), *op == CmpOp::Ne)
                            .unwrap_or(Node::Cmp(*op, bx(a.clone()), bx(b.clone())))
                    }
                    _ => Node::Cmp(*op, bx(a), bx(b)),
                }
            }
            ExprKind::InSet(x, items) => {
                let x = c(x)?;
                let items = items.iter().map(&mut c).collect::<Result<Vec<_>, _>>()?;
                let consts: Option<Vec<ConstVal>> = items
                    .iter()
                    .map(|n| match n {
                        Node::Const(k) => Some(k.clone()),
                        _ => None,
                    })
                    .collect();
                match consts.and_then(|k| self.dict_in(&x, &k, false)) {
                    Some(n) => n,
                    None => Node::InSet(bx(x), items),
                }
            }
            ExprKind::InRange(x, lo, hi) => {
                let x = c(x)?;
                let lo = lo.as_ref().map(|b| c(b)).transpose()?.map(bx);
                let hi = hi.as_ref().map(|b| c(b)).transpose()?.map(bx);
                Node::InRange(bx(x), lo, hi)
            }
            ExprKind::Within(x, n, unit) => {
                // as_of − n unit < x ≤ as_of.
                let x = c(x)?;
                let n = c(n)?;
                let ConstVal::Num(len) = const_of(&n)
                    .ok_or_else(|| CompileError("a window's length must be a constant".into()))?
                else {
                    return Err(CompileError("a window's length must be a number".into()));
                };
                let (lo, hi) = window(self.as_of, len, *unit);
                Node::And(
                    bx(Node::Cmp(CmpOp::Gt, bx(x.clone()), bx(Node::Const(lo)))),
                    bx(Node::Cmp(CmpOp::Le, bx(x), bx(Node::Const(hi)))),
                )
            }
            ExprKind::Arith(op, a, b) => Node::Arith(*op, bx(c(a)?), bx(c(b)?)),
            ExprKind::Neg(x) => Node::Neg(bx(c(x)?)),
            ExprKind::Offset(x, u) => Node::Offset(bx(c(x)?), *u),
            ExprKind::Call(f, args) => {
                let f = *f;
                let args = args.iter().map(&mut c).collect::<Result<Vec<_>, _>>()?;
                Node::Call(f, args)
            }
            ExprKind::TableAgg {
                agg,
                table,
                column,
                filter,
            } => {
                let ti = self.table_idx(table)?;
                let col = column
                    .as_ref()
                    .map(|col| self.col_idx(table, col))
                    .transpose()?;
                let filter = filter
                    .as_ref()
                    .map(|f| self.compile(f, params, cat, &[]))
                    .transpose()?
                    .map(bx);
                Node::TableAgg {
                    agg: *agg,
                    table: ti,
                    col,
                    filter,
                }
            }
            ExprKind::RelAgg {
                agg,
                relation,
                body,
            } => {
                let r = cat
                    .relations
                    .get(relation)
                    .ok_or_else(|| CompileError(format!("unknown relation {relation}")))?;
                let rel = self.rel_idx(r)?;
                let body = body
                    .as_ref()
                    .map(|b| self.compile(b, params, cat, &[]))
                    .transpose()?
                    .map(bx);
                Node::RelAgg {
                    agg: *agg,
                    rel,
                    body,
                }
            }
            ExprKind::Policy(id) => Node::Policy(id.clone()),
            ExprKind::If(cond, a, b) => Node::If(bx(c(cond)?), bx(c(a)?), bx(c(b)?)),
            ExprKind::Band { of, arms } => {
                let of = c(of)?;
                let mut out = Vec::new();
                for a in arms {
                    let bound = |b: &Option<Expr>,
                                 this: &mut Self|
                     -> Result<Option<f64>, CompileError> {
                        b.as_ref()
                            .map(|x| {
                                let n = this.compile(x, params, cat, earlier)?;
                                match const_of(&n) {
                                    Some(ConstVal::Num(v)) => Ok(v),
                                    Some(ConstVal::Date(d)) => Ok(f64::from(d)),
                                    _ => Err(CompileError("a band bound must be constant".into())),
                                }
                            })
                            .transpose()
                    };
                    let lo = bound(&a.lo, self)?;
                    let hi = bound(&a.hi, self)?;
                    let v = self.compile(&a.value, params, cat, earlier)?;
                    out.push((lo, hi, v));
                }
                Node::Band {
                    of: bx(of),
                    arms: out,
                }
            }
        })
    }
}

impl Env<'_> {
    /// `(table, col)` when `n` is a field of a dictionary column.
    fn dict_field(&self, n: &Node) -> Option<(usize, usize)> {
        match n {
            Node::Field { table, col } if self.cols[*col].1.col.type_name() == "dict" => {
                Some((*table, *col))
            }
            _ => None,
        }
    }

    /// A dictionary field compared with constant strings, as a code set.
    fn dict_in(&self, x: &Node, values: &[ConstVal], negate: bool) -> Option<Node> {
        let (table, col) = self.dict_field(x)?;
        let column = &self.cols[col].1.col;
        let mut codes = Vec::new();
        for v in values {
            let ConstVal::Str(s) = v else { return None };
            // A value the dictionary lacks matches no row.
            if let Some(code) = column.code_of(s) {
                codes.push(code);
            }
        }
        codes.sort_unstable();
        codes.dedup();
        Some(Node::DictIn {
            table,
            col,
            codes,
            negate,
        })
    }
}

fn lit(l: &Lit) -> ConstVal {
    match l {
        Lit::Num(n) => ConstVal::Num(*n),
        Lit::Str(s) => ConstVal::Str(s.clone()),
        Lit::Date(d) => ConstVal::Date(*d),
        Lit::Bool(b) => ConstVal::Bool(*b),
    }
}

fn const_of(n: &Node) -> Option<ConstVal> {
    match n {
        Node::Const(c) => Some(c.clone()),
        Node::Neg(x) => match const_of(x)? {
            ConstVal::Num(v) => Some(ConstVal::Num(-v)),
            _ => None,
        },
        _ => None,
    }
}

/// The bounds of `within len unit` at `as_of`: (exclusive start, inclusive end).
fn window(as_of: Date, len: f64, unit: Unit) -> (ConstVal, ConstVal) {
    let n = len.round().clamp(-1e6, 1e6) as i32;
    let start = shift(as_of, -n, unit).unwrap_or(Date(i32::MIN));
    (ConstVal::Date(start.0), ConstVal::Date(as_of.0))
}

/// `d` moved by `n` units. Month ends clamp (31 March − 1 month = 28/29 February) and
/// 29 February plus a year is 1 March, as for birthdays. `None` far outside any calendar.
pub fn shift(d: Date, n: i32, unit: Unit) -> Option<Date> {
    match unit {
        Unit::Days => d.0.checked_add(n).map(Date),
        Unit::Years => {
            let (y, m, day) = d.ymd();
            let ty = y.checked_add(n)?;
            Date::from_ymd_any(ty, m, day).or_else(|| Date::from_ymd_any(ty, 3, 1))
        }
        Unit::Months => {
            let (y, m, day) = d.ymd();
            let total = (y * 12 + m as i32 - 1).checked_add(n)?;
            let (ty, tm) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
            let last = crate::date::days_in_month(ty, tm);
            Date::from_ymd_any(ty, tm, day.min(last))
        }
    }
}

/// Receives what an evaluation looked at (for `explain`); the no-op one costs nothing.
pub trait Trace {
    fn on(&self) -> bool {
        false
    }
    fn note(&mut self, _what: String) {}
}

/// No tracing.
#[derive(Debug)]
pub struct NoTrace;
impl Trace for NoTrace {}

impl Trace for Vec<String> {
    fn on(&self) -> bool {
        true
    }
    fn note(&mut self, what: String) {
        self.push(what);
    }
}

/// Where an expression is evaluated: an entity, and perhaps one row of one table.
#[derive(Debug, Clone, Copy)]
pub struct At {
    pub e: u32,
    /// `(table, row)`: fields of that table read this row.
    pub row: Option<(usize, usize)>,
    /// Whether that row's link is doubtful (a primary row chosen by a scan).
    pub row_doubt: bool,
    /// The entity's position in the batch of entities an evaluator was given columns for
    /// ([`Evaluator::with_states`], [`AggValues::align`]); [`NO_BATCH`] otherwise.
    pub batch: u32,
}

/// An entity id no entity has: evaluates as "no rows anywhere".
pub const NO_ENTITY: u32 = u32::MAX;

/// In [`At::batch`]: not an entity of the batch.
pub const NO_BATCH: u32 = u32::MAX;

impl At {
    pub fn entity(e: u32) -> At {
        At {
            e,
            row: None,
            row_doubt: false,
            batch: NO_BATCH,
        }
    }

    /// Entity `e`, at position `i` of the batch the evaluator's columns are aligned with.
    pub fn in_batch(e: u32, i: usize) -> At {
        At {
            batch: u32::try_from(i).unwrap_or(NO_BATCH),
            ..At::entity(e)
        }
    }

    pub(crate) fn row(e: u32, table: usize, r: usize) -> At {
        At {
            e,
            row: Some((table, r)),
            row_doubt: false,
            batch: NO_BATCH,
        }
    }
}

/// The primary row of `e` in a table: first non-doubtful, else first.
pub fn primary_row(t: &TableRef<'_>, e: u32) -> Option<(usize, bool)> {
    let rows = t.t.rows_of(e);
    let first = rows.start;
    for r in rows.clone() {
        if !t.doubtful.contains(r as u32) {
            return Some((r, false));
        }
    }
    (!rows.is_empty()).then_some((first, true))
}

fn read<'s>(c: &ColRef<'s>, row: usize) -> V<'s> {
    value_of(c, c.col.raw(row), row)
}

/// The value of raw value `raw` (an int, or a dictionary code) of column `c`; free-text
/// columns read `row`.
fn value_of<'s>(c: &ColRef<'s>, raw: Option<i64>, row: usize) -> V<'s> {
    match c.ty {
        Ty::Str => match c.col.type_name() {
            "dict" => raw
                .and_then(|k| c.col.dict_value(k as u32))
                .map_or(V::Missing, |s| V::Str(Text::Str(s))),
            _ => c.col.text(row).map_or(V::Missing, V::Str),
        },
        _ => match raw {
            None => V::Missing,
            Some(x) => match c.ty {
                Ty::Date => V::Date(x as i32),
                Ty::Month => V::Month(x as i32),
                Ty::Bool => V::Bool(x != 0),
                _ => {
                    let f = match c.scale {
                        Scale::One => x as f64,
                        Scale::Money => x as f64 / 100.0,
                        Scale::Milli => x as f64 / 1000.0,
                    };
                    V::Num(f, f)
                }
            },
        },
    }
}

/// `any` / `exists` / `all` over a relation from each related entity's state and whether its
/// edge is doubtful: `any` is TRUE when a sure edge leads to a TRUE entity and FALSE when
/// every entity is FALSE; `all` is FALSE when a sure edge leads to a FALSE entity and TRUE
/// when every edge is sure and every entity TRUE.
pub fn rel_fold(agg: Agg, related: impl Iterator<Item = (Tri, bool)>) -> Tri {
    let (mut any_t, mut any_u, mut any_f) = (false, false, false);
    for (t, doubtful) in related {
        match (t, doubtful) {
            (Tri::True, false) => any_t = true,
            (Tri::False, false) => any_f = true,
            (Tri::False, true) => {
                if agg == Agg::All {
                    any_u = true
                }
            }
            _ => any_u = true,
        }
    }
    match agg {
        Agg::All if any_f => Tri::False,
        Agg::All if any_u => Tri::Unknown,
        Agg::All => Tri::True,
        _ if any_t => Tri::True,
        _ if any_u => Tri::Unknown,
        _ => Tri::False,
    }
}

/// `count(rel: body)` from the body's state of each related entity and whether its edge is
/// doubtful: the related entities surely and possibly counted (a sure edge to a TRUE body
/// surely; a doubtful edge or an UNKNOWN body possibly).
pub fn rel_count(related: impl Iterator<Item = (Tri, bool)>) -> (u64, u64) {
    let (mut lo, mut hi) = (0u64, 0u64);
    for (t, doubtful) in related {
        match (t, doubtful) {
            (Tri::True, false) => {
                lo += 1;
                hi += 1;
            }
            (Tri::False, _) => {}
            _ => hi += 1,
        }
    }
    (lo, hi)
}

/// `exists` from the rows surely (`lo`) and possibly (`hi`) passing its filter.
pub fn exists_of(lo: u64, hi: u64) -> Tri {
    if lo > 0 {
        Tri::True
    } else if hi > 0 {
        Tri::Unknown
    } else {
        Tri::False
    }
}

/// Kleene logic on `Tri`.
pub fn and3(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::False, _) | (_, Tri::False) => Tri::False,
        (Tri::True, Tri::True) => Tri::True,
        _ => Tri::Unknown,
    }
}

pub fn or3(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::True, _) | (_, Tri::True) => Tri::True,
        (Tri::False, Tri::False) => Tri::False,
        _ => Tri::Unknown,
    }
}

pub fn not3(a: Tri) -> Tri {
    match a {
        Tri::True => Tri::False,
        Tri::False => Tri::True,
        Tri::Unknown => Tri::Unknown,
    }
}

fn tri_of(b: bool) -> Tri {
    if b { Tri::True } else { Tri::False }
}

/// Compares two values.
pub(crate) fn compare(op: CmpOp, a: V<'_>, b: V<'_>) -> Tri {
    use std::cmp::Ordering;
    let ord = |o: Ordering| match op {
        CmpOp::Eq => o == Ordering::Equal,
        CmpOp::Ne => o != Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
    };
    let month_of = |d: i32| Date(d).month().0;
    match (a, b) {
        (V::Missing, _) | (_, V::Missing) => Tri::Unknown,
        (V::Num(l1, h1), V::Num(l2, h2)) => {
            // TRUE when every pair of values agrees, FALSE when none does.
            let corners = [
                l1.total_cmp(&l2),
                l1.total_cmp(&h2),
                h1.total_cmp(&l2),
                h1.total_cmp(&h2),
            ];
            if l1 == h1 && l2 == h2 {
                return tri_of(ord(corners[0]));
            }
            let overlap = l1 <= h2 && l2 <= h1;
            match op {
                CmpOp::Eq => {
                    if !overlap {
                        Tri::False
                    } else {
                        Tri::Unknown
                    }
                }
                CmpOp::Ne => {
                    if !overlap {
                        Tri::True
                    } else {
                        Tri::Unknown
                    }
                }
                _ => {
                    let all = corners.iter().all(|&o| ord(o));
                    let none = corners.iter().all(|&o| !ord(o));
                    if all {
                        Tri::True
                    } else if none {
                        Tri::False
                    } else {
                        Tri::Unknown
                    }
                }
            }
        }
        (V::Str(x), V::Str(y)) => tri_of(ord(x.cmp(&y))),
        (V::Bool(x), V::Bool(y)) => tri_of(ord(x.cmp(&y))),
        (V::Date(x), V::Date(y)) => tri_of(ord(x.cmp(&y))),
        (V::Month(x), V::Month(y)) => tri_of(ord(x.cmp(&y))),
        (V::Month(x), V::Date(y)) => tri_of(ord(x.cmp(&month_of(y)))),
        (V::Date(x), V::Month(y)) => tri_of(ord(month_of(x).cmp(&y))),
        _ => Tri::Unknown,
    }
}

/// A definite answer drawn from a doubtful link is UNKNOWN.
fn with_doubt(t: Tri, doubt: bool) -> Tri {
    if doubt { Tri::Unknown } else { t }
}

/// Evaluates compiled nodes.
#[derive(Debug)]
pub struct Evaluator<'e, 's> {
    pub env: &'e Env<'s>,
    /// A node (by address) whose value is given instead of computed.
    given: Option<(usize, Val<'e>)>,
    /// A column (by handle) whose raw value is given instead of read.
    given_raw: Option<(usize, Option<i64>)>,
    /// Row filters as lookup tables.
    filters: Option<&'e RowFilters>,
    /// Aggregates over tables, computed beforehand by a columnar scan.
    aggs: Option<&'e AggValues>,
    /// Boolean nodes (by address) whose states are given for each entity of a batch
    /// ([`At::batch`]): an amount's `if` conditions, which the engine holds as sets.
    states: &'e [(usize, &'e [Tri])],
}

/// Row filters (`count(RS.contrib where RS.contrib.insurance == "养老" and RS.contrib.month
/// within 12 months)`) whose parts each read one field of their rows: each part is evaluated
/// once for every raw value its field can hold, so a scan of event rows reads columns and
/// small tables instead of interpreting the filter per row.
#[derive(Debug, Default)]
pub struct RowFilters {
    /// By node address: the table, the column, its first raw value, the state of each raw
    /// value from there, and of a missing value.
    parts: Vec<(usize, usize, usize, i64, Vec<Tri>, Tri)>,
}

impl RowFilters {
    /// Largest domain tabulated (raw values per part).
    pub const MAX_DOMAIN: u64 = 1 << 16;

    /// Tabulates the parts of the row filters inside `n` (the `and` / `or` / `not` structure
    /// down to nodes reading one field of the filter's own table) whose field has a small
    /// domain.
    pub fn of(env: &Env<'_>, n: &Node) -> RowFilters {
        let mut out = RowFilters::default();
        n.visit(&mut |x| {
            if let Node::TableAgg {
                table,
                filter: Some(f),
                ..
            } = x
            {
                out.tabulate(env, *table, f);
            }
        });
        out
    }

    fn tabulate(&mut self, env: &Env<'_>, table: usize, f: &Node) {
        match f {
            Node::And(a, b) | Node::Or(a, b) => {
                self.tabulate(env, table, a);
                self.tabulate(env, table, b);
            }
            Node::Not(x) => self.tabulate(env, table, x),
            _ => {
                let Some((ft, col)) = crate::policy::columns::single_field(f) else {
                    return;
                };
                let Some((first, count)) = env.cols[col].1.col.raw_domain() else {
                    return;
                };
                if ft != table || count > Self::MAX_DOMAIN {
                    return;
                }
                let state = |raw: Option<i64>| {
                    let ev = Evaluator {
                        given_raw: Some((col, raw)),
                        ..Evaluator::new(env)
                    };
                    ev.tri(f, At::entity(NO_ENTITY), &mut NoTrace)
                };
                let states = (0..count as i64).map(|i| state(Some(first + i))).collect();
                let addr = f as *const Node as usize;
                self.parts
                    .push((addr, table, col, first, states, state(None)));
            }
        }
    }

    /// The tabulated part at node `n` of a filter over `table`: its column, its first raw
    /// value, the state of each raw value from there, and of a missing value.
    pub fn part(&self, n: &Node, table: usize) -> Option<(usize, i64, &[Tri], Tri)> {
        let addr = n as *const Node as usize;
        let (_, _, col, first, states, missing) =
            self.parts.iter().find(|p| p.0 == addr && p.1 == table)?;
        Some((*col, *first, states, *missing))
    }

    /// The state of part `n` on row `row` of `table`, when tabulated.
    #[inline]
    fn state(&self, env: &Env<'_>, n: &Node, table: usize, row: usize) -> Option<Tri> {
        let addr = n as *const Node as usize;
        let (_, t, col, first, states, missing) = self.parts.iter().find(|p| p.0 == addr)?;
        if *t != table {
            return None;
        }
        Some(match env.cols[*col].1.col.raw(row) {
            Some(v) => states.get(usize::try_from(v - first).ok()?).copied()?,
            None => *missing,
        })
    }
}

impl<'e, 's> Evaluator<'e, 's> {
    pub fn new(env: &'e Env<'s>) -> Self {
        Evaluator {
            env,
            given: None,
            given_raw: None,
            filters: None,
            aggs: None,
            states: &[],
        }
    }

    /// This evaluator, reading row filters from `filters` where tabulated.
    pub fn with_filters(mut self, filters: &'e RowFilters) -> Self {
        self.filters = Some(filters);
        self
    }

    /// This evaluator, reading the aggregates `aggs` holds instead of computing them.
    pub fn with_aggs(mut self, aggs: &'e AggValues) -> Self {
        self.aggs = Some(aggs);
        self
    }

    /// This evaluator, taking the states of the nodes `states` names (by address) for the
    /// entities of a batch, each at its position ([`At::in_batch`]).
    pub fn with_states(mut self, states: &'e [(usize, &'e [Tri])]) -> Self {
        self.states = states;
        self
    }

    /// An evaluator that takes `x` as the value of the node `n` (that very node of a tree,
    /// not an equal one): an amount reading an aggregate whose values the engine keeps.
    pub fn giving(env: &'e Env<'s>, n: &'e Node, x: Val<'e>) -> Self {
        Evaluator {
            given: Some((n as *const Node as usize, x)),
            ..Evaluator::new(env)
        }
    }

    /// The states of boolean node `n` given for each entity of the batch
    /// ([`Evaluator::with_states`]), if given.
    pub fn given_states(&self, n: &Node) -> Option<&'e [Tri]> {
        self.states
            .iter()
            .find(|s| s.0 == n as *const Node as usize)
            .map(|s| s.1)
    }

    /// The truth of a boolean node for `at`.
    pub fn tri<T: Trace>(&self, n: &'e Node, at: At, tr: &mut T) -> Tri {
        if let (Some(f), Some((table, row))) = (self.filters, at.row)
            && let Some(t) = f.state(self.env, n, table, row)
        {
            return t;
        }
        if at.batch != NO_BATCH
            && at.row.is_none()
            && let Some(states) = self.given_states(n)
            && let Some(t) = states.get(at.batch as usize)
        {
            return *t;
        }
        match n {
            Node::Not(x) => not3(self.tri(x, at, tr)),
            Node::And(a, b) => {
                let l = self.tri(a, at, tr);
                if l == Tri::False && !tr.on() {
                    return Tri::False;
                }
                and3(l, self.tri(b, at, tr))
            }
            Node::Or(a, b) => {
                let l = self.tri(a, at, tr);
                if l == Tri::True && !tr.on() {
                    return Tri::True;
                }
                or3(l, self.tri(b, at, tr))
            }
            Node::Cmp(op, a, b) => {
                let (x, y) = (self.val(a, at, tr), self.val(b, at, tr));
                with_doubt(compare(*op, x.v, y.v), x.doubt || y.doubt)
            }
            Node::InSet(x, items) => {
                let x = self.val(x, at, tr);
                let mut t = Tri::False;
                for it in items {
                    let y = self.val(it, at, tr);
                    t = or3(t, with_doubt(compare(CmpOp::Eq, x.v, y.v), y.doubt));
                }
                with_doubt(t, x.doubt)
            }
            Node::InRange(x, lo, hi) => {
                let x = self.val(x, at, tr);
                self.in_range(x, lo.as_deref(), hi.as_deref(), at, tr)
            }
            Node::TableAgg {
                agg: Agg::Exists,
                table,
                filter,
                ..
            } => {
                let (lo, hi) = self.count_rows(*table, filter.as_deref(), at, tr);
                let t = exists_of(lo, hi);
                if tr.on() {
                    tr.note(format!(
                        "exists {} rows: {} sure, {} possible → {}",
                        self.env.tables[*table].name,
                        lo,
                        hi,
                        t.as_str()
                    ));
                }
                t
            }
            Node::RelAgg {
                agg: agg @ (Agg::Any | Agg::All | Agg::Exists),
                rel,
                body,
            } => self.rel_bool(*agg, *rel, body.as_deref(), at, tr),
            Node::DictIn {
                table,
                col,
                codes,
                negate,
            } => {
                let (row, doubt, code) = match self.given_raw {
                    Some((g, raw)) if g == *col => (None, false, raw.map(|k| k as u32)),
                    _ => {
                        let (row, doubt) = self.row_of(*table, at);
                        let code = row.and_then(|r| self.env.cols[*col].1.col.code(r));
                        (row, doubt, code)
                    }
                };
                let c = &self.env.cols[*col];
                if tr.on() && at.row.is_none() {
                    let v = row.and_then(|r| c.1.col.text(r)).map_or(V::Missing, V::Str);
                    tr.note(format!(
                        "{} = {v}{}",
                        c.0,
                        if doubt { " (doubtful link)" } else { "" }
                    ));
                }
                match code {
                    None => Tri::Unknown,
                    Some(k) => {
                        with_doubt(tri_of(codes.binary_search(&k).is_ok() != *negate), doubt)
                    }
                }
            }
            Node::Policy(id) => {
                let t = match self.env.policy_states.get(id) {
                    Some((t, _)) if t.contains(at.e) => Tri::True,
                    Some((_, u)) if u.contains(at.e) => Tri::Unknown,
                    Some(_) => Tri::False,
                    None => Tri::Unknown,
                };
                if tr.on() {
                    tr.note(format!("policy {id} → {}", t.as_str()));
                }
                t
            }
            other => {
                let v = self.val(other, at, tr);
                match v.v {
                    V::Bool(b) => with_doubt(tri_of(b), v.doubt),
                    _ => Tri::Unknown,
                }
            }
        }
    }

    fn in_range<T: Trace>(
        &self,
        x: Val<'e>,
        lo: Option<&'e Node>,
        hi: Option<&'e Node>,
        at: At,
        tr: &mut T,
    ) -> Tri {
        let mut t = Tri::True;
        if let Some(lo) = lo {
            let l = self.val(lo, at, tr);
            t = and3(t, compare(CmpOp::Ge, x.v, l.v));
        }
        if let Some(hi) = hi {
            let h = self.val(hi, at, tr);
            t = and3(t, compare(CmpOp::Lt, x.v, h.v));
        }
        with_doubt(t, x.doubt)
    }

    /// The truth of a comparison of one expression with constants (`x op k`, `k op x`, `x in
    /// lo .. hi`) given the expression's value `x`: what [`tri`](Self::tri) gives for an
    /// entity whose expression has that value.
    pub fn tri_with(&self, atom: &'e Node, x: Val<'e>) -> Tri {
        let at = At::entity(NO_ENTITY);
        let tr = &mut NoTrace;
        match atom {
            Node::Cmp(op, _, b) if matches!(**b, Node::Const(_)) => {
                let y = self.val(b, at, tr);
                with_doubt(compare(*op, x.v, y.v), x.doubt || y.doubt)
            }
            Node::Cmp(op, a, _) => {
                let y = self.val(a, at, tr);
                with_doubt(compare(*op, y.v, x.v), x.doubt || y.doubt)
            }
            Node::InRange(_, lo, hi) => self.in_range(x, lo.as_deref(), hi.as_deref(), at, tr),
            _ => Tri::Unknown,
        }
    }

    /// The row of `table` that fields read for `at`, and whether its link is doubtful.
    fn row_of(&self, table: usize, at: At) -> (Option<usize>, bool) {
        match at.row {
            Some((t, r)) if t == table => (Some(r), at.row_doubt),
            _ => match primary_row(&self.env.tables[table], at.e) {
                Some((r, d)) => (Some(r), d),
                None => (None, false),
            },
        }
    }

    fn rel_bool<T: Trace>(
        &self,
        agg: Agg,
        rel: usize,
        body: Option<&'e Node>,
        at: At,
        tr: &mut T,
    ) -> Tri {
        let r = &self.env.rels[rel];
        let t = rel_fold(
            agg,
            r.of(at.e).iter().map(|&(x, doubtful)| {
                let t = body.map_or(Tri::True, |b| self.tri(b, At::entity(x), &mut NoTrace));
                (t, doubtful)
            }),
        );
        if tr.on() {
            tr.note(format!(
                "{}({}): {} related → {}",
                agg.name(),
                r.name,
                r.of(at.e).len(),
                t.as_str()
            ));
        }
        t
    }

    /// Rows of `table` for `at.e` that surely / possibly pass `filter`.
    fn count_rows<T: Trace>(
        &self,
        table: usize,
        filter: Option<&'e Node>,
        at: At,
        _tr: &mut T,
    ) -> (u64, u64) {
        if let Some(x) = self.aggs.and_then(|a| a.count(table, filter, at)) {
            return x;
        }
        let t = &self.env.tables[table];
        let mut fold = RowFold::default();
        for r in t.t.rows_of(at.e) {
            let pass = match filter {
                None => Tri::True,
                Some(f) => self.tri(f, At::row(at.e, table, r), &mut NoTrace),
            };
            fold.count(pass, t.doubtful.contains(r as u32));
        }
        fold.counts()
    }

    /// The value of a node for `at`.
    pub fn val<T: Trace>(&self, n: &'e Node, at: At, tr: &mut T) -> Val<'e> {
        if let Some((p, x)) = self.given
            && p == n as *const Node as usize
        {
            return x;
        }
        match n {
            Node::Const(c) => Val::of(match c {
                ConstVal::Num(x) => V::Num(*x, *x),
                ConstVal::Str(s) => V::Str(Text::Str(s.as_str())),
                ConstVal::Bool(b) => V::Bool(*b),
                ConstVal::Date(d) => V::Date(*d),
                ConstVal::Month(m) => V::Month(*m),
            }),
            Node::Field { col, .. } if self.given_raw.is_some_and(|g| g.0 == *col) => {
                let raw = self.given_raw.and_then(|g| g.1);
                Val::of(value_of(&self.env.cols[*col].1, raw, 0))
            }
            Node::Field { table, col } => {
                let c = &self.env.cols[*col].1;
                let (row, doubt) = self.row_of(*table, at);
                let v = row.map_or(V::Missing, |r| read(c, r));
                if tr.on() && at.row.is_none() {
                    tr.note(format!(
                        "{} = {v}{}",
                        self.env.cols[*col].0,
                        if doubt { " (doubtful link)" } else { "" }
                    ));
                }
                Val { v, doubt }
            }
            Node::Arith(op, a, b) => {
                let (x, y) = (self.val(a, at, tr), self.val(b, at, tr));
                Val {
                    v: arith(*op, x.v, y.v),
                    doubt: x.doubt || y.doubt,
                }
            }
            Node::Neg(x) => {
                let x = self.val(x, at, tr);
                Val {
                    v: match x.v {
                        V::Num(l, h) => V::Num(-h, -l),
                        _ => V::Missing,
                    },
                    doubt: x.doubt,
                }
            }
            Node::Offset(x, u) => {
                let x = self.val(x, at, tr);
                Val {
                    v: match x.v {
                        V::Num(l, h) if l == h => V::Offset(l, *u),
                        _ => V::Missing,
                    },
                    doubt: x.doubt,
                }
            }
            Node::Call(f, args) => {
                // Functions take one or two arguments (the checker makes sure).
                let mut vals = [Val::missing(); 2];
                for (slot, a) in vals.iter_mut().zip(args) {
                    *slot = self.val(a, at, tr);
                }
                let vals = &vals[..args.len().min(2)];
                let doubt = vals.iter().any(|v| v.doubt);
                let v = call(*f, vals, self.env.as_of);
                if tr.on() && *f == Func::Age {
                    tr.note(format!("age on {} = {v}", self.env.as_of));
                }
                Val {
                    v,
                    doubt: doubt && *f != Func::IsMissing,
                }
            }
            Node::TableAgg {
                agg: Agg::Count,
                table,
                filter,
                ..
            } => {
                let (lo, hi) = self.count_rows(*table, filter.as_deref(), at, tr);
                if tr.on() {
                    tr.note(format!(
                        "count {} rows = {}",
                        self.env.tables[*table].name,
                        V::Num(lo as f64, hi as f64)
                    ));
                }
                Val::of(V::Num(lo as f64, hi as f64))
            }
            Node::TableAgg {
                agg,
                table,
                col: Some(col),
                filter,
            } => {
                let v = self.fold_rows(*agg, *table, *col, filter.as_deref(), at);
                if tr.on() {
                    tr.note(format!("{}({}) = {v}", agg.name(), self.env.cols[*col].0));
                }
                Val::of(v)
            }
            Node::RelAgg {
                agg: Agg::Count,
                rel,
                body,
            } => {
                let r = &self.env.rels[*rel];
                let (lo, hi) = rel_count(r.of(at.e).iter().map(|&(x, doubtful)| {
                    let t = body
                        .as_deref()
                        .map_or(Tri::True, |b| self.tri(b, At::entity(x), &mut NoTrace));
                    (t, doubtful)
                }));
                let v = V::Num(lo as f64, hi as f64);
                if tr.on() {
                    tr.note(format!("count({}) = {v} of {}", r.name, r.of(at.e).len()));
                }
                Val::of(v)
            }
            Node::If(cond, a, b) => match self.tri(cond, at, tr) {
                Tri::True => self.val(a, at, tr),
                Tri::False => self.val(b, at, tr),
                Tri::Unknown => {
                    let (x, y) = (self.val(a, at, tr), self.val(b, at, tr));
                    if x.v == y.v { x } else { Val::missing() }
                }
            },
            Node::Band { of, arms } => {
                let x = self.val(of, at, tr);
                let num = |v: V<'_>| match v {
                    V::Num(l, h) => Some((l, h)),
                    V::Date(d) => Some((f64::from(d), f64::from(d))),
                    _ => None,
                };
                let Some((l, h)) = num(x.v) else {
                    return Val::missing();
                };
                let arm = |v: f64| {
                    arms.iter().position(|(lo, hi, _)| {
                        lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v < hi)
                    })
                };
                match (arm(l), arm(h)) {
                    (Some(a), Some(b)) if a == b => {
                        let v = self.val(&arms[a].2, at, tr);
                        Val {
                            v: v.v,
                            doubt: v.doubt || x.doubt,
                        }
                    }
                    _ => Val::missing(),
                }
            }
            // Boolean nodes as values.
            other => {
                let t = self.tri(other, at, tr);
                match t {
                    Tri::True => Val::of(V::Bool(true)),
                    Tri::False => Val::of(V::Bool(false)),
                    Tri::Unknown => Val::missing(),
                }
            }
        }
    }

    fn fold_rows(
        &self,
        agg: Agg,
        table: usize,
        col: usize,
        filter: Option<&'e Node>,
        at: At,
    ) -> V<'e> {
        if let Some(v) = self.aggs.and_then(|a| a.fold(agg, table, col, filter, at)) {
            return v;
        }
        let t = &self.env.tables[table];
        let c = &self.env.cols[col].1;
        let mut fold = RowFold::default();
        for r in t.t.rows_of(at.e) {
            let pass = match filter {
                None => Tri::True,
                Some(f) => self.tri(f, At::row(at.e, table, r), &mut NoTrace),
            };
            fold.add(pass, t.doubtful.contains(r as u32), || read(c, r));
        }
        fold.finish(agg)
    }
}

/// The rows of one entity folded into an aggregate (`count`, `exists`, `sum`, `min`, `max`
/// over a table): the one definition the interpreter and the columnar scan share, so that
/// both give the same value bit for bit.
#[derive(Debug, Clone, Copy)]
pub struct RowFold {
    /// Any row at all (a fold over no rows is missing).
    rows: bool,
    /// Rows surely / possibly passing.
    n_lo: u64,
    n_hi: u64,
    /// Sums over sure rows, widened by possible ones.
    lo: f64,
    hi: f64,
    /// Least and greatest value over sure rows, and over sure and possible rows (when any).
    any_sure: bool,
    sure_min: f64,
    sure_max: f64,
    any_maybe: bool,
    maybe_min: f64,
    maybe_max: f64,
    /// The values are dates (1) or months (2), not numbers (0).
    kind: u8,
}

impl Default for RowFold {
    fn default() -> Self {
        RowFold {
            rows: false,
            n_lo: 0,
            n_hi: 0,
            lo: 0.0,
            hi: 0.0,
            any_sure: false,
            sure_min: f64::INFINITY,
            sure_max: f64::NEG_INFINITY,
            any_maybe: false,
            maybe_min: f64::INFINITY,
            maybe_max: f64::NEG_INFINITY,
            kind: 0,
        }
    }
}

impl RowFold {
    /// A row that passes the filter `pass` counted; a sure pass through a doubtful link is
    /// only possible.
    #[inline]
    pub fn count(&mut self, pass: Tri, doubtful: bool) {
        self.rows = true;
        match pass {
            Tri::True if !doubtful => {
                self.n_lo += 1;
                self.n_hi += 1;
            }
            Tri::False => {}
            _ => self.n_hi += 1,
        }
    }

    /// Rows counted in bulk: `sure` surely passing, `possible` possibly (sure included).
    #[inline]
    pub fn count_many(&mut self, sure: u64, possible: u64) {
        self.rows = true;
        self.n_lo += sure;
        self.n_hi += possible;
    }

    /// A row's value folded in (read only when the row may pass).
    #[inline]
    pub fn add<'a>(&mut self, pass: Tri, doubtful: bool, value: impl FnOnce() -> V<'a>) {
        self.rows = true;
        let sure = match pass {
            Tri::True => !doubtful,
            Tri::Unknown => false,
            Tri::False => return,
        };
        match value() {
            V::Num(x, _) => self.add_value(sure, x, 0),
            V::Date(d) => self.add_value(sure, f64::from(d), 1),
            V::Month(d) => self.add_value(sure, f64::from(d), 2),
            _ => {}
        }
    }

    /// A row seen, whatever it holds.
    #[inline]
    pub fn touch(&mut self) {
        self.rows = true;
    }

    /// The value `x` of a row surely (`sure`) or possibly passing: a number (kind 0), a date
    /// (1) or a month (2). The row must have been [touched](RowFold::touch).
    #[inline]
    pub fn add_value(&mut self, sure: bool, x: f64, kind: u8) {
        if kind != 0 {
            self.kind = kind;
        }
        self.any_maybe = true;
        self.maybe_min = self.maybe_min.min(x);
        self.maybe_max = self.maybe_max.max(x);
        if sure {
            self.any_sure = true;
            self.sure_min = self.sure_min.min(x);
            self.sure_max = self.sure_max.max(x);
            self.lo += x;
            self.hi += x;
        } else {
            self.lo += x.min(0.0);
            self.hi += x.max(0.0);
        }
    }

    /// Rows surely and possibly passing.
    pub fn counts(&self) -> (u64, u64) {
        (self.n_lo, self.n_hi)
    }

    /// The value of a `sum`, `min` or `max`.
    pub fn finish<'a>(&self, agg: Agg) -> V<'a> {
        if !self.rows {
            return V::Missing;
        }
        let wrap = |a: f64, b: f64| match self.kind {
            1 if a == b => V::Date(a as i32),
            2 if a == b => V::Month(a as i32),
            1 | 2 => V::Missing,
            _ => V::Num(a, b),
        };
        match (agg, self.any_sure, self.any_maybe) {
            (Agg::Sum, ..) => V::Num(self.lo, self.hi),
            (Agg::Min, true, _) => wrap(self.maybe_min, self.sure_min),
            // Only possible rows: the minimum is at least theirs, at most unbounded.
            (Agg::Min, false, true) => wrap(self.maybe_min, f64::INFINITY),
            (Agg::Max, true, _) => wrap(self.sure_max, self.maybe_max),
            (Agg::Max, false, true) => wrap(f64::NEG_INFINITY, self.maybe_max),
            _ => V::Missing,
        }
    }
}

/// `op` over two numbers, each an interval `[lo, hi]` of what it may be: the interval of the
/// result, or `None` where there is none (a division by an interval holding zero). The one
/// definition the interpreter ([`arith`]) and the amounts' lanes ([`super::lanes`]) share.
pub(super) fn num_arith(
    op: ArithOp,
    (l1, h1): (f64, f64),
    (l2, h2): (f64, f64),
) -> Option<(f64, f64)> {
    let span = |c: [f64; 4]| {
        (
            c.iter().copied().fold(f64::INFINITY, f64::min),
            c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    match op {
        ArithOp::Add => Some((l1 + l2, h1 + h2)),
        ArithOp::Sub => Some((l1 - h2, h1 - l2)),
        ArithOp::Mul => Some(span(
            [l1 * l2, l1 * h2, h1 * l2, h1 * h2].map(|x| if x.is_nan() { 0.0 } else { x }),
        )),
        ArithOp::Div if l2 <= 0.0 && h2 >= 0.0 => None,
        ArithOp::Div => Some(span([l1 / l2, l1 / h2, h1 / l2, h1 / h2])),
    }
}

/// `min` or `max` (`f`) of two numbers' intervals, bound by bound.
pub(super) fn num_pick(f: Func, (l1, h1): (f64, f64), (l2, h2): (f64, f64)) -> (f64, f64) {
    let pick = |x: f64, y: f64| if f == Func::Min { x.min(y) } else { x.max(y) };
    (pick(l1, l2), pick(h1, h2))
}

/// `round`, `floor` or `ceil` (`f`) of a number.
pub(super) fn num_round(f: Func, x: f64) -> f64 {
    match f {
        Func::Round => x.round(),
        Func::Floor => x.floor(),
        _ => x.ceil(),
    }
}

fn arith<'a>(op: ArithOp, a: V<'a>, b: V<'a>) -> V<'a> {
    match (op, a, b) {
        (_, V::Num(l1, h1), V::Num(l2, h2)) => {
            num_arith(op, (l1, h1), (l2, h2)).map_or(V::Missing, |(l, h)| V::Num(l, h))
        }
        (ArithOp::Add, V::Date(d), V::Offset(n, u)) => {
            shift(Date(d), n as i32, u).map_or(V::Missing, |x| V::Date(x.0))
        }
        (ArithOp::Sub, V::Date(d), V::Offset(n, u)) => {
            shift(Date(d), -(n as i32), u).map_or(V::Missing, |x| V::Date(x.0))
        }
        (ArithOp::Add | ArithOp::Sub, V::Month(m), V::Offset(n, u)) => {
            let k = match u {
                Unit::Months => n as i32,
                Unit::Years => n as i32 * 12,
                Unit::Days => return V::Missing,
            };
            V::Month(if op == ArithOp::Add { m + k } else { m - k })
        }
        (ArithOp::Sub, V::Date(x), V::Date(y)) => V::Num(f64::from(x - y), f64::from(x - y)),
        (ArithOp::Sub, V::Month(x), V::Month(y)) => V::Num(f64::from(x - y), f64::from(x - y)),
        _ => V::Missing,
    }
}

fn call<'a>(f: Func, args: &[Val<'a>], as_of: Date) -> V<'a> {
    let a = args.first().map_or(V::Missing, |v| v.v);
    let b = args.get(1).map_or(V::Missing, |v| v.v);
    let month = |v: V<'_>| match v {
        V::Date(d) => Some(Date(d).month().0),
        V::Month(m) => Some(m),
        _ => None,
    };
    match f {
        Func::IsMissing => V::Bool(a == V::Missing),
        Func::Age => match a {
            V::Date(d) => {
                let age = f64::from(Date(d).age_on(as_of));
                V::Num(age, age)
            }
            _ => V::Missing,
        },
        Func::Year => match a {
            V::Date(d) => {
                let y = f64::from(Date(d).year());
                V::Num(y, y)
            }
            V::Month(m) => {
                let y = f64::from(Month(m).year());
                V::Num(y, y)
            }
            _ => V::Missing,
        },
        Func::Month => month(a).map_or(V::Missing, V::Month),
        Func::MonthsBetween => match (month(a), month(b)) {
            (Some(x), Some(y)) => V::Num(f64::from(y - x), f64::from(y - x)),
            _ => V::Missing,
        },
        Func::Min | Func::Max => {
            let pick = |x: f64, y: f64| num_pick(f, (x, x), (y, y)).0;
            match (a, b) {
                (V::Num(l1, h1), V::Num(l2, h2)) => {
                    let (l, h) = num_pick(f, (l1, h1), (l2, h2));
                    V::Num(l, h)
                }
                (V::Date(x), V::Date(y)) => V::Date(pick(f64::from(x), f64::from(y)) as i32),
                (V::Month(x), V::Month(y)) => V::Month(pick(f64::from(x), f64::from(y)) as i32),
                _ => V::Missing,
            }
        }
        Func::Round | Func::Floor | Func::Ceil => match a {
            V::Num(l, h) => V::Num(num_round(f, l), num_round(f, h)),
            _ => V::Missing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The adjacency arrays by one sort of every edge and a dedup, as the index was first built.
    fn adjacency_naive(n: usize, edges: &[Vec<Edge>]) -> Adjacency {
        let mut all: Vec<Edge> = edges.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        let mut offsets = vec![0u32; n + 1];
        for &(f, _, _) in &all {
            offsets[f as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        (offsets, all.iter().map(|&(_, x, d)| (x, d)).collect())
    }

    proptest! {
        /// Edges in any order, repeated, sure and doubtful, in any number of tasks' lists,
        /// placed in blocks of any size (one block for all entities, one per entity, some
        /// between, the last one short).
        #[test]
        fn adjacency_is_sorted_deduplicated_edges(
            n in 1usize..40,
            raw in prop::collection::vec((0u32..40, 0u32..40, any::<bool>()), 0..200),
            cuts in prop::collection::vec(0usize..200, 0..4),
            block in 1usize..48,
        ) {
            let edges: Vec<Edge> = raw
                .into_iter()
                .map(|(f, x, d)| (f % n as u32, x % n as u32, d))
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(edges.len())).collect();
            cuts.sort_unstable();
            let mut lists = Vec::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([edges.len()]) {
                lists.push(edges[from..c].to_vec());
                from = c;
            }
            prop_assert_eq!(adjacency(n, &lists, block), adjacency_naive(n, &lists));
        }

        /// Few edges over many entities: sorted whole.
        #[test]
        fn sparse_adjacency_is_sorted_deduplicated_edges(
            n in 200usize..400,
            raw in prop::collection::vec((0u32..400, 0u32..400, any::<bool>()), 0..40),
        ) {
            let edges: Vec<Edge> = raw
                .into_iter()
                .map(|(f, x, d)| (f % n as u32, x % n as u32, d))
                .collect();
            let lists = vec![edges];
            prop_assert_eq!(adjacency(n, &lists, ENTITY_CHUNK), adjacency_naive(n, &lists));
        }
    }
}
