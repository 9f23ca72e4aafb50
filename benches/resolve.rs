//! Resolution: blocking, comparison and the whole clustering, on the identity records of a
//! synthetic city (30,000 persons, seed 11: ~104,000 identity records), generated and
//! ingested once into a temporary folder before measuring.
//!
//! - `blocking/index`: building the block index over the keyed records (keys, sort, caps).
//! - `comparison/pairs`: field-by-field comparison of candidate pairs drawn from the blocks.
//! - `clustering/resolve_records`: keys, labelled pairs, candidates, EM, placement and
//!   clustering: everything `resolve` does between loading records and writing files.
//!
//! Run: `cargo bench --bench resolve`. Whole-system figures (1M records end to end) come from
//! `mianshen resolve` itself; see BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mianshen::ingest::{IngestOptions, ingest_dir};
use mianshen::resolve::block::{BlockIndex, Side};
use mianshen::resolve::compare::compare;
use mianshen::resolve::keys::KeyStore;
use mianshen::resolve::records::IdState;
use mianshen::resolve::{Records, Thresholds, resolve_records};
use mianshen::source::city::{CityParams, generate_files};

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let src = tempfile::tempdir().unwrap();
    let ing = tempfile::tempdir().unwrap();
    let mut params = CityParams::new(30_000, 11);
    params.history_months = 12;
    generate_files(&params, src.path(), false).unwrap();
    ingest_dir(
        src.path(),
        ing.path(),
        &IngestOptions {
            progress: false,
            ..Default::default()
        },
    )
    .unwrap();
    let recs = Records::load(&ing.path().join("segments")).unwrap();
    let n = recs.len();
    let keyed: Vec<usize> = (0..n)
        .filter(|&r| recs.f[r].id_state == IdState::Key)
        .collect();

    let mut g = c.benchmark_group("blocking");
    g.sample_size(10);
    g.throughput(Throughput::Elements(keyed.len() as u64));
    g.bench_with_input(BenchmarkId::new("index", keyed.len()), &keyed, |b, k| {
        b.iter(|| BlockIndex::build(&recs, k.iter().copied(), Side::Keyed))
    });
    g.finish();

    // Candidate pairs: every pair within the blocks of the keyless records' index.
    let index = BlockIndex::build(&recs, 0..n, Side::Keyless);
    let mut pairs: Vec<(usize, usize)> = index
        .blocks()
        .flat_map(|b| (0..b.len()).flat_map(move |i| ((i + 1)..b.len()).map(move |j| (b[i], b[j]))))
        .map(|(a, b)| (a as usize, b as usize))
        .take(200_000)
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut g = c.benchmark_group("comparison");
    g.throughput(Throughput::Elements(pairs.len() as u64));
    g.bench_with_input(BenchmarkId::new("pairs", pairs.len()), &pairs, |b, p| {
        b.iter(|| {
            let mut agree = 0u64;
            for &(x, y) in p {
                agree += u64::from(compare(&recs, x, y)[1]);
            }
            agree
        })
    });
    g.finish();

    let mut g = c.benchmark_group("clustering");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_with_input(BenchmarkId::new("resolve_records", n), &recs, |b, r| {
        b.iter(|| resolve_records(r, &KeyStore::default(), Thresholds::default()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
