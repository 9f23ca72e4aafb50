//! The `mianshen` command: parse arguments, run one command.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use mianshen::ingest::{self, IngestOptions};
use mianshen::pipeline;
use mianshen::policy;
use mianshen::resolve::{self, ResolveOptions};
use mianshen::server::ServeOptions;
use mianshen::server::config::ServerConfig;
use mianshen::snapshot::Snapshot;

/// Ingest and generation allocate many short strings from several threads; mimalloc handles
/// that pattern far better than the system allocator (measured: BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mianshen::source::city::{self, CityParams};

/// mianshen (免申): entity resolution and policy matching for a city's government data.
///
/// Data flows one way: department exports (CSV + source config) → ingest → resolve → profile
/// → snapshot → policy → server. `mianshen serve` runs the whole of it on a built-in demo
/// city; `mianshen build` makes a snapshot from department exports or the generated city.
#[derive(Debug, Parser)]
#[command(name = "mianshen", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum PoliciesCommand {
    /// Parse and check every `*.policy` file of a folder (unknown fields, types, parameters,
    /// bands, cycles), then run every policy's case tests. Errors name file, line and column.
    Check {
        /// The catalogue folder [default: datasets/policies].
        dir: Option<PathBuf>,
        /// Check fields against this snapshot instead of the synthetic city's source configs.
        #[arg(long)]
        snapshot: Option<PathBuf>,
    },
}

/// Options shared by the policy commands.
#[derive(Debug, clap::Args)]
struct PolicyArgs {
    /// The policy catalogue folder [default: datasets/policies].
    #[arg(long)]
    catalogue: Option<PathBuf>,
    /// The as-of date (YYYY-MM-DD) conditions are evaluated at.
    #[arg(long, default_value = "2025-12-31")]
    as_of: String,
    /// Override a parameter: `--set min_age=85` (numbers, dates, true/false, or text).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The demo city end to end: generate it into a work folder, ingest, resolve (with the
    /// links' accuracy against the ground truth), build the snapshot and evaluate the policy
    /// catalogue.
    Demo {
        /// Number of persons in the demo city.
        #[arg(long, default_value_t = 100_000)]
        persons: u64,
        /// Random seed: the same seed and size give byte-identical data.
        #[arg(long, default_value_t = 20_251_231)]
        seed: u64,
        /// Work folder (sources under `<work>/sources`, ingest output under `<work>/ingested`).
        #[arg(long, default_value = "work/demo")]
        work: PathBuf,
    },
    /// Generate a synthetic Shangqiu-like city: every department feed as CSV with its source
    /// config, and the ground truth under `truth/`.
    Generate {
        /// Number of persons (1,000 for a test city, 100,000 for the demo, 7,800,000 for the
        /// full reference city).
        #[arg(long)]
        persons: u64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder (created).
        #[arg(long, required_unless_present = "count_only")]
        out: Option<PathBuf>,
        /// Months of event history ending at the as-of date.
        #[arg(long, default_value_t = 60)]
        history_months: u32,
        /// The city's reference date (YYYY-MM-DD).
        #[arg(long, default_value = "2025-12-31")]
        as_of: String,
        /// Dirt rates as a TOML file (fields of `DirtRates`, see datasets/README.md); missing
        /// fields keep their defaults.
        #[arg(long)]
        dirt: Option<PathBuf>,
        /// Generate clean data (every dirt rate zero).
        #[arg(long, conflicts_with = "dirt")]
        clean: bool,
        /// Count the records the city would have, streaming them in memory, without writing.
        #[arg(long)]
        count_only: bool,
    },
    /// Ingest department CSV files described by source configs (*.toml) into normalized
    /// columnar segments, with every rejected row in quarantine.
    Ingest {
        /// Folder searched recursively for source configs.
        #[arg(long, required_unless_present = "generate_city")]
        sources: Option<PathBuf>,
        /// Instead of files, ingest the synthetic city straight from the generator's
        /// in-process stream (nothing written but the segments).
        #[arg(long, conflicts_with = "sources", requires = "persons")]
        generate_city: bool,
        /// Persons of the generated city (with --generate-city).
        #[arg(long)]
        persons: Option<u64>,
        /// Seed of the generated city (with --generate-city).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder: segments/, quarantine/, summary.csv.
        #[arg(long)]
        out: PathBuf,
        /// Rows per batch and row group.
        #[arg(long, default_value_t = 32_768)]
        batch_rows: usize,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Resolve identity records into entities (persons, enterprises, households) and attribute
    /// event records to them. Writes links.csv, entities.csv, minted_keys.csv, model.txt and
    /// events/*.seg.
    Resolve {
        /// An ingest output folder (with segments/), or a folder of segments.
        #[arg(long)]
        ingested: PathBuf,
        /// Output folder. Minted keys of an earlier build found here are reused.
        #[arg(long)]
        out: PathBuf,
        /// Read earlier minted keys from this file instead of OUT/minted_keys.csv.
        #[arg(long)]
        previous_keys: Option<PathBuf>,
        /// Do not attribute event records.
        #[arg(long)]
        skip_events: bool,
        /// Instead of resolving from scratch, place the records of this new source (a source
        /// config, its CSV beside it) into the entities of the build already in OUT, one
        /// record at a time, and append to its files.
        #[arg(long, value_name = "CONFIG")]
        add: Option<PathBuf>,
    },
    /// Pairwise precision, recall and F1 of a links file against truth files
    /// (source,record_id,true_key), overall, per source, and keyed or not.
    EvalLinks {
        /// A truth file or a folder of them (the generator writes `truth/`).
        #[arg(long)]
        truth: PathBuf,
        /// A links file (source,record_id,entity_key,...; `resolve` writes links.csv).
        #[arg(long)]
        links: PathBuf,
    },
    /// Print one entity's profile: its source records with their link confidences and
    /// evidence, its relations, and its events per source.
    Profile {
        /// The entity's key: id number, USCC, household number or minted key.
        key: String,
        /// The ingest output the build was made from.
        #[arg(long)]
        ingested: PathBuf,
        /// The resolve output folder.
        #[arg(long)]
        resolved: PathBuf,
    },
    /// Build a snapshot: ingest → resolve → snapshot, with progress and a summary (records,
    /// entities, bytes per record, time per stage). Publishes SNAPDIR/snapshot.msnap
    /// atomically, as the next generation of the snapshot already there.
    Build {
        /// A folder of department CSV files with their source configs.
        #[arg(long, conflicts_with_all = ["generate_city", "ingested"])]
        sources: Option<PathBuf>,
        /// Build the synthetic city from the generator's in-process stream (no CSV on disk).
        #[arg(long, requires = "persons")]
        generate_city: bool,
        /// Persons in the generated city.
        #[arg(long)]
        persons: Option<u64>,
        /// Generator seed.
        #[arg(long, default_value_t = 20_251_231)]
        seed: u64,
        /// Skip ingest and resolve: snapshot this ingest output …
        #[arg(long, requires = "resolved", conflicts_with = "generate_city")]
        ingested: Option<PathBuf>,
        /// … and this resolve build of it.
        #[arg(long, requires = "ingested")]
        resolved: Option<PathBuf>,
        /// The snapshot folder.
        #[arg(long, value_name = "SNAPDIR")]
        out: PathBuf,
        /// Where ingest and resolve write their outputs (default SNAPDIR/work).
        #[arg(long)]
        work: Option<PathBuf>,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Policy catalogues: `policies check DIR` parses and checks every policy file and runs
    /// every policy's case tests.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
    /// Evaluate policies over a snapshot: candidates, to-verify, near-miss, amounts, the first
    /// candidates.
    Match {
        /// The snapshot folder.
        #[arg(long)]
        snapshot: PathBuf,
        /// Policy ids (like M01), or `all` for the whole catalogue.
        #[arg(required = true)]
        policies: Vec<String>,
        #[command(flatten)]
        common: PolicyArgs,
        /// Candidates to print per policy.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Recombine the catalogue this many times (conditions cached, results recomputed),
        /// and count it together (counts only) as many times, and report the medians and
        /// the recombination's range: the figures are noisy on a busy machine.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
    },
    /// Explain one policy for one entity: every condition's state and the values that decided
    /// it, and the amount.
    Explain {
        #[arg(long)]
        snapshot: PathBuf,
        /// The policy id.
        policy: String,
        /// The entity's key: id number, USCC, household number or minted key.
        key: String,
        #[command(flatten)]
        common: PolicyArgs,
    },
    /// What if: a changed policy file (or a catalogue policy id with --set overrides) against
    /// the saved version: counts, amounts, breakdowns, newly (in)eligible, the condition that
    /// excludes the most, overlaps with other policies.
    Whatif {
        #[arg(long)]
        snapshot: PathBuf,
        /// A policy file, or the id of a catalogue policy.
        policy: String,
        /// Sweep one parameter instead: `--sweep min_age=60..100` (every integer),
        /// `min_age=60..100:5` (a step) or `kind=a,b,c` (values), at most 256 values. Prints
        /// the policy's counts for each value beside the saved version's, all counted
        /// together (no sets, no amounts).
        #[arg(long, value_name = "NAME=LO..HI[:STEP]")]
        sweep: Option<String>,
        #[command(flatten)]
        common: PolicyArgs,
    },
    /// Write tables of a snapshot as CSV (entity id, doubtful flag, then the columns; dates,
    /// months, amounts and quantities as the departments write them; after a column that names
    /// entities, `COLUMN_entity`, the entity it resolved to) and entities.csv, for other tools
    /// to read what the engine reads.
    Export {
        /// A snapshot folder (or a snapshot file).
        #[arg(long)]
        snapshot: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Tables to write, comma-separated (`GA.person,WJ.death_cert`); every table when
        /// absent.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// Check every checksum of a snapshot; on failure, name the section at fault.
    Verify {
        /// A snapshot folder (or a snapshot file).
        snapshot: PathBuf,
        /// Also list every section with its size, largest first: where the bytes go.
        #[arg(long)]
        sections: bool,
    },
    /// Serve a snapshot over gRPC: candidate sets, what-if, eligibility, profiles, workflow,
    /// supervision, admin; health checking, reflection, and Prometheus metrics at /metrics.
    /// Without --snapshot, the demo city is built first (or reused when already built).
    Serve {
        /// The snapshot folder to serve (reload picks up its next generation).
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// Address to listen on [default: the config's, or 127.0.0.1:50051].
        #[arg(long)]
        listen: Option<String>,
        /// Server configuration (TOML: tokens with roles and departments, limits, data folder).
        /// Without it the demo's tokens are used (datasets/server/demo.toml): demo only.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Folder of the workflow store and audit log [default: the config's, or
        /// <work>/server].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Poll the snapshot folder every N seconds and reload a new generation.
        #[arg(long)]
        watch: Option<u64>,
        /// Threads that serve connections [default: the config's, or one per core]. Fewer
        /// when something else needs the cores (a load generator on the same machine).
        #[arg(long)]
        serving_threads: Option<usize>,
        /// Demo city size, when no --snapshot is given.
        #[arg(long, default_value_t = 100_000)]
        persons: u64,
        /// Work folder of the demo city.
        #[arg(long, default_value = "work/demo")]
        work: PathBuf,
        /// The policy catalogue folder [default: datasets/policies].
        #[arg(long)]
        catalogue: Option<PathBuf>,
        /// The as-of date (YYYY-MM-DD) conditions are evaluated at.
        #[arg(long, default_value = "2025-12-31")]
        as_of: String,
    },
    /// Serve the hello-world gRPC service: the yardstick `loadgen --yardstick` compares our
    /// smallest RPC with.
    Hello {
        #[arg(long, default_value = "127.0.0.1:50052")]
        listen: String,
    },
    /// Load a running server with a mix of requests and print throughput and latency
    /// percentiles per kind.
    Loadgen {
        /// The server, `host:port` or `http://host:port`.
        #[arg(long, default_value = "127.0.0.1:50051")]
        target: String,
        /// Weights of request kinds: eligibility, stream, whatif, count, hello.
        #[arg(long, default_value = "eligibility=90,stream=5,whatif=5")]
        mix: String,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections to spread them over.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Bearer token [default: the demo's admin token].
        #[arg(long, default_value = "demo-admin-token-0001")]
        token: String,
        /// A `mianshen hello` server: after the mix, measure our smallest RPC (Match/Count)
        /// and the hello-world RPC one after the other, and print the ratio.
        #[arg(long)]
        yardstick: Option<String>,
        /// The policy of `stream` and `count` requests.
        #[arg(long, default_value = "M01")]
        stream_policy: String,
        /// Eligibility lookups ask for the compact reply (states only, no names).
        #[arg(long)]
        compact: bool,
        /// The set of `stream` requests: candidates, to-verify or near-miss.
        #[arg(long, default_value = "candidates")]
        stream_set: String,
        /// TLS: the CA that signed the server's certificate (PEM); the target is then
        /// `https://`.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// The name the server's certificate is for.
        #[arg(long, default_value = "localhost", requires = "tls_ca")]
        tls_domain: String,
        /// mTLS: this client's certificate (PEM), with --tls-key.
        #[arg(long, requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<PathBuf>,
        /// mTLS: this client's private key (PEM), with --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// The policy and parameter of `whatif` requests.
        #[arg(long, default_value = "M01")]
        whatif_policy: String,
        #[arg(long, default_value = "min_age=85")]
        whatif_param: String,
    },
    /// Print the schema and the first rows of a normalized segment.
    Inspect {
        /// A `.seg` file written by ingest.
        segment: PathBuf,
        /// Rows to print.
        #[arg(long, default_value_t = 5)]
        rows: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The policy engine allocates and frees the same working set run after run: keep freed
    // memory with the process while it is busy, and build its structures in small pages,
    // whose first touch costs less here than huge pages' (mianshen::alloc). The build's stages
    // keep the defaults, so its time and peak memory are measured as before.
    if matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Serve { .. }
            | Command::Match { .. }
            | Command::Explain { .. }
            | Command::Whatif { .. }
            | Command::Policies { .. }
    ) {
        mianshen::alloc::keep_freed_memory(mianshen::alloc::KEEP_FREED_MS);
        mianshen::alloc::without_transparent_huge_pages();
    }
    match cli.command {
        Command::Demo {
            persons,
            seed,
            work,
        } => demo(persons, seed, &work, false).map(|_| ()),
        Command::Serve {
            snapshot,
            listen,
            config,
            data,
            watch,
            serving_threads,
            persons,
            work,
            catalogue,
            as_of,
        } => {
            let mut cfg = match &config {
                Some(p) => ServerConfig::load(p).map_err(anyhow::Error::msg)?,
                None => {
                    eprintln!(
                        "mianshen serve: no --config: using the demo tokens of datasets/server/demo.toml (demo only)"
                    );
                    ServerConfig::demo()
                }
            };
            if let Some(w) = watch {
                cfg.watch_seconds = w;
            }
            if let Some(n) = serving_threads {
                cfg.serving_threads = n;
            }
            let listen = listen
                .or_else(|| cfg.listen.clone())
                .unwrap_or_else(|| "127.0.0.1:50051".into());
            let listen = listen
                .parse()
                .with_context(|| format!("--listen {listen}: expected host:port"))?;
            let snapshot = match snapshot {
                Some(s) => s,
                None => demo(persons, 20_251_231, &work, true)?,
            };
            let data = data
                .or_else(|| config.is_none().then(|| work.join("server")))
                .or_else(|| cfg.data.clone())
                .unwrap_or_else(|| work.join("server"));
            let as_of = parse_date(&as_of)
                .with_context(|| format!("--as-of {as_of}: expected YYYY-MM-DD"))?;
            let opts = ServeOptions {
                snapshot,
                listen,
                config: cfg,
                catalogue: catalogue.unwrap_or_else(default_catalogue),
                as_of,
                data,
            };
            runtime()?.block_on(mianshen::server::serve_until_signal(opts))?;
            Ok(())
        }
        Command::Hello { listen } => {
            let listen: std::net::SocketAddr = listen
                .parse()
                .with_context(|| format!("--listen {listen}: expected host:port"))?;
            runtime()?
                .block_on(mianshen::server::yardstick::serve(listen, |a| {
                    eprintln!("mianshen hello: listening on {a}")
                }))
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Loadgen {
            target,
            mix,
            duration,
            concurrency,
            connections,
            token,
            yardstick,
            stream_policy,
            stream_set,
            compact,
            whatif_policy,
            whatif_param,
            tls_ca,
            tls_domain,
            tls_cert,
            tls_key,
        } => {
            use mianshen::server::loadgen::{self, ClientTls, Kind, LoadOptions};
            let scheme = |tls: bool| if tls { "https" } else { "http" };
            let url = |a: &str, tls: bool| {
                if a.starts_with("http") {
                    a.to_string()
                } else {
                    format!("{}://{a}", scheme(tls))
                }
            };
            let tls = tls_ca.map(|ca| ClientTls {
                ca,
                domain: tls_domain,
                identity: tls_cert.zip(tls_key),
            });
            let (pn, pv) = whatif_param
                .split_once('=')
                .context("--whatif-param: expected NAME=VALUE")?;
            let mut o = LoadOptions {
                target: url(&target, tls.is_some()),
                yardstick: yardstick.as_deref().map(|y| url(y, false)),
                token,
                mix: loadgen::parse_mix(&mix).map_err(anyhow::Error::msg)?,
                duration: std::time::Duration::from_secs(duration.max(1)),
                concurrency,
                connections,
                stream_policy,
                stream_set: match stream_set.as_str() {
                    "candidates" => mianshen::server::pb::v1::SetKind::Candidates,
                    "to-verify" => mianshen::server::pb::v1::SetKind::ToVerify,
                    "near-miss" => mianshen::server::pb::v1::SetKind::NearMiss,
                    other => bail!("--stream-set {other}: candidates, to-verify or near-miss"),
                },
                compact,
                whatif_policy,
                whatif_param: (pn.trim().to_string(), pv.trim().to_string()),
                tls,
            };
            // One thread: the requests in flight share one event loop, as the server's
            // threads do, so requests and replies are written in batches (more load: run
            // more loadgens).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            println!(
                "loadgen: {} for {} s, {} in flight over {} connections",
                mix, duration, o.concurrency, o.connections
            );
            let r = rt.block_on(loadgen::run(&o)).map_err(anyhow::Error::msg)?;
            print!("{}", r.render());
            if o.yardstick.is_some() {
                o.mix = vec![(Kind::Count, 1)];
                let ours = rt.block_on(loadgen::run(&o)).map_err(anyhow::Error::msg)?;
                o.mix = vec![(Kind::Hello, 1)];
                let hello = rt.block_on(loadgen::run(&o)).map_err(anyhow::Error::msg)?;
                print!("{}", ours.render());
                print!(
                    "{}",
                    hello
                        .render()
                        .lines()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join("\n")
                        + "\n"
                );
                println!(
                    "smallest RPC (Match/Count) {:.0} req/s, hello-world {:.0} req/s: hello / ours = {:.2}×",
                    ours.rate(Kind::Count),
                    hello.rate(Kind::Hello),
                    hello.rate(Kind::Hello) / ours.rate(Kind::Count).max(1e-9)
                );
            }
            Ok(())
        }
        Command::Generate {
            persons,
            seed,
            out,
            history_months,
            as_of,
            dirt,
            clean,
            count_only,
        } => {
            let mut params = CityParams::new(persons, seed);
            params.history_months = history_months;
            params.as_of = match mianshen::ingest::normalize::parse_date(&as_of) {
                Ok(Some(d)) => d,
                _ => bail!("--as-of {as_of:?} is not a date (YYYY-MM-DD)"),
            };
            if clean {
                params.dirt = city::DirtRates::clean();
            } else if let Some(path) = dirt {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading dirt rates {}", path.display()))?;
                params.dirt = toml::from_str(&text)
                    .with_context(|| format!("dirt rates {}", path.display()))?;
            }
            let out = match (count_only, out) {
                (true, _) => return count_city(&params),
                (false, Some(out)) => out,
                (false, None) => bail!("--out DIR is required unless --count-only"),
            };
            let report = city::generate_files(&params, &out, true)?;
            print!("{}", report.render());
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Ingest {
            sources,
            generate_city,
            persons,
            seed,
            out,
            batch_rows,
            quiet,
        } => {
            let opts = IngestOptions {
                batch_rows: batch_rows.max(1),
                progress: !quiet,
            };
            let report = match (sources, generate_city, persons) {
                (_, true, Some(persons)) => {
                    ingest::ingest_city(&CityParams::new(persons, seed), &out, &opts)?
                }
                (Some(sources), _, _) => ingest::ingest_dir(&sources, &out, &opts)?,
                _ => bail!("give --sources DIR, or --generate-city --persons N"),
            };
            print!("{}", report.render());
            println!("wrote {}", out.display());
            if !report.failures.is_empty() {
                bail!("{} source(s) could not be ingested", report.failures.len());
            }
            Ok(())
        }
        Command::Resolve {
            ingested,
            out,
            add: Some(config),
            ..
        } => {
            let report = resolve::incremental::add_source(
                &ingested,
                &out,
                &config,
                resolve::Thresholds::default(),
            )?;
            print!("{}", report.render());
            Ok(())
        }
        Command::Resolve {
            ingested,
            out,
            previous_keys,
            skip_events,
            add: None,
        } => {
            let opts = ResolveOptions {
                previous_keys,
                skip_events,
                ..Default::default()
            };
            let report = resolve::resolve_dir(&ingested, &out, &opts)?;
            print!("{}", report.render());
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::EvalLinks { truth, links } => {
            let report = resolve::eval::eval_links(&truth, &links)?;
            print!("{}", report.render());
            Ok(())
        }
        Command::Profile {
            key,
            ingested,
            resolved,
        } => {
            let p = mianshen::profile::profile(&ingested, &resolved, &key)?;
            print!("{}", p.render());
            Ok(())
        }
        Command::Build {
            sources,
            generate_city,
            persons,
            seed,
            ingested,
            resolved,
            out,
            work,
            quiet,
        } => {
            let input = match (sources, generate_city, persons, ingested, resolved) {
                (Some(dir), ..) => pipeline::Input::Sources(dir),
                (_, true, Some(p), ..) => pipeline::Input::City(CityParams::new(p, seed)),
                (_, _, _, Some(ingested), Some(resolved)) => {
                    pipeline::Input::Built { ingested, resolved }
                }
                _ => bail!(
                    "give --sources DIR, --generate-city --persons N, or --ingested DIR --resolved DIR"
                ),
            };
            let work = work.unwrap_or_else(|| out.join("work"));
            let summary = pipeline::build(&input, &out, &work, !quiet)?;
            print!("{}", summary.snapshot.render());
            print!("{}", summary.render());
            Ok(())
        }
        Command::Policies {
            command: PoliciesCommand::Check { dir, snapshot },
        } => policies_check(&dir.unwrap_or_else(default_catalogue), snapshot.as_deref()),
        Command::Match {
            snapshot,
            policies,
            common,
            limit,
            rounds,
        } => run_match(&snapshot, &policies, &common, limit, rounds),
        Command::Explain {
            snapshot,
            policy,
            key,
            common,
        } => {
            let snap = Snapshot::open(&snapshot)?;
            let (mut engine, overrides) = engine_for(&snap, &common)?;
            let x = policy::explain::explain(&mut engine, &policy, &key, &overrides)?;
            print!("{}", x.render());
            Ok(())
        }
        Command::Whatif {
            snapshot,
            policy,
            sweep,
            common,
        } => {
            let snap = Snapshot::open(&snapshot)?;
            let (mut engine, overrides) = engine_for(&snap, &common)?;
            let new = if Path::new(&policy).is_file() {
                let text = std::fs::read_to_string(&policy)?;
                // Checked together with the catalogue (relations, references), replacing the
                // catalogue's policies with the same ids.
                let files = catalogue_texts(&catalogue_of(&common))?;
                let schema = policy::schema::Schema::of_snapshot(&snap);
                policy::check::check_with_catalogue(&files, Path::new(&policy), &text, &schema)
                    .map_err(diagnostics)?
            } else {
                engine
                    .cat
                    .get(&policy)
                    .map(|c| c.policy.clone())
                    .with_context(|| format!("{policy} is neither a file nor a catalogue policy"))?
            };
            if let Some(spec) = sweep {
                let (param, values) =
                    policy::sweep::parse_spec(&spec).map_err(|e| anyhow::anyhow!("--sweep {e}"))?;
                let s = policy::sweep::sweep(&mut engine, &new, &overrides, &param, &values)?;
                print!("{}", s.render());
                return Ok(());
            }
            let w = policy::whatif::what_if(&mut engine, &new, &overrides)?;
            print!("{}", w.render(&snap));
            Ok(())
        }
        Command::Export {
            snapshot,
            out,
            tables,
        } => {
            let t = std::time::Instant::now();
            let snap = Snapshot::open(&snapshot)?;
            for (file, rows) in mianshen::snapshot::export::export(&snap, &tables, &out)? {
                println!("{file}: {rows} rows");
            }
            println!(
                "wrote {} in {:.1} s",
                out.display(),
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Verify { snapshot, sections } => {
            let t = std::time::Instant::now();
            let snap = Snapshot::open(&snapshot)?;
            let opened = t.elapsed();
            snap.verify()?;
            println!(
                "{}: ok: format version {}, generation {}, {} sections, {} tables, {} entities, {:.1} MB; opened in {:.1} ms, verified in {:.1} ms",
                snap.container().path().display(),
                snap.container().version(),
                snap.generation(),
                snap.container().sections().len(),
                snap.tables().len(),
                snap.entity_count(),
                snap.container().len() as f64 / 1e6,
                opened.as_secs_f64() * 1e3,
                t.elapsed().as_secs_f64() * 1e3
            );
            if sections {
                print!("{}", section_sizes(&snap));
            }
            Ok(())
        }
        Command::Inspect { segment, rows } => inspect(&segment, rows),
    }
}

/// Every section of a snapshot with its size and share of the file, largest first; a
/// table's sections also with bytes per row.
fn section_sizes(snap: &Snapshot) -> String {
    let rows: HashMap<&str, usize> = snap
        .tables()
        .iter()
        .map(|t| (t.name.as_str(), t.rows))
        .collect();
    let mut list: Vec<_> = snap.container().sections().iter().collect();
    list.sort_by(|a, b| b.len.cmp(&a.len).then_with(|| a.name.cmp(&b.name)));
    let total = snap.container().len().max(1) as f64;
    let mut out = format!("{:>12} {:>6} {:>9}  section\n", "bytes", "share", "B/row");
    for s in list {
        let per_row = s
            .name
            .strip_prefix("table/")
            .and_then(|t| t.split('/').next())
            .and_then(|t| rows.get(t))
            .filter(|&&n| n > 0)
            .map_or_else(String::new, |&n| format!("{:.3}", s.len as f64 / n as f64));
        out += &format!(
            "{:>12} {:>5.1}% {:>9}  {}\n",
            s.len,
            100.0 * s.len as f64 / total,
            per_row,
            s.name
        );
    }
    out
}

/// A multi-threaded tokio runtime for the server commands.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Builds the demo city's snapshot under `work` and evaluates the catalogue; returns the
/// snapshot folder. With `reuse`, a snapshot already built from the same city is kept.
fn demo(persons: u64, seed: u64, work: &Path, reuse: bool) -> Result<PathBuf> {
    let sources = work.join("sources");
    let snapdir = work.join("snapshot");
    let ingested = work.join("ingested");
    let params = CityParams::new(persons, seed);
    let same = std::fs::read_to_string(sources.join("truth").join("city.toml"))
        .ok()
        .is_some_and(|t| t == toml::to_string(&params).unwrap_or_default());
    if reuse && same && snapdir.join(mianshen::snapshot::FILE_NAME).is_file() {
        println!(
            "demo city snapshot {} already built (same parameters)",
            snapdir.display()
        );
        return Ok(snapdir);
    }
    if same {
        println!(
            "demo city already generated in {} (same parameters)",
            sources.display()
        );
    } else {
        if sources.exists() {
            std::fs::remove_dir_all(&sources)
                .with_context(|| format!("clearing {}", sources.display()))?;
        }
        println!(
            "generating a demo city of {persons} persons into {} …",
            sources.display()
        );
        let report = city::generate_files(&params, &sources, true)?;
        println!(
            "generated {} records ({:.0} MB) in {:.1} s: {:.2} M records/s",
            report.rows(),
            report.bytes() as f64 / 1e6,
            report.seconds,
            report.rows() as f64 / 1e6 / report.seconds.max(1e-9)
        );
    }
    println!("ingesting {} …", sources.display());
    let opts = IngestOptions {
        progress: true,
        ..Default::default()
    };
    let report = ingest::ingest_dir(&sources, &ingested, &opts)?;
    print!("{}", report.render());
    println!(
        "segments in {}, quarantine in {}, ground truth in {}",
        ingested.join("segments").display(),
        ingested.join("quarantine").display(),
        sources.join("truth").display()
    );
    if !report.failures.is_empty() {
        bail!("{} source(s) could not be ingested", report.failures.len());
    }
    let resolved = work.join("resolved");
    println!("resolving {} …", ingested.display());
    let report = resolve::resolve_dir(&ingested, &resolved, &ResolveOptions::default())?;
    print!("{}", report.render());
    let eval = resolve::eval::eval_links(&sources.join("truth"), &resolved.join("links.csv"))?;
    println!("links against the generator's ground truth (pairwise):");
    print!("{}", eval.render());
    println!("links, entities and the model in {}", resolved.display());

    println!("building the snapshot {} …", snapdir.display());
    let summary = pipeline::build(
        &pipeline::Input::Built {
            ingested: ingested.clone(),
            resolved: resolved.clone(),
        },
        &snapdir,
        &work.join("work"),
        false,
    )?;
    print!("{}", summary.render());
    let common = PolicyArgs {
        catalogue: Some(default_catalogue()),
        as_of: "2025-12-31".into(),
        set: Vec::new(),
    };
    println!(
        "evaluating the policy catalogue {} …",
        default_catalogue().display()
    );
    run_match(&snapdir, &["all".to_string()], &common, 0, 1)?;
    println!(
        "next: mianshen explain --snapshot {} M01 <key>, mianshen whatif --snapshot {} M01 --set min_age=85",
        snapdir.display(),
        snapdir.display()
    );
    Ok(snapdir)
}

fn catalogue_of(common: &PolicyArgs) -> PathBuf {
    common.catalogue.clone().unwrap_or_else(default_catalogue)
}

/// `datasets/policies` here, or in the source tree the binary was built from.
fn default_catalogue() -> PathBuf {
    let here = PathBuf::from("datasets/policies");
    if here.is_dir() {
        here
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/policies")
    }
}

/// The texts of a catalogue folder's `*.policy` files.
fn catalogue_texts(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    policy::check::read_dir_texts(dir).map_err(diagnostics)
}

fn diagnostics(d: Vec<policy::check::Diagnostic>) -> anyhow::Error {
    let lines: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    anyhow::anyhow!(
        "{} problem(s) in the policies:\n{}",
        d.len(),
        lines.join("\n")
    )
}

/// Parses `--set name=value` overrides.
fn overrides(set: &[String]) -> Result<std::collections::HashMap<String, policy::ast::Lit>> {
    let mut out = std::collections::HashMap::new();
    for s in set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected NAME=VALUE"))?;
        out.insert(k.trim().to_string(), policy::ast::Lit::parse_value(v));
    }
    Ok(out)
}

fn parse_date(s: &str) -> Option<mianshen::date::Date> {
    let mut it = s.split('-');
    let (y, m, d) = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    mianshen::date::Date::from_ymd(y, m, d)
}

/// The engine over a snapshot with the checked catalogue, and the overrides.
fn engine_for<'s>(
    snap: &'s Snapshot,
    common: &PolicyArgs,
) -> Result<(
    policy::engine::Engine<'s>,
    std::collections::HashMap<String, policy::ast::Lit>,
)> {
    let schema = policy::schema::Schema::of_snapshot(snap);
    let cat = policy::check::load_dir(&catalogue_of(common), &schema).map_err(diagnostics)?;
    let as_of = parse_date(&common.as_of)
        .with_context(|| format!("--as-of {}: expected YYYY-MM-DD", common.as_of))?;
    Ok((
        policy::engine::Engine::new(snap, cat, as_of),
        overrides(&common.set)?,
    ))
}

fn policies_check(dir: &Path, snapshot: Option<&Path>) -> Result<()> {
    let snap = snapshot.map(Snapshot::open).transpose()?;
    let schema = match &snap {
        Some(s) => policy::schema::Schema::of_snapshot(s),
        None => policy::schema::Schema::of_city(),
    };
    let cat = policy::check::load_dir(dir, &schema).map_err(diagnostics)?;
    let results = policy::cases::run_cases(&cat, &schema).map_err(|e| anyhow::anyhow!(e))?;
    let mut failed = 0;
    for c in &cat.policies {
        let p = &c.policy;
        let mine: Vec<_> = results.iter().filter(|r| r.policy == p.id).collect();
        let bad = mine.iter().filter(|r| !r.failures.is_empty()).count();
        println!(
            "{:<4} {:<28} {:<10} {:<6} {:<8} {:>2} conditions, {} cases{}",
            p.id,
            p.name,
            p.subject,
            p.domain,
            p.mode,
            p.conditions.len(),
            mine.len(),
            if bad > 0 {
                format!(", {bad} FAILED")
            } else {
                String::new()
            }
        );
        for r in mine.iter().filter(|r| !r.failures.is_empty()) {
            for f in &r.failures {
                println!("     case {:?}: {f}", r.case);
            }
        }
        failed += bad;
    }
    println!(
        "{} policies, {} relations, {} cases: {}",
        cat.policies.len(),
        cat.relations.len(),
        results.len(),
        if failed == 0 {
            "all pass".to_string()
        } else {
            format!("{failed} failed")
        }
    );
    if failed > 0 {
        bail!("{failed} case(s) failed");
    }
    Ok(())
}

fn run_match(
    snapshot: &Path,
    ids: &[String],
    common: &PolicyArgs,
    limit: usize,
    rounds: u32,
) -> Result<()> {
    let t = std::time::Instant::now();
    let snap = Snapshot::open(snapshot)?;
    let (mut engine, overrides) = engine_for(&snap, common)?;
    let ids: Vec<String> = if ids.iter().any(|i| i == "all") {
        engine
            .cat
            .policies
            .iter()
            .map(|p| p.policy.id.clone())
            .collect()
    } else {
        ids.to_vec()
    };
    let opened = t.elapsed();
    let mut runs = Vec::new();
    for id in &ids {
        runs.push(engine.run(id, &overrides)?);
    }
    let prepared = prep_summary(&engine.env.prep, &runs);
    // Warm: the same policies again, every condition from the cache.
    let warm = std::time::Instant::now();
    for id in &ids {
        engine.run(id, &overrides)?;
    }
    let warm = warm.elapsed();
    // Recombined: every condition from the cache, but candidates, to-verify, near-miss and
    // amounts computed again (what a policy costs once its conditions are at hand).
    // Each round keeps every policy's time, and of it combining and amounts; the table
    // shows the median round's.
    // A policy's time, and of it combining and amounts.
    type Times = (f64, f64, f64);
    let mut recombined: Vec<(f64, Vec<Times>)> = Vec::new();
    for _ in 0..rounds {
        engine.forget_results();
        let t = std::time::Instant::now();
        let mut each = Vec::with_capacity(ids.len());
        for id in &ids {
            let run = engine.run(id, &overrides)?;
            each.push((run.seconds, run.combine_seconds, run.amount_seconds));
        }
        recombined.push((t.elapsed().as_secs_f64(), each));
    }
    recombined.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (fastest, slowest) = (recombined[0].0, recombined[recombined.len() - 1].0);
    let (recombined, recombined_each) = recombined.swap_remove(recombined.len() / 2);
    // Counted: the same policies counted together, block-major (counts of candidates,
    // to-verify and near-miss, and each condition's; no sets, no amounts), as many rounds.
    let policies = ids
        .iter()
        .map(|id| engine.catalogue_policy(id))
        .collect::<Result<Vec<_>, _>>()?;
    let (counted_median, counted) =
        median_of_rounds(rounds, || engine.count_policies(&policies, &overrides))?;
    for (c, run) in counted.iter().zip(&runs) {
        let run_counts = (
            run.candidates.len(),
            run.to_verify.len(),
            run.near_miss.len(),
        );
        if (c.candidates, c.to_verify, c.near_miss) != run_counts {
            bail!(
                "{}: counted together {:?}, run alone {run_counts:?}",
                c.id,
                (c.candidates, c.to_verify, c.near_miss)
            );
        }
    }
    // Counted together with every candidate written out (the catalogue's candidate ids, no
    // amounts), as many rounds; the sets must be the runs'.
    let (with_ids_median, with_ids) = median_of_rounds(rounds, || {
        engine.count_policies_with_candidates(&policies, &overrides)
    })?;
    for (c, run) in with_ids.iter().zip(&runs) {
        if c.candidate_ids.as_ref() != Some(&*run.candidates) {
            bail!(
                "{}: candidates written out together differ from its run's",
                c.id
            );
        }
    }
    // Loaded: conditions and results forgotten, the decoded field columns kept (what a
    // what-if with a new parameter value costs, and what a database with its tables in
    // memory is compared with).
    engine.clear_cache();
    let mut loaded = Vec::new();
    for id in &ids {
        loaded.push(engine.run(id, &overrides)?.seconds);
    }
    println!(
        "{:<4} {:<26} {:<10} {:>10} {:>10} {:>10} {:>16} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "id",
        "name",
        "subject",
        "candidates",
        "to verify",
        "near miss",
        "amount",
        "cold ms",
        "loaded ms",
        "recomb ms",
        "combine",
        "amounts"
    );
    for ((run, loaded), recombined) in runs.iter().zip(&loaded).zip(&recombined_each) {
        println!(
            "{:<4} {:<26} {:<10} {:>10} {:>10} {:>10} {:>16} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            run.id,
            run.name,
            run.subject,
            run.candidates.len(),
            run.to_verify.len(),
            run.near_miss.len(),
            policy::eval::fmt_num(run.total),
            run.seconds * 1e3,
            loaded * 1e3,
            recombined.0 * 1e3,
            recombined.1 * 1e3,
            recombined.2 * 1e3
        );
    }
    for run in &runs {
        if limit == 0 || run.candidates.is_empty() {
            continue;
        }
        println!("{} first candidates:", run.id);
        for e in run.candidates.iter().take(limit) {
            println!(
                "  {:<20} {:>12}",
                snap.key(e).unwrap_or("?"),
                run.amount_of(e).map_or("–".into(), policy::eval::fmt_num)
            );
        }
    }
    let range = if rounds > 1 {
        format!(
            " (median of {rounds} rounds; {:.1}–{:.1} ms)",
            fastest * 1e3,
            slowest * 1e3
        )
    } else {
        String::new()
    };
    println!(
        "{} policies at as-of {}: opened in {:.1} ms; cold {:.1} ms; loaded (field columns decoded, no condition cached) {:.1} ms; recombined (cached conditions, results recomputed) {:.1} ms{range}, of which combining {:.1} ms and amounts {:.1} ms; counted together (cached conditions, counts only) {:.2} ms{}, with every candidate id written out {:.2} ms; warm (cached results) {:.2} ms; {} cached atoms; columns {:.1} MB",
        runs.len(),
        engine.as_of(),
        opened.as_secs_f64() * 1e3,
        runs.iter().map(|r| r.seconds).sum::<f64>() * 1e3,
        loaded.iter().sum::<f64>() * 1e3,
        recombined * 1e3,
        recombined_each.iter().map(|r| r.1).sum::<f64>() * 1e3,
        recombined_each.iter().map(|r| r.2).sum::<f64>() * 1e3,
        counted_median * 1e3,
        if rounds > 1 { " (median)" } else { "" },
        with_ids_median * 1e3,
        warm.as_secs_f64() * 1e3,
        engine.cached(),
        engine.column_bytes() as f64 / 1e6
    );
    println!("{prepared}");
    Ok(())
}

/// Where a cold run's time went: the preparation ledger's steps (conditions, and the field
/// columns, calendars and relation indexes built for them), combining and amounts, and the
/// slowest items.
fn prep_summary(prep: &policy::prep::Ledger, runs: &[policy::engine::PolicyRun]) -> String {
    use policy::prep::Step;
    let ms = |s: f64| format!("{:.0} ms", s * 1e3);
    let part = |step: Step| {
        let (n, s) = prep.total(step);
        format!("{} {} ({n})", step.name(), ms(s))
    };
    let slowest: Vec<String> = prep
        .slowest()
        .iter()
        .map(|i| format!("{} {}", i.what, ms(i.seconds)))
        .collect();
    format!(
        "cold, where the time went: {}, within them {}, {}; {} (compiling); combining {}, amounts {}. Slowest: {}",
        part(Step::Condition),
        part(Step::Field),
        part(Step::Calendar),
        part(Step::Relation),
        ms(runs.iter().map(|r| r.combine_seconds).sum()),
        ms(runs.iter().map(|r| r.amount_seconds).sum()),
        slowest.join(", ")
    )
}

/// Runs `f` `rounds` times (at least once): the median time in seconds, and the last result.
fn median_of_rounds<T, E>(
    rounds: u32,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> std::result::Result<(f64, T), E> {
    let mut times = Vec::with_capacity(rounds as usize);
    let mut timed = || {
        let t = std::time::Instant::now();
        let r = f()?;
        times.push(t.elapsed().as_secs_f64());
        Ok(r)
    };
    let mut last = timed()?;
    for _ in 1..rounds {
        last = timed()?;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], last))
}

fn count_city(params: &CityParams) -> Result<()> {
    let started = std::time::Instant::now();
    let stream = city::CityStream::new(params)?;
    println!(
        "model: {} persons, {} households, {} market entities in {:.1} s",
        stream.city.persons.len(),
        stream.city.households.len(),
        stream.city.enterprises.len(),
        started.elapsed().as_secs_f64()
    );
    let mut total = 0u64;
    let mut bytes = 0u64;
    for table in &stream.tables {
        let mut rows = 0u64;
        stream.for_each_chunk(table, |c| -> Result<()> {
            rows += c.rows;
            bytes += c.csv.len() as u64;
            Ok(())
        })?;
        println!("{:<28} {:>14}", table.source, rows);
        total += rows;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "TOTAL {total} records, {:.1} GB of CSV, streamed in {secs:.1} s ({:.2} M records/s)",
        bytes as f64 / 1e9,
        total as f64 / 1e6 / secs
    );
    Ok(())
}

fn inspect(path: &Path, rows: usize) -> Result<()> {
    let seg = ingest::segment::Segment::open(path)?;
    seg.verify()?;
    println!("{}: {} rows, checksums ok", path.display(), seg.rows());
    if let Some(s) = seg.meta("source") {
        println!("source {s}");
    }
    let mut columns = Vec::new();
    for c in seg.schema() {
        let values: Vec<String> = match c.ty {
            ingest::segment::ColumnType::Int => seg
                .ints(&c.name)?
                .into_iter()
                .take(rows)
                .map(|v| v.map_or("∅".into(), |v| v.to_string()))
                .collect(),
            _ => seg
                .strings(&c.name)?
                .into_iter()
                .take(rows)
                .map(|v| v.unwrap_or_else(|| "∅".into()))
                .collect(),
        };
        columns.push((c.name.clone(), c.ty.as_str(), values));
    }
    for (name, ty, values) in columns {
        println!("{name:<24} {ty:<6} {}", values.join(" | "));
    }
    Ok(())
}
