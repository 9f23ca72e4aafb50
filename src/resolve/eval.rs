//! `mianshen eval-links`: pairwise precision, recall and F1 of a links file against truth
//! files (`source,record_id,true_key`), overall, per source, and for records linked by key or
//! without one.
//!
//! Pairs are counted per record: for a record in predicted cluster A and true cluster B
//! (both restricted to records present in both files), it contributes |A∩B|−1 true-positive
//! pairs, |A|−1 predicted pairs and |B|−1 true pairs. Over all records this is exactly twice
//! the classic pairwise counts, so the ratios are the classic ones; restricted to one
//! source, it measures the pairs that source's records take part in.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use crate::error::ResolveError;

/// Precision, recall and F1 of one group of records.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub group: String,
    pub records: u64,
    pub true_pairs: u64,
    pub predicted_pairs: u64,
    pub correct_pairs: u64,
}

impl Score {
    fn empty(group: &str) -> Score {
        Score {
            group: group.to_string(),
            records: 0,
            true_pairs: 0,
            predicted_pairs: 0,
            correct_pairs: 0,
        }
    }

    pub fn precision(&self) -> f64 {
        if self.predicted_pairs == 0 {
            1.0
        } else {
            self.correct_pairs as f64 / self.predicted_pairs as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.true_pairs == 0 {
            1.0
        } else {
            self.correct_pairs as f64 / self.true_pairs as f64
        }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// The evaluation.
#[derive(Debug, Clone)]
pub struct EvalReport {
    pub overall: Score,
    /// Records linked by their own key, and records without a usable key.
    pub keyed: Score,
    pub unkeyed: Score,
    pub per_source: Vec<Score>,
    pub true_clusters: usize,
    pub predicted_clusters: usize,
    /// Truth records absent from the links file (counted as singletons).
    pub missing_links: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ResolveError + '_ {
    move |e| ResolveError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Splits one CSV line (fields may be quoted).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Reads rows of a CSV with the given columns (by header name), calling `f` with their values.
fn read_columns(
    path: &Path,
    wanted: &[&str],
    mut f: impl FnMut(&[String]),
) -> Result<(), ResolveError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let header = match lines.next() {
        Some(h) => split_csv(h.map_err(io(path))?.trim_start_matches('\u{feff}')),
        None => return Ok(()),
    };
    let idx: Vec<usize> = wanted
        .iter()
        .map(|w| {
            header.iter().position(|h| h.trim() == *w).ok_or_else(|| {
                ResolveError::Input(format!(
                    "{}: no column {w:?} in the header (expected {})",
                    path.display(),
                    wanted.join(",")
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut vals = vec![String::new(); idx.len()];
    for line in lines {
        let line = line.map_err(io(path))?;
        if line.is_empty() {
            continue;
        }
        let fields = split_csv(&line);
        for (v, &i) in vals.iter_mut().zip(&idx) {
            v.clear();
            v.push_str(fields.get(i).map_or("", String::as_str));
        }
        f(&vals);
    }
    Ok(())
}

/// Evaluates `links` against every `*.csv` truth file under `truth` (a folder or one file).
pub fn eval_links(truth: &Path, links: &Path) -> Result<EvalReport, ResolveError> {
    let mut truth_files = Vec::new();
    if truth.is_dir() {
        for e in std::fs::read_dir(truth).map_err(io(truth))? {
            let p = e.map_err(io(truth))?.path();
            if p.extension().is_some_and(|x| x == "csv") {
                truth_files.push(p);
            }
        }
        truth_files.sort();
    } else {
        truth_files.push(truth.to_path_buf());
    }
    if truth_files.is_empty() {
        return Err(ResolveError::Input(format!(
            "no truth files (*.csv with source,record_id,true_key) under {}",
            truth.display()
        )));
    }
    // (source, record id) → true cluster.
    let mut true_ids: HashMap<String, u32> = HashMap::new();
    let mut records: HashMap<(String, String), (u32, u32, bool)> = HashMap::new();
    for p in &truth_files {
        read_columns(p, &["source", "record_id", "true_key"], |v| {
            let n = true_ids.len() as u32;
            let t = *true_ids.entry(v[2].clone()).or_insert(n);
            records
                .entry((v[0].clone(), v[1].clone()))
                .or_insert((t, u32::MAX, false));
        })?;
    }
    let mut pred_ids: HashMap<String, u32> = HashMap::new();
    read_columns(
        links,
        &["source", "record_id", "entity_key", "method"],
        |v| {
            if let Some(rec) = records.get_mut(&(v[0].clone(), v[1].clone()))
                && rec.1 == u32::MAX
            {
                let n = pred_ids.len() as u32;
                rec.1 = *pred_ids.entry(v[2].clone()).or_insert(n);
                rec.2 = v[3] == "key";
            }
        },
    )?;
    // Records without a link are their own predicted cluster.
    let mut missing = 0;
    let mut next = pred_ids.len() as u32;
    for rec in records.values_mut() {
        if rec.1 == u32::MAX {
            rec.1 = next;
            next += 1;
            missing += 1;
        }
    }
    // Per-record pair counts over all records, and over keyed records alone.
    let (overall, per, true_clusters, predicted_clusters) = pair_counts(
        records
            .iter()
            .map(|((s, _), &(t, p, _))| (s.as_str(), t, p)),
        "all",
    );
    let (mut keyed, _, _, _) = pair_counts(
        records
            .iter()
            .filter(|(_, v)| v.2)
            .map(|((s, _), &(t, p, _))| (s.as_str(), t, p)),
        "keyed (pairs of keyed records)",
    );
    keyed.group = "keyed (pairs of keyed records)".into();
    // Pairs with at least one record without a usable key: all pairs minus keyed pairs.
    let mut unkeyed = Score::empty("without a usable key (pairs with one)");
    unkeyed.records = overall.records - keyed.records;
    unkeyed.true_pairs = overall.true_pairs - keyed.true_pairs;
    unkeyed.predicted_pairs = overall.predicted_pairs - keyed.predicted_pairs;
    unkeyed.correct_pairs = overall.correct_pairs - keyed.correct_pairs;
    let mut per_source: Vec<Score> = per.into_values().collect();
    per_source.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(EvalReport {
        overall,
        keyed,
        unkeyed,
        per_source,
        true_clusters,
        predicted_clusters,
        missing_links: missing,
    })
}

/// Per-record pair counts of records given as (source, true cluster, predicted cluster):
/// overall, per source, and the numbers of true and predicted clusters.
fn pair_counts<'a>(
    records: impl Iterator<Item = (&'a str, u32, u32)> + Clone,
    group: &str,
) -> (Score, HashMap<String, Score>, usize, usize) {
    let mut true_size: HashMap<u32, u64> = HashMap::new();
    let mut pred_size: HashMap<u32, u64> = HashMap::new();
    let mut cell: HashMap<(u32, u32), u64> = HashMap::new();
    for (_, t, p) in records.clone() {
        *true_size.entry(t).or_insert(0) += 1;
        *pred_size.entry(p).or_insert(0) += 1;
        *cell.entry((t, p)).or_insert(0) += 1;
    }
    let mut overall = Score::empty(group);
    let mut per: HashMap<String, Score> = HashMap::new();
    for (source, t, p) in records {
        let tp = cell[&(t, p)] - 1;
        let tt = true_size[&t] - 1;
        let pp = pred_size[&p] - 1;
        let src = per
            .entry(source.to_string())
            .or_insert_with(|| Score::empty(source));
        for s in [&mut overall, src] {
            s.records += 1;
            s.correct_pairs += tp;
            s.true_pairs += tt;
            s.predicted_pairs += pp;
        }
    }
    (overall, per, true_size.len(), pred_size.len())
}

impl EvalReport {
    pub fn render(&self) -> String {
        let mut o = format!(
            "{:<28} {:>10} {:>10} {:>10} {:>8}\n",
            "group", "records", "precision", "recall", "F1"
        );
        let mut line = |s: &Score| {
            o.push_str(&format!(
                "{:<28} {:>10} {:>10.5} {:>10.5} {:>8.5}\n",
                s.group,
                s.records,
                s.precision(),
                s.recall(),
                s.f1()
            ));
        };
        line(&self.overall);
        line(&self.keyed);
        line(&self.unkeyed);
        for s in &self.per_source {
            line(s);
        }
        o.push_str(&format!(
            "clusters: {} true, {} predicted; {} truth records had no link\n",
            self.true_clusters, self.predicted_clusters, self.missing_links
        ));
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields() {
        assert_eq!(split_csv("a,\"b,c\",\"d\"\"e\""), vec!["a", "b,c", "d\"e"]);
    }
}
