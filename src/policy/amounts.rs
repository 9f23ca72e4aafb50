//! A policy's amounts: each candidate's amount, kept in the form that computed it.
//!
//! Most of the catalogue's amounts are a constant (`amount award`) or read one field of the
//! candidate's primary row (`band age(birth_date) {…}`, `band CL.cert.grade {…}`). Those are
//! kept as the rule, not as a list: a value per rank of the field, read when a candidate's
//! amount is asked for. A run then costs one pass over its candidates for the total, and
//! nothing per candidate in memory; a million candidates listed would be 16 MB written, and
//! page-faulted in, on every run of a what-if. Other amounts (aggregates, relations) are
//! listed as the interpreter computed them.

use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::columns::{FieldColumn, RankValues, Tally};

/// Each candidate's amount, in candidate (entity) order.
#[derive(Debug, Clone)]
pub enum Amounts {
    /// The same for every candidate; `None` when it is unknown.
    Constant(Option<f64>),
    /// Read from one field of the candidate's primary row, by the field's rank.
    ByRank(Arc<FieldColumn>, Arc<RankValues>),
    /// `(entity, amount)` for each candidate whose amount is known, in entity order.
    Listed(Vec<(u32, f64)>),
}

impl Default for Amounts {
    fn default() -> Self {
        Amounts::Listed(Vec::new())
    }
}

impl Amounts {
    /// The amount of entity `e`, one of `candidates` (`None`: not a candidate, or its amount
    /// is unknown).
    pub fn of(&self, candidates: &RoaringBitmap, e: u32) -> Option<f64> {
        match self {
            Amounts::Listed(list) => list
                .binary_search_by_key(&e, |&(x, _)| x)
                .ok()
                .map(|i| list[i].1),
            _ if !candidates.contains(e) => None,
            Amounts::Constant(v) => *v,
            Amounts::ByRank(fc, values) => values.of_entity(fc, e),
        }
    }

    /// `(entity, amount)` for each of `candidates` whose amount is known, in entity order.
    pub fn iter<'a>(
        &'a self,
        candidates: &'a RoaringBitmap,
    ) -> Box<dyn Iterator<Item = (u32, f64)> + 'a> {
        match self {
            Amounts::Listed(list) => Box::new(list.iter().copied()),
            Amounts::Constant(None) => Box::new(std::iter::empty()),
            Amounts::Constant(Some(v)) => Box::new(candidates.iter().map(move |e| (e, *v))),
            Amounts::ByRank(fc, values) => Box::new(
                candidates
                    .iter()
                    .filter_map(move |e| values.of_entity(fc, e).map(|v| (e, v))),
            ),
        }
    }

    /// The total over `candidates` and how many of them have no amount.
    pub fn total(&self, candidates: &RoaringBitmap) -> (f64, u64) {
        match self {
            Amounts::Listed(list) => (
                list.iter().map(|a| a.1).sum(),
                candidates.len() - list.len() as u64,
            ),
            Amounts::Constant(None) => (0.0, candidates.len()),
            Amounts::Constant(Some(v)) => (v * candidates.len() as f64, 0),
            Amounts::ByRank(fc, values) => {
                let tallies =
                    per_container(candidates, |ids, t: &mut Tally| values.tally(fc, ids, t));
                values.total(&tallies)
            }
        }
    }
}

/// Folds the ids of each of `set`'s containers (65,536 ids) with `f`, the containers in
/// parallel and each read in batches; the results in container order.
fn per_container<A: Default + Send>(
    set: &RoaringBitmap,
    f: impl Fn(&[u32], &mut A) + Sync,
) -> Vec<A> {
    let (Some(min), Some(max)) = (set.min(), set.max()) else {
        return Vec::new();
    };
    (min >> 16..=max >> 16)
        .into_par_iter()
        .map(|hi| {
            let mut it = set.range(hi << 16..=(hi << 16 | 0xFFFF));
            let mut buf = [0u32; 1024];
            let mut acc = A::default();
            loop {
                let got = it.next_many(&mut buf);
                if got.is_empty() {
                    break;
                }
                f(got, &mut acc);
            }
            acc
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_amounts_are_the_candidates() {
        let candidates: RoaringBitmap = [3u32, 70_000, 200_000].into_iter().collect();
        let a = Amounts::Constant(Some(5.0));
        assert_eq!(
            a.iter(&candidates).collect::<Vec<_>>(),
            vec![(3, 5.0), (70_000, 5.0), (200_000, 5.0)]
        );
        assert_eq!(a.total(&candidates), (15.0, 0));
        assert_eq!(a.of(&candidates, 70_000), Some(5.0));
        assert_eq!(a.of(&candidates, 4), None);
        let unknown = Amounts::Constant(None);
        assert_eq!(unknown.iter(&candidates).count(), 0);
        assert_eq!(unknown.total(&candidates), (0.0, 3));
    }

    #[test]
    fn listed_amounts_count_the_missing() {
        let candidates: RoaringBitmap = [1u32, 2, 9].into_iter().collect();
        let a = Amounts::Listed(vec![(1, 2.5), (9, 1.0)]);
        assert_eq!(a.total(&candidates), (3.5, 1));
        assert_eq!(a.of(&candidates, 9), Some(1.0));
        assert_eq!(a.of(&candidates, 2), None);
    }

    #[test]
    fn containers_are_folded_in_order() {
        let set: RoaringBitmap = (0..300_000u32).step_by(7).collect();
        let parts = per_container(&set, |ids, n: &mut u64| *n += ids.len() as u64);
        assert_eq!(parts.len(), 5);
        assert_eq!(parts.iter().sum::<u64>(), set.len());
        assert_eq!(
            per_container(&RoaringBitmap::new(), |_, _: &mut u64| {}).len(),
            0
        );
    }
}
