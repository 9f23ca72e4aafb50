//! From records to entities, in three steps:
//!
//! 1. **Keys.** Records with a valid id number, USCC or household number become entities
//!    directly. Two different valid identifiers are never merged: every later link goes
//!    from a record to an entity, never between keyed entities.
//! 2. **Placement.** Each record without a key meets the keyed entities it shares a block
//!    with (and those whose valid identifier is one edit from its broken one). It is compared
//!    with each entity's records, field by field at the best level, and scored with the
//!    Fellegi–Sunter model estimated on these very comparisons. The best entity takes it when
//!    the match probability is high enough; a probability in the review band, or a runner-up
//!    close behind, marks the link doubtful. A second pass gives what is left another chance
//!    with the placed records counted as members of their entities (an account written with
//!    a household's old address meets another account of that household, placed already).
//! 3. **Clustering.** Records placed nowhere are compared with one another through the same
//!    blocks; pairs above the threshold merge, strongest first, under constraints (no
//!    conflicting gender or birth date, compatible kinds, names never plainly different).
//!    Each resulting cluster is a new entity with a minted, persisted key.

use std::collections::HashMap;

use rayon::prelude::*;

use super::block::{BlockIndex, Side};
use super::compare::{FIELDS, Field, Gamma, MISSING, birth_level, compare, compare_best};
use super::keys::{KeyStore, mint_unique, near_valid_ids};
use super::records::{IdState, Kind, NO_DATE, NONE, Records};
use super::weights::{Model, PatternCounts, prior_bits, probability, tf_adjustment};

/// Thresholds on the match weight (bits, prior included).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// At or above: a confident link (0.95 by default).
    pub accept: f64,
    /// At or above, below `accept`: a doubtful link. Below: no link.
    pub review: f64,
    /// A runner-up within this many bits of the best makes the link doubtful.
    pub margin: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            accept: (0.95f64 / 0.05).log2(),
            review: 0.0,
            margin: 1.0,
        }
    }
}

/// How a record came to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Its own valid identifier.
    Key,
    /// Placed into a keyed entity by the model.
    Placed,
    /// Clustered with other records that have no key.
    Clustered,
    /// Alone: nothing matched it.
    Single,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Key => "key",
            Method::Placed => "placed",
            Method::Clustered => "clustered",
            Method::Single => "single",
        }
    }
}

/// The field levels and weights behind one probabilistic link.
#[derive(Debug, Clone, Copy)]
pub struct Evidence {
    pub gamma: Gamma,
    /// Term-frequency adjustments of the name and phone, in bits.
    pub tf_name: f32,
    pub tf_phone: f32,
    /// The prior used, in bits.
    pub prior: f32,
    /// Total match weight, prior included.
    pub bits: f32,
}

impl Evidence {
    pub(crate) fn new(
        gamma: Gamma,
        tf_name: f64,
        tf_phone: f64,
        prior: f64,
        bits: f64,
    ) -> Evidence {
        Evidence {
            gamma,
            tf_name: tf_name as f32,
            tf_phone: tf_phone as f32,
            prior: prior as f32,
            bits: bits as f32,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entity {
    pub kind: Kind,
    pub key: String,
    /// Whether the key is an identifier (id number, USCC, household number) rather than minted.
    pub identified: bool,
}

/// Counters for the summary.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub keyed_records: usize,
    pub unkeyed_records: usize,
    pub placed: usize,
    pub placed_by_near_id: usize,
    /// Placed in the second pass, through a record placed in the first.
    pub placed_second_pass: usize,
    pub clustered: usize,
    pub single: usize,
    pub doubtful: usize,
    pub candidate_pairs: usize,
    pub cluster_pairs: usize,
    pub merges_refused: usize,
    pub skipped_blocks: usize,
    /// Peak heap bytes of the block indexes (the keyed one and the placed one live together).
    pub index_bytes: usize,
    pub minted_keys: usize,
    pub reused_keys: usize,
    /// Seconds per phase.
    pub phases: Vec<(&'static str, f64)>,
}

/// Lap times of the phases.
struct Clock {
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }
}

/// The outcome of resolution: an entity per record, with confidence and evidence.
#[derive(Debug)]
pub struct Linked {
    pub entity_of: Vec<u32>,
    pub confidence: Vec<f32>,
    pub doubtful: Vec<bool>,
    pub method: Vec<Method>,
    pub evidence: HashMap<u32, Evidence>,
    pub entities: Vec<Entity>,
    pub model: Model,
    /// The prior each record was scored with, by the kinds it may be.
    pub priors: Priors,
    pub thresholds: Thresholds,
    pub stats: Stats,
}

/// Keyed entities per kind. A record's prior is one chance in the number of entities of the
/// kinds it may belong to (a shop's account is one of the enterprises or of the persons; a
/// tax registration only one of the enterprises).
#[derive(Debug, Clone, Copy, Default)]
pub struct Priors {
    pub per_kind: [usize; 3],
}

impl Priors {
    pub(crate) fn of(entities: &[Entity]) -> Priors {
        let mut per_kind = [0usize; 3];
        for e in entities {
            per_kind[e.kind as usize] += 1;
        }
        Priors { per_kind }
    }

    /// The prior in bits of a record that may be any of `kinds` (a bit set of `1 << Kind`).
    pub fn bits(&self, kinds: u8) -> f64 {
        prior_bits(
            (0..3)
                .filter(|k| kinds & (1 << k) != 0)
                .map(|k| self.per_kind[k])
                .sum(),
        )
    }
}

/// Names that plainly differ never link, whatever else agrees (twins, household members),
/// unless the very identifier agrees.
pub(crate) fn linkable(g: &Gamma) -> bool {
    !(g[Field::Name as usize] == 0 && g[Field::Id as usize] != 2)
}

/// Entities a record's broken identifier points at (`near` candidates): the identifier
/// itself when it failed only a cross-check (another birth date or gender than the record's
/// own, so it is some entity's key), and every valid identifier one edit away.
pub(crate) fn near_id_entities(
    recs: &Records,
    r: usize,
    by_id: &[u32],
    out: &mut Vec<(u32, bool)>,
) {
    let f = &recs.f[r];
    if !matches!(f.id_state, IdState::BrokenPid | IdState::BrokenUscc) {
        return;
    }
    if by_id[f.id as usize] != NONE {
        out.push((by_id[f.id as usize], true));
    }
    let id = recs.ids.text(f.id).as_bytes();
    for v in near_valid_ids(id, f.id_state == IdState::BrokenUscc) {
        if let Some(i) = std::str::from_utf8(&v).ok().and_then(|s| recs.ids.get(s))
            && by_id[i as usize] != NONE
        {
            out.push((by_id[i as usize], true));
        }
    }
}

/// A record placed into an entity by the model.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub entity: u32,
    pub near: bool,
    pub confidence: f32,
    pub doubtful: bool,
    pub evidence: Evidence,
}

/// The placement the best candidate gives when it clears the review threshold: doubtful
/// below the accept threshold or with a runner-up close behind.
pub(crate) fn decide(best: Best, second: f64, th: &Thresholds, prior: f64) -> Option<Placement> {
    let (bits, entity, near, g, tn, tp) = best?;
    (bits >= th.review).then(|| Placement {
        entity,
        near,
        confidence: probability(bits) as f32,
        doubtful: bits < th.accept || bits - second < th.margin,
        evidence: Evidence::new(g, tn, tp, prior, bits),
    })
}

/// The single kind a bit set of kinds allows, if it allows one.
fn only_kind(mask: u8) -> Option<Kind> {
    [Kind::Household, Kind::Person, Kind::Enterprise]
        .into_iter()
        .find(|&k| mask == 1 << k as u8)
}

/// How each record is linked, filled in as resolution goes.
struct LinkState {
    confidence: Vec<f32>,
    doubtful: Vec<bool>,
    method: Vec<Method>,
    evidence: HashMap<u32, Evidence>,
}

impl LinkState {
    fn place(&mut self, r: usize, p: &Placement) {
        self.method[r] = Method::Placed;
        self.confidence[r] = p.confidence;
        self.doubtful[r] = p.doubtful;
        self.evidence.insert(r as u32, p.evidence);
    }
}

/// Term-frequency tables of names and phones.
pub(crate) struct Frequencies {
    phone: HashMap<u64, u32>,
    mean_name: f64,
    mean_phone: f64,
}

impl Frequencies {
    pub(crate) fn new(recs: &Records) -> Frequencies {
        let mean = |counts: &mut dyn Iterator<Item = u32>| {
            let (mut s, mut s2) = (0f64, 0f64);
            for c in counts {
                s += f64::from(c);
                s2 += f64::from(c) * f64::from(c);
            }
            if s > 0.0 { s2 / s } else { 0.0 }
        };
        let mut phone: HashMap<u64, u32> = HashMap::with_capacity(recs.len() / 2);
        for p in recs.f.iter().map(|f| f.phone) {
            if p != 0 {
                *phone.entry(p).or_insert(0) += 1;
            }
        }
        Frequencies {
            mean_name: mean(&mut recs.names.strings.count.iter().copied()),
            mean_phone: mean(&mut phone.values().copied()),
            phone,
        }
    }

    pub(crate) fn adjust(&self, recs: &Records, r: usize, g: &Gamma) -> (f64, f64) {
        let name = if g[Field::Name as usize] == 3 && recs.f[r].name != NONE {
            tf_adjustment(
                recs.names.strings.count[recs.f[r].name as usize],
                self.mean_name,
            )
        } else {
            0.0
        };
        let phone = if g[Field::Phone as usize] == 1 {
            tf_adjustment(
                self.phone.get(&recs.f[r].phone).copied().unwrap_or(0),
                self.mean_phone,
            )
        } else {
            0.0
        };
        (name, phone)
    }
}

/// Entities' member records, as offsets into one array.
pub(crate) struct Members {
    offsets: Vec<u32>,
    records: Vec<u32>,
}

impl Members {
    /// Members of each entity, with records whose compared features are identical to an
    /// earlier member's left out (the same person's pension, unemployment and injury
    /// insurance rows compare alike: once is enough).
    pub(crate) fn build_distinct(recs: &Records, entity_of: &[u32], entities: usize) -> Members {
        let all = Members::build(entity_of, entities);
        let feature = |r: usize| {
            let f = &recs.f[r];
            (
                f.id,
                f.name,
                f.alt_name,
                f.birth,
                f.gender,
                f.phone,
                f.addr_full,
                f.addr_building,
                f.addr_area,
                f.district,
                f.kinds,
                f.id_state,
            )
        };
        let kept: Vec<Vec<u32>> = (0..entities)
            .into_par_iter()
            .map(|e| {
                let m = &all.records[all.offsets[e] as usize..all.offsets[e + 1] as usize];
                let mut out: Vec<u32> = Vec::with_capacity(m.len());
                for &r in m {
                    let fr = feature(r as usize);
                    if !out.iter().any(|&k| feature(k as usize) == fr) {
                        out.push(r);
                    }
                }
                out
            })
            .collect();
        let mut offsets = Vec::with_capacity(entities + 1);
        let mut records = Vec::with_capacity(all.records.len());
        offsets.push(0);
        for k in kept {
            records.extend_from_slice(&k);
            offsets.push(records.len() as u32);
        }
        Members { offsets, records }
    }

    fn build(entity_of: &[u32], entities: usize) -> Members {
        let mut offsets = vec![0u32; entities + 1];
        for &e in entity_of {
            if e != NONE {
                offsets[e as usize + 1] += 1;
            }
        }
        for i in 0..entities {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut records = vec![0u32; *offsets.last().unwrap_or(&0) as usize];
        for (r, &e) in entity_of.iter().enumerate() {
            if e != NONE {
                records[fill[e as usize] as usize] = r as u32;
                fill[e as usize] += 1;
            }
        }
        Members { offsets, records }
    }

    /// Members of entity `e` (none for an entity made after the table was built).
    pub(crate) fn of(&self, e: u32) -> impl Iterator<Item = usize> + '_ {
        let e = e as usize;
        let (s, t) = match (self.offsets.get(e), self.offsets.get(e + 1)) {
            (Some(&s), Some(&t)) => (s as usize, t as usize),
            _ => (0, 0),
        };
        self.records[s..t].iter().map(|&r| r as usize)
    }
}

/// Whether a name looks like an organisation's rather than a person's.
pub fn looks_like_org(name: &str) -> bool {
    const MARKS: [&str; 14] = [
        "公司", "店", "厂", "社", "部", "中心", "行", "馆", "所", "院", "会", "站", "场", "局",
    ];
    name.chars().count() >= 6 || MARKS.iter().any(|m| name.contains(m))
}

pub(crate) fn kind_of_keyed(recs: &Records, r: usize) -> Kind {
    if let Some(k) = only_kind(recs.f[r].kinds) {
        return k;
    }
    let id = recs.id_text(r).unwrap_or("").as_bytes();
    let pid = id.len() == 18 && crate::ids::pid_check_char(&id[..17]) == Some(id[17]);
    if pid { Kind::Person } else { Kind::Enterprise }
}

/// Whether record `r` may belong to an entity of `kind`.
pub(crate) fn kind_ok(recs: &Records, r: usize, kind: Kind) -> bool {
    recs.f[r].kinds & (1 << kind as u8) != 0
}

/// Resolves every record. `store` holds minted keys of an earlier build, reused where the
/// same records meet again.
pub fn resolve_records(recs: &Records, store: &KeyStore, th: Thresholds) -> Linked {
    let n = recs.len();
    let mut stats = Stats::default();

    let mut clock = Clock::new();
    // 1. Keys.
    let mut entity_of = vec![NONE; n];
    let mut by_id = vec![NONE; recs.ids.len()];
    let mut entities: Vec<Entity> = Vec::new();
    for (r, slot) in entity_of.iter_mut().enumerate() {
        if recs.f[r].id_state != IdState::Key {
            continue;
        }
        let id = recs.f[r].id as usize;
        if by_id[id] == NONE {
            by_id[id] = entities.len() as u32;
            entities.push(Entity {
                kind: kind_of_keyed(recs, r),
                key: recs.ids.text(id as u32).to_string(),
                identified: true,
            });
        }
        *slot = by_id[id];
        stats.keyed_records += 1;
    }
    let keyed_entities = entities.len();
    clock.lap("keys");
    let members = Members::build_distinct(recs, &entity_of, keyed_entities);
    let index = BlockIndex::build(recs, (0..n).filter(|&r| entity_of[r] != NONE), Side::Keyed);
    stats.skipped_blocks = index.skipped_blocks;
    stats.index_bytes = index.heap_bytes();
    clock.lap("blocks");
    let freq = Frequencies::new(recs);

    // Candidate entities of a record without a key.
    let candidates = |r: usize, buf: &mut Vec<u64>, out: &mut Vec<(u32, bool)>| {
        out.clear();
        near_id_entities(recs, r, &by_id, out);
        index.for_each_candidate(recs, r, Side::Keyed, buf, |s| {
            out.push((entity_of[s], false))
        });
        out.sort_unstable_by_key(|&(e, near)| (e, !near));
        out.dedup_by_key(|c| c.0);
        out.retain(|&(e, _)| kind_ok(recs, r, entities[e as usize].kind));
    };

    clock.lap("frequencies");
    // 2a. Labelled matches from the keys (a keyed record against the rest of its entity),
    // and random pairs for `u` (a keyed record against an entity drawn at random). A sample
    // bounds the cost.
    let keyed: Vec<usize> = (0..n).filter(|&r| entity_of[r] != NONE).collect();
    let stride = (keyed.len() / 60_000).max(1);
    let (matches, non_matches, random) = keyed
        .par_iter()
        .enumerate()
        .step_by(stride)
        .fold(Labelled::default, |mut acc, (i, &r)| {
            let own = entity_of[r];
            if members.of(own).nth(1).is_some() {
                let g = compare_best(recs, r, members.of(own).filter(|&s| s != r));
                acc.matches.add(g, 1.0);
            }
            candidates(r, &mut acc.buf, &mut acc.cands);
            for &(e, _) in acc.cands.iter().filter(|c| c.0 != own).take(4) {
                acc.non_matches
                    .add(compare_best(recs, r, members.of(e)), 1.0);
            }
            for k in 0..4u64 {
                let other = (splitmix(i as u64 * 4 + k) % keyed_entities.max(1) as u64) as u32;
                if other != own && kind_ok(recs, r, entities[other as usize].kind) {
                    acc.random
                        .add(compare_best(recs, r, members.of(other)), 1.0);
                }
            }
            acc
        })
        .map(|a| (a.matches, a.non_matches, a.random))
        .reduce(
            Default::default,
            |(mut m1, mut u1, mut r1), (m2, u2, r2)| {
                m1.merge(m2);
                u1.merge(u2);
                r1.merge(r2);
                (m1, u1, r1)
            },
        );

    clock.lap("labelled pairs");
    // 2b. Every record without a key against its candidates.
    let unkeyed: Vec<usize> = (0..n).filter(|&r| entity_of[r] == NONE).collect();
    stats.unkeyed_records = unkeyed.len();
    type Scored = Vec<(u32, bool, Gamma)>;
    let scored: Vec<Scored> = unkeyed
        .par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(buf, cands), &r| {
                candidates(r, buf, cands);
                cands
                    .iter()
                    .map(|&(e, near)| (e, near, compare_best(recs, r, members.of(e))))
                    .collect()
            },
        )
        .collect();
    stats.candidate_pairs = scored.iter().map(Vec::len).sum();
    let unlabelled = scored
        .par_iter()
        .fold(PatternCounts::default, |mut pc, s| {
            for (_, _, g) in s {
                pc.add(*g, 1.0);
            }
            pc
        })
        .reduce(PatternCounts::default, |mut a, b| {
            a.merge(b);
            a
        });
    clock.lap("candidates");
    let model = Model::estimate(&matches, &non_matches, &unlabelled, &random);
    clock.lap("EM");
    let priors = Priors::of(&entities);
    let prior_by_kinds: [f64; 8] = std::array::from_fn(|k| priors.bits(k as u8));
    let prior = |r: usize| prior_by_kinds[(recs.f[r].kinds & 7) as usize];

    let score = |r: usize, g: &Gamma| -> (f64, f64, f64) {
        let (tn, tp) = freq.adjust(recs, r, g);
        (model.weight_of(g) + tn + tp + prior(r), tn, tp)
    };

    // 2c. Placement.
    let mut links = LinkState {
        confidence: vec![1.0f32; n],
        doubtful: vec![false; n],
        method: vec![Method::Key; n],
        evidence: HashMap::new(),
    };
    let mut leftover = Vec::new();
    // The best candidate of each record and the runner-up's weight, decided in parallel.
    let decisions: Vec<(Best, f64)> = unkeyed
        .par_iter()
        .zip(scored.par_iter())
        .map(|(&r, cands)| best_of(cands.iter().copied(), |g| linkable(g).then(|| score(r, g))))
        .collect();
    drop(scored);
    for (&r, &(best, second)) in unkeyed.iter().zip(&decisions) {
        match decide(best, second, &th, prior(r)) {
            Some(p) => {
                entity_of[r] = p.entity;
                links.place(r, &p);
                stats.placed += 1;
                stats.placed_by_near_id += usize::from(p.near);
            }
            None => leftover.push(r),
        }
    }
    drop(decisions);

    // 2d. A second pass over what is left, with placed records now members of their
    // entities: a record that shares only an old address with an account placed in the
    // first pass (the same household's gas and electricity accounts, written with the
    // address it had before it moved) finds the entity through it.
    let placed: Vec<usize> = unkeyed
        .iter()
        .copied()
        .filter(|&r| links.method[r] == Method::Placed)
        .collect();
    if !placed.is_empty() && !leftover.is_empty() {
        // Placed records by entity, beside the keyed members.
        let mut placed_of = vec![NONE; n];
        for &r in &placed {
            placed_of[r] = entity_of[r];
        }
        let placed_members = Members::build(&placed_of, entities.len());
        drop(placed_of);
        let placed_index = BlockIndex::build(recs, placed.iter().copied(), Side::Keyed);
        stats.index_bytes += placed_index.heap_bytes();
        let second_pass: Vec<(Best, f64)> = leftover
            .par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(buf, cands): &mut (Vec<u64>, Vec<u32>), &r| {
                    cands.clear();
                    for idx in [&index, &placed_index] {
                        idx.for_each_candidate(recs, r, Side::Keyed, buf, |s| {
                            cands.push(entity_of[s])
                        });
                    }
                    cands.sort_unstable();
                    cands.dedup();
                    let compared = cands
                        .iter()
                        .filter(|&&e| e != NONE && kind_ok(recs, r, entities[e as usize].kind))
                        .map(|&e| {
                            let group = members.of(e).chain(placed_members.of(e));
                            (e, false, compare_best(recs, r, group))
                        });
                    best_of(compared, |g| linkable(g).then(|| score(r, g)))
                },
            )
            .collect();
        let mut still = Vec::with_capacity(leftover.len());
        for (&r, &(best, second)) in leftover.iter().zip(&second_pass) {
            match decide(best, second, &th, prior(r)) {
                Some(p) => {
                    entity_of[r] = p.entity;
                    links.place(r, &p);
                    stats.placed += 1;
                    stats.placed_second_pass += 1;
                }
                None => still.push(r),
            }
        }
        leftover = still;
    }

    clock.lap("placement");
    // 3. Clustering what is left.
    let left_index = BlockIndex::build(recs, leftover.iter().copied(), Side::Keyless);
    let mut pairs: Vec<(u32, u32)> = left_index
        .blocks()
        .flat_map(|b| (0..b.len()).flat_map(move |i| ((i + 1)..b.len()).map(move |j| (b[i], b[j]))))
        .map(|(a, b)| (a.min(b), a.max(b)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    stats.cluster_pairs = pairs.len();
    let mut edges: Vec<(f64, u32, u32, Gamma)> = pairs
        .par_iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a as usize, b as usize);
            if recs.f[a].kinds & recs.f[b].kinds == 0 {
                return None;
            }
            let g = compare(recs, a, b);
            if !linkable(&g) {
                return None;
            }
            let (bits, _, _) = score(a, &g);
            (bits >= th.review).then_some((bits, a as u32, b as u32, g))
        })
        .collect();
    drop(pairs);
    edges.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let mut uf = UnionFind::new(recs, &leftover);
    for &(bits, a, b, g) in &edges {
        if uf.union(recs, a as usize, b as usize) {
            for r in [a, b] {
                let r = r as usize;
                let p = probability(bits) as f32;
                if links.method[r] != Method::Clustered || p > links.confidence[r] {
                    let (tn, tp) = freq.adjust(recs, r, &g);
                    links
                        .evidence
                        .insert(r as u32, Evidence::new(g, tn, tp, prior(r), bits));
                    links.confidence[r] = p;
                    links.doubtful[r] = bits < th.accept;
                }
                links.method[r] = Method::Clustered;
            }
        } else if uf.find(a as usize) != uf.find(b as usize) {
            stats.merges_refused += 1;
        }
    }
    drop(edges);

    clock.lap("clustering");
    // New entities, with keys reused from the store or minted.
    let mut root_entity: HashMap<usize, u32> = HashMap::new();
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for &r in &leftover {
        let root = uf.find(r);
        let c = *root_entity.entry(root).or_insert_with(|| {
            clusters.push(Vec::new());
            (clusters.len() - 1) as u32
        });
        clusters[c as usize].push(r);
    }
    // Minted keys (a letter and 16 hex digits) never collide with identifiers; only with
    // each other.
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    for members in &clusters {
        let kind = cluster_kind(recs, members);
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for &r in members {
            if let Some(k) = store.previous(recs.source_name(r), recs.record_id(r)) {
                *votes.entry(k).or_insert(0) += 1;
            }
        }
        let mut by_votes: Vec<(&str, usize)> = votes.into_iter().collect();
        by_votes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let reused = by_votes
            .iter()
            .find(|(k, _)| !taken.contains(*k) && k.starts_with(kind.mint_prefix()))
            .map(|(k, _)| k.to_string());
        let key = match reused {
            Some(k) => {
                stats.reused_keys += 1;
                k
            }
            None => {
                let first = members
                    .iter()
                    .copied()
                    .min_by(|&a, &b| {
                        (recs.source_name(a), recs.record_id(a))
                            .cmp(&(recs.source_name(b), recs.record_id(b)))
                    })
                    .unwrap_or(members[0]);
                mint_unique(kind, recs.source_name(first), recs.record_id(first), |k| {
                    taken.contains(k)
                })
            }
        };
        stats.minted_keys += 1;
        taken.insert(key.clone());
        let e = entities.len() as u32;
        entities.push(Entity {
            kind,
            key,
            identified: false,
        });
        for &r in members {
            entity_of[r] = e;
            if members.len() == 1 {
                links.method[r] = Method::Single;
                links.confidence[r] = 1.0;
                links.doubtful[r] = false;
                links.evidence.remove(&(r as u32));
            }
        }
    }
    stats.minted_keys -= stats.reused_keys;
    for (m, &d) in links.method.iter().zip(&links.doubtful) {
        match m {
            Method::Clustered => stats.clustered += 1,
            Method::Single => stats.single += 1,
            _ => {}
        }
        stats.doubtful += usize::from(d);
    }
    clock.lap("minting keys");
    stats.phases = clock.laps;
    Linked {
        entity_of,
        confidence: links.confidence,
        doubtful: links.doubtful,
        method: links.method,
        evidence: links.evidence,
        entities,
        model,
        priors,
        thresholds: th,
        stats,
    }
}

/// Labelled comparison counts gathered by one worker.
#[derive(Default)]
struct Labelled {
    matches: PatternCounts,
    non_matches: PatternCounts,
    random: PatternCounts,
    buf: Vec<u64>,
    cands: Vec<(u32, bool)>,
}

/// The best candidate of a record: (weight, entity, found by a near-valid id, levels, name
/// TF, phone TF).
pub(crate) type Best = Option<(f64, u32, bool, Gamma, f64, f64)>;

/// The best-scoring of the compared candidates `(entity, near id, levels)` and the
/// runner-up's weight. `score` gives (weight, name TF, phone TF), or `None` for a candidate
/// that may not link at all.
pub(crate) fn best_of(
    compared: impl Iterator<Item = (u32, bool, Gamma)>,
    mut score: impl FnMut(&Gamma) -> Option<(f64, f64, f64)>,
) -> (Best, f64) {
    let mut best: Best = None;
    let mut second = f64::NEG_INFINITY;
    for (e, near, g) in compared {
        let Some((bits, tn, tp)) = score(&g) else {
            continue;
        };
        match best {
            Some((b, ..)) if bits <= b => second = second.max(bits),
            _ => {
                if let Some((b, ..)) = best {
                    second = second.max(b);
                }
                best = Some((bits, e, near, g, tn, tp));
            }
        }
    }
    (best, second)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn cluster_kind(recs: &Records, members: &[usize]) -> Kind {
    let mask = members.iter().fold(0xFF, |m, &r| m & recs.f[r].kinds);
    if let Some(k) = only_kind(mask) {
        return k;
    }
    let org = members
        .iter()
        .filter_map(|&r| recs.name_text(r))
        .any(looks_like_org);
    if org { Kind::Enterprise } else { Kind::Person }
}

/// Union–find over the leftover records, each set carrying what its constraints need.
struct UnionFind {
    parent: HashMap<usize, usize>,
    /// Per root: kinds still possible, birth date, gender.
    attrs: HashMap<usize, (u8, u32, u8)>,
}

impl UnionFind {
    fn new(recs: &Records, members: &[usize]) -> UnionFind {
        UnionFind {
            parent: members.iter().map(|&r| (r, r)).collect(),
            attrs: members
                .iter()
                .map(|&r| (r, (recs.f[r].kinds, recs.f[r].birth, recs.f[r].gender)))
                .collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while let Some(&p) = self.parent.get(&x) {
            if p == x {
                break;
            }
            let gp = self.parent.get(&p).copied().unwrap_or(p);
            self.parent.insert(x, gp);
            x = gp;
        }
        x
    }

    /// Merges the sets of `a` and `b` unless a constraint forbids it.
    fn union(&mut self, _recs: &Records, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (ka, ba, ga) = self.attrs.get(&ra).copied().unwrap_or((0xFF, NO_DATE, 0));
        let (kb, bb, gb) = self.attrs.get(&rb).copied().unwrap_or((0xFF, NO_DATE, 0));
        let kinds = ka & kb;
        let births_conflict = ba != NO_DATE && bb != NO_DATE && birth_level(ba, bb) == 0;
        let genders_conflict = ga != 0 && gb != 0 && ga != gb;
        if kinds == 0 || births_conflict || genders_conflict {
            return false;
        }
        let birth = if ba != NO_DATE { ba } else { bb };
        let gender = if ga != 0 { ga } else { gb };
        self.parent.insert(rb, ra);
        self.attrs.insert(ra, (kinds, birth, gender));
        self.attrs.remove(&rb);
        true
    }
}

/// A readable account of a link's evidence: each field's level and weight.
pub fn explain(model: &Model, ev: &Evidence) -> String {
    let mut parts = Vec::with_capacity(FIELDS + 2);
    for f in Field::ALL {
        let l = ev.gamma[f as usize];
        if l == MISSING {
            continue;
        }
        let mut w = model.weight[f as usize][l as usize];
        if f == Field::Name {
            w += f64::from(ev.tf_name);
        }
        if f == Field::Phone {
            w += f64::from(ev.tf_phone);
        }
        parts.push(format!("{}={} ({:+.1})", f.as_str(), f.level_name(l), w));
    }
    parts.push(format!("prior ({:+.1})", ev.prior));
    parts.join("; ")
}
