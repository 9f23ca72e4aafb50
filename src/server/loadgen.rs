//! `mianshen loadgen`: a mixed load of eligibility lookups, candidate-set streams, what-ifs and
//! counts against a running server, printing throughput and latency percentiles per kind; and
//! the yardstick comparison: our smallest RPC (`Match/Count` of one policy) against the
//! hello-world service (`mianshen hello`), measured one after the other in the same run.

use std::fmt::Write;
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::pb::v1 as pb;
use super::pb::yardstick::{HelloRequest, greeter_client::GreeterClient};

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Eligibility.Check of a random known key.
    Eligibility,
    /// Match.Candidates of the stream policy, every id.
    Stream,
    /// WhatIf.Evaluate of the what-if policy with a changed numeric parameter.
    WhatIf,
    /// Match.Count of one policy: the smallest RPC.
    Count,
    /// Greeter.SayHello on the yardstick server.
    Hello,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Eligibility => "eligibility",
            Kind::Stream => "stream",
            Kind::WhatIf => "whatif",
            Kind::Count => "count",
            Kind::Hello => "hello",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Eligibility,
            Kind::Stream,
            Kind::WhatIf,
            Kind::Count,
            Kind::Hello,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// `eligibility=90,stream=5,whatif=5` → weights.
pub fn parse_mix(s: &str) -> Result<Vec<(Kind, u32)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, w) = part.split_once('=').unwrap_or((part, "1"));
        let kind = Kind::parse(k.trim()).ok_or_else(|| {
            format!("{k}: not a request kind (eligibility, stream, whatif, count, hello)")
        })?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("{part}: the weight is not a whole number"))?;
        if w > 0 {
            out.push((kind, w));
        }
    }
    if out.is_empty() {
        return Err("the mix is empty".into());
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://host:port` of the server.
    pub target: String,
    /// `http://host:port` of `mianshen hello`, for the yardstick comparison.
    pub yardstick: Option<String>,
    pub token: String,
    pub mix: Vec<(Kind, u32)>,
    pub duration: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// HTTP/2 connections the requests are spread over.
    pub connections: usize,
    /// The policy streamed (`stream`) and counted (`count`).
    pub stream_policy: String,
    /// Which of its sets is streamed.
    pub stream_set: pb::SetKind,
    /// Eligibility lookups ask for the compact reply.
    pub compact: bool,
    /// The policy and parameter override of `whatif`.
    pub whatif_policy: String,
    pub whatif_param: (String, String),
    /// TLS to the server (not to the yardstick), with a client certificate for mTLS.
    pub tls: Option<ClientTls>,
}

/// How the load generator speaks TLS: the CA that signed the server's certificate, the name
/// the certificate is for, and for mTLS the client's own certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: std::path::PathBuf,
    pub domain: String,
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl ClientTls {
    fn config(&self) -> Result<tonic::transport::ClientTlsConfig, String> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))
        };
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .domain_name(self.domain.clone());
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(c)
    }
}

/// What one kind of request did.
#[derive(Debug, Clone, Default)]
pub struct KindReport {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Latencies in microseconds, sorted.
    pub micros: Vec<u32>,
    /// Entities received (streams).
    pub ids: u64,
}

impl KindReport {
    pub fn percentile(&self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        let i = ((self.micros.len() as f64 * q).ceil() as usize).clamp(1, self.micros.len()) - 1;
        self.micros[i] as f64 / 1000.0
    }
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub seconds: f64,
    pub kinds: Vec<(Kind, KindReport)>,
}

impl LoadReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>13}",
            "kind", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "ids/s"
        );
        for (k, r) in &self.kinds {
            let _ = writeln!(
                s,
                "{:<12} {:>10} {:>8} {:>11.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>13}",
                k.name(),
                r.requests,
                r.errors,
                r.requests as f64 / self.seconds,
                r.percentile(0.5),
                r.percentile(0.9),
                r.percentile(0.99),
                r.percentile(1.0),
                if r.ids > 0 {
                    format!("{:.0}", r.ids as f64 / self.seconds)
                } else {
                    "–".into()
                }
            );
            if let Some(e) = &r.first_error {
                let _ = writeln!(s, "             first error: {e}");
            }
        }
        s
    }

    pub fn rate(&self, kind: Kind) -> f64 {
        self.kinds
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0.0, |(_, r)| r.requests as f64 / self.seconds)
    }
}

#[derive(Clone)]
struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

type Authed = InterceptedService<Channel, Auth>;

#[derive(Clone)]
struct Clients {
    matching: pb::match_client::MatchClient<Authed>,
    eligibility: pb::eligibility_client::EligibilityClient<Authed>,
    whatif: pb::what_if_client::WhatIfClient<Authed>,
    hello: Option<GreeterClient<Channel>>,
}

async fn connect(addr: &str, tls: Option<&ClientTls>) -> Result<Channel, String> {
    let mut endpoint = Channel::from_shared(addr.to_string())
        .map_err(|e| format!("{addr}: {e}"))?
        .tcp_nodelay(true)
        // Candidate sets arrive in batches of hundreds of kilobytes: a receive window sized
        // by measured throughput (instead of HTTP/2's 64 KB) keeps them from waiting on
        // window updates.
        .http2_adaptive_window(true);
    if let Some(t) = tls {
        endpoint = endpoint
            .tls_config(t.config()?)
            .map_err(|e| format!("TLS to {addr}: {e}"))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

/// Keys to look up: the stable keys of candidate and near-miss sets of every policy.
async fn key_pool(c: &mut Clients, policies: &[String]) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for p in policies {
        for set in [pb::SetKind::Candidates, pb::SetKind::NearMiss] {
            let req = pb::CandidatesRequest {
                policy: p.clone(),
                set: set as i32,
                with_keys: true,
                limit: 20_000,
                ..Default::default()
            };
            let mut s = c
                .matching
                .candidates(req)
                .await
                .map_err(|e| format!("reading keys of {p}: {}", e.message()))?
                .into_inner();
            while let Some(b) = s
                .message()
                .await
                .map_err(|e| format!("reading keys of {p}: {}", e.message()))?
            {
                keys.extend(b.keys);
            }
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

fn pick(mix: &[(Kind, u32)], r: u64) -> Kind {
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut x = r % total.max(1);
    for (k, w) in mix {
        if x < u64::from(*w) {
            return *k;
        }
        x -= u64::from(*w);
    }
    mix[0].0
}

/// One request; returns the entities received.
async fn one(
    c: &mut Clients,
    kind: Kind,
    o: &LoadOptions,
    keys: &[String],
    r: u64,
) -> Result<u64, String> {
    let msg = |e: tonic::Status| format!("{:?}: {}", e.code(), e.message());
    match kind {
        Kind::Eligibility => {
            let key = keys
                .get((r as usize) % keys.len().max(1))
                .cloned()
                .unwrap_or_default();
            c.eligibility
                .check(pb::EligibilityRequest {
                    key,
                    compact: o.compact,
                    ..Default::default()
                })
                .await
                .map_err(msg)?;
            Ok(0)
        }
        Kind::Stream => {
            let mut s = c
                .matching
                .candidates(pb::CandidatesRequest {
                    policy: o.stream_policy.clone(),
                    set: o.stream_set as i32,
                    batch_size: 65_536,
                    ..Default::default()
                })
                .await
                .map_err(msg)?
                .into_inner();
            let mut n = 0;
            while let Some(b) = s.message().await.map_err(msg)? {
                n += b.entities.len() as u64;
            }
            Ok(n)
        }
        Kind::WhatIf => {
            c.whatif
                .evaluate(pb::WhatIfRequest {
                    policy: Some(pb::what_if_request::Policy::PolicyId(
                        o.whatif_policy.clone(),
                    )),
                    params: vec![pb::Param {
                        name: o.whatif_param.0.clone(),
                        // A value not asked before (a millionth apart), so that neither the
                        // result memo nor the atom cache answers.
                        value: match o.whatif_param.1.parse::<f64>() {
                            Ok(v) => format!("{}", v + (r % 1_000_000) as f64 * 1e-6),
                            Err(_) => o.whatif_param.1.clone(),
                        },
                    }],
                    sample: 0,
                })
                .await
                .map_err(msg)?;
            Ok(0)
        }
        Kind::Count => {
            c.matching
                .count(pb::CountRequest {
                    policies: vec![o.stream_policy.clone()],
                })
                .await
                .map_err(msg)?;
            Ok(0)
        }
        Kind::Hello => {
            let h = c
                .hello
                .as_mut()
                .ok_or("the mix has hello but no --yardstick address")?;
            h.say_hello(HelloRequest {
                name: "mianshen".into(),
            })
            .await
            .map_err(msg)?;
            Ok(0)
        }
    }
}

/// Runs the mix for the options' duration.
pub async fn run(o: &LoadOptions) -> Result<LoadReport, String> {
    let token: MetadataValue<_> = format!("Bearer {}", o.token)
        .parse()
        .map_err(|_| "the token is not printable ASCII".to_string())?;
    let mut clients = Vec::new();
    for _ in 0..o.connections.max(1) {
        let ch = connect(&o.target, o.tls.as_ref()).await?;
        let hello = match &o.yardstick {
            Some(y) => Some(GreeterClient::new(connect(y, None).await?)),
            None => None,
        };
        let auth = Auth(token.clone());
        clients.push(Clients {
            matching: pb::match_client::MatchClient::with_interceptor(ch.clone(), auth.clone())
                .max_decoding_message_size(64 << 20),
            eligibility: pb::eligibility_client::EligibilityClient::with_interceptor(
                ch.clone(),
                auth.clone(),
            ),
            whatif: pb::what_if_client::WhatIfClient::with_interceptor(ch, auth),
            hello,
        });
    }
    let keys = if o.mix.iter().any(|(k, _)| *k == Kind::Eligibility) {
        let policies: Vec<String> = clients[0]
            .matching
            .count(pb::CountRequest::default())
            .await
            .map_err(|e| format!("listing policies: {}", e.message()))?
            .into_inner()
            .counts
            .into_iter()
            .map(|c| c.policy)
            .collect();
        let k = key_pool(&mut clients[0], &policies).await?;
        if k.is_empty() {
            return Err("no keys to look up: every policy's sets are empty".into());
        }
        std::sync::Arc::new(k)
    } else {
        std::sync::Arc::new(Vec::new())
    };
    let started = Instant::now();
    let deadline = started + o.duration;
    let mut tasks = Vec::new();
    for w in 0..o.concurrency.max(1) {
        let mut c = clients[w % clients.len()].clone();
        let o = o.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut reports: Vec<(Kind, KindReport)> = o
                .mix
                .iter()
                .map(|(k, _)| (*k, KindReport::default()))
                .collect();
            // xorshift, seeded per worker: the same mix in every run.
            let mut x =
                0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            while Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let kind = pick(&o.mix, x);
                let t = Instant::now();
                let r = one(&mut c, kind, &o, &keys, x >> 8).await;
                let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                if let Some((_, rep)) = reports.iter_mut().find(|(k, _)| *k == kind) {
                    rep.requests += 1;
                    rep.micros.push(us);
                    match r {
                        Ok(n) => rep.ids += n,
                        Err(e) => {
                            rep.errors += 1;
                            rep.first_error.get_or_insert(e);
                        }
                    }
                }
            }
            reports
        }));
    }
    let mut total: Vec<(Kind, KindReport)> = o
        .mix
        .iter()
        .map(|(k, _)| (*k, KindReport::default()))
        .collect();
    for t in tasks {
        let reports = t.await.map_err(|e| format!("a load worker failed: {e}"))?;
        for (k, r) in reports {
            if let Some((_, acc)) = total.iter_mut().find(|(x, _)| *x == k) {
                acc.requests += r.requests;
                acc.errors += r.errors;
                acc.ids += r.ids;
                acc.micros.extend(r.micros);
                if acc.first_error.is_none() {
                    acc.first_error = r.first_error;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for (_, r) in &mut total {
        r.micros.sort_unstable();
    }
    Ok(LoadReport {
        seconds,
        kinds: total,
    })
}
