//! A parameter swept over many values: the policy counted with each, all at once.
//!
//! An analyst asking "what if the age threshold were 60, 61, … 100" gets one line per value:
//! candidates, to-verify and near-miss, the change against the saved parameters, and the
//! condition that excludes the most. Each variant's changed conditions are computed (a
//! threshold reads a cached field column), then every variant is counted together,
//! block-major ([`Engine::count_policies`]): no sets and no amounts are built. At the full
//! city (7.8M persons) M01's age threshold over 41 values takes about 100 ms, nearly all of
//! it computing each value's condition; E10's hires threshold over 10 values, 6 ms.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Instant;

use super::ast::{Expr, ExprKind, Lit, Policy};
use super::engine::{Engine, EngineError, PolicyCounts, most_excluding};

/// The most values one sweep takes. Each value's changed conditions are computed and held
/// (with its counts, and in the engine's cache) until the sweep is answered: about 1 MB per
/// value for a threshold over the full city's persons (what a what-if on M01 adds), so 256
/// values bound a sweep to a few hundred MB. Longer sweeps are asked in parts.
pub const MAX_VALUES: usize = 256;

/// A policy counted with each value of one parameter.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub policy: String,
    pub name: String,
    pub param: String,
    /// The policy with its own parameter values (and the other overrides).
    pub saved: PolicyCounts,
    /// Each value, in the order given, with the policy's counts.
    pub rows: Vec<(Lit, PolicyCounts)>,
    /// Counting the saved version first: loading and computing the conditions it shares with
    /// the variants (little once the engine has run it).
    pub saved_seconds: f64,
    /// Then computing the variants' changed conditions and counting them all.
    pub seconds: f64,
}

/// Parses `NAME=LO..HI` (every integer step), `NAME=LO..HI:STEP` or `NAME=V1,V2,…`.
pub fn parse_spec(spec: &str) -> Result<(String, Vec<Lit>), String> {
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| format!("`{spec}`: expected NAME=LO..HI[:STEP] or NAME=V1,V2,…"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{spec}`: no parameter name"));
    }
    let values = match values.split_once("..") {
        Some((lo, rest)) => {
            let (hi, step) = match rest.split_once(':') {
                Some((hi, step)) => (hi, step),
                None => (rest, "1"),
            };
            let num = |s: &str, what: &str| -> Result<f64, String> {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("`{spec}`: the {what} `{s}` is not a number"))
            };
            let (lo, hi, step) = (
                num(lo, "low end")?,
                num(hi, "high end")?,
                num(step, "step")?,
            );
            if step <= 0.0 {
                return Err(format!("`{spec}`: the step must be positive"));
            }
            if hi < lo {
                return Err(format!("`{spec}`: the high end is below the low end"));
            }
            let n = ((hi - lo) / step + 1e-9).floor() + 1.0;
            if n > MAX_VALUES as f64 {
                return Err(format!(
                    "`{spec}`: {n} values; a sweep takes at most {MAX_VALUES}"
                ));
            }
            // Each value from the low end, not by adding steps (no drift).
            (0..n as usize)
                .map(|i| Lit::Num(lo + i as f64 * step))
                .collect()
        }
        None => {
            let vs: Vec<Lit> = values
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(Lit::parse_value)
                .collect();
            if vs.len() > MAX_VALUES {
                return Err(format!(
                    "`{spec}`: {} values; a sweep takes at most {MAX_VALUES}",
                    vs.len()
                ));
            }
            vs
        }
    };
    if values.is_empty() {
        return Err(format!("`{spec}`: no values"));
    }
    Ok((name.to_string(), values))
}

/// `p` with parameter `param` given `value` in its text (a variant that is compiled, cached
/// and counted like any policy).
fn with_param(p: &Policy, param: &str, value: &Lit) -> Policy {
    let mut v = p.clone();
    for prm in v.params.iter_mut().filter(|prm| prm.name == param) {
        prm.value = Expr {
            pos: prm.value.pos,
            kind: ExprKind::Lit(value.clone()),
        };
    }
    v
}

/// Counts `p` with `param` set to each of `values` (and `overrides`, which must not name
/// `param`), and with its own value of `param`.
pub fn sweep(
    engine: &mut Engine<'_>,
    p: &Policy,
    overrides: &HashMap<String, Lit>,
    param: &str,
    values: &[Lit],
) -> Result<Sweep, EngineError> {
    if values.len() > MAX_VALUES {
        return Err(EngineError::Param(format!(
            "{} values; a sweep takes at most {MAX_VALUES}",
            values.len()
        )));
    }
    if overrides.contains_key(param) {
        return Err(EngineError::Param(format!(
            "`{param}` is both set and swept"
        )));
    }
    // Each value is checked as an override would be: the parameter exists, the type agrees.
    for v in values {
        let mut o = overrides.clone();
        o.insert(param.to_string(), v.clone());
        Engine::params(p, &o)?;
    }
    let started = Instant::now();
    let saved = engine
        .count_policies(std::slice::from_ref(p), overrides)?
        .pop()
        .ok_or_else(|| EngineError::Param(format!("policy {}: nothing was counted", p.id)))?;
    let saved_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let variants: Vec<Policy> = values.iter().map(|v| with_param(p, param, v)).collect();
    let counted = engine.count_policies(&variants, overrides)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Sweep {
        policy: p.id.clone(),
        name: p.name.clone(),
        param: param.to_string(),
        saved,
        rows: values.iter().cloned().zip(counted).collect(),
        saved_seconds,
        seconds,
    })
}

impl Sweep {
    /// One line per value: candidates and their change against the saved parameters,
    /// to-verify, near-miss, and the condition that excludes the most (blocking alone).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {}: `{}` over {} values, counted together in {:.2} ms (the saved version first, \
             with the conditions they share: {:.2} ms)",
            self.policy,
            self.name,
            self.param,
            self.rows.len(),
            self.seconds * 1e3,
            self.saved_seconds * 1e3
        );
        let _ = writeln!(
            s,
            "{:>12} {:>12} {:>12} {:>12} {:>12}  excludes the most (alone)",
            self.param, "candidates", "vs saved", "to verify", "near miss"
        );
        let most = |c: &PolicyCounts| -> String {
            most_excluding(&c.conditions)
                .map(|x| format!("{} ({})", x.name, x.sole_blocker))
                .unwrap_or_default()
        };
        let line = |s: &mut String, label: &str, c: &PolicyCounts| {
            let delta = c.candidates as i64 - self.saved.candidates as i64;
            let _ = writeln!(
                s,
                "{label:>12} {:>12} {:>+12} {:>12} {:>12}  {}",
                c.candidates,
                delta,
                c.to_verify,
                c.near_miss,
                most(c)
            );
        };
        for (v, c) in &self.rows {
            line(&mut s, &v.to_string(), c);
        }
        line(&mut s, "saved", &self.saved);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_bad_specs() {
        let (name, v) = parse_spec("min_age=60..62").unwrap();
        assert_eq!(name, "min_age");
        assert_eq!(v, vec![Lit::Num(60.0), Lit::Num(61.0), Lit::Num(62.0)]);
        let (_, v) = parse_spec("rate=0.1..0.3:0.1").unwrap();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[2], Lit::Num(0.1 + 2.0 * 0.1));
        let (_, v) = parse_spec("kind=a, b").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(parse_spec("x=1..256").unwrap().1.len(), 256);
        for bad in [
            "x=1..257",
            "min_age",
            "=1..2",
            "x=5..1",
            "x=1..2:0",
            "x=1..2:-1",
            "x=a..2",
            "x=0..1e9",
            "x=",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
