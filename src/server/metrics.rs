//! Metrics in the Prometheus text exposition format: requests by RPC and status code, latency
//! histograms, the served generation, reloads, and candidates per policy.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;
use tonic::Code;

/// Latency bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct RpcStats {
    /// Requests by gRPC status code (0..=16).
    codes: [AtomicU64; 17],
    /// Cumulative counts per bucket, plus +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of latencies in microseconds.
    micros: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    rpcs: DashMap<&'static str, RpcStats>,
    pub reloads_ok: AtomicU64,
    pub reloads_refused: AtomicU64,
}

const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl Metrics {
    /// Records one request of `rpc` that started at `started` and ended with `code`.
    pub fn observe(&self, rpc: &'static str, started: Instant, code: Code) {
        let secs = started.elapsed().as_secs_f64();
        // A shared read lock on the common path; the entry is made once per RPC.
        if !self.rpcs.contains_key(rpc) {
            self.rpcs.entry(rpc).or_default();
        }
        let Some(stats) = self.rpcs.get(rpc) else {
            return;
        };
        let c = (code as usize).min(16);
        stats.codes[c].fetch_add(1, Ordering::Relaxed);
        let b = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        stats.buckets[b].fetch_add(1, Ordering::Relaxed);
        stats
            .micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// The exposition text; `gauges` are `(name, help, labels, value)` of the served state.
    pub fn render(&self, gauges: &[(&str, &str, String, f64)]) -> String {
        let mut s = String::new();
        let mut rpcs: Vec<_> = self.rpcs.iter().map(|e| *e.key()).collect();
        rpcs.sort_unstable();
        s += "# HELP mianshen_requests_total Requests by RPC and status code.\n";
        s += "# TYPE mianshen_requests_total counter\n";
        for rpc in &rpcs {
            if let Some(st) = self.rpcs.get(rpc) {
                for (i, c) in st.codes.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            s,
                            "mianshen_requests_total{{rpc=\"{rpc}\",code=\"{}\"}} {n}",
                            CODE_NAMES[i]
                        );
                    }
                }
            }
        }
        s += "# HELP mianshen_request_seconds Request latency (streams: until the handler returned the stream).\n";
        s += "# TYPE mianshen_request_seconds histogram\n";
        for rpc in &rpcs {
            if let Some(st) = self.rpcs.get(rpc) {
                let mut cum = 0;
                for (i, b) in st.buckets.iter().enumerate() {
                    cum += b.load(Ordering::Relaxed);
                    let le = BUCKETS
                        .get(i)
                        .map_or_else(|| "+Inf".to_string(), |x| x.to_string());
                    let _ = writeln!(
                        s,
                        "mianshen_request_seconds_bucket{{rpc=\"{rpc}\",le=\"{le}\"}} {cum}"
                    );
                }
                let _ = writeln!(
                    s,
                    "mianshen_request_seconds_sum{{rpc=\"{rpc}\"}} {}",
                    st.micros.load(Ordering::Relaxed) as f64 / 1e6
                );
                let _ = writeln!(s, "mianshen_request_seconds_count{{rpc=\"{rpc}\"}} {cum}");
            }
        }
        s += "# HELP mianshen_reloads_total Snapshot reloads by result.\n";
        s += "# TYPE mianshen_reloads_total counter\n";
        let _ = writeln!(
            s,
            "mianshen_reloads_total{{result=\"ok\"}} {}",
            self.reloads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "mianshen_reloads_total{{result=\"refused\"}} {}",
            self.reloads_refused.load(Ordering::Relaxed)
        );
        let mut last = "";
        for (name, help, labels, v) in gauges {
            if *name != last {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} gauge");
                last = name;
            }
            let _ = writeln!(s, "{name}{labels} {v}");
        }
        s
    }
}
