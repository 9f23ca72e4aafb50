//! Where a numeric what-if's time goes: a catalogue policy run again and again with a new
//! threshold each time, as an analyst's stream of what-ifs reaches a served engine (the
//! catalogue policy's work pinned, the caches trimmed to the server's bounds after each run).
//!
//! ```sh
//! cargo run --release --example whatif_breakdown -- SNAPDIR [POLICY PARAM FROM RUNS]
//! cargo run --release --example whatif_breakdown -- /tmp/s7800f M01 min_age 60 400
//! ```
//!
//! Run `i` sets `PARAM` to `FROM + i mod 40` (plus a millionth of `i`, so that every value is
//! new and its condition is computed, as in the policy bench's `whatif/numeric`). Prints the
//! medians over the runs after the first tenth: the whole run, of it combining the
//! conditions and computing the amounts, the rest (the new condition, compiling, the trim),
//! and the same policy counted with the condition cached. BENCHMARKS.md quotes it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mianshen::date::Date;
use mianshen::policy::ast::Lit;
use mianshen::policy::check::load_dir;
use mianshen::policy::engine::Engine;
use mianshen::policy::schema::Schema;
use mianshen::server::whatif::{MAX_CACHED, MAX_CACHED_BYTES};
use mianshen::snapshot::Snapshot;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    mianshen::alloc::keep_freed_memory(mianshen::alloc::KEEP_FREED_MS);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let snapdir = args
        .first()
        .context("usage: whatif_breakdown SNAPDIR [POLICY PARAM FROM RUNS]")?;
    let id = args.get(1).map_or("M01", String::as_str);
    let param = args.get(2).map_or("min_age", String::as_str);
    let from: f64 = args.get(3).map_or(Ok(60.0), |s| s.parse())?;
    let runs: u32 = args.get(4).map_or(Ok(400), |s| s.parse())?;

    let snap = Snapshot::open(Path::new(snapdir))?;
    let schema = Schema::of_snapshot(&snap);
    let cat = load_dir(&PathBuf::from("datasets/policies"), &schema)
        .map_err(|d| anyhow::anyhow!("the catalogue: {d:?}"))?;
    let p = cat
        .get(id)
        .with_context(|| format!("no policy {id} in the catalogue"))?
        .policy
        .clone();
    let as_of = Date::from_ymd(2025, 12, 31).context("the as-of date")?;
    let mut engine = Engine::new(&snap, cat, as_of);
    let started = Instant::now();
    engine.run(id, &HashMap::new())?;
    engine.pin();
    println!(
        "{id} run first (cold) in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let (mut total, mut combine, mut amounts, mut rest, mut counted) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let value = from + f64::from(i % 40) + 1e-6 * f64::from(i);
        let set = HashMap::from([(param.to_string(), Lit::Num(value))]);
        let started = Instant::now();
        let run = engine.run_policy(&p, &set)?;
        engine.trim(MAX_CACHED, MAX_CACHED_BYTES);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let c = engine.count_policies(std::slice::from_ref(&p), &set)?;
        let count_ms = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            c.first().map(|c| c.candidates) == Some(run.candidates.len()),
            "counted together and run alone disagree at {param} = {value}"
        );
        if i >= runs / 10 {
            total.push(ms);
            combine.push(run.combine_seconds * 1e3);
            amounts.push(run.amount_seconds * 1e3);
            rest.push(ms - (run.combine_seconds + run.amount_seconds) * 1e3);
            counted.push(count_ms);
        }
    }
    println!(
        "{} runs, medians of the last {}: total {:.2} ms; combining {:.2} ms, amounts {:.2} ms, \
         the new condition and the rest {:.2} ms; counted with the condition cached {:.2} ms",
        runs,
        total.len(),
        median(total),
        median(combine),
        median(amounts),
        median(rest),
        median(counted)
    );
    Ok(())
}
