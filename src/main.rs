//! The `mianshen` command: parse arguments, run one command.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use mianshen::ingest::{self, IngestOptions};
use mianshen::pipeline;
use mianshen::resolve::{self, ResolveOptions};
use mianshen::snapshot::Snapshot;

/// Ingest and generation allocate many short strings from several threads; mimalloc handles
/// that pattern far better than the system allocator (measured: BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mianshen::source::city::{self, CityParams};

/// mianshen (免申): entity resolution and policy matching for a city's government data.
///
/// Data flows one way: department exports (CSV + source config) → ingest → resolve → profile
/// → snapshot → policy → server. This build has the first stage and the synthetic city.
#[derive(Debug, Parser)]
#[command(name = "mianshen", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate the synthetic demo city into a work folder and ingest it, printing the
    /// per-source summary.
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
    /// Check every checksum of a snapshot; on failure, name the section at fault.
    Verify {
        /// A snapshot folder (or a snapshot file).
        snapshot: PathBuf,
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
    match cli.command {
        Command::Demo {
            persons,
            seed,
            work,
        } => demo(persons, seed, &work),
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
        Command::Verify { snapshot } => {
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
            Ok(())
        }
        Command::Inspect { segment, rows } => inspect(&segment, rows),
    }
}

fn demo(persons: u64, seed: u64, work: &Path) -> Result<()> {
    let sources = work.join("sources");
    let ingested = work.join("ingested");
    let params = CityParams::new(persons, seed);
    let same = std::fs::read_to_string(sources.join("truth").join("city.toml"))
        .ok()
        .is_some_and(|t| t == toml::to_string(&params).unwrap_or_default());
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
    Ok(())
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
