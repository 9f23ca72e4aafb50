//! Many policies counted at once, block-major (DESIGN.md §3.6).
//!
//! An analyst's sweep of a parameter, or thousands of random combinations of the catalogue's
//! conditions, asks for counts: how many candidates, to-verify and near-miss entities each
//! policy has and which condition blocks the most. Run one by one, each policy streams its
//! conditions' parts from memory and builds its three sets as roaring bitmaps. Here every
//! policy is combined on one block of the universe (65,536 ids) before the next block is
//! read: the conditions' parts of that block stay in the core's cache while every policy
//! reads them, one policy's accumulators (32 KB) stay in L1, and nothing is written but
//! counts. Each part is read in its own form ([`Part`]), as when combining one policy.
//!
//! Measured at the full city (7.8M persons, 6,418 random policies): 0.92 s counted together
//! against 9.55 s run one by one (BENCHMARKS.md, issue 4). What is left is the kernel
//! itself: about 3 µs of a core per policy and block, most of it population counts where a
//! part is in words.

use std::sync::Arc;

use rayon::prelude::*;

use super::dense::{BLOCK, Part, Span, all_but_into, bit};
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
    let words = uni.t.as_chunks::<BLOCK>().0;
    let sums = (0..span.count * chunks)
        .into_par_iter()
        .fold(
            || (Box::new(Acc::default()), vec![0u64; slots]),
            |(mut acc, mut sums), task| {
                let (b, c) = (task / chunks, task % chunks);
                let policies = c * chunk..reads.len().min((c + 1) * chunk);
                let block = (b, &words[b]);
                count_block(
                    block, &parts, &reads, policies, &offsets, &mut acc, &mut sums,
                );
                (acc, sums)
            },
        )
        .map(|(_, sums)| sums)
        .reduce(
            || vec![0u64; slots],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    (0..reads.len())
        .map(|k| {
            let s = &sums[offsets[k]..offsets[k + 1]];
            let counts = Counts {
                candidates: s[0],
                to_verify: s[1],
                near_miss: s[2],
            };
            (counts, s[3..].to_vec())
        })
        .collect()
}

/// Counts block `b` (the universe's words `x`) for `policies`, adding into `sums`.
fn count_block(
    (b, x): (usize, &[u64; BLOCK]),
    parts: &[Arc<CondParts>],
    reads: &[Vec<u32>],
    policies: std::ops::Range<usize>,
    offsets: &[usize],
    acc: &mut Acc,
    sums: &mut [u64],
) {
    let universe = popcount(x);
    if universe == 0 {
        return;
    }
    for k in policies {
        let slots = &mut sums[offsets[k]..offsets[k + 1]];
        kernel(b, x, universe, parts, &reads[k], acc, slots);
    }
}

/// A thread's accumulators for one policy's block (32 KB, within a core's L1).
struct Acc {
    /// TRUE for every condition so far (when `x` is not the answer itself).
    all: [u64; BLOCK],
    /// Ruled out by at least one condition, by at least two.
    once: [u64; BLOCK],
    twice: [u64; BLOCK],
    /// A ruled-out set that is the universe but a few ids, written out.
    out: [u64; BLOCK],
    /// Ids a part listing them keeps.
    kept: Vec<u16>,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc {
            all: [0; BLOCK],
            once: [0; BLOCK],
            twice: [0; BLOCK],
            out: [0; BLOCK],
            kept: Vec::new(),
        }
    }
}

/// Ids in `w`.
fn popcount(w: &[u64; BLOCK]) -> u32 {
    w.iter().map(|w| w.count_ones()).sum()
}

/// One policy (its conditions `read`, indexes into `parts`) over block `b` (the universe's
/// words `x`, `universe` ids). The candidates are the universe's ids every TRUE part holds;
/// an id ruled out (not possible) by exactly one condition is near a miss, by none and not
/// a candidate it is to verify. A candidate is never ruled out (TRUE implies not FALSE), so
/// with `once` the ids ruled out at least once and `twice` at least twice, to-verify is
/// `universe − once − candidates` and near-miss `once − twice`: three counts per block.
/// Each part is read in its own form: a condition TRUE for the whole universe here costs
/// nothing, one that leaves out or holds a few ids costs those ids. `slots`: the three
/// counts, then a sole-blocked count per condition.
fn kernel(
    b: usize,
    x: &[u64; BLOCK],
    universe: u32,
    parts: &[Arc<CondParts>],
    read: &[u32],
    acc: &mut Acc,
    slots: &mut [u64],
) {
    let Acc {
        all,
        once,
        twice,
        out,
        kept,
    } = acc;
    // Candidates. Until a part narrows them, they are the universe `x` (not yet copied).
    // Their count is kept while only parts listing the ids they leave out narrow them (the
    // commonest form: alive, registered here); after a part in words, it is counted.
    let mut narrowed = false;
    let mut candidates = Some(universe);
    for &c in read {
        match &parts[c as usize].t.parts[b] {
            Part::All => {}
            Part::None => {
                candidates = Some(0);
                break;
            }
            Part::Words(t) => {
                if narrowed {
                    and_into(all, t);
                } else {
                    // A part's words are within the universe's.
                    *all = **t;
                    narrowed = true;
                }
                candidates = None;
            }
            Part::AllBut(left) => {
                if !narrowed {
                    *all = *x;
                    narrowed = true;
                }
                let mut cleared = 0;
                for &o in left.iter() {
                    let (i, m) = bit(o);
                    cleared += u32::from(all[i] & m != 0);
                    all[i] &= !m;
                }
                candidates = candidates.map(|n| n - cleared);
            }
            Part::Ids(ids) => {
                let within: &[u64; BLOCK] = if narrowed { all } else { x };
                kept.clear();
                kept.extend(ids.iter().filter(|&&o| {
                    let (i, m) = bit(o);
                    within[i] & m != 0
                }));
                all.fill(0);
                for &o in kept.iter() {
                    let (i, m) = bit(o);
                    all[i] |= m;
                }
                narrowed = true;
                candidates = Some(kept.len() as u32);
            }
        }
    }
    let candidates = candidates.unwrap_or_else(|| popcount(all));
    // Ruled out at least once (`once`), twice (`twice`): how many of them hold words, and
    // their counts while only parts listing a few ids have added to them.
    let mut live = 0;
    let mut counted = Some((0u32, 0u32));
    for &c in read {
        let words: &[u64; BLOCK] = match &parts[c as usize].possible().parts[b] {
            Part::All => continue,
            Part::AllBut(left) => {
                // Ruled out: the few ids left out.
                if live == 0 {
                    once.fill(0);
                    live = 1;
                }
                if live == 1 {
                    twice.fill(0);
                    live = 2;
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
                counted = counted.map(|(n1, n2)| (n1 + new_once, n2 + new_twice));
                continue;
            }
            Part::None => {
                // Ruled out: the whole universe here (`twice` becomes `once`, which holds
                // it).
                if live > 0 {
                    *twice = *once;
                }
                *once = *x;
                live = (live + 1).min(2);
                counted = counted.map(|(n1, _)| (universe, n1));
                continue;
            }
            Part::Ids(ids) => {
                // Ruled out: the universe but the few ids not FALSE.
                all_but_into(out, x, ids);
                out
            }
            Part::Words(p) => {
                rule_out(live, once, twice, x, p);
                live = (live + 1).min(2);
                counted = None;
                continue;
            }
        };
        // Ruled out: `words` (the universe's ids that `!words` lacks).
        rule_out(live, once, twice, words, &ZERO);
        live = (live + 1).min(2);
        counted = None;
    }
    let (ruled, twice_n) = match (live, counted) {
        (0, _) => (0, 0),
        (_, Some(n)) => n,
        (1, None) => (popcount(once), 0),
        (_, None) => (popcount(once), popcount(twice)),
    };
    let near = ruled - twice_n;
    slots[0] += u64::from(candidates);
    slots[1] += u64::from(universe - ruled - candidates);
    slots[2] += u64::from(near);
    if near == 0 {
        return;
    }
    // An id near a miss is ruled out by exactly one condition: the one that rules it out.
    // The near-miss ids are `once` without `twice` (`twice` is all zero while `live` < 2).
    let (once, twice): (&[u64; BLOCK], &[u64; BLOCK]) = (once, twice);
    let two = live == 2;
    let near_in = |ids: &[u16]| -> u32 {
        ids.iter()
            .filter(|&&o| {
                let (i, m) = bit(o);
                once[i] & m != 0 && !(two && twice[i] & m != 0)
            })
            .count() as u32
    };
    for (pos, &c) in read.iter().enumerate() {
        let sole = match &parts[c as usize].possible().parts[b] {
            Part::All => 0,
            Part::None => near,
            Part::AllBut(left) => near_in(left),
            Part::Ids(ids) => near - near_in(ids),
            Part::Words(p) => lacking(once, if two { twice } else { &ZERO }, p),
        };
        slots[3 + pos] += u64::from(sole);
    }
}

/// A block of no ids.
static ZERO: [u64; BLOCK] = [0; BLOCK];

// The loops below are functions of their own: their arguments are known not to overlap, so
// they are vectorised (written inline over the accumulators, which the compiler could not
// tell apart from the parts' boxes, they ran a word at a time).

/// `all &= t`.
fn and_into(all: &mut [u64; BLOCK], t: &[u64; BLOCK]) {
    for i in 0..BLOCK {
        all[i] &= t[i];
    }
}

/// Adds the ids `x & !p` to those ruled out once and twice, `live` of which hold words
/// (`once` is written outright when none does, `twice` when only `once` does).
fn rule_out(
    live: u8,
    once: &mut [u64; BLOCK],
    twice: &mut [u64; BLOCK],
    x: &[u64; BLOCK],
    p: &[u64; BLOCK],
) {
    match live {
        0 => {
            for i in 0..BLOCK {
                once[i] = x[i] & !p[i];
            }
        }
        1 => {
            for i in 0..BLOCK {
                let r = x[i] & !p[i];
                twice[i] = once[i] & r;
                once[i] |= r;
            }
        }
        _ => {
            for i in 0..BLOCK {
                let r = x[i] & !p[i];
                twice[i] |= once[i] & r;
                once[i] |= r;
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
