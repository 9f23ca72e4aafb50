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

fn table_csv(
    stream: &CityStream,
    source: &str,
) -> (mianshen::source::config::SourceConfig, Vec<u8>) {
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

fn bench(c: &mut Criterion) {
    let stream = CityStream::new(&CityParams::new(20_000, 7)).expect("valid params");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("ingest_one_core");
    group.sample_size(10);
    for source in ["RS.contrib", "DL.bill", "GA.person", "SW.invoice"] {
        let (config, csv) = table_csv(&stream, source);
        group.throughput(Throughput::Bytes(csv.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(source), &csv, |b, csv| {
            b.iter(|| {
                pool.install(|| {
                    ingest_reader(
                        &config,
                        Path::new(source),
                        &csv[..],
                        csv.len() as u64,
                        dir.path(),
                        &IngestOptions::default(),
                        None,
                    )
                    .expect("ingest")
                })
            })
        });
    }
    // The whole city: every table of the exports, one after another, as `ingest` reads a
    // department folder (throughput over all their CSV bytes).
    let tables: Vec<_> = stream
        .tables
        .iter()
        .map(|t| (t.source, table_csv(&stream, t.source)))
        .collect();
    let bytes: usize = tables.iter().map(|(_, (_, csv))| csv.len()).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("city", |b| {
        b.iter(|| {
            pool.install(|| {
                for (source, (config, csv)) in &tables {
                    ingest_reader(
                        config,
                        Path::new(source),
                        &csv[..],
                        csv.len() as u64,
                        dir.path(),
                        &IngestOptions::default(),
                        None,
                    )
                    .expect("ingest");
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
