//! The per-source summary of an ingest run: rows read, accepted and quarantined (which always
//! reconcile), identifier quality, the commonest rejection reasons, bytes and time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::fields::{ID_STATUS_SLOTS, Plan, Reject, RowStats, id_slot_label, slot_kind};
use crate::error::IngestError;
use crate::source::config::SourceConfig;

#[derive(Debug, Clone)]
pub struct SourceSummary {
    pub source: String,
    pub kind: String,
    pub read: u64,
    pub accepted: u64,
    pub quarantined: u64,
    /// Size of the CSV file.
    pub bytes: u64,
    pub segment_bytes: u64,
    pub seconds: f64,
    pub id_columns: Vec<String>,
    pub id_status: Vec<[u64; ID_STATUS_SLOTS]>,
    /// Rejections by column and kind of reason.
    pub reasons: BTreeMap<String, u64>,
}

impl SourceSummary {
    pub fn new(source: &str, config: &SourceConfig, bytes: u64, plan: &Plan) -> SourceSummary {
        SourceSummary {
            source: source.to_string(),
            kind: format!("{:?}", config.kind).to_lowercase(),
            read: 0,
            accepted: 0,
            quarantined: 0,
            bytes,
            segment_bytes: 0,
            seconds: 0.0,
            id_columns: plan.id_columns.clone(),
            id_status: vec![[0; ID_STATUS_SLOTS]; plan.id_columns.len()],
            reasons: BTreeMap::new(),
        }
    }

    pub fn add_stats(&mut self, s: &RowStats) {
        for (mine, theirs) in self.id_status.iter_mut().zip(&s.id_status) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    pub fn add_reason(&mut self, r: &Reject) {
        *self
            .reasons
            .entry(format!("{}: {}", r.column, generalize(&r.reason)))
            .or_default() += 1;
    }

    pub fn reconciles(&self) -> bool {
        self.read == self.accepted + self.quarantined
    }

    /// Identifier statuses with a non-zero count, as `pid:valid=123`.
    pub fn id_quality(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        for (col, counts) in self.id_columns.iter().zip(&self.id_status) {
            for (slot, &n) in counts.iter().enumerate() {
                if n > 0 {
                    out.push((col.clone(), id_slot_label(slot), n));
                }
            }
        }
        out
    }

    /// Share of the subject's identifiers that are trusted keys (valid or upgraded).
    pub fn key_share(&self) -> Option<f64> {
        let counts = self.id_status.first()?;
        let (mut keys, mut present) = (0, 0);
        for (slot, &n) in counts.iter().enumerate() {
            let (key, missing) = slot_kind(slot);
            present += if missing { 0 } else { n };
            keys += if key { n } else { 0 };
        }
        (present > 0).then(|| keys as f64 / present as f64)
    }
}

/// A reason with quoted values replaced by `…`, so that reasons group by kind.
fn generalize(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_quote = false;
    for c in reason.chars() {
        if c == '"' {
            if !in_quote {
                out.push('…');
            }
            in_quote = !in_quote;
        } else if !in_quote {
            out.push(c);
        }
    }
    let mut s = out;
    // Field counts vary row by row.
    if s.starts_with("the row has ") {
        s = "the row has the wrong number of fields".into();
    }
    s
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    pub sources: Vec<SourceSummary>,
    /// Sources that could not be ingested at all (bad config, missing column, unreadable
    /// file), with the reason.
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
}

impl IngestReport {
    pub fn totals(&self) -> (u64, u64, u64, u64) {
        self.sources.iter().fold((0, 0, 0, 0), |t, s| {
            (
                t.0 + s.read,
                t.1 + s.accepted,
                t.2 + s.quarantined,
                t.3 + s.bytes,
            )
        })
    }

    pub fn reconciles(&self) -> bool {
        self.sources.iter().all(SourceSummary::reconciles)
    }

    /// The table printed at the end of `mianshen ingest`.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<22} {:<9} {:>12} {:>12} {:>10} {:>9} {:>9} {:>8}",
            "source", "kind", "read", "accepted", "quarant.", "MB", "keys ok", "MB/s"
        );
        for s in &self.sources {
            let mb = s.bytes as f64 / 1e6;
            let _ = writeln!(
                t,
                "{:<22} {:<9} {:>12} {:>12} {:>10} {:>9.1} {:>9} {:>8.0}",
                s.source,
                s.kind,
                s.read,
                s.accepted,
                s.quarantined,
                mb,
                s.key_share()
                    .map_or("-".to_string(), |k| format!("{:.1}%", k * 100.0)),
                if s.seconds > 0.0 { mb / s.seconds } else { 0.0 },
            );
        }
        let (read, acc, q, bytes) = self.totals();
        let _ = writeln!(
            t,
            "{:<22} {:<9} {:>12} {:>12} {:>10} {:>9.1} {:>9} {:>8.0}",
            "TOTAL",
            "",
            read,
            acc,
            q,
            bytes as f64 / 1e6,
            "",
            if self.seconds > 0.0 {
                bytes as f64 / 1e6 / self.seconds
            } else {
                0.0
            }
        );
        let _ = writeln!(
            t,
            "read = accepted + quarantined for every source: {}; {:.1} s, {:.2} M rows/s",
            if self.reconciles() { "yes" } else { "NO" },
            self.seconds,
            if self.seconds > 0.0 {
                read as f64 / 1e6 / self.seconds
            } else {
                0.0
            }
        );
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &self.sources {
            for (r, n) in &s.reasons {
                let kind = r.split_once(": ").map_or(r.as_str(), |x| x.1);
                *reasons.entry(kind).or_default() += n;
            }
        }
        if !reasons.is_empty() {
            let _ = writeln!(t, "quarantine reasons:");
            let mut v: Vec<_> = reasons.into_iter().collect();
            v.sort_by_key(|r| std::cmp::Reverse(r.1));
            for (r, n) in v.iter().take(10) {
                let _ = writeln!(t, "  {n:>10}  {r}");
            }
        }
        for (source, e) in &self.failures {
            let _ = writeln!(t, "FAILED {source}: {e}");
        }
        t
    }

    /// `summary.csv`: one row per source.
    pub fn write_csv(&self, path: &Path) -> Result<(), IngestError> {
        let mut s = String::from(
            "source,kind,read,accepted,quarantined,csv_bytes,segment_bytes,seconds,id_quality,status\n",
        );
        for x in &self.sources {
            let quality: Vec<String> = x
                .id_quality()
                .into_iter()
                .map(|(c, l, n)| format!("{c}/{l}={n}"))
                .collect();
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{:.3},{},ok",
                x.source,
                x.kind,
                x.read,
                x.accepted,
                x.quarantined,
                x.bytes,
                x.segment_bytes,
                x.seconds,
                quality.join(" ")
            );
        }
        for (source, e) in &self.failures {
            let _ = writeln!(s, "{source},,,,,,,,,\"failed: {}\"", e.replace('"', "'"));
        }
        std::fs::write(path, s).map_err(|e| IngestError::Io {
            path: path.to_path_buf(),
            source: e,
        })
    }
}
