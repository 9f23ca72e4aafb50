//! The synthetic reference city: a Shangqiu-like population with households, enterprises,
//! employment, benefits, and five years of monthly events across the 17 department feeds and
//! the lead-department registers, made dirty at documented rates, with ground truth beside it.
//!
//! - [`params`]: size, seed, as-of date, history and dirt rates.
//! - [`model`]: the true city in memory (persons, households, enterprises).
//! - [`tables`] and [`feeds`]: every table's source config and row emitter.
//! - [`out`]: field formatting and dirt.
//! - [`CityStream`]: the in-process streaming source; [`generate_files`] writes it to disk.
//!
//! Output is a pure function of the parameters: chunks have fixed sizes and their own random
//! streams, are generated in parallel and delivered in order, so the bytes do not depend on
//! the number of threads.

pub mod feeds;
pub mod model;
pub mod names;
pub mod out;
pub mod params;
pub mod rng;
pub mod tables;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::error::GenerateError;
pub use model::City;
pub use out::Chunk;
use out::Out;
pub use params::{CityParams, DirtRates};
use rng::{Rng, label};
pub use tables::{TableDef, all_tables};

/// Units (persons, households, enterprises) per chunk: fixed, part of the output's definition.
pub const UNITS_PER_CHUNK: u64 = 2048;

/// The in-process streaming source: the city model plus every table's rows, chunk by chunk,
/// without touching the disk.
#[derive(Debug)]
pub struct CityStream {
    pub city: City,
    pub tables: Vec<&'static TableDef>,
}

impl CityStream {
    /// Builds the city model (a few seconds per million persons).
    pub fn new(params: &CityParams) -> Result<CityStream, GenerateError> {
        params.check()?;
        Ok(CityStream {
            city: City::build(params),
            tables: all_tables(),
        })
    }

    /// Chunks of `table`, in order, each handed to `sink` (CSV rows without the header, and
    /// truth lines for identity tables). Chunks are generated in parallel waves.
    pub fn for_each_chunk<E>(
        &self,
        table: &TableDef,
        sink: impl FnMut(Chunk) -> Result<(), E>,
    ) -> Result<(), E> {
        self.for_each_chunk_reusing(table, &|| None, sink)
    }

    /// [`Self::for_each_chunk`], writing each chunk's CSV into a buffer from `spare` when it
    /// has one (emptied first): a consumer that hands back the buffers it has read keeps the
    /// generator from faulting in fresh pages for every chunk (an invoice chunk is ~90 MB).
    pub fn for_each_chunk_reusing<E>(
        &self,
        table: &TableDef,
        spare: &(dyn Fn() -> Option<Vec<u8>> + Sync),
        mut sink: impl FnMut(Chunk) -> Result<(), E>,
    ) -> Result<(), E> {
        let units = table.units(&self.city);
        let chunks = units.div_ceil(UNITS_PER_CHUNK);
        let wave = (rayon::current_num_threads() as u64 * 4).max(1);
        let mut start = 0;
        while start < chunks {
            let end = (start + wave).min(chunks);
            let produced: Vec<Chunk> = (start..end)
                .into_par_iter()
                .map(|c| self.chunk_into(table, c, units, spare().unwrap_or_default()))
                .collect();
            for chunk in produced {
                sink(chunk)?;
            }
            start = end;
        }
        Ok(())
    }

    /// About how many rows `table` has: rows of a sample of its units (every k-th, at most
    /// `SAMPLE_UNITS`), scaled to all of them. A schedule's estimate, nothing more.
    pub fn estimated_rows(&self, table: &TableDef) -> u64 {
        const SAMPLE_UNITS: u64 = 256;
        let units = table.units(&self.city);
        let step = units.div_ceil(SAMPLE_UNITS).max(1);
        let rng = Rng::new(self.city.params.seed, label("estimate"), 0);
        let mut out = Out::new(&self.city, table.source, table.dept, table.style, rng);
        let mut sampled = 0;
        for u in (0..units).step_by(step as usize) {
            (table.emit)(&mut out, u as u32);
            sampled += 1;
        }
        out.chunk.rows * units / sampled.max(1)
    }

    /// One chunk of one table.
    pub fn chunk(&self, table: &TableDef, c: u64, units: u64) -> Chunk {
        self.chunk_into(table, c, units, Vec::new())
    }

    /// One chunk of one table, its CSV written into `csv` (emptied first).
    fn chunk_into(&self, table: &TableDef, c: u64, units: u64, mut csv: Vec<u8>) -> Chunk {
        let rng = Rng::new(self.city.params.seed, label(table.source), c);
        let mut out = Out::new(&self.city, table.source, table.dept, table.style, rng);
        csv.clear();
        out.chunk.csv = csv;
        let lo = c * UNITS_PER_CHUNK;
        let hi = ((c + 1) * UNITS_PER_CHUNK).min(units);
        for u in lo..hi {
            (table.emit)(&mut out, u as u32);
        }
        out.chunk
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    pub tables: Vec<TableReport>,
    pub model_seconds: f64,
    pub seconds: f64,
    pub persons: u64,
    pub households: u64,
    pub enterprises: u64,
}

#[derive(Debug, Clone)]
pub struct TableReport {
    pub source: String,
    pub rows: u64,
    pub bytes: u64,
    pub truth_rows: u64,
}

impl GenerateReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "city: {} persons, {} households, {} market entities",
            self.persons, self.households, self.enterprises
        );
        let _ = writeln!(
            s,
            "{:<28} {:>14} {:>10} {:>10}",
            "table", "rows", "MB", "truth"
        );
        for t in &self.tables {
            let _ = writeln!(
                s,
                "{:<28} {:>14} {:>10.1} {:>10}",
                t.source,
                t.rows,
                t.bytes as f64 / 1e6,
                if t.truth_rows > 0 {
                    t.truth_rows.to_string()
                } else {
                    "-".into()
                }
            );
        }
        let secs = self.seconds.max(1e-9);
        let _ = writeln!(
            s,
            "{:<28} {:>14} {:>10.1}\nmodel {:.1} s; total {:.1} s; {:.2} M records/s; {:.0} MB/s",
            "TOTAL",
            self.rows(),
            self.bytes() as f64 / 1e6,
            self.model_seconds,
            self.seconds,
            self.rows() as f64 / 1e6 / secs,
            self.bytes() as f64 / 1e6 / secs
        );
        s
    }
}

/// Writes the city under `out`: `<DEPT>/<table>.csv` with `<DEPT>/<table>.toml` beside it, and
/// `truth/<DEPT>.<table>.csv` (`source,record_id,true_key`) for every identity table, with the
/// generator's parameters in `truth/city.toml`. Ingest never reads `truth/`.
pub fn generate_files(
    params: &CityParams,
    out: &Path,
    progress: bool,
) -> Result<GenerateReport, GenerateError> {
    let started = Instant::now();
    let stream = CityStream::new(params)?;
    let model_seconds = started.elapsed().as_secs_f64();
    let io = |p: &Path| {
        let p: PathBuf = p.to_path_buf();
        move |e| GenerateError::Io { path: p, source: e }
    };
    let truth_dir = out.join("truth");
    std::fs::create_dir_all(&truth_dir).map_err(io(&truth_dir))?;
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(stream.tables.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} generate [{bar:40}] {pos}/{len} tables {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let mut report = GenerateReport {
        model_seconds,
        persons: stream.city.persons.len() as u64,
        households: stream.city.households.len() as u64,
        enterprises: stream.city.enterprises.len() as u64,
        ..Default::default()
    };
    for table in &stream.tables {
        if let Some(b) = &bar {
            b.set_message(table.source);
        }
        let dir = out.join(table.dept);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let config_path = dir.join(format!("{}.toml", table.table));
        std::fs::write(&config_path, table.config(params.as_of).to_toml())
            .map_err(io(&config_path))?;
        let csv_path = dir.join(format!("{}.csv", table.table));
        let mut csv =
            BufWriter::with_capacity(1 << 22, File::create(&csv_path).map_err(io(&csv_path))?);
        let header = format!("{}\n", table.header());
        csv.write_all(header.as_bytes()).map_err(io(&csv_path))?;
        let truth_path = truth_dir.join(format!("{}.csv", table.source));
        let mut truth = if table.has_truth() {
            let mut t = BufWriter::with_capacity(
                1 << 20,
                File::create(&truth_path).map_err(io(&truth_path))?,
            );
            t.write_all(b"source,record_id,true_key\n")
                .map_err(io(&truth_path))?;
            Some(t)
        } else {
            None
        };
        let mut t = TableReport {
            source: table.source.to_string(),
            rows: 0,
            bytes: header.len() as u64,
            truth_rows: 0,
        };
        stream.for_each_chunk(table, |chunk| -> Result<(), GenerateError> {
            csv.write_all(&chunk.csv).map_err(io(&csv_path))?;
            t.rows += chunk.rows;
            t.bytes += chunk.csv.len() as u64;
            if let Some(tw) = truth.as_mut() {
                tw.write_all(&chunk.truth).map_err(io(&truth_path))?;
                t.truth_rows += chunk.truth.iter().filter(|&&b| b == b'\n').count() as u64;
            }
            Ok(())
        })?;
        csv.flush().map_err(io(&csv_path))?;
        if let Some(mut tw) = truth {
            tw.flush().map_err(io(&truth_path))?;
        }
        report.tables.push(t);
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let params_path = truth_dir.join("city.toml");
    let params_text = toml::to_string(params).unwrap_or_default();
    std::fs::write(&params_path, params_text).map_err(io(&params_path))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
