//! Ingest throughput: parse + normalize + write of department CSV, on ONE core.
//!
//! The CSV comes from the synthetic city (20,000 persons, seed 7), held in memory; each
//! iteration ingests one table into a temporary folder (segments, quarantine), inside a
//! one-thread rayon pool, so the figure is per core. Throughput is in CSV bytes. `city`
//! ingests every table of the city in turn.
//!
//! Run: `cargo bench --bench ingest` (target: ≥ 100 MB/s per core, DESIGN.md / issue 2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mianshen::ingest::{IngestOptions, ingest_reader};
use mianshen::source::city::{CityParams, CityStream};
use mianshen::source::config::SourceConfig;

fn table_csv(stream: &CityStream, source: &str) -> (SourceConfig, Vec<u8>) {
    let table = stream
        .tables
        .iter()
        .find(|t| t.source == source)
        .expect("table exists");
    let mut csv = format!("{}\n", table.header()).into_bytes();
    stream
        .for_each_chunk(table, |c| -> Result<(), ()> {
            csv.extend_from_slice(&c.csv);
            Ok(())
        })
        .expect("in memory");
    (table.config(stream.city.params.as_of), csv)
}

/// The allocator the binary uses (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ingests one table's CSV into `out` (on the calling thread's rayon pool).
fn ingest_one(config: &SourceConfig, source: &str, csv: &[u8], out: &Path) {
    ingest_reader(
        config,
        Path::new(source),
        csv,
        csv.len() as u64,
        out,
        &IngestOptions::default(),
        None,
    )
    .expect("ingest");
}

fn bench(c: &mut Criterion) {
    let stream = CityStream::new(&CityParams::new(20_000, 7)).expect("valid params");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let dir = tempfile::tempdir().expect("tempdir");
    // Every table of the exports, as `ingest` reads a department folder.
    let tables: Vec<(&str, (SourceConfig, Vec<u8>))> = stream
        .tables
        .iter()
        .map(|t| (t.source, table_csv(&stream, t.source)))
        .collect();
    let mut group = c.benchmark_group("ingest_one_core");
    group.sample_size(10);
    for source in ["RS.contrib", "DL.bill", "GA.person", "SW.invoice"] {
        let (_, (config, csv)) = tables
            .iter()
            .find(|(s, _)| *s == source)
            .expect("table exists");
        group.throughput(Throughput::Bytes(csv.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(source), csv, |b, csv| {
            b.iter(|| pool.install(|| ingest_one(config, source, csv, dir.path())))
        });
    }
    // The whole city: every table, one after another (throughput over all their CSV bytes).
    let bytes: usize = tables.iter().map(|(_, (_, csv))| csv.len()).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("city", |b| {
        b.iter(|| {
            pool.install(|| {
                for (source, (config, csv)) in &tables {
                    ingest_one(config, source, csv, dir.path());
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
