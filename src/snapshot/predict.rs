//! Which integer columns of a table the snapshot stores as predicted from others (FORMAT.md,
//! type 7): departments' rows carry arithmetic between their own fields (an invoice's tax is
//! its amount × 13%, a settlement's self-paid share is its total less the fund's share, a
//! bill's amount is its quantity × the tariff). A column that such a rule predicts is stored
//! as what the rule misses, which is nothing or next to nothing.
//!
//! Rules are found from a sample of the table's rows, never declared: for each integer column
//! the chooser tries a ratio of every other integer column (`x ≈ a·p/q`, the ratio the sample's
//! median says, also rounded to fewer significant digits) and the sum and both differences of
//! every pair (`x ≈ a + b`, `a − b`, `b − a`), estimates each residual's size in the blocked
//! codec's frames of reference, and keeps a rule that saves at least a quarter of the column
//! and a bit per row. A base is never itself predicted, so a value is one rule away from
//! stored values.

use std::collections::HashSet;

use crate::codec::{bits_for, gcd_of};
use crate::snapshot::column::{Coef, Linear};

/// Rows per block of the estimate, as the blocked codec's.
const BLOCK: usize = 256;
/// The denominator ratios are estimated over: six decimal places.
const Q: i64 = 1_000_000;

/// Estimated bits of `v` stored in blocked frames of reference: per block of 256 values, the
/// width of its range over the range's common divisor, times its rows.
pub fn cost(v: &[i64]) -> u64 {
    v.chunks(BLOCK)
        .map(|c| {
            let lo = c.iter().copied().min().unwrap_or(0);
            let g = gcd_of(c.iter().map(|&x| x.wrapping_sub(lo) as u64)).max(1);
            let hi = c
                .iter()
                .map(|&x| x.wrapping_sub(lo) as u64 / g)
                .max()
                .unwrap_or(0);
            u64::from(bits_for(hi)) * c.len() as u64 + 128
        })
        .sum()
}

/// One candidate rule for a column: its bases (indexes into the sample) and coefficients.
#[derive(Debug, Clone, Copy)]
struct Rule {
    a: usize,
    b: Option<usize>,
    coef: Coef,
}

/// The residuals of column `x` under `rule`, over the rows where `x` has a value.
fn residuals(cols: &[Vec<Option<i64>>], x: usize, rule: Rule) -> Vec<i64> {
    let a = &cols[rule.a];
    cols[x]
        .iter()
        .enumerate()
        .filter_map(|(r, v)| {
            let va = a[r].unwrap_or(0);
            let vb = rule.b.map_or(0, |b| cols[b][r].unwrap_or(0));
            v.map(|v| v.wrapping_sub(rule.coef.at(va, vb)))
        })
        .collect()
}

/// The ratios `x / a` worth trying: the sample's median ratio, and the same with fewer
/// significant digits (a 13% tax rate is 0.13 exactly; truncated amounts pull the median a
/// hair below it).
fn ratios(x: &[Option<i64>], a: &[Option<i64>]) -> Vec<Coef> {
    let mut r: Vec<f64> = x
        .iter()
        .zip(a)
        .filter_map(|(&x, &a)| match (x, a) {
            (Some(x), Some(a)) if a != 0 => Some(x as f64 / a as f64),
            _ => None,
        })
        .filter(|r| r.is_finite())
        .collect();
    if r.is_empty() {
        return Vec::new();
    }
    let mid = r.len() / 2;
    let (_, &mut m, _) = r.select_nth_unstable_by(mid, f64::total_cmp);
    let p0 = (m * Q as f64).round();
    if p0.is_nan() || p0.abs() >= 1e15 || p0 == 0.0 {
        return Vec::new();
    }
    let p0 = p0 as i64;
    let mut out: Vec<Coef> = (0..=6u32)
        .filter_map(|k| {
            let unit = 10i64.pow(k);
            let p = (p0 + p0.signum() * unit / 2) / unit * unit;
            (p != 0).then(|| Coef::new(p, 0, Q)).flatten()
        })
        .collect();
    out.dedup();
    out
}

/// Chooses which of a table's integer columns to store predicted, from the columns' values
/// on the same sampled rows (`names[i]`, `cols[i]`). Returns each predicted column's index
/// and its rule; bases are never predicted.
pub fn choose(names: &[&str], cols: &[Vec<Option<i64>>]) -> Vec<(usize, Linear)> {
    let k = cols.len();
    // The best rule of each column, with the bits it saves.
    let mut best: Vec<(u64, usize, Rule)> = Vec::new();
    for x in 0..k {
        let present: Vec<i64> = cols[x].iter().flatten().copied().collect();
        if present.len() < BLOCK {
            continue;
        }
        let raw = cost(&present);
        let mut rules = Vec::new();
        for a in (0..k).filter(|&a| a != x) {
            rules.extend(ratios(&cols[x], &cols[a]).into_iter().map(|coef| Rule {
                a,
                b: None,
                coef,
            }));
            for b in (a + 1..k).filter(|&b| b != x) {
                for (p, s) in [(1, 1), (1, -1), (-1, 1)] {
                    rules.push(Rule {
                        a,
                        b: Some(b),
                        coef: Coef { p, s, q: 1 },
                    });
                }
            }
        }
        let found = rules
            .into_iter()
            .map(|rule| (cost(&residuals(cols, x, rule)), rule))
            .min_by_key(|&(c, _)| c);
        if let Some((c, rule)) = found
            && c * 4 <= raw * 3
            && raw - c >= present.len() as u64
        {
            best.push((raw - c, x, rule));
        }
    }
    // Greedy by saving: a column is predicted or a base, never both.
    best.sort_by(|p, q| q.0.cmp(&p.0).then(p.1.cmp(&q.1)));
    let mut predicted = HashSet::new();
    let mut bases = HashSet::new();
    let mut out = Vec::new();
    for (_, x, rule) in best {
        let uses: Vec<usize> = std::iter::once(rule.a).chain(rule.b).collect();
        if bases.contains(&x) || uses.iter().any(|u| predicted.contains(u)) {
            continue;
        }
        predicted.insert(x);
        bases.extend(uses);
        out.push((
            x,
            Linear {
                a: names[rule.a].to_string(),
                b: rule.b.map(|b| names[b].to_string()),
                coef: rule.coef,
            },
        ));
    }
    out.sort_by_key(|&(x, _)| x);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(v: impl IntoIterator<Item = i64>) -> Vec<Option<i64>> {
        v.into_iter().map(Some).collect()
    }

    /// A deterministic spread of amounts (a linear congruential walk).
    fn amounts(n: usize, seed: u64) -> Vec<i64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 33) % 5_000_000) as i64 * 100
            })
            .collect()
    }

    #[test]
    fn a_tax_rate_and_a_difference_are_found() {
        let amount = amounts(4096, 1);
        let tax: Vec<i64> = amount.iter().map(|a| a * 13 / 100).collect();
        let fund = amounts(4096, 2);
        let total: Vec<i64> = amount.iter().zip(&fund).map(|(a, f)| a + f).collect();
        let noise = amounts(4096, 3);
        let names = ["amount", "tax", "fund", "total", "noise"];
        let cols = [
            col(amount.clone()),
            col(tax),
            col(fund),
            col(total),
            col(noise),
        ];
        let chosen = choose(&names, &cols);
        let rules: Vec<(usize, &Linear)> = chosen.iter().map(|(x, l)| (*x, l)).collect();
        // tax = amount·13/100; then either total or one of its parts from the other two.
        let tax = rules
            .iter()
            .find(|(x, _)| *x == 1)
            .expect("tax predicted")
            .1;
        assert_eq!(tax.a, "amount");
        assert_eq!(tax.coef, Coef::new(13, 0, 100).unwrap());
        assert!(
            rules.iter().all(|(x, _)| *x != 4),
            "noise is not predictable"
        );
        assert_eq!(rules.len(), 2, "{rules:?}");
        // No column is both predicted and a base.
        for (x, l) in &rules {
            for (_, m) in &rules {
                assert_ne!(m.a, names[*x]);
                assert_ne!(m.b.as_deref(), Some(names[*x]));
            }
            assert!(l.a != names[*x]);
        }
    }

    #[test]
    fn independent_columns_and_small_samples_are_left_alone() {
        let names = ["a", "b"];
        assert!(choose(&names, &[col(amounts(4096, 5)), col(amounts(4096, 6))]).is_empty());
        let a = amounts(100, 7);
        let b: Vec<i64> = a.iter().map(|x| x * 2).collect();
        assert!(choose(&names, &[col(a), col(b)]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn a_prediction_is_the_exact_truncated_quotient(
            p in proptest::prelude::any::<i32>(),
            a in -(1i64 << 40)..(1i64 << 40),
            q in 1i64..(1 << 21),
        ) {
            let c = Coef::new(i64::from(p), 0, q).unwrap();
            let want = (i128::from(p) * i128::from(a) / i128::from(q)) as i64;
            proptest::prop_assert_eq!(c.at(a, 0), want);
        }
    }

    #[test]
    fn coefficients_are_exact_at_the_extremes() {
        let c = Coef::new(13, 0, 100).unwrap();
        assert_eq!(c.at(100, 0), 13);
        assert_eq!(c.at(-199, 0), -25);
        let big = Coef::new(i64::MAX, i64::MAX, 3).unwrap();
        let want = (i128::from(i64::MAX) * 7 + i128::from(i64::MAX) * -2) / 3;
        assert_eq!(big.at(7, -2), want as i64);
        assert_eq!(Coef::new(5, -10, 15), Some(Coef { p: 1, s: -2, q: 3 }));
        // Quotients truncate toward zero, on 128-bit products when 64 bits overflow.
        for q in [1, 2, 3, 7, 13, 100, 999_983, (1 << 20) - 1, 1 << 20] {
            let c = Coef::new(1, 0, q).unwrap();
            for x in [0, 1, q - 1, q, q + 1, i64::MAX, i64::MIN + 1] {
                for x in [x, -x, x / 3, -(x / 7)] {
                    assert_eq!(c.at(x, 0), x / c.q, "{x} / {q}");
                }
            }
        }
        assert_eq!(Coef::new(1, 1, 0), None);
    }
}
