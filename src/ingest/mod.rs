//! Ingest: department CSV + source config → normalized columnar segments, with every rejected
//! row in quarantine (DESIGN.md §3.2).
//!
//! Per source, one reader thread parses CSV records into batches; batches are normalized in
//! parallel ([`fields::Plan::push_row`]) and written in order as row groups of a segment
//! ([`segment`]). A row that cannot be normalized goes to `quarantine/<source>.csv` with its line,
//! column and reason, and the raw row itself, so nothing is lost. The summary reconciles every
//! source: `read = accepted + quarantined`.

pub mod fields;
pub mod normalize;
pub mod records;
pub mod segment;
pub mod stream;
pub mod summary;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel};
use std::time::Instant;

use csv::ByteRecord;
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::error::{IngestError, SourceError};
use crate::source::config::{SourceConfig, SourceFile, discover};
use fields::{Plan, Reject, RowStats};
use records::RecordReader;
use segment::{ColumnData, SegmentWriter};
pub use stream::ingest_city;
pub use summary::{IngestReport, SourceSummary};

/// Tuning of an ingest run.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows per batch (and per row group).
    pub batch_rows: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_rows: 32 * 1024,
            progress: false,
        }
    }
}

/// Ingests every source config found under `sources` into `out` (`segments/`, `quarantine/`,
/// `summary.csv`). A broken config or unreadable file fails that source, reported in the
/// summary, and the others still run.
pub fn ingest_dir(
    sources: &Path,
    out: &Path,
    opts: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let found = discover(sources)?;
    if found.is_empty() {
        return Err(IngestError::NoSources(sources.to_path_buf()));
    }
    // The summary goes here even if every source fails; each source makes its own subfolders.
    std::fs::create_dir_all(out).map_err(|e| IngestError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let total_bytes: u64 = found
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .filter_map(|f| std::fs::metadata(&f.csv_path).ok())
        .map(|m| m.len())
        .sum();
    let bar = opts.progress.then(|| {
        let b = ProgressBar::new(total_bytes);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} ingest [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let started = Instant::now();
    let mut report = IngestReport::default();
    for f in found {
        match f {
            Ok(sf) => {
                if let Some(b) = &bar {
                    b.set_message(sf.config.source_name());
                }
                match ingest_source(&sf, out, opts, bar.as_ref()) {
                    Ok(s) => report.sources.push(s),
                    Err(e) => report
                        .failures
                        .push((sf.config.source_name(), e.to_string())),
                }
            }
            Err(e) => report.failures.push(("(config)".into(), e.to_string())),
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.write_csv(&out.join("summary.csv"))?;
    Ok(report)
}

/// Where normalized batches go: the segment, the quarantine file and the summary.
struct Output {
    writer: SegmentWriter,
    quarantine: Quarantine,
    summary: SourceSummary,
}

impl Output {
    fn take(&mut self, b: &Batch, o: BatchOut) -> Result<(), IngestError> {
        let accepted = b.cols.first().map_or(0, ColumnData::rows);
        self.summary.read += (accepted + o.rejects.len()) as u64;
        self.summary.accepted += accepted as u64;
        self.summary.add_stats(&o.stats);
        for (line, r, raw) in o.rejects {
            self.summary.quarantined += 1;
            self.summary.add_reason(&r);
            self.quarantine.write(line, &r, &raw)?;
        }
        self.writer.write_group(&b.cols)?;
        Ok(())
    }
}

/// Reads CSV records into batches.
struct BatchReader<R: std::io::BufRead> {
    rdr: RecordReader<R>,
    path: PathBuf,
    batch_rows: usize,
    last_pos: u64,
    bar: Option<ProgressBar>,
}

impl<R: std::io::BufRead> BatchReader<R> {
    /// Refills `b` with up to `batch_rows` records; returns whether the input is exhausted.
    fn fill(&mut self, b: &mut Batch) -> Result<bool, IngestError> {
        b.len = 0;
        let mut eof = false;
        while b.len < self.batch_rows {
            if b.recs.len() == b.len {
                b.recs.push(ByteRecord::new());
                b.lines.push(0);
            }
            let got =
                self.rdr
                    .read_record(&mut b.recs[b.len])
                    .map_err(|source| IngestError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
            if !got {
                eof = true;
                break;
            }
            b.lines[b.len] = b.recs[b.len].position().map_or(0, |p| p.line());
            b.len += 1;
        }
        if let Some(bar) = &self.bar {
            let pos = self.rdr.byte();
            bar.inc(pos.saturating_sub(self.last_pos));
            self.last_pos = pos;
        }
        Ok(eof)
    }
}

/// A batch of raw records and, after processing, their normalized columns. Batches are
/// recycled, so their allocations are reused from one row group to the next.
#[derive(Default)]
struct Batch {
    recs: Vec<ByteRecord>,
    lines: Vec<u64>,
    len: usize,
    cols: Vec<ColumnData>,
}

/// Normalizes one batch.
fn process_batch(plan: &Plan, b: &mut Batch, delimiter: u8) -> BatchOut {
    if b.cols.len() != plan.schema.len() {
        b.cols = ColumnData::group(&plan.schema);
    }
    for c in &mut b.cols {
        c.clear();
    }
    let mut rejects = Vec::new();
    let mut stats = plan.new_stats();
    for i in 0..b.len {
        let (rec, line) = (&b.recs[i], b.lines[i]);
        if let Err(r) = plan.push_row(line, rec, &mut b.cols, &mut stats) {
            rejects.push((line, r, raw_row(rec, delimiter)));
        }
    }
    BatchOut { rejects, stats }
}

struct BatchOut {
    rejects: Vec<(u64, Reject, Vec<u8>)>,
    stats: RowStats,
}

/// Ingests one source into `out/segments/<source>.seg` and `out/quarantine/<source>.csv`.
pub fn ingest_source(
    sf: &SourceFile,
    out: &Path,
    opts: &IngestOptions,
    bar: Option<&ProgressBar>,
) -> Result<SourceSummary, IngestError> {
    let file = File::open(&sf.csv_path).map_err(|e| SourceError::Io {
        path: sf.csv_path.clone(),
        source: e,
    })?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let input = std::io::BufReader::with_capacity(1 << 20, file);
    ingest_reader(&sf.config, &sf.csv_path, input, bytes, out, opts, bar)
}

/// Ingests CSV text from any buffered reader (a file, a network stream, the generator's
/// in-process stream) as the source `config` describes. `path` names the input in errors; `bytes` is
/// its size if known (for the summary).
pub fn ingest_reader<R: std::io::BufRead + Send>(
    config: &SourceConfig,
    path: &Path,
    input: R,
    bytes: u64,
    out: &Path,
    opts: &IngestOptions,
    bar: Option<&ProgressBar>,
) -> Result<SourceSummary, IngestError> {
    let started = Instant::now();
    let name = config.source_name();
    let path = &path.to_path_buf();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| IngestError::Io { path: p, source: e }
    };
    for sub in ["segments", "quarantine"] {
        let p = out.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    let delimiter = config.csv.delimiter as u8;
    let mut rdr = RecordReader::new(input, delimiter);

    // Header.
    let mut header_rec = ByteRecord::new();
    let header: Vec<String> = if config.csv.header {
        let got = rdr
            .read_record(&mut header_rec)
            .map_err(|e| SourceError::Header {
                path: path.clone(),
                msg: e.to_string(),
            })?;
        if !got {
            return Err(SourceError::Header {
                path: path.clone(),
                msg: "the file is empty".into(),
            }
            .into());
        }
        header_rec
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let h = if i == 0 {
                    h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
                } else {
                    h
                };
                String::from_utf8_lossy(h).trim().to_string()
            })
            .collect()
    } else {
        config.columns.iter().map(|c| c.name.clone()).collect()
    };
    let plan = Plan::new(config, &header).map_err(|column| SourceError::MissingColumn {
        path: path.clone(),
        column,
    })?;

    let seg_path = out.join("segments").join(format!("{name}.seg"));
    let tmp_path = out.join("segments").join(format!(".{name}.seg.tmp"));
    let q_path = out.join("quarantine").join(format!("{name}.csv"));
    let mut output = Output {
        writer: SegmentWriter::create(&tmp_path, plan.schema.clone())?,
        quarantine: Quarantine::create(&q_path, &name)?,
        summary: SourceSummary::new(&name, config, bytes, &plan),
    };
    let mut reader = BatchReader {
        rdr,
        path: path.clone(),
        batch_rows: opts.batch_rows.max(1),
        last_pos: 0,
        bar: bar.cloned(),
    };
    let threads = rayon::current_num_threads().max(1);
    if threads == 1 {
        // One core: read, normalize and write in turn on this thread.
        let mut b = Batch::default();
        loop {
            let eof = reader.fill(&mut b)?;
            let o = process_batch(&plan, &mut b, delimiter);
            output.take(&b, o)?;
            if eof {
                break;
            }
        }
    } else {
        // Three stages: a reader thread parses CSV into batches, the rayon workers normalize
        // them, a writer thread appends row groups and quarantine rows in order. Batches go
        // back to the reader to be refilled, so allocations stay flat.
        let (full_tx, full_rx) = sync_channel::<Batch>(threads * 2);
        let (done_tx, done_rx) = sync_channel::<(Batch, BatchOut)>(threads * 2);
        let (free_tx, free_rx) = channel::<Batch>();
        output = std::thread::scope(|scope| -> Result<Output, IngestError> {
            let read = scope.spawn(move || -> Result<(), IngestError> {
                loop {
                    let mut b = free_rx.try_recv().unwrap_or_default();
                    let eof = reader.fill(&mut b)?;
                    if (b.len > 0 && full_tx.send(b).is_err()) || eof {
                        return Ok(());
                    }
                }
            });
            let write = scope.spawn(move || -> Result<Output, IngestError> {
                for (b, o) in done_rx {
                    output.take(&b, o)?;
                    let _ = free_tx.send(b);
                }
                Ok(output)
            });
            let mut batches: Vec<Batch> = Vec::with_capacity(threads);
            // Wait for one batch, then take whatever else is ready, up to one per thread.
            'work: while let Ok(b) = full_rx.recv() {
                batches.push(b);
                while batches.len() < threads {
                    match full_rx.try_recv() {
                        Ok(b) => batches.push(b),
                        Err(_) => break,
                    }
                }
                let outs: Vec<BatchOut> = batches
                    .par_iter_mut()
                    .map(|b| process_batch(&plan, b, delimiter))
                    .collect();
                for pair in batches.drain(..).zip(outs) {
                    if done_tx.send(pair).is_err() {
                        break 'work;
                    }
                }
            }
            drop(full_rx);
            drop(done_tx);
            let failed = || IngestError::Io {
                path: path.clone(),
                source: std::io::Error::other("an ingest thread failed"),
            };
            let written = write.join().unwrap_or_else(|_| Err(failed()));
            let read = read.join().unwrap_or_else(|_| Err(failed()));
            let output = written?;
            read?;
            Ok(output)
        })?;
    }
    let Output {
        writer,
        quarantine,
        mut summary,
    } = output;
    let mut meta = vec![
        ("source".to_string(), name.clone()),
        ("department".to_string(), config.department.clone()),
        ("table".to_string(), config.table.clone()),
        ("config".to_string(), config.to_toml()),
        ("file".to_string(), path.display().to_string()),
    ];
    if let Some(a) = &config.as_of {
        meta.push(("as_of".to_string(), a.clone()));
    }
    summary.segment_bytes = writer.finish(&meta)?;
    quarantine.finish()?;
    std::fs::rename(&tmp_path, &seg_path).map_err(io(&seg_path))?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The rejected row as CSV text, or `hex:` + its bytes when it is not UTF-8, so that the
/// quarantine file holds exactly what arrived.
fn raw_row(rec: &ByteRecord, delimiter: u8) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = w.write_byte_record(rec);
    let mut bytes = w.into_inner().unwrap_or_default();
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if std::str::from_utf8(&bytes).is_ok() {
        bytes
    } else {
        let mut hex = b"hex:".to_vec();
        for b in bytes {
            hex.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        hex
    }
}

/// `quarantine/<source>.csv`: `source,line,column,reason,raw`.
struct Quarantine {
    path: PathBuf,
    source: String,
    w: csv::Writer<BufWriter<File>>,
}

impl Quarantine {
    fn create(path: &Path, source: &str) -> Result<Quarantine, IngestError> {
        let file = File::create(path).map_err(|e| IngestError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let mut w = csv::Writer::from_writer(BufWriter::new(file));
        let q = |e: csv::Error| IngestError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        };
        w.write_record(["source", "line", "column", "reason", "raw"])
            .map_err(q)?;
        Ok(Quarantine {
            path: path.to_path_buf(),
            source: source.to_string(),
            w,
        })
    }

    fn write(&mut self, line: u64, r: &Reject, raw: &[u8]) -> Result<(), IngestError> {
        let line = line.to_string();
        self.w
            .write_record([
                self.source.as_bytes(),
                line.as_bytes(),
                r.column.as_bytes(),
                r.reason.as_bytes(),
                raw,
            ])
            .map_err(|e| IngestError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })
    }

    fn finish(self) -> Result<(), IngestError> {
        let path = self.path.clone();
        let mut inner = self.w.into_inner().map_err(|e| IngestError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        inner
            .flush()
            .map_err(|e| IngestError::Io { path, source: e })
    }
}
