//! Generator throughput: records per second written as CSV (model, rows, dirt, truth, files).
//!
//! Each iteration writes a whole city of 50,000 persons (~11.5M records) into a temporary
//! folder with all available cores, as `mianshen generate` does.
//!
//! Run: `cargo bench --bench generate` (target: ≥ 2 million records/s, issue 2). The
//! whole-city figure comes from `mianshen generate --count-only` and `mianshen generate`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mianshen::source::city::{CityParams, generate_files};

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench(c: &mut Criterion) {
    let params = CityParams::new(50_000, 11);
    let dir = tempfile::tempdir().expect("tempdir");
    let records = generate_files(&params, dir.path(), false)
        .expect("generate")
        .rows();
    let mut group = c.benchmark_group("generate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(records));
    group.bench_function("city_50k_persons_csv", |b| {
        b.iter(|| generate_files(&params, dir.path(), false).expect("generate"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
