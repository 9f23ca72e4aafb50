//! An amount evaluated a chunk of candidates at a time, node by node, over typed lanes.
//!
//! The interpreter ([`Evaluator::val`]) walks an amount's tree once per candidate. For M04's
//! `max(YB.enrol.premium_individual where …) * (if exists(MZ.tekun where …) then full_rate
//! else partial_rate)` over 259,555 candidates that walk took 8–12 ms of a recombined
//! catalogue's 35 ms. Here the tree is compiled once into [`Op`]s, and each op runs over a
//! chunk of candidates as a loop over numbers: a constant fills its lane, an aggregate is read
//! at the candidates' aligned positions ([`AggValues::align`]), arithmetic is done on the
//! intervals lane by lane, an `if` picks between its branches' lanes by its condition's state.
//!
//! A node the lanes do not know (a field, a band, a relation's count) is evaluated by the
//! interpreter for each candidate of the chunk, and its value put in the lane. A value that is
//! not a number (a date, say, which a later subtraction would turn into one) marks the
//! candidate, and the interpreter then evaluates that candidate's amount whole. Every amount
//! is thus the interpreter's own, bit for bit: the numeric kernels are the interpreter's
//! ([`num_arith`], [`num_pick`], [`num_round`]), and a property test compares the two.

use rayon::prelude::*;

use super::ast::{Agg, ArithOp, Func, Tri};
use super::eval::{At, ConstVal, Evaluator, NoTrace, Node, V, num_arith, num_pick, num_round};
use super::scan::AggValues;

/// Candidates per chunk: a lane of this many intervals (16 KB) stays in a core's cache.
const CHUNK: usize = 1024;

/// What a lane holds for one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A number, the interval `[lo, hi]`.
    Num,
    /// No value (`V::Missing`).
    Missing,
    /// A value that is not a number: the candidate's amount is left to the interpreter.
    Other,
}

/// One node's values over a chunk of candidates.
#[derive(Debug, Default)]
struct Lane {
    st: Vec<State>,
    lo: Vec<f64>,
    hi: Vec<f64>,
}

impl Lane {
    fn with_len(n: usize) -> Lane {
        Lane {
            st: vec![State::Missing; n],
            lo: vec![0.0; n],
            hi: vec![0.0; n],
        }
    }

    fn set(&mut self, i: usize, v: V<'_>) {
        let (st, lo, hi) = match v {
            V::Num(l, h) => (State::Num, l, h),
            V::Missing => (State::Missing, 0.0, 0.0),
            _ => (State::Other, 0.0, 0.0),
        };
        self.st[i] = st;
        self.lo[i] = lo;
        self.hi[i] = hi;
    }

    fn num(&mut self, i: usize, x: Option<(f64, f64)>) {
        match x {
            Some((l, h)) => {
                self.st[i] = State::Num;
                self.lo[i] = l;
                self.hi[i] = h;
            }
            None => self.st[i] = State::Missing,
        }
    }

    fn at(&self, i: usize) -> (f64, f64) {
        (self.lo[i], self.hi[i])
    }
}

/// An amount's tree, compiled for lanes.
#[derive(Debug)]
enum Op<'n> {
    Const(f64),
    /// `count(…)` / `exists(…)` counted: `[sure, possible]` rows.
    Count {
        node: &'n Node,
        table: usize,
        filter: Option<&'n Node>,
    },
    /// `sum` / `min` / `max` of a column over rows.
    Fold {
        node: &'n Node,
        agg: Agg,
        table: usize,
        col: usize,
        filter: Option<&'n Node>,
    },
    Arith(ArithOp, Box<Op<'n>>, Box<Op<'n>>),
    Neg(Box<Op<'n>>),
    /// `min(a, b)` / `max(a, b)`.
    Pick(Func, Box<Op<'n>>, Box<Op<'n>>),
    /// `round` / `floor` / `ceil`.
    Round(Func, Box<Op<'n>>),
    If(&'n Node, Box<Op<'n>>, Box<Op<'n>>),
    /// Evaluated by the interpreter, candidate by candidate.
    Interpret(&'n Node),
}

fn compile(n: &Node) -> Op<'_> {
    fn boxed(x: &Node) -> Box<Op<'_>> {
        Box::new(compile(x))
    }
    match n {
        Node::Const(ConstVal::Num(x)) => Op::Const(*x),
        Node::TableAgg {
            agg: Agg::Count,
            table,
            filter,
            ..
        } => Op::Count {
            node: n,
            table: *table,
            filter: filter.as_deref(),
        },
        Node::TableAgg {
            agg: agg @ (Agg::Sum | Agg::Min | Agg::Max),
            table,
            col: Some(col),
            filter,
        } => Op::Fold {
            node: n,
            agg: *agg,
            table: *table,
            col: *col,
            filter: filter.as_deref(),
        },
        Node::Arith(op, a, b) => Op::Arith(*op, boxed(a), boxed(b)),
        Node::Neg(x) => Op::Neg(boxed(x)),
        Node::Call(f @ (Func::Min | Func::Max), args) if args.len() == 2 => {
            Op::Pick(*f, boxed(&args[0]), boxed(&args[1]))
        }
        Node::Call(f @ (Func::Round | Func::Floor | Func::Ceil), args) if args.len() == 1 => {
            Op::Round(*f, boxed(&args[0]))
        }
        Node::If(c, a, b) => Op::If(c, boxed(a), boxed(b)),
        _ => Op::Interpret(n),
    }
}

/// `(candidate, amount)` for each of `ids` (ascending) whose amount `node` gives and is a
/// finite number, in `ids`' order, as `ev.val(node, At::in_batch(e, i)).v.amount()` would
/// give it. `ev` is given no node's value ([`Evaluator`]'s `given`), and reads `aggs`, aligned
/// with `ids`.
pub(super) fn amounts<'e>(
    ev: &Evaluator<'e, '_>,
    aggs: &AggValues,
    node: &'e Node,
    ids: &[u32],
) -> Vec<(u32, f64)> {
    let op = compile(node);
    let whole = |e: u32, i: usize| ev.val(node, At::in_batch(e, i), &mut NoTrace).v.amount();
    let parts: Vec<Vec<(u32, f64)>> = ids
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(k, chunk)| {
            let base = k * CHUNK;
            if let Op::Interpret(_) = op {
                return chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(j, &e)| Some((e, whole(e, base + j)?)))
                    .collect();
            }
            let lane = Run {
                ev,
                aggs,
                ids: chunk,
                base,
            }
            .lane(&op);
            let mut out = Vec::with_capacity(chunk.len());
            for (j, &e) in chunk.iter().enumerate() {
                let amount = match lane.st[j] {
                    State::Num => V::Num(lane.lo[j], lane.hi[j]).amount(),
                    State::Missing => None,
                    State::Other => whole(e, base + j),
                };
                if let Some(a) = amount {
                    out.push((e, a));
                }
            }
            out
        })
        .collect();
    parts.concat()
}

/// One chunk's evaluation: its candidates and their first position in the batch.
struct Run<'r, 'e, 's> {
    ev: &'r Evaluator<'e, 's>,
    aggs: &'r AggValues,
    ids: &'r [u32],
    base: usize,
}

impl<'e> Run<'_, 'e, '_> {
    fn at(&self, j: usize) -> At {
        At::in_batch(self.ids[j], self.base + j)
    }

    /// Candidate `j`'s value of `node` by the interpreter.
    fn interpret(&self, node: &'e Node, j: usize) -> V<'e> {
        self.ev.val(node, self.at(j), &mut NoTrace).v
    }

    /// `out` from two numbers' lanes by `f`: a number where both are (`None` from `f`:
    /// missing), for the interpreter where either is not a number, else missing.
    fn binary(
        &self,
        a: &Op<'e>,
        b: &Op<'e>,
        out: &mut Lane,
        f: impl Fn((f64, f64), (f64, f64)) -> Option<(f64, f64)>,
    ) {
        let (a, b) = (self.lane(a), self.lane(b));
        for j in 0..self.ids.len() {
            match (a.st[j], b.st[j]) {
                (State::Num, State::Num) => out.num(j, f(a.at(j), b.at(j))),
                (State::Other, _) | (_, State::Other) => out.st[j] = State::Other,
                _ => out.st[j] = State::Missing,
            }
        }
    }

    /// `out` from one number's lane by `f` on its interval; its state as it is.
    fn unary(&self, x: &Op<'e>, out: &mut Lane, f: impl Fn((f64, f64)) -> (f64, f64)) {
        let x = self.lane(x);
        for j in 0..self.ids.len() {
            out.st[j] = x.st[j];
            (out.lo[j], out.hi[j]) = f(x.at(j));
        }
    }

    fn lane(&self, op: &Op<'e>) -> Lane {
        let n = self.ids.len();
        let mut out = Lane::with_len(n);
        match op {
            Op::Const(x) => {
                out.st.fill(State::Num);
                out.lo.fill(*x);
                out.hi.fill(*x);
            }
            Op::Count {
                node,
                table,
                filter,
            } => {
                let read = self.aggs.count_reader(*table, *filter);
                for j in 0..n {
                    match read.as_ref().and_then(|r| r(self.at(j))) {
                        Some((lo, hi)) => out.num(j, Some((lo as f64, hi as f64))),
                        None => out.set(j, self.interpret(node, j)),
                    }
                }
            }
            Op::Fold {
                node,
                agg,
                table,
                col,
                filter,
            } => {
                let read = self.aggs.fold_reader(*agg, *table, *col, *filter);
                for j in 0..n {
                    match read.as_ref().and_then(|r| r(self.at(j))) {
                        Some(v) => out.set(j, v),
                        None => out.set(j, self.interpret(node, j)),
                    }
                }
            }
            Op::Arith(f, a, b) => {
                self.binary(a, b, &mut out, |x, y| num_arith(*f, x, y));
            }
            Op::Pick(f, a, b) => {
                self.binary(a, b, &mut out, |x, y| Some(num_pick(*f, x, y)));
            }
            Op::Neg(x) => self.unary(x, &mut out, |(l, h)| (-h, -l)),
            Op::Round(f, x) => {
                self.unary(x, &mut out, |(l, h)| (num_round(*f, l), num_round(*f, h)));
            }
            Op::If(c, a, b) => {
                let (a, b) = (self.lane(a), self.lane(b));
                // The condition's states, when the engine gives them for the batch; else the
                // interpreter's, candidate by candidate.
                let given = self
                    .ev
                    .given_states(c)
                    .and_then(|s| s.get(self.base..self.base + n));
                for j in 0..n {
                    let state = match given {
                        Some(s) => s[j],
                        None => self.ev.tri(c, self.at(j), &mut NoTrace),
                    };
                    let pick = match state {
                        Tri::True => Some(&a),
                        Tri::False => Some(&b),
                        // Unknown: the value both branches agree on, if they do.
                        Tri::Unknown => match (a.st[j], b.st[j]) {
                            (State::Other, _) | (_, State::Other) => {
                                out.st[j] = State::Other;
                                None
                            }
                            (State::Num, State::Num) if a.at(j) == b.at(j) => Some(&a),
                            _ => None,
                        },
                    };
                    if let Some(x) = pick {
                        out.st[j] = x.st[j];
                        out.lo[j] = x.lo[j];
                        out.hi[j] = x.hi[j];
                    }
                }
            }
            Op::Interpret(node) => {
                for j in 0..n {
                    out.set(j, self.interpret(node, j));
                }
            }
        }
        out
    }
}
