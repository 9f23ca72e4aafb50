//! What-if: a parameter override or a new policy text, against the saved version.
//!
//! Reports the count and total amount, the breakdown by district, industry and enterprise type
//! (or size), newly eligible and newly ineligible entities, the condition that excludes the
//! most, and the overlap with the catalogue's other policies on the same subjects. Only atoms
//! whose compiled text changed are computed; the rest come from the engine's cache.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Instant;

use roaring::RoaringBitmap;

use super::ast::{Lit, Policy};
use super::columns::NO_ROW;
use super::engine::{Engine, EngineError, PolicyRun, most_excluding};
use super::eval::fmt_num;
use crate::ids::division_name;
use crate::snapshot::Snapshot;

/// `(value, candidates, amount)` rows of a breakdown.
pub type Rows = Vec<(String, u64, f64)>;

/// A breakdown dimension.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub dimension: String,
    pub rows: Rows,
}

#[derive(Debug, Clone)]
pub struct WhatIf {
    pub base: PolicyRun,
    pub new: PolicyRun,
    pub newly_eligible: RoaringBitmap,
    pub newly_ineligible: RoaringBitmap,
    pub breakdowns: Vec<Breakdown>,
    /// `(condition, sole blocker count, false count)` of the condition that excludes the most.
    pub most_excluding: Option<(String, u64, u64)>,
    /// `(policy, candidates in common)`.
    pub overlaps: Vec<(String, u64)>,
    /// Evaluating the changed policy.
    pub seconds: f64,
    /// The whole answer: evaluation, comparison, overlaps and breakdowns (including any
    /// first use of the other policies and of the breakdowns' columns).
    pub total_seconds: f64,
}

/// Runs `new` (a changed policy, or the saved one with `overrides`) against the catalogue's
/// saved version of the same id (when there is one).
pub fn what_if(
    engine: &mut Engine<'_>,
    new: &Policy,
    overrides: &HashMap<String, Lit>,
) -> Result<WhatIf, EngineError> {
    let base = match engine.cat.get(&new.id) {
        Some(_) => match engine.runs.get(&new.id) {
            Some(r) => r.clone(),
            None => engine.run(&new.id, &HashMap::new())?,
        },
        None => {
            // A new policy: compare with nobody eligible.
            let mut empty = engine.run_policy(new, overrides)?;
            empty.candidates = Default::default();
            empty.amounts = Default::default();
            empty.total = 0.0;
            empty
        }
    };
    let started = Instant::now();
    let run = engine.run_policy(new, overrides)?;
    let seconds = started.elapsed().as_secs_f64();
    let newly_eligible = &*run.candidates - &*base.candidates;
    let newly_ineligible = &*base.candidates - &*run.candidates;
    let most_excluding =
        most_excluding(&run.conditions).map(|c| (c.name.clone(), c.sole_blocker, c.false_count));
    // Overlap with every other catalogue policy of the same subject.
    let others: Vec<String> = engine
        .cat
        .policies
        .iter()
        .filter(|p| p.policy.subject == new.subject && p.policy.id != new.id)
        .map(|p| p.policy.id.clone())
        .collect();
    let mut overlaps = Vec::new();
    for id in others {
        let r = match engine.runs.get(&id) {
            Some(r) => r.candidates.clone(),
            None => engine.run(&id, &HashMap::new())?.candidates,
        };
        overlaps.push((id, run.candidates.intersection_len(&r)));
    }
    overlaps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let breakdowns = breakdowns(engine, &run);
    let total_seconds = started.elapsed().as_secs_f64();
    Ok(WhatIf {
        base,
        new: run,
        newly_eligible,
        newly_ineligible,
        breakdowns,
        most_excluding,
        overlaps,
        seconds,
        total_seconds,
    })
}

/// Candidates and amounts by one attribute of each candidate: the value of `table.column` in
/// its primary row (`unknown` without one), labelled by `label`. The engine's field column
/// gives each candidate's value as a rank; labels are made once per rank.
fn tally(
    engine: &mut Engine<'_>,
    run: &PolicyRun,
    table: &str,
    column: &str,
    label: impl Fn(&str) -> String,
) -> Rows {
    let unknown = "unknown".to_string();
    let Some(fc) = engine.field_column_named(table, column) else {
        return vec![(unknown, run.candidates.len(), run.total)];
    };
    let col = &engine.env.cols[fc.col].1.col;
    let mut labels: Vec<String> = vec![unknown];
    let mut index: HashMap<String, usize> = HashMap::new();
    let label_of_rank: Vec<usize> = fc
        .reps
        .iter()
        .map(|&(row, _)| {
            let text = match col.int(row) {
                Some(i) => i.to_string(),
                None => match col.text(row) {
                    Some(s) => s.to_string(),
                    None => return 0,
                },
            };
            *index.entry(label(&text)).or_insert_with_key(|k| {
                labels.push(k.clone());
                labels.len() - 1
            })
        })
        .collect();
    let mut rows = vec![(0u64, 0.0f64); labels.len()];
    // Amounts are in entity order, as candidates are: walk both.
    let mut amounts = run.amount_list().peekable();
    for e in run.candidates.iter() {
        let l = match fc.ranks.get(e as usize) {
            Some(&r) if r != NO_ROW => label_of_rank[r as usize],
            _ => 0,
        };
        rows[l].0 += 1;
        while amounts.next_if(|a| a.0 < e).is_some() {}
        if let Some(&(_, a)) = amounts.peek().filter(|a| a.0 == e) {
            rows[l].1 += a;
        }
    }
    labels
        .into_iter()
        .zip(rows)
        .filter(|(_, (n, _))| *n > 0)
        .map(|(k, (n, a))| (k, n, a))
        .collect()
}

/// Size class by employees in the latest annual report (微型 < 10, 小型 < 100, 中型 < 300, else
/// 大型; employee counts only, a simplification of the 工信部 rules by industry).
fn enterprise_size(snap: &Snapshot, who: &RoaringBitmap) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Ok(t) = snap.table("SC.annual_report") else {
        return out;
    };
    let (Ok(year), Ok(employees)) = (t.column("year"), t.column("employees")) else {
        return out;
    };
    for e in who {
        let latest = t
            .rows_of(e)
            .filter_map(|r| Some((year.int(r)?, employees.int(r)?)))
            .max();
        if let Some((_, n)) = latest {
            let class = match n {
                ..10 => "微型",
                10..100 => "小型",
                100..300 => "中型",
                _ => "大型",
            };
            out.insert(e, class.to_string());
        }
    }
    out
}

fn district(code: &str) -> String {
    code.get(..6)
        .and_then(|c| c.parse::<u32>().ok())
        .and_then(division_name)
        .map_or_else(|| format!("other ({code})"), str::to_string)
}

fn breakdowns(engine: &mut Engine<'_>, run: &PolicyRun) -> Vec<Breakdown> {
    let mut dims: Vec<(&str, Rows)> = Vec::new();
    match run.subject.as_str() {
        "person" => {
            dims.push((
                "district",
                tally(engine, run, "GA.person", "hukou_region", district),
            ));
            dims.push((
                "hukou type",
                tally(engine, run, "GA.person", "hukou_type", str::to_string),
            ));
        }
        "household" => {
            dims.push((
                "district",
                tally(engine, run, "GA.household", "region", district),
            ));
        }
        _ => {
            dims.push(("district", tally(engine, run, "SC.ent", "region", district)));
            dims.push((
                "industry",
                tally(engine, run, "SC.ent", "industry_code", |s| {
                    s.chars().take(1).collect()
                }),
            ));
            dims.push((
                "enterprise type",
                tally(engine, run, "SC.ent", "type", str::to_string),
            ));
            let sizes = enterprise_size(engine.env.snap, &run.candidates);
            let amount: HashMap<u32, f64> = run.amount_list().collect();
            let mut rows: BTreeMap<String, (u64, f64)> = BTreeMap::new();
            for e in run.candidates.iter() {
                let k = sizes.get(&e).cloned().unwrap_or_else(|| "unknown".into());
                let r = rows.entry(k).or_default();
                r.0 += 1;
                r.1 += amount.get(&e).copied().unwrap_or(0.0);
            }
            dims.push((
                "enterprise size",
                rows.into_iter().map(|(k, (n, a))| (k, n, a)).collect(),
            ));
        }
    }
    dims.into_iter()
        .map(|(dimension, mut rows)| {
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Breakdown {
                dimension: dimension.to_string(),
                rows,
            }
        })
        .collect()
}

impl WhatIf {
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut s = String::new();
        let n = &self.new;
        let b = &self.base;
        let _ = writeln!(
            s,
            "{} {}: {} candidates (saved: {}), total {} (saved: {}); to verify {}, near miss {}",
            n.id,
            n.name,
            n.candidates.len(),
            b.candidates.len(),
            fmt_num(n.total),
            fmt_num(b.total),
            n.to_verify.len(),
            n.near_miss.len()
        );
        let _ = writeln!(
            s,
            "newly eligible {}, newly ineligible {}; evaluated in {:.2} ms ({} atoms computed, the rest cached), answered in {:.2} ms",
            self.newly_eligible.len(),
            self.newly_ineligible.len(),
            self.seconds * 1e3,
            n.computed,
            self.total_seconds * 1e3
        );
        let sample = |set: &RoaringBitmap| {
            set.iter()
                .take(5)
                .filter_map(|e| snap.key(e).map(str::to_string))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.newly_eligible.is_empty() {
            let _ = writeln!(s, "  e.g. newly eligible: {}", sample(&self.newly_eligible));
        }
        if !self.newly_ineligible.is_empty() {
            let _ = writeln!(
                s,
                "  e.g. newly ineligible: {}",
                sample(&self.newly_ineligible)
            );
        }
        if let Some((c, sole, f)) = &self.most_excluding {
            let _ = writeln!(
                s,
                "excludes the most: `{c}` (the only failing condition for {sole}; false for {f})"
            );
        }
        for bd in &self.breakdowns {
            let _ = writeln!(s, "by {}:", bd.dimension);
            for (k, count, amount) in bd.rows.iter().take(12) {
                let _ = writeln!(s, "  {k:<20} {count:>9} {:>16}", fmt_num(*amount));
            }
        }
        let overlapping: Vec<String> = self
            .overlaps
            .iter()
            .filter(|o| o.1 > 0)
            .map(|(id, k)| format!("{id} {k}"))
            .collect();
        let _ = writeln!(
            s,
            "overlap with other policies: {}",
            if overlapping.is_empty() {
                "none".into()
            } else {
                overlapping.join(", ")
            }
        );
        s
    }
}
