//! Ingest straight from the generator's in-process stream: the same records as the CSV files,
//! never written to disk. This is how a city too large for CSV (1.7 billion rows) is built.

use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use rayon::prelude::*;

use super::summary::SourceSummary;
use super::{IngestOptions, IngestReport, ingest_reader};
use crate::error::{GenerateError, IngestError};
use crate::source::city::{CityParams, CityStream, TableDef};

/// Chunk buffers read and handed back for the generator to write into again.
const SPARE_BUFFERS: usize = 16;

/// A `Read` over CSV chunks arriving from the generator thread.
struct ChunkReader<'a> {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// Where read buffers go back to the generator.
    spare: &'a Mutex<Vec<Vec<u8>>>,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let have = self.fill_buf()?;
            let n = buf.len().min(have.len());
            buf[..n].copy_from_slice(&have[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

/// The generator's chunks are the reader's buffers: records are read straight from them.
impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.cur, next);
                    let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
                    if spare.len() < SPARE_BUFFERS {
                        spare.push(done);
                    }
                    self.pos = 0;
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.len());
    }
}

/// Generates the city described by `params` and ingests every table as it is produced.
/// Ground truth is not written (use `generate` for evaluation data).
pub fn ingest_city(
    params: &CityParams,
    out: &Path,
    opts: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let stream = CityStream::new(params).map_err(|e| IngestError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut report = IngestReport::default();
    // Largest tables first: the other core goes through the smaller ones beside them, rather
    // than SW.invoice (half the city's rows) running alone at the end.
    let mut order: Vec<(usize, u64)> = stream
        .tables
        .par_iter()
        .map(|t| stream.estimated_rows(t))
        .enumerate()
        .collect();
    order.sort_by_key(|&(i, rows)| (std::cmp::Reverse(rows), i));
    let mut done = Vec::with_capacity(order.len());
    // One table's generate → parse → normalize → write pipeline leaves part of a core idle
    // (the generator's waves, the serial parse and write); two at once fill it. Any table
    // may start while an earlier one is still running (its report is small).
    crate::parallel::in_order(
        order.len(),
        TABLES_AT_ONCE,
        order.len(),
        |k| {
            let i = order[k].0;
            Ok::<_, std::convert::Infallible>(ingest_table(
                &stream,
                stream.tables[i],
                params,
                out,
                opts,
            ))
        },
        |k, r| {
            done.push((order[k].0, r));
            Ok(())
        },
    )
    .unwrap_or_else(|e| match e {});
    // The summary lists the tables in the generator's order, whatever order they ran in.
    done.sort_by_key(|(i, _)| *i);
    for (i, r) in done {
        match r {
            Ok(s) => report.sources.push(s),
            Err(e) => report
                .failures
                .push((stream.tables[i].source.to_string(), e)),
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.write_csv(&out.join("summary.csv"))?;
    Ok(report)
}

/// Tables generated and ingested at once.
const TABLES_AT_ONCE: usize = 2;

/// Generates one table on a producer thread and ingests it as it arrives.
fn ingest_table(
    stream: &CityStream,
    table: &TableDef,
    params: &CityParams,
    out: &Path,
    opts: &IngestOptions,
) -> Result<SourceSummary, String> {
    let config = table.config(params.as_of);
    let name = format!("(generated) {}", table.source);
    let (tx, rx) = sync_channel::<Vec<u8>>(8);
    let spare = Mutex::new(Vec::new());
    let take_spare = || spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let (summary, bytes) = std::thread::scope(|scope| {
        let producer = scope.spawn(|| -> Result<u64, GenerateError> {
            let header = format!("{}\n", table.header()).into_bytes();
            let mut bytes = header.len() as u64;
            if tx.send(header).is_err() {
                return Ok(bytes);
            }
            stream.for_each_chunk_reusing(
                table,
                &take_spare,
                |chunk| -> Result<(), GenerateError> {
                    bytes += chunk.csv.len() as u64;
                    // A closed channel means the consumer stopped on an error it reports.
                    let _ = tx.send(chunk.csv);
                    Ok(())
                },
            )?;
            drop(tx);
            Ok(bytes)
        });
        let reader = ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
            spare: &spare,
        };
        let summary = ingest_reader(&config, Path::new(&name), reader, 0, out, opts, None);
        let bytes = producer.join().unwrap_or(Ok(0));
        (summary, bytes)
    });
    let mut s = summary.map_err(|e| e.to_string())?;
    s.bytes = bytes.map_err(|e| e.to_string())?;
    Ok(s)
}
