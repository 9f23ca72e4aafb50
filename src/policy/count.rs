//! Many policies counted at once, block-major (DESIGN.md §3.6).
//!
//! An analyst's sweep of a parameter, or thousands of random combinations of the catalogue's
//! conditions, asks for counts: how many candidates, to-verify and near-miss entities each
//! policy has and which condition blocks the most. Run one by one, each policy streams its
//! conditions' parts from memory and builds its three sets as roaring bitmaps. Here every
//! policy is combined on one block of the universe (65,536 ids) before the next block is
//! read: the conditions' parts of that block stay in the core's cache while every policy
//! reads them, and nothing is written but counts (and, when asked, each policy's candidates:
//! [`count_many_with_candidates`]). Each part is read in its own form ([`Part`]), as when
//! combining one policy.
//!
//! Policies that share conditions share the work of combining them: the policies'
//! conditions form a prefix tree (`Trie`), each policy's taken in one order for all (the
//! conditions most policies hold first), and a block is walked depth first, a node's prefix
//! combined once from its parent's for every policy beneath it. A sweep shares everything
//! but the swept condition; random combinations share their first one or two conditions.
//! What each policy still does alone is the end of its path and its sole-blocked counts.
//!
//! Measured at 10M persons (6,418 random policies of 2–5 catalogue conditions): 0.76 s
//! policy by policy over each block, 0.40 s walking the tree; the catalogue's 27 candidate
//! sets with their counts 7.0 ms (BENCHMARKS.md, issue 4).

use std::sync::Arc;

use rayon::prelude::*;

use roaring::RoaringBitmap;

use super::dense::{BLOCK, Part, Span, all_but_into, bit, block_set};
use super::engine::{CondParts, Sets};

/// How many candidates, to-verify and near-miss ids a policy has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub candidates: u64,
    pub to_verify: u64,
    pub near_miss: u64,
}

/// Universes of fewer blocks than this are split by policies too, so both cores work.
const SPLIT_BELOW: usize = 8;

/// Policies per task when a universe is split by policies.
pub(super) const CHUNK: usize = 256;

/// Policies combined block-major, for counts only. `policies[k]` holds policy k's
/// conditions (their sets within `universe`); the result is, for each policy, its counts
/// and each condition's sole-blocked count (entities failing it and no other).
pub fn count_many(universe: &Sets, policies: &[Vec<Arc<Sets>>]) -> Vec<(Counts, Vec<u64>)> {
    walk_many(universe, policies, false)
        .into_iter()
        .map(|(counts, sole, _)| (counts, sole))
        .collect()
}

/// As [`count_many`], each policy's candidates written out too: a block's candidates become
/// the set's container for that block where the policy's path ends.
pub fn count_many_with_candidates(
    universe: &Sets,
    policies: &[Vec<Arc<Sets>>],
) -> Vec<(Counts, Vec<u64>, RoaringBitmap)> {
    walk_many(universe, policies, true)
        .into_iter()
        .map(|(counts, sole, ids)| (counts, sole, ids.unwrap_or_default()))
        .collect()
}

/// Policies combined block-major; each policy's candidates written out when `collect`.
pub(super) fn walk_many(
    universe: &Sets,
    policies: &[Vec<Arc<Sets>>],
    collect: bool,
) -> Vec<(Counts, Vec<u64>, Option<RoaringBitmap>)> {
    let span = Span::of(universe.t());
    let uni = universe.words(span);
    // The distinct conditions, and each policy's as indexes into them.
    let mut distinct: Vec<Arc<Sets>> = Vec::new();
    let mut index: std::collections::HashMap<*const Sets, u32> = Default::default();
    let reads: Vec<Vec<u32>> = policies
        .iter()
        .map(|conds| {
            conds
                .iter()
                .map(|s| {
                    *index.entry(Arc::as_ptr(s)).or_insert_with(|| {
                        distinct.push(s.clone());
                        (distinct.len() - 1) as u32
                    })
                })
                .collect()
        })
        .collect();
    let parts: Vec<Arc<CondParts>> = distinct.par_iter().map(|s| s.parts(&uni)).collect();
    // Each policy's slots in one flat vector: three counts, then a sole-blocked count per
    // condition.
    let mut offsets = Vec::with_capacity(reads.len() + 1);
    offsets.push(0);
    for r in &reads {
        offsets.push(offsets[offsets.len() - 1] + 3 + r.len());
    }
    let slots = offsets[reads.len()];
    let chunks = if span.count < SPLIT_BELOW {
        reads.len().div_ceil(CHUNK).max(1)
    } else {
        1
    };
    let chunk = reads.len().div_ceil(chunks).max(1);
    let orders = path_orders(&reads, distinct.len());
    let paths: Vec<Vec<u32>> = reads
        .iter()
        .zip(&orders)
        .map(|(r, order)| order.iter().map(|&i| r[i]).collect())
        .collect();
    let tries: Vec<Trie> = (0..chunks)
        .map(|c| Trie::of(&paths, c * chunk..reads.len().min((c + 1) * chunk)))
        .collect();
    let words = uni.t.as_chunks::<BLOCK>().0;
    let (sums, mut found) = (0..span.count * chunks)
        .into_par_iter()
        .fold(
            || (Walker::default(), vec![0u64; slots]),
            |(mut walker, mut sums), task| {
                let (b, c) = (task / chunks, task % chunks);
                let x = &words[b];
                let walk = Walk {
                    b,
                    key: span.first + b as u32,
                    x,
                    universe: popcount(x),
                    parts: &parts,
                    trie: &tries[c],
                    orders: &orders,
                    offsets: &offsets,
                    collect,
                };
                walk.run(&mut walker, &mut sums);
                (walker, sums)
            },
        )
        .map(|(walker, sums)| (sums, walker.found))
        .reduce(
            || (vec![0u64; slots], Vec::new()),
            |(mut a, mut found), (b, more)| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                found.extend(more);
                (a, found)
            },
        );
    // Each policy's blocks in ascending order, so that each set is built by appending.
    found.sort_unstable_by_key(|&(k, key, _)| (k, key));
    let mut found = found.into_iter().peekable();
    (0..reads.len())
        .map(|k| {
            let s = &sums[offsets[k]..offsets[k + 1]];
            let counts = Counts {
                candidates: s[0],
                to_verify: s[1],
                near_miss: s[2],
            };
            let candidates = collect.then(|| {
                let mut set = RoaringBitmap::new();
                while let Some((_, _, block)) = found.next_if(|f| f.0 as usize == k) {
                    set |= block;
                }
                set
            });
            (counts, s[3..].to_vec(), candidates)
        })
        .collect()
}

/// Policies' conditions as a prefix tree. Each policy's conditions are taken in one order
/// for all policies (the conditions most policies hold first), so policies that share
/// conditions share a path from the root: the prefix a node stands for is combined once, for
/// every policy beneath it. A sweep of one parameter shares everything but the swept
/// condition; thousands of random combinations of a catalogue's conditions share their first
/// one or two.
struct Trie {
    nodes: Vec<Node>,
    /// The longest path (the most conditions of one policy).
    depth: usize,
}

/// A prefix of some policies' conditions: its last condition, the longer prefixes that
/// extend it, and the policies it is the whole of.
struct Node {
    cond: u32,
    children: Vec<u32>,
    ends: Vec<u32>,
}

impl Trie {
    /// The tree of `policies` (indexes into `paths`, each a policy's conditions in path
    /// order).
    fn of(paths: &[Vec<u32>], policies: std::ops::Range<usize>) -> Trie {
        let mut nodes = vec![Node {
            cond: u32::MAX,
            children: Vec::new(),
            ends: Vec::new(),
        }];
        let mut child: std::collections::HashMap<(u32, u32), u32> = Default::default();
        let mut depth = 0;
        for k in policies {
            let mut at = 0u32;
            for &c in &paths[k] {
                at = *child.entry((at, c)).or_insert_with(|| {
                    let n = nodes.len() as u32;
                    nodes.push(Node {
                        cond: c,
                        children: Vec::new(),
                        ends: Vec::new(),
                    });
                    nodes[at as usize].children.push(n);
                    n
                });
            }
            nodes[at as usize].ends.push(k as u32);
            depth = depth.max(paths[k].len());
        }
        Trie { nodes, depth }
    }
}

/// Each policy's conditions in path order (as positions in `reads[k]`): the conditions more
/// policies hold first, so that the tree's upper nodes are shared by as many as can be.
fn path_orders(reads: &[Vec<u32>], distinct: usize) -> Vec<Vec<usize>> {
    let mut holders = vec![0u32; distinct];
    for r in reads {
        for &c in r {
            holders[c as usize] += 1;
        }
    }
    reads
        .iter()
        .map(|r| {
            let mut order: Vec<usize> = (0..r.len()).collect();
            order.sort_by_key(|&i| (std::cmp::Reverse(holders[r[i] as usize]), r[i]));
            order
        })
        .collect()
}

/// One block's words.
type Block = [u64; BLOCK];

/// Where a prefix's words are over one block: the universe's, a condition's part, or a
/// walk buffer (a depth and which of its three).
#[derive(Clone, Copy)]
enum At<'a> {
    Universe,
    Part(&'a Block),
    Buf(usize, usize),
}

/// A walk buffer's three blocks: candidates, ruled out once, ruled out twice.
const ALL: usize = 0;
const ONCE: usize = 1;
const TWICE: usize = 2;

/// The words `at` names.
fn get<'s>(at: At<'s>, x: &'s Block, bufs: &'s [[Box<Block>; 3]]) -> &'s Block {
    match at {
        At::Universe => x,
        At::Part(p) => p,
        At::Buf(d, k) => &bufs[d][k],
    }
}

/// A prefix combined over one block. The candidates are the universe's ids every TRUE part
/// holds; an id ruled out (not possible) by exactly one condition is near a miss, by none and
/// not a candidate it is to verify. A candidate is never ruled out (TRUE implies not FALSE),
/// so with `once` the ids ruled out at least once and `twice` at least twice, to-verify is
/// `universe − once − candidates` and near-miss `once − twice`. A step writes only what its
/// part changes, into its depth's buffer; what it leaves alone stays where it was (an
/// ancestor's buffer, a part's words, the universe's).
#[derive(Clone, Copy)]
struct State<'a> {
    /// The candidates' words.
    all: At<'a>,
    /// Their count, while it is known without counting words (the universe's, or after parts
    /// listing a few ids only).
    candidates: Option<u32>,
    /// A condition holds no id here: no candidates, whatever follows.
    none: bool,
    once: At<'a>,
    twice: At<'a>,
    /// How many of `once`, `twice` hold ids (0, 1 or 2).
    live: u8,
    /// Their counts, while only parts listing a few ids have added to them.
    counted: Option<(u32, u32)>,
}

/// A thread's buffers for walking a tree over blocks: three blocks per depth, and scratch.
#[derive(Default)]
struct Walker {
    bufs: Vec<[Box<Block>; 3]>,
    out: Option<Box<Block>>,
    kept: Vec<u16>,
    sole: Vec<u32>,
    path: Vec<u32>,
    /// Candidates written out: (policy, container key, the policy's candidates there).
    found: Vec<(u32, u32, RoaringBitmap)>,
}

/// One tree's policies over one block: the conditions' parts, the universe's words `x` of
/// block `b` (`universe` ids), and where each policy's counts go.
struct Walk<'a> {
    b: usize,
    /// The block's container key (its ids' upper 16 bits).
    key: u32,
    x: &'a Block,
    universe: u32,
    parts: &'a [Arc<CondParts>],
    trie: &'a Trie,
    orders: &'a [Vec<usize>],
    offsets: &'a [usize],
    /// Write each policy's candidates out.
    collect: bool,
}

impl<'a> Walk<'a> {
    /// Walks the whole tree, adding each policy's counts into `sums`.
    fn run(&self, w: &mut Walker, sums: &mut [u64]) {
        if self.universe == 0 {
            return;
        }
        while w.bufs.len() <= self.trie.depth {
            w.bufs.push([
                Box::new([0; BLOCK]),
                Box::new([0; BLOCK]),
                Box::new([0; BLOCK]),
            ]);
        }
        let root = State {
            all: At::Universe,
            candidates: Some(self.universe),
            none: false,
            once: At::Universe,
            twice: At::Universe,
            live: 0,
            counted: Some((0, 0)),
        };
        w.path.clear();
        self.visit(0, 0, root, w, sums);
    }

    /// Node `n` at `depth`, its prefix combined as `s`: the policies it is the whole of are
    /// counted, then each longer prefix in turn.
    fn visit(&self, n: usize, depth: usize, s: State<'a>, w: &mut Walker, sums: &mut [u64]) {
        let node = &self.trie.nodes[n];
        if !node.ends.is_empty() {
            self.finish(s, &node.ends, w, sums);
        }
        for &child in &node.children {
            let c = self.trie.nodes[child as usize].cond;
            let next = self.step(s, c, depth + 1, w);
            w.path.push(c);
            self.visit(child as usize, depth + 1, next, w, sums);
            w.path.pop();
        }
    }

    /// `s` with condition `c` added, written (where words change) into depth `d`'s buffer.
    fn step(&self, mut s: State<'a>, c: u32, d: usize, w: &mut Walker) -> State<'a> {
        let (x, b) = (self.x, self.b);
        let cond: &'a CondParts = &self.parts[c as usize];
        let (done, rest) = w.bufs.split_at_mut(d);
        let [all, once, twice] = &mut rest[0];
        let (all, once, twice): (&mut Block, &mut Block, &mut Block) = (all, once, twice);
        if !s.none {
            match &cond.t.parts[b] {
                Part::All => {}
                Part::None => {
                    s.candidates = Some(0);
                    s.none = true;
                }
                Part::Words(t) => {
                    s.all = match s.all {
                        // A part's words are within the universe's.
                        At::Universe => At::Part(t),
                        from => {
                            and_from(all, get(from, x, done), t);
                            At::Buf(d, ALL)
                        }
                    };
                    s.candidates = None;
                }
                Part::AllBut(left) => {
                    *all = *get(s.all, x, done);
                    let mut cleared = 0;
                    for &o in left.iter() {
                        let (i, m) = bit(o);
                        cleared += u32::from(all[i] & m != 0);
                        all[i] &= !m;
                    }
                    s.all = At::Buf(d, ALL);
                    s.candidates = s.candidates.map(|n| n - cleared);
                }
                Part::Ids(ids) => {
                    let within = get(s.all, x, done);
                    w.kept.clear();
                    w.kept.extend(ids.iter().filter(|&&o| {
                        let (i, m) = bit(o);
                        within[i] & m != 0
                    }));
                    all.fill(0);
                    for &o in &w.kept {
                        let (i, m) = bit(o);
                        all[i] |= m;
                    }
                    s.all = At::Buf(d, ALL);
                    s.candidates = Some(w.kept.len() as u32);
                }
            }
        }
        // Ruled out at least once, twice: the ids of `within` that `lacks` does not hold.
        let (within, lacks): (&Block, &Block) = match &cond.possible().parts[b] {
            Part::All => return s,
            Part::AllBut(left) => {
                // Ruled out: the few ids left out.
                match s.live {
                    0 => once.fill(0),
                    _ => *once = *get(s.once, x, done),
                }
                match s.live {
                    0 | 1 => twice.fill(0),
                    _ => *twice = *get(s.twice, x, done),
                }
                let (mut new_once, mut new_twice) = (0, 0);
                for &o in left.iter() {
                    let (i, m) = bit(o);
                    let (was_once, was_twice) = (once[i] & m != 0, twice[i] & m != 0);
                    new_twice += u32::from(was_once && !was_twice);
                    new_once += u32::from(!was_once);
                    twice[i] |= once[i] & m;
                    once[i] |= m;
                }
                s.once = At::Buf(d, ONCE);
                s.twice = At::Buf(d, TWICE);
                s.live = 2;
                s.counted = s.counted.map(|(n1, n2)| (n1 + new_once, n2 + new_twice));
                return s;
            }
            Part::None => {
                // Ruled out: the whole universe here (`twice` becomes `once`, which holds it).
                if s.live > 0 {
                    s.twice = s.once;
                }
                s.once = At::Universe;
                s.live = (s.live + 1).min(2);
                s.counted = s.counted.map(|(n1, _)| (self.universe, n1));
                return s;
            }
            Part::Ids(ids) => {
                // Ruled out: the universe but the few ids not FALSE.
                let out = w.out.get_or_insert_with(|| Box::new([0; BLOCK]));
                all_but_into(out, x, ids);
                (out, &ZERO)
            }
            // Ruled out: the universe's ids that the part's words lack.
            Part::Words(p) => (x, p),
        };
        let was = [get(s.once, x, done), get(s.twice, x, done)];
        rule_out(s.live, once, twice, was, within, lacks);
        s.live = (s.live + 1).min(2);
        s.once = At::Buf(d, ONCE);
        s.twice = At::Buf(d, TWICE);
        s.counted = None;
        s
    }

    /// Adds the counts of the prefix `s` (the conditions `w.path`) to each policy of `ends`:
    /// three counts, then a sole-blocked count per condition, in the policy's own order.
    fn finish(&self, s: State<'a>, ends: &[u32], w: &mut Walker, sums: &mut [u64]) {
        let (x, b, universe) = (self.x, self.b, self.universe);
        let bufs = &w.bufs[..];
        let candidates = s
            .candidates
            .unwrap_or_else(|| popcount(get(s.all, x, bufs)));
        let once = get(s.once, x, bufs);
        let two = s.live == 2;
        let twice = if two { get(s.twice, x, bufs) } else { &ZERO };
        let (ruled, twice_n) = match (s.live, s.counted) {
            (0, _) => (0, 0),
            (_, Some(n)) => n,
            (1, None) => (popcount(once), 0),
            (_, None) => (popcount(once), popcount(twice)),
        };
        let near = ruled - twice_n;
        // An id near a miss is ruled out by exactly one condition: the one that rules it out.
        // The near-miss ids are `once` without `twice`.
        w.sole.clear();
        if near > 0 {
            let near_in = |ids: &[u16]| -> u32 {
                ids.iter()
                    .filter(|&&o| {
                        let (i, m) = bit(o);
                        once[i] & m != 0 && twice[i] & m == 0
                    })
                    .count() as u32
            };
            for &c in &w.path {
                w.sole
                    .push(match &self.parts[c as usize].possible().parts[b] {
                        Part::All => 0,
                        Part::None => near,
                        Part::AllBut(left) => near_in(left),
                        Part::Ids(ids) => near - near_in(ids),
                        Part::Words(p) => lacking(once, twice, p),
                    });
            }
        }
        if self.collect && candidates > 0 {
            let block = block_set(get(s.all, x, bufs), self.key, candidates as usize);
            for &k in ends {
                w.found.push((k, self.key, block.clone()));
            }
        }
        for &k in ends {
            let k = k as usize;
            let slots = &mut sums[self.offsets[k]..self.offsets[k + 1]];
            slots[0] += u64::from(candidates);
            slots[1] += u64::from(universe - ruled - candidates);
            slots[2] += u64::from(near);
            for (&pos, &sole) in self.orders[k].iter().zip(&w.sole) {
                slots[3 + pos] += u64::from(sole);
            }
        }
    }
}

/// Ids in `w`.
fn popcount(w: &[u64; BLOCK]) -> u32 {
    w.iter().map(|w| w.count_ones()).sum()
}

/// A block of no ids.
static ZERO: [u64; BLOCK] = [0; BLOCK];

// The loops below are functions of their own: their arguments are known not to overlap, so
// they are vectorised.

/// `all = from & t`.
fn and_from(all: &mut Block, from: &Block, t: &Block) {
    for i in 0..BLOCK {
        all[i] = from[i] & t[i];
    }
}

/// Ids ruled out once and twice, `live` of which held words (`was`), with the ids `x & !p`
/// added, written into `once` and `twice` (`twice` is left alone while only `once` holds
/// ids).
fn rule_out(live: u8, once: &mut Block, twice: &mut Block, was: [&Block; 2], x: &Block, p: &Block) {
    match live {
        0 => {
            for i in 0..BLOCK {
                once[i] = x[i] & !p[i];
            }
        }
        1 => {
            let o = was[0];
            for i in 0..BLOCK {
                let r = x[i] & !p[i];
                twice[i] = o[i] & r;
                once[i] = o[i] | r;
            }
        }
        _ => {
            let [o, t] = was;
            for i in 0..BLOCK {
                let r = x[i] & !p[i];
                twice[i] = t[i] | (o[i] & r);
                once[i] = o[i] | r;
            }
        }
    }
}

/// Ids of `once` but not `twice` that `p` lacks.
fn lacking(once: &[u64; BLOCK], twice: &[u64; BLOCK], p: &[u64; BLOCK]) -> u32 {
    (0..BLOCK)
        .map(|i| (once[i] & !twice[i] & !p[i]).count_ones())
        .sum()
}
