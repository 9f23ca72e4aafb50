//! The policy engine over a snapshot of a synthetic city (SNAPSHOT_PERSONS persons, default
//! 20,000, seed 7), built once into `target/bench-data/` and reused by later runs (built
//! again when its format version is not the current one).
//!
//! - `catalogue/cold`: a new engine evaluates the whole catalogue: every condition computed
//!   from the snapshot's columns, then combined, with amounts.
//! - `catalogue/recombine`: every condition's sets cached; each policy's candidates,
//!   to-verify, near-miss and amounts recomputed (what a new as-of-independent run costs).
//! - `catalogue/counts`: every condition's sets cached; the catalogue counted together,
//!   block-major (counts of candidates, to-verify and near-miss, and each condition's).
//! - `catalogue/ids`: every condition's sets cached; the catalogue counted together,
//!   block-major, with each policy's candidates written out as a set (no amounts).
//! - `catalogue/cached`: nothing changed since the last run: results from the memo.
//! - `whatif/numeric`: M01 with a new age threshold: one single-table condition computed,
//!   the rest cached. The what-if and new-policy benches use the engine as the server does:
//!   the catalogue's work pinned, and the caches trimmed to the server's bounds after each
//!   run (`Engine::trim`).
//! - `whatif/relation`: E10 with a new threshold on a relation count.
//! - `new_policy/3_conditions`: a policy text whose three conditions are all new.
//! - `random/6418`: 6,418 random policies, each a combination of 2-5 catalogue conditions
//!   (cached), compiled and combined.
//! - `random/6418_counts`: the same policies counted together, block-major
//!   (`Engine::count_policies`): counts of candidates, to-verify and near-miss, and each
//!   condition's FALSE and sole-blocked counts, without their sets.
//!
//! Run: `cargo bench --bench policy` (`SNAPSHOT_PERSONS=100000` for the demo city's size).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use mianshen::date::Date;
use mianshen::pipeline::{Input, build};
use mianshen::policy::ast::{Lit, Policy};
use mianshen::policy::check::{Catalogue, load_dir, load_texts};
use mianshen::policy::engine::Engine;
use mianshen::policy::schema::Schema;
use mianshen::server::whatif::{MAX_CACHED, MAX_CACHED_BYTES};
use mianshen::snapshot::Snapshot;
use mianshen::source::city::{CityParams, generate_files};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn snapshot_dir() -> PathBuf {
    let persons: u64 = std::env::var("SNAPSHOT_PERSONS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let snap = root.join(format!("policy-{persons}"));
    // Built again when missing or written in an older format version.
    let current = Snapshot::open(&snap)
        .is_ok_and(|s| s.container().version() == mianshen::snapshot::container::FORMAT_VERSION);
    if !current {
        let sources = root.join(format!("city-{persons}"));
        let _ = std::fs::remove_dir_all(&sources);
        generate_files(&CityParams::new(persons, 7), &sources, false).unwrap();
        build(
            &Input::Sources(sources.clone()),
            &snap,
            &snap.join("work"),
            false,
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&sources);
    }
    snap
}

fn catalogue(snap: &Snapshot) -> Catalogue {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/policies");
    load_dir(&dir, &Schema::of_snapshot(snap)).unwrap()
}

fn as_of() -> Date {
    Date::from_ymd(2025, 12, 31).unwrap()
}

fn bench(c: &mut Criterion) {
    // As the `mianshen` command does for the policy engine (`mianshen::alloc`).
    mianshen::alloc::keep_freed_memory(mianshen::alloc::KEEP_FREED_MS);
    let dir = snapshot_dir();
    let snap = Snapshot::open(&dir).unwrap();
    let cat = catalogue(&snap);
    let none = HashMap::new();

    let mut g = c.benchmark_group("catalogue");
    g.sample_size(10);
    g.bench_function("cold", |b| {
        b.iter(|| {
            let mut e = Engine::new(&snap, cat.clone(), as_of());
            e.run_all().unwrap().len()
        })
    });
    let mut engine = Engine::new(&snap, cat.clone(), as_of());
    engine.run_all().unwrap();
    g.sample_size(30);
    g.bench_function("recombine", |b| {
        b.iter(|| {
            engine.forget_results();
            engine
                .run_all()
                .unwrap()
                .iter()
                .map(|r| r.candidates.len())
                .sum::<u64>()
        })
    });
    let policies: Vec<Policy> = cat.policies.iter().map(|c| c.policy.clone()).collect();
    g.bench_function("counts", |b| {
        b.iter(|| engine.count_policies(&policies, &none).unwrap().len())
    });
    // Written out together, the candidates are each run's.
    let runs = engine.run_all().unwrap();
    let with_ids = engine
        .count_policies_with_candidates(&policies, &none)
        .unwrap();
    for (c, run) in with_ids.iter().zip(&runs) {
        assert_eq!(c.candidate_ids.as_ref(), Some(&*run.candidates), "{}", c.id);
    }
    g.bench_function("ids", |b| {
        b.iter(|| {
            engine
                .count_policies_with_candidates(&policies, &none)
                .unwrap()
                .iter()
                .map(|c| c.candidate_ids.as_ref().map_or(0, |s| s.len()))
                .sum::<u64>()
        })
    });
    g.bench_function("cached", |b| {
        b.iter(|| {
            engine
                .run_all()
                .unwrap()
                .iter()
                .map(|r| r.candidates.len())
                .sum::<u64>()
        })
    });
    g.finish();

    // As a served engine: the catalogue's work pinned, what each what-if adds trimmed.
    engine.pin();
    let trim = |e: &mut Engine<'_>| e.trim(MAX_CACHED, MAX_CACHED_BYTES);
    let mut g = c.benchmark_group("whatif");
    g.sample_size(20);
    let m01 = cat.get("M01").unwrap().policy.clone();
    let mut k = 0u32;
    g.bench_function("numeric", |b| {
        b.iter(|| {
            // A threshold not seen before, so its condition is computed.
            k += 1;
            let set = HashMap::from([(
                "min_age".to_string(),
                Lit::Num(60.0 + f64::from(k % 40) + f64::from(k / 40) * 1e-6),
            )]);
            let n = engine.run_policy(&m01, &set).unwrap().candidates.len();
            trim(&mut engine);
            n
        })
    });
    let e10 = cat.get("E10").unwrap().policy.clone();
    g.bench_function("relation", |b| {
        b.iter(|| {
            k += 1;
            let set =
                HashMap::from([("min_hires".to_string(), Lit::Num(1.0 + f64::from(k) * 1e-6))]);
            let n = engine.run_policy(&e10, &set).unwrap().candidates.len();
            trim(&mut engine);
            n
        })
    });
    g.finish();

    let mut g = c.benchmark_group("new_policy");
    g.sample_size(20);
    let relations = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/policies/relations.policy"),
    )
    .unwrap();
    let schema = Schema::of_snapshot(&snap);
    g.bench_function("3_conditions", |b| {
        b.iter(|| {
            k += 1;
            let text = format!(
                "policy N{k} \"new\" {{ domain 惠民 subject person lead MZ mode direct article \"a\"\n\
                 when a: age(GA.person.birth_date) >= {}\n\
                 when b: GA.person.hukou_type == \"农业\" and GA.person.status == \"正常\" and GA.person.hukou_region != {}\n\
                 when c: not exists(CL.cert where CL.cert.grade >= {})\n amount 1 }}",
                50 + k % 40,
                400000 + k,
                k % 5
            );
            let files = vec![
                (PathBuf::from("r.policy"), relations.clone()),
                (PathBuf::from("n.policy"), text),
            ];
            let cat = load_texts(&files, &schema).unwrap();
            let p = cat.policies.iter().find(|p| p.policy.id.starts_with('N')).unwrap();
            let n = engine.run_policy(&p.policy, &none).unwrap().candidates.len();
            trim(&mut engine);
            n
        })
    });
    g.finish();

    // 6,418 policies from the catalogue's own conditions, combined at random.
    let mut pool: HashMap<String, Vec<Policy>> = HashMap::new();
    for c in &cat.policies {
        pool.entry(c.policy.subject.clone())
            .or_default()
            .push(c.policy.clone());
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let subjects: Vec<&String> = pool.keys().collect();
    let mut random = Vec::with_capacity(6418);
    for i in 0..6418 {
        let subject = subjects[next(subjects.len())];
        let ps = &pool[subject];
        let base = &ps[next(ps.len())];
        let mut p = base.clone();
        p.id = format!("R{i}");
        p.conditions.clear();
        p.cases.clear();
        let n = 2 + next(4);
        for _ in 0..n {
            let from = &ps[next(ps.len())];
            // Conditions that refer to earlier conditions by name need them: take whole
            // policies' conditions only when they stand alone.
            let c = &from.conditions[next(from.conditions.len())];
            if !p.conditions.iter().any(|x| x.name == c.name) {
                p.params.extend(
                    from.params
                        .iter()
                        .filter(|q| !base.params.iter().any(|b| b.name == q.name))
                        .cloned(),
                );
                p.conditions.push(c.clone());
            }
        }
        p.amount = None;
        random.push(p);
    }
    let mut g = c.benchmark_group("random");
    g.sample_size(10);
    // Counted together, each policy counts what its own run holds.
    let counted = engine.count_policies(&random, &none).unwrap();
    for (p, c) in random.iter().zip(&counted) {
        let run = engine.run_policy(p, &none).unwrap();
        assert_eq!(
            (c.candidates, c.to_verify, c.near_miss),
            (
                run.candidates.len(),
                run.to_verify.len(),
                run.near_miss.len()
            ),
            "{}",
            p.id
        );
    }
    g.bench_function("6418", |b| {
        b.iter(|| {
            engine.forget_results();
            random
                .iter()
                .map(|p| engine.run_policy(p, &none).unwrap().candidates.len())
                .sum::<u64>()
        })
    });
    g.bench_function("6418_counts", |b| {
        b.iter(|| {
            engine
                .count_policies(&random, &none)
                .unwrap()
                .iter()
                .map(|c| c.candidates)
                .sum::<u64>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
