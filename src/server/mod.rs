//! The gRPC server (DESIGN.md §3.7, §6, §7): the served snapshot generation and its policy
//! results, the workflow ledger, authentication, audit and metrics, behind tonic.
//!
//! - [`state`]: one served generation (snapshot + engine + the catalogue's results), swapped
//!   whole on reload after it has been verified;
//! - one file per service: [`candidates`] (Match), [`whatif`], [`eligibility`], [`profiles`],
//!   [`workflow`], [`supervision`], [`admin`]; [`yardstick`] is the hello-world service the
//!   load generator measures our smallest RPC against, and [`loadgen`] the load generator;
//! - [`auth`] (bearer tokens → caller with role and department), [`mask`], [`audit`],
//!   [`metrics`], [`status`] (domain errors → status codes), [`config`].
//!
//! Only this module knows tonic and prost; the domain modules never see a `Status`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod candidates;
pub mod config;
pub mod eligibility;
pub mod loadgen;
pub mod mask;
pub mod metrics;
pub mod pb;
pub mod profiles;
pub mod state;
pub mod status;
pub mod supervision;
pub mod threads;
pub mod whatif;
pub mod workflow;
pub mod yardstick;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;

use crate::date::Date;
use crate::workflow::Ledger;
use audit::Audit;
use auth::{Authenticate, Caller};
use config::ServerConfig;
use metrics::Metrics;
use state::{LoadError, Served};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0}")]
    Setup(String),
}

/// What `serve` serves, and how.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The snapshot folder (its newest generation is served; reload picks up the next).
    pub snapshot: PathBuf,
    pub listen: SocketAddr,
    pub config: ServerConfig,
    /// The policy catalogue folder.
    pub catalogue: PathBuf,
    pub as_of: Date,
    /// Folder of the workflow store and the audit log.
    pub data: PathBuf,
}

/// Everything the services share.
#[derive(Debug)]
pub struct Shared {
    served: ArcSwap<Served>,
    pub snapshot_dir: std::sync::Mutex<PathBuf>,
    pub as_of: Date,
    pub ledger: Arc<Ledger>,
    pub audit: Audit,
    pub metrics: Metrics,
    /// What-ifs, explanations and reloads in flight at once.
    pub heavy: Semaphore,
    reloading: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The generation being served now.
    pub fn served(&self) -> Arc<Served> {
        self.served.load_full()
    }

    /// Opens `dir` (default: the served folder), verifies it, evaluates the catalogue on it
    /// and swaps it in. On any failure the old generation keeps serving.
    pub async fn reload(
        self: &Arc<Self>,
        dir: Option<PathBuf>,
        catalogue: Option<Vec<(PathBuf, String)>>,
    ) -> Result<(Arc<Served>, u64), LoadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.served();
        let dir = dir.unwrap_or_else(|| {
            self.snapshot_dir
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        });
        let catalogue = catalogue.unwrap_or_else(|| old.catalogue.clone());
        let as_of = self.as_of;
        let d = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || Served::load(&d, catalogue, as_of, true))
            .await
            .unwrap_or_else(|e| {
                Err(LoadError::Engine {
                    dir: dir.clone(),
                    msg: format!("the loading task failed: {e}"),
                })
            });
        let new = match loaded {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.metrics.reloads_refused.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "mianshen serve: reload refused, still serving generation {}: {e}",
                    old.generation
                );
                return Err(e);
            }
        };
        self.keep_candidates(&new).await;
        self.served.store(new.clone());
        *self.snapshot_dir.lock().unwrap_or_else(|p| p.into_inner()) = dir;
        self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "mianshen serve: now serving generation {} (was {}), catalogue evaluated in {:.2} s",
            new.generation, old.generation, new.evaluated_seconds
        );
        Ok((new, old.generation))
    }

    /// Keeps each policy's candidate keys of a generation in the ledger, for Match.Diff.
    async fn keep_candidates(&self, served: &Arc<Served>) {
        let ledger = self.ledger.clone();
        let s = served.clone();
        let r = tokio::task::spawn_blocking(move || {
            for p in &s.policies {
                if let Some(run) = s.runs.get(&p.id) {
                    ledger.keep_candidates(&p.id, s.generation, &s.keys_of(&run.candidates))?;
                }
            }
            Ok::<_, crate::workflow::WorkflowError>(())
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("mianshen serve: keeping candidate keys for diffs: {e}"),
            Err(e) => eprintln!("mianshen serve: keeping candidate keys for diffs: {e}"),
        }
    }

    /// Runs `f` with the engine of `served` off the serving threads, as one of the heavy
    /// requests (what-if, explain) allowed at once.
    pub async fn on_engine<R: Send + 'static>(
        &self,
        served: &Arc<Served>,
        f: impl for<'s> FnOnce(&mut crate::policy::engine::Engine<'s>) -> R + Send + 'static,
    ) -> Result<R, Status> {
        let _permit = self
            .heavy
            .acquire()
            .await
            .map_err(|_| Status::unavailable("shutting down"))?;
        let s = served.clone();
        tokio::task::spawn_blocking(move || s.with_engine(f))
            .await
            .map_err(status::join)
    }

    /// Records a finished request in the metrics.
    pub fn observe<T>(&self, rpc: &'static str, started: Instant, r: &Result<T, Status>) {
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics.observe(rpc, started, code);
    }

    /// The metrics text, with the served generation's gauges.
    pub fn metrics_text(&self) -> String {
        let s = self.served();
        let mut gauges = vec![
            (
                "mianshen_snapshot_generation",
                "The snapshot generation being served.",
                String::new(),
                s.generation as f64,
            ),
            (
                "mianshen_snapshot_entities",
                "Entities in the served snapshot.",
                String::new(),
                s.snap().entity_count() as f64,
            ),
            (
                "mianshen_catalogue_evaluation_seconds",
                "Seconds the catalogue took to evaluate on the served generation.",
                String::new(),
                s.evaluated_seconds,
            ),
        ];
        type Count = fn(&crate::policy::engine::PolicyRun) -> u64;
        let per_policy: [(&str, &str, Count); 2] = [
            (
                "mianshen_policy_candidates",
                "Candidates per policy in the served generation.",
                |r| r.candidates.len(),
            ),
            (
                "mianshen_policy_to_verify",
                "To-verify entities per policy in the served generation.",
                |r| r.to_verify.len(),
            ),
        ];
        for (name, help, count) in per_policy {
            for p in &s.policies {
                if let Some(r) = s.runs.get(&p.id) {
                    gauges.push((
                        name,
                        help,
                        format!("{{policy=\"{}\"}}", p.id),
                        count(r) as f64,
                    ));
                }
            }
        }
        self.metrics.render(&gauges)
    }
}

/// Takes the caller of a request and runs `f`, recording the outcome in the metrics.
pub async fn handle<Req, T, F, Fut>(
    shared: &Arc<Shared>,
    rpc: &'static str,
    req: tonic::Request<Req>,
    f: F,
) -> Result<tonic::Response<T>, Status>
where
    F: FnOnce(Arc<Caller>, Req) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    let r = match auth::caller(&req) {
        Ok(caller) => f(caller, req.into_inner()).await,
        Err(e) => Err(e),
    };
    shared.observe(rpc, started, &r);
    r.map(tonic::Response::new)
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    threads: threads::Threads,
    health: tonic_health::server::HealthReporter,
}

impl Running {
    /// Stops accepting, lets requests in flight finish, and returns.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        self.threads.stop();
        let audit = self.shared.audit.clone();
        let r = self.wait().await;
        audit.flush();
        r
    }

    /// Waits until the server stops.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.threads.wait().await.map_err(ServeError::Setup)
    }
}

/// Loads the snapshot, opens the ledger and the audit log, binds and starts serving.
pub async fn start(opts: ServeOptions) -> Result<Running, ServeError> {
    let setup = |what: &str, e: &dyn std::fmt::Display| ServeError::Setup(format!("{what}: {e}"));
    let catalogue = crate::policy::check::read_dir_texts(&opts.catalogue).map_err(|d| {
        ServeError::Setup(
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let (dir, as_of) = (opts.snapshot.clone(), opts.as_of);
    let served = tokio::task::spawn_blocking(move || Served::load(&dir, catalogue, as_of, true))
        .await
        .map_err(|e| setup("loading the snapshot", &e))??;
    let ledger = Arc::new(
        Ledger::open(&opts.data.join("ledger.redb"))
            .map_err(|e| setup("opening the workflow store", &e))?,
    );
    let audit = Audit::open(&opts.data.join("audit.log"))
        .map_err(|e| setup("opening the audit log", &e))?;
    let shared = Arc::new(Shared {
        served: ArcSwap::from_pointee(served),
        snapshot_dir: std::sync::Mutex::new(opts.snapshot.clone()),
        as_of: opts.as_of,
        ledger,
        audit,
        metrics: Metrics::default(),
        heavy: Semaphore::new(opts.config.heavy_requests.max(1)),
        reloading: tokio::sync::Mutex::new(()),
    });
    shared.keep_candidates(&shared.served()).await;

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| setup(&format!("listening on {}", opts.listen), &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| setup("reading the bound address", &e))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for name in SERVICES {
        health
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::DESCRIPTOR)
        .build_v1()
        .map_err(|e| setup("server reflection", &e))?;

    let auth = Authenticate::new(&opts.config.tokens);
    let max = opts.config.max_message_bytes;
    macro_rules! svc {
        ($server:ty, $imp:expr) => {
            InterceptedService::new(
                <$server>::new($imp)
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
                auth.clone(),
            )
        };
    }
    use pb::v1::*;
    let s = &shared;
    let routes = tonic::service::Routes::new(health_service)
        .add_service(InterceptedService::new(reflection, auth.clone()))
        .add_service(svc!(
            match_server::MatchServer<candidates::MatchService>,
            candidates::MatchService(s.clone())
        ))
        .add_service(svc!(
            what_if_server::WhatIfServer<whatif::WhatIfService>,
            whatif::WhatIfService(s.clone())
        ))
        .add_service(svc!(
            pb::encoded::eligibility_server::EligibilityServer<eligibility::EligibilityService>,
            eligibility::EligibilityService(s.clone())
        ))
        .add_service(svc!(
            profiles_server::ProfilesServer<profiles::ProfilesService>,
            profiles::ProfilesService(s.clone())
        ))
        .add_service(svc!(
            workflow_server::WorkflowServer<workflow::WorkflowService>,
            workflow::WorkflowService(s.clone())
        ))
        .add_service(svc!(
            supervision_server::SupervisionServer<supervision::SupervisionService>,
            supervision::SupervisionService(s.clone())
        ))
        .add_service(svc!(
            admin_server::AdminServer<admin::AdminService>,
            admin::AdminService(s.clone())
        ));
    // Prometheus scrapes plain HTTP on the same port.
    let m = shared.clone();
    let router = routes.into_axum_router().route(
        "/metrics",
        axum::routing::get(move || {
            let m = m.clone();
            async move { m.metrics_text() }
        }),
    );
    let routes = tonic::service::Routes::from(router);

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &opts.config.tls {
        builder = builder
            .tls_config(server_tls(tls)?)
            .map_err(|e| setup("setting up TLS", &e))?;
    }
    let router = builder
        .accept_http1(true)
        .concurrency_limit_per_connection(opts.config.concurrency_per_connection.max(1))
        .timeout(Duration::from_secs(
            opts.config.request_timeout_seconds.max(1),
        ))
        .add_routes(routes);
    let n = threads::count(opts.config.serving_threads);
    let threads = threads::Threads::start(listener, n, move |handed, mut stop| {
        let router = router.clone();
        async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            router
                .serve_with_incoming_shutdown(threads::connections(handed), stopped)
                .await
                .map_err(|e| format!("the server failed: {e}"))
        }
    })
    .map_err(|e| setup("starting the serving threads", &e))?;
    if opts.config.watch_seconds > 0 {
        tokio::spawn(watch(
            Arc::downgrade(&shared),
            Duration::from_secs(opts.config.watch_seconds),
        ));
    }
    Ok(Running {
        addr,
        shared,
        threads,
        health,
    })
}

/// The server's TLS identity and, for mTLS, the CA its clients' certificates must come from.
fn server_tls(tls: &config::TlsConfig) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &Path, what: &str| {
        let pem = std::fs::read(path).map_err(|e| {
            ServeError::Setup(format!("reading the TLS {what} {}: {e}", path.display()))
        })?;
        // A file without a PEM block would only fail at the first handshake: say so now.
        if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(ServeError::Setup(format!(
                "the TLS {what} {} is not PEM",
                path.display()
            )));
        }
        Ok(pem)
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read(&tls.cert, "certificate")?,
        read(&tls.key, "key")?,
    ));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(config)
}

/// The services, as health checking names them.
pub const SERVICES: &[&str] = &[
    "mianshen.v1.Match",
    "mianshen.v1.WhatIf",
    "mianshen.v1.Eligibility",
    "mianshen.v1.Profiles",
    "mianshen.v1.Workflow",
    "mianshen.v1.Supervision",
    "mianshen.v1.Admin",
];

/// The snapshot file's identity: a rebuild renames a new file into place.
fn file_stamp(dir: &Path) -> Option<(std::time::SystemTime, u64)> {
    let path = if dir.is_dir() {
        dir.join(crate::snapshot::FILE_NAME)
    } else {
        dir.to_path_buf()
    };
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Polls the snapshot folder and reloads when its file changes (a failed reload is not
/// retried until the file changes again).
async fn watch(shared: std::sync::Weak<Shared>, every: Duration) {
    let mut seen = shared.upgrade().and_then(|s| {
        let dir = s.snapshot_dir.lock().ok()?.clone();
        file_stamp(&dir)
    });
    loop {
        tokio::time::sleep(every).await;
        let Some(s) = shared.upgrade() else { return };
        let dir = match s.snapshot_dir.lock() {
            Ok(d) => d.clone(),
            Err(_) => return,
        };
        let now = file_stamp(&dir);
        if now.is_some() && now != seen {
            seen = now;
            let _ = s.reload(None, None).await;
        }
    }
}

/// Runs the server until SIGTERM or Ctrl-C (graceful: requests in flight finish), reloading
/// on SIGHUP.
pub async fn serve_until_signal(opts: ServeOptions) -> Result<(), ServeError> {
    let running = start(opts).await?;
    eprintln!(
        "mianshen serve: listening on {} (gRPC, {} serving thread{}; Prometheus metrics at http://{}/metrics), generation {}",
        running.addr,
        running.threads.count(),
        if running.threads.count() == 1 {
            ""
        } else {
            "s"
        },
        running.addr,
        running.shared.served().generation
    );
    let shared = running.shared.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())
            .map_err(|e| ServeError::Setup(format!("SIGTERM handler: {e}")))?;
        let mut hup = signal(SignalKind::hangup())
            .map_err(|e| ServeError::Setup(format!("SIGHUP handler: {e}")))?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = hup.recv() => {
                    let _ = shared.reload(None, None).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("mianshen serve: shutting down; requests in flight finish first");
    running.stop().await
}
