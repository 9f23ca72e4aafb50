//! Combining a policy's conditions into its results: candidates (every condition TRUE),
//! to-verify (none FALSE, some UNKNOWN) and near-miss (exactly one FALSE), with each
//! condition's FALSE count and how many entities it alone blocks (DESIGN.md §3.6).
//!
//! The conditions are read as parts within the subject universe's words ([`dense`]), a block
//! of 65,536 ids at a time, every condition at once, in accumulators that stay in a core's
//! L1. The candidates are written out as a roaring set (amounts, the lead department's list
//! and a what-if's newly eligible read them); the to-verify and near-miss sets are counted,
//! and written out only when asked for ([`RunSet`]).

use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::columns::Tally;
use super::count::Counts;
use super::dense::{self, BLOCK, Part, Span, bit};
use super::engine::{CondParts, CondResult, Sets, Words};

/// Combines a policy's condition sets: candidates (all TRUE), to-verify (none FALSE, some
/// UNKNOWN), near-miss (exactly one FALSE), and per condition its FALSE count and how many
/// entities it alone blocks.
///
/// A block of 65,536 ids at a time over the universe's span, every condition at once, with
/// no intermediate sets: the candidates are the AND of the TRUE sets; with `P_i` the
/// not-FALSE sets, an entity is ruled out by a condition where `P_i` lacks it, and two
/// accumulators (ruled out at least once, at least twice) give the near-miss words (exactly
/// once) and the to-verify words (never, and not a candidate). Each condition's part of the
/// block is read in its own form ([`Part`]): one TRUE for nearly all the universe costs the
/// few ids it leaves out, not the block's words. Blocks are combined in parallel; the
/// candidates are written back as a roaring set, the to-verify and near-miss sets are
/// counted and written out only when asked for ([`RunSet`]).
///
/// `tally`, when given, adds each block's candidates (the block's first id, its words and
/// how many ids they hold) to a [`Tally`] while they are in the core's cache: an amount read
/// from one field of the candidate, totalled without reading the candidates again.
pub(super) fn combine(
    universe: &Sets,
    conditions: Vec<(String, Arc<Sets>)>,
    tally: Option<&BlockTally<'_>>,
) -> Combined {
    let span = Span::of(universe.t());
    let uni = universe.words(span);
    let n = conditions.len();
    // A universe of a few blocks (a small city) is combined on this thread: handing it to
    // the pool would cost more than the work.
    let serial = span.count <= SERIAL_BLOCKS;
    let parts: Vec<Arc<CondParts>> = if serial {
        conditions.iter().map(|(_, s)| s.parts(&uni)).collect()
    } else {
        conditions.par_iter().map(|(_, s)| s.parts(&uni)).collect()
    };
    // One set of accumulators per thread, not per block.
    let block = |acc: &mut Box<Acc>, b| combine_block(span, b, &uni.t, &parts, tally, acc);
    let blocks: Vec<Block> = if serial {
        let mut acc = Acc::new();
        (0..span.count).map(|b| block(&mut acc, b)).collect()
    } else {
        (0..span.count)
            .into_par_iter()
            .map_init(Acc::new, block)
            .collect()
    };
    let mut candidates = RoaringBitmap::new();
    let mut counts = Counts::default();
    let mut sole = vec![0u64; n];
    let mut tallies = Vec::with_capacity(if tally.is_some() { blocks.len() } else { 0 });
    for b in blocks {
        tallies.extend(b.tally);
        candidates |= b.candidates;
        counts.to_verify += b.counts.to_verify;
        counts.near_miss += b.counts.near_miss;
        sole.iter_mut().zip(b.sole).for_each(|(a, b)| *a += b);
    }
    let recipe = Arc::new(Recipe {
        universe: uni,
        conditions: parts.clone(),
    });
    let total = universe.t().len();
    let results = conditions
        .into_iter()
        .zip(&parts)
        .zip(sole)
        .map(|(((name, sets), parts), sole_blocker)| CondResult {
            name,
            sets,
            false_count: false_count(total, parts),
            sole_blocker,
        })
        .collect();
    Combined {
        candidates,
        to_verify: RunSet::derived(Derived::ToVerify, counts.to_verify, &recipe),
        near_miss: RunSet::derived(Derived::NearMiss, counts.near_miss, &recipe),
        conditions: results,
        tallies,
    }
}

/// How many of `universe` a condition's parts rule out (its FALSE count).
pub(super) fn false_count(universe: u64, parts: &CondParts) -> u64 {
    universe
        - parts
            .possible()
            .counts
            .iter()
            .map(|&c| u64::from(c))
            .sum::<u64>()
}

/// Universes of at most this many blocks of words are combined on the calling thread.
const SERIAL_BLOCKS: usize = 4;

/// One block's part of [`combine`]: its candidates, its counts, and each condition's
/// sole-blocked count.
struct Block {
    candidates: RoaringBitmap,
    /// The candidates tallied, when asked for.
    tally: Option<Tally>,
    counts: Counts,
    sole: Vec<u64>,
}

/// Combines block `b` of `span` (1,024 words of the universe, `universe`): its candidates
/// as a set, the rest counted.
fn combine_block(
    span: Span,
    b: usize,
    universe: &[u64],
    conditions: &[Arc<CondParts>],
    tally: Option<&BlockTally<'_>>,
    acc: &mut Acc,
) -> Block {
    let mut out = Block {
        candidates: RoaringBitmap::new(),
        tally: tally.map(|_| Tally::default()),
        counts: Counts::default(),
        sole: vec![0; conditions.len()],
    };
    let x: &[u64; BLOCK] = &universe.as_chunks().0[b];
    let Some(counts) = combine_words(b, x, conditions, acc, &mut out.sole) else {
        return out;
    };
    out.candidates = block_set(span, b, &acc.all, counts.candidates);
    if let (Some(f), Some(t)) = (tally, &mut out.tally)
        && counts.candidates > 0
    {
        f(
            (span.first + b as u32) << 16,
            &acc.all,
            counts.candidates,
            t,
        );
    }
    out.counts = counts;
    out
}

/// Block `b` of `span` as a set, from its words (`n` ids).
fn block_set(span: Span, b: usize, words: &[u64; BLOCK], n: u64) -> RoaringBitmap {
    if n == 0 {
        return RoaringBitmap::new();
    }
    let one = Span {
        first: span.first + b as u32,
        count: 1,
    };
    dense::bitmap(words, one)
}

/// A block's accumulators while its conditions are combined (32 KB, within a core's L1).
struct Acc {
    /// TRUE for every condition so far; at the end, the candidates.
    all: [u64; BLOCK],
    /// Ruled out (not possible) by at least one condition; at the end, the to-verify ids.
    once: [u64; BLOCK],
    /// Ruled out by at least two; at the end, the near-miss ids.
    twice: [u64; BLOCK],
    scratch: [u64; BLOCK],
}

impl Acc {
    fn new() -> Box<Acc> {
        Box::new(Acc {
            all: [0; BLOCK],
            once: [0; BLOCK],
            twice: [0; BLOCK],
            scratch: [0; BLOCK],
        })
    }
}

/// Combines block `b` of a policy's conditions (`x`: the universe's words there): each
/// condition's part is read once, into the accumulators, and again for the ids near a miss.
/// Afterwards `acc.all` holds the candidates' words, `acc.once` the to-verify words and
/// `acc.twice` the near-miss words; each condition's sole-blocked count is added to `sole`.
/// `None` when the universe has no ids in the block (the accumulators are then stale).
/// `sole` may be empty (not counted).
fn combine_words(
    b: usize,
    x: &[u64; BLOCK],
    conditions: &[Arc<CondParts>],
    acc: &mut Acc,
    sole: &mut [u64],
) -> Option<Counts> {
    if x.iter().all(|&w| w == 0) {
        return None;
    }
    let Acc {
        all,
        once,
        twice,
        scratch,
    } = acc;
    *all = *x;
    once.fill(0);
    twice.fill(0);
    for c in conditions {
        match &c.t.parts[b] {
            Part::All => {}
            Part::None => all.fill(0),
            Part::AllBut(left) => {
                for &o in left.iter() {
                    let (i, m) = bit(o);
                    all[i] &= !m;
                }
            }
            Part::Ids(ids) => {
                scratch.fill(0);
                for &o in ids.iter() {
                    let (i, m) = bit(o);
                    scratch[i] |= all[i] & m;
                }
                *all = *scratch;
            }
            Part::Words(t) => {
                for i in 0..BLOCK {
                    all[i] &= t[i];
                }
            }
        }
        // Ruled out: the universe's ids the not-FALSE set lacks.
        let ruled_out: &[u64; BLOCK] = match &c.possible().parts[b] {
            Part::All => continue,
            Part::AllBut(left) => {
                for &o in left.iter() {
                    let (i, m) = bit(o);
                    twice[i] |= once[i] & m;
                    once[i] |= m;
                }
                continue;
            }
            Part::None => x,
            Part::Ids(ids) => {
                dense::all_but_into(scratch, x, ids);
                scratch
            }
            Part::Words(p) => {
                for i in 0..BLOCK {
                    scratch[i] = x[i] & !p[i];
                }
                scratch
            }
        };
        for i in 0..BLOCK {
            twice[i] |= once[i] & ruled_out[i];
            once[i] |= ruled_out[i];
        }
    }
    // `twice` becomes the near-miss words, `once` the to-verify words; counted as they are
    // written.
    let mut counts = Counts::default();
    for i in 0..BLOCK {
        let near = once[i] & !twice[i];
        let verify = x[i] & !once[i] & !all[i];
        twice[i] = near;
        once[i] = verify;
        counts.candidates += u64::from(all[i].count_ones());
        counts.near_miss += u64::from(near.count_ones());
        counts.to_verify += u64::from(verify.count_ones());
    }
    // An entity near a miss is ruled out by exactly one condition: the one that lacks it.
    if counts.near_miss > 0 && !sole.is_empty() {
        let near: &[u64; BLOCK] = twice;
        let near_in = |ids: &[u16]| -> u64 {
            ids.iter()
                .filter(|&&o| {
                    let (i, m) = bit(o);
                    near[i] & m != 0
                })
                .count() as u64
        };
        for (c, s) in conditions.iter().zip(sole.iter_mut()) {
            *s += match &c.possible().parts[b] {
                Part::All => 0,
                Part::None => counts.near_miss,
                Part::AllBut(left) => near_in(left),
                Part::Ids(ids) => counts.near_miss - near_in(ids),
                Part::Words(p) => (0..BLOCK)
                    .map(|i| u64::from((near[i] & !p[i]).count_ones()))
                    .sum(),
            };
        }
    }
    Some(counts)
}

/// A policy's sets, combined from its conditions'.
pub(super) struct Combined {
    pub(super) candidates: RoaringBitmap,
    pub(super) to_verify: RunSet,
    pub(super) near_miss: RunSet,
    pub(super) conditions: Vec<CondResult>,
    /// Each block's candidates tallied, when asked for.
    pub(super) tallies: Vec<Tally>,
}

/// Adds a block's candidates (its first id, its words, how many) to a tally.
pub(super) type BlockTally<'a> = dyn Fn(u32, &[u64; BLOCK], u64, &mut Tally) + Sync + 'a;

/// Which of a run's sets a [`RunSet`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derived {
    ToVerify,
    NearMiss,
}

/// What a run's to-verify and near-miss sets are combined from: its conditions' parts
/// within the universe's words. The run holds its conditions' sets already, so keeping
/// their parts costs nothing more.
struct Recipe {
    universe: Arc<Words>,
    conditions: Vec<Arc<CondParts>>,
}

/// A policy run's to-verify or near-miss set.
///
/// Combining counts it; its ids are written out only when something asks for the whole set
/// ([`set`](Self::set)), by combining the run's conditions again, once. Most readers need
/// only its size (a what-if, the counts a department sees) or one entity's membership
/// ([`contains`](Self::contains), read from the conditions' parts at that entity). The
/// near-miss set is most of the universe for a policy with one selective condition (93% of
/// the persons for 高龄津贴): written out on every run it was a third of combining.
#[derive(Clone)]
pub struct RunSet(Arc<RunSetInner>);

struct RunSetInner {
    len: u64,
    /// How to write the set out (`None`: it was given).
    from: Option<(Derived, Arc<Recipe>)>,
    set: OnceLock<Arc<RoaringBitmap>>,
}

impl std::fmt::Debug for RunSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let which = self.0.from.as_ref().map(|f| f.0);
        write!(f, "RunSet({which:?}, {} ids)", self.0.len)
    }
}

impl Default for RunSet {
    fn default() -> Self {
        RunSet::of(Arc::default())
    }
}

impl RunSet {
    /// A set given as it is.
    pub fn of(set: Arc<RoaringBitmap>) -> RunSet {
        RunSet(Arc::new(RunSetInner {
            len: set.len(),
            from: None,
            set: OnceLock::from(set),
        }))
    }

    fn derived(which: Derived, len: u64, recipe: &Arc<Recipe>) -> RunSet {
        RunSet(Arc::new(RunSetInner {
            len,
            from: Some((which, recipe.clone())),
            set: OnceLock::new(),
        }))
    }

    /// How many ids the set holds.
    pub fn len(&self) -> u64 {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Whether `e` is in the set: read from the conditions' parts at `e` until the set is
    /// written out.
    pub fn contains(&self, e: u32) -> bool {
        if let Some(s) = self.0.set.get() {
            return s.contains(e);
        }
        let Some((which, r)) = &self.0.from else {
            return false;
        };
        let span = r.universe.span;
        let hi = e >> 16;
        let Some(b) = hi
            .checked_sub(span.first)
            .map(|b| b as usize)
            .filter(|&b| b < span.count)
        else {
            return false;
        };
        let o = (e & 0xFFFF) as u16;
        let x: &[u64; BLOCK] = &r.universe.t.as_chunks().0[b];
        let (i, m) = bit(o);
        if x[i] & m == 0 {
            return false;
        }
        let (mut ruled_out, mut all_true) = (0, true);
        for c in &r.conditions {
            if !c.possible().parts[b].holds(o) {
                ruled_out += 1;
            } else if !c.t.parts[b].holds(o) {
                all_true = false;
            }
        }
        match which {
            Derived::ToVerify => ruled_out == 0 && !all_true,
            Derived::NearMiss => ruled_out == 1,
        }
    }

    /// The set's ids, written out the first time they are asked for.
    pub fn set(&self) -> &Arc<RoaringBitmap> {
        self.0.set.get_or_init(|| {
            let Some((which, r)) = &self.0.from else {
                return Arc::default();
            };
            Arc::new(r.write_out(*which))
        })
    }

    /// The set's ids in ascending order (written out first).
    pub fn iter(&self) -> roaring::bitmap::Iter<'_> {
        self.set().iter()
    }

    /// Bytes the written-out set takes (none until it is).
    pub fn bytes(&self) -> usize {
        self.0.set.get().map_or(0, |s| s.serialized_size())
    }
}

impl Recipe {
    /// The to-verify or near-miss set, combined again a block at a time (in parallel).
    fn write_out(&self, which: Derived) -> RoaringBitmap {
        let span = self.universe.span;
        let block = |acc: &mut Box<Acc>, b: usize| {
            let x: &[u64; BLOCK] = &self.universe.t.as_chunks().0[b];
            let Some(counts) = combine_words(b, x, &self.conditions, acc, &mut []) else {
                return RoaringBitmap::new();
            };
            match which {
                Derived::ToVerify => block_set(span, b, &acc.once, counts.to_verify),
                Derived::NearMiss => block_set(span, b, &acc.twice, counts.near_miss),
            }
        };
        (0..span.count)
            .into_par_iter()
            .map_init(Acc::new, block)
            .reduce(RoaringBitmap::new, |a, b| a | b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::count::{count_many, count_many_with_candidates};
    use super::*;
    use proptest::prelude::*;

    /// A set of ids over several containers: sparse runs, single ids and dense stretches.
    fn ids() -> impl Strategy<Value = RoaringBitmap> {
        (
            proptest::collection::vec(0u32..300_000, 0..400),
            proptest::collection::vec((0u32..300_000, 0u32..80_000), 0..3),
        )
            .prop_map(|(ids, ranges)| {
                let mut s: RoaringBitmap = ids.into_iter().collect();
                for (a, len) in ranges {
                    s.insert_range(a..a + len);
                }
                s
            })
    }

    proptest! {
        /// Candidates, to-verify, near-miss and each condition's counts, word by word over
        /// several containers, as entity by entity.
        #[test]
        fn combine_agrees_with_entity_by_entity_states(
            universe in ids(),
            conds in proptest::collection::vec(
                (ids(), ids(), proptest::bool::ANY, proptest::bool::ANY),
                0..5,
            ),
        ) {
            // A set or its complement within the universe: conditions TRUE (or not FALSE)
            // for nearly everyone are read as the few they leave out.
            let conditions: Vec<(String, Arc<Sets>)> = conds
                .into_iter()
                .enumerate()
                .map(|(i, (t, u, t_rest, u_rest))| {
                    let within = |s: RoaringBitmap, rest: bool| {
                        if rest { &universe - &s } else { &s & &universe }
                    };
                    let t = within(t, t_rest);
                    let u = &within(u, u_rest) - &t;
                    (format!("c{i}"), Arc::new(Sets::new(t, u)))
                })
                .collect();
            let sets: Vec<Arc<Sets>> = conditions.iter().map(|c| c.1.clone()).collect();
            let universe = Sets::new(universe, RoaringBitmap::new());
            // Twice: the second reads the words the first kept.
            let first = combine(&universe, conditions.clone(), None);
            let got = combine(&universe, conditions, None);
            prop_assert_eq!(&first.candidates, &got.candidates);
            let universe = universe.t().clone();
            let (mut cand, mut verify, mut near) =
                (RoaringBitmap::new(), RoaringBitmap::new(), RoaringBitmap::new());
            let mut false_count = vec![0u64; sets.len()];
            let mut sole = vec![0u64; sets.len()];
            for e in &universe {
                let falses: Vec<usize> = (0..sets.len())
                    .filter(|&i| !sets[i].t().contains(e) && !sets[i].u().contains(e))
                    .collect();
                let all = sets.iter().all(|s| s.t().contains(e));
                for &i in &falses {
                    false_count[i] += 1;
                }
                match falses.len() {
                    0 if all => {
                        cand.insert(e);
                    }
                    0 => {
                        verify.insert(e);
                    }
                    1 => {
                        near.insert(e);
                        sole[falses[0]] += 1;
                    }
                    _ => {}
                }
            }
            // Membership is read from the conditions' parts before the sets are written out,
            // and from the sets after; ids outside the universe and its span are in neither.
            let probes = universe.iter().chain([0, 65_535, 65_536, 299_999, 400_000, u32::MAX]);
            for e in probes.clone() {
                prop_assert_eq!(got.to_verify.contains(e), verify.contains(e), "to-verify {}", e);
                prop_assert_eq!(got.near_miss.contains(e), near.contains(e), "near-miss {}", e);
            }
            prop_assert_eq!((got.to_verify.len(), got.near_miss.len()), (verify.len(), near.len()));
            prop_assert_eq!(got.to_verify.bytes(), 0);
            prop_assert_eq!(&**got.to_verify.set(), &verify);
            prop_assert_eq!(&**got.near_miss.set(), &near);
            prop_assert_eq!(got.near_miss.bytes(), near.serialized_size());
            for e in probes {
                prop_assert_eq!(got.near_miss.contains(e), near.contains(e), "near-miss {}", e);
            }
            prop_assert_eq!(first.near_miss.set(), got.near_miss.set());
            prop_assert_eq!(got.candidates, cand);
            let counts: Vec<(u64, u64)> =
                got.conditions.iter().map(|c| (c.false_count, c.sole_blocker)).collect();
            let want: Vec<(u64, u64)> = false_count.into_iter().zip(sole).collect();
            prop_assert_eq!(counts, want);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Policies counted together, block-major, count what each combined alone holds;
        /// policies share conditions, and a condition's parts are read the first time by
        /// either.
        #[test]
        fn counted_together_as_combined_alone(
            universe in ids(),
            pool in proptest::collection::vec((ids(), ids(), proptest::bool::ANY), 1..5),
            policies in proptest::collection::vec(
                proptest::collection::vec(0usize..5, 0..5),
                1..(2 * super::super::count::CHUNK + 3),
            ),
            first_alone in proptest::bool::ANY,
        ) {
            let pool: Vec<Arc<Sets>> = pool
                .into_iter()
                .map(|(t, u, t_rest)| {
                    let t = if t_rest { &universe - &t } else { &t & &universe };
                    let u = &(&u & &universe) - &t;
                    Arc::new(Sets::new(t, u))
                })
                .collect();
            let universe = Sets::new(universe, RoaringBitmap::new());
            let policies: Vec<Vec<Arc<Sets>>> = policies
                .iter()
                .map(|p| p.iter().map(|&i| pool[i % pool.len()].clone()).collect())
                .collect();
            let alone = |conds: &Vec<Arc<Sets>>| {
                let named = conds.iter().map(|s| (String::new(), s.clone())).collect();
                combine(&universe, named, None)
            };
            if first_alone {
                alone(&policies[0]);
            }
            let counted = count_many(&universe, &policies);
            let with_ids = count_many_with_candidates(&universe, &policies);
            prop_assert_eq!(counted.len(), policies.len());
            prop_assert_eq!(with_ids.len(), policies.len());
            for ((conds, (counts, sole)), (counts2, sole2, ids)) in
                policies.iter().zip(counted).zip(with_ids)
            {
                let want = alone(conds);
                prop_assert_eq!(counts, Counts {
                    candidates: want.candidates.len(),
                    to_verify: want.to_verify.len(),
                    near_miss: want.near_miss.len(),
                });
                let want_sole: Vec<u64> = want.conditions.iter().map(|c| c.sole_blocker).collect();
                prop_assert_eq!(&sole, &want_sole);
                // Written out too: the same counts, and the candidates themselves.
                prop_assert_eq!((counts2, sole2), (counts, sole));
                prop_assert_eq!(ids, want.candidates);
            }
        }
    }
}
