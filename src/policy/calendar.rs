//! Row calendars: the rows of each entity in a table as bitsets over the values of one column
//! with a small domain (a month), one bitset per value of an optional second such column (an
//! insurance type). A calendar is built once per snapshot and pair of columns, by one pass
//! over the table, and kept for the engine's life (like its decoded field columns: it does not
//! depend on the as-of date or on any parameter). A count of rows whose filter is definite on
//! those two columns (`count(RS.contrib where RS.contrib.insurance == "养老" and
//! RS.contrib.month within 12 months)`, any window, any as-of date) is then a popcount per
//! entity instead of a scan of the table ([`scan`](super::scan) asks for one).
//!
//! A calendar describes an entity only when each set bit stands for exactly one of its rows
//! and every row is sure: an entity with a doubtful row, a row missing either value, or two
//! rows on one bit (two employers' contributions in one month) is *irregular*, and its rows
//! are scanned as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::eval::Env;
use super::prep::Step;
use super::scan::{ENTITY_CHUNK, WINDOW, doubtful_words};

/// The widest domain of the bitset column (values, so bits per bitset).
pub const MAX_BITS: u64 = 256;
/// The widest domain of the split column (bitsets per entity).
pub const MAX_SPLITS: u64 = 16;
/// The most bytes one calendar may take (at most 512 per entity with rows): a wider one is
/// not built, and its counts are scanned.
pub const MAX_BYTES: usize = 1 << 30;

/// One table's rows per entity, as bitsets over a column's values.
pub struct Calendar {
    /// The bitset column's first raw value and its domain's size.
    pub bits_first: i64,
    pub bits: usize,
    /// The split column's first raw value and its domain's size (1 without a split column).
    pub split_first: i64,
    pub splits: usize,
    words: usize,
    /// The regular entities, ascending.
    pub entities: Vec<u32>,
    /// `sets[(i * splits + s) * words + w]`: word `w` of regular entity `i`'s bitset for split
    /// value `s`.
    sets: Vec<u64>,
    /// Entities with rows the calendar does not describe exactly.
    pub irregular: RoaringBitmap,
}

impl std::fmt::Debug for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calendar")
            .field("bits", &self.bits)
            .field("splits", &self.splits)
            .field("entities", &self.entities.len())
            .field("irregular", &self.irregular.len())
            .finish()
    }
}

impl Calendar {
    /// The calendar of `table` over column `bits_col`, split by `split_col`; `None` when a
    /// column is not one of the table's integer or dictionary columns with a small enough
    /// domain, or the calendar would take more than [`MAX_BYTES`].
    pub fn build(
        env: &Env<'_>,
        table: usize,
        bits_col: usize,
        split_col: Option<usize>,
    ) -> Option<Calendar> {
        let col = |c: usize| env.cols.get(c).map(|(_, r)| r);
        let domain = |c: usize, max: u64| {
            let r = col(c)?;
            let (first, n) = r.col.raw_domain()?;
            (r.table == table && n > 0 && n <= max).then_some((first, n as usize))
        };
        let (bits_first, bits) = domain(bits_col, MAX_BITS)?;
        let (split_first, splits) = match split_col {
            Some(c) => domain(c, MAX_SPLITS)?,
            None => (0, 1),
        };
        let bits_column = &col(bits_col)?.col;
        let split_column = match split_col {
            Some(c) => Some(&col(c)?.col),
            None => None,
        };
        let t = env.tables.get(table)?;
        let words = bits.div_ceil(64);
        let stride = splits * words;
        if t.t.run_count().saturating_mul(stride * 8) > MAX_BYTES {
            return None;
        }
        // A chunk of entities per task, read from its first entity's runs on: no list of
        // every run is collected first. Runs without rows add nothing.
        let chunks = env.snap.entity_count().div_ceil(ENTITY_CHUNK).max(1);
        let end = t.t.info.rows;
        let parts: Vec<(Vec<u32>, Vec<u64>, Vec<u32>)> = (0..chunks)
            .into_par_iter()
            .map(|i| {
                let first = i * ENTITY_CHUNK;
                // The last chunk takes every entity past it (ids past the entity table, in a
                // damaged snapshot, included as before).
                let last = if i + 1 == chunks {
                    u32::MAX
                } else {
                    (first + ENTITY_CHUNK - 1) as u32
                };
                let mut entities = Vec::new();
                let mut sets = Vec::new();
                let mut irregular = Vec::new();
                let mut b = vec![0i64; WINDOW];
                let mut b_present = vec![0u64; WINDOW / 64];
                let mut s = vec![0i64; WINDOW];
                let mut s_present = vec![u64::MAX; WINDOW / 64];
                let mut doubtful = vec![0u64; WINDOW / 64];
                let mut own = vec![0u64; stride];
                let (mut start, mut len) = (0usize, 0usize);
                for (e, rows) in t.t.runs_within(first as u32..=last) {
                    if rows.is_empty() {
                        continue;
                    }
                    own.fill(0);
                    let mut regular = true;
                    for r in rows.clone() {
                        if r < start || r >= start + len {
                            start = r;
                            len = (end - r).min(WINDOW);
                            let w = len.div_ceil(64);
                            bits_column.decode_raw(start, &mut b[..len], &mut b_present[..w]);
                            if let Some(c) = split_column {
                                c.decode_raw(start, &mut s[..len], &mut s_present[..w]);
                            }
                            doubtful_words(&t.doubtful, start, len, &mut doubtful);
                        }
                        let k = r - start;
                        let bit = |words: &[u64]| words[k / 64] >> (k % 64) & 1 == 1;
                        if bit(&doubtful) || !bit(&b_present) || !bit(&s_present) {
                            regular = false;
                            break;
                        }
                        let x = usize::try_from(b[k].wrapping_sub(bits_first)).unwrap_or(bits);
                        let y = match split_column {
                            Some(_) => {
                                usize::try_from(s[k].wrapping_sub(split_first)).unwrap_or(splits)
                            }
                            None => 0,
                        };
                        if x >= bits || y >= splits {
                            regular = false;
                            break;
                        }
                        let word = &mut own[y * words + x / 64];
                        let m = 1u64 << (x % 64);
                        if *word & m != 0 {
                            regular = false;
                            break;
                        }
                        *word |= m;
                    }
                    if regular {
                        entities.push(e);
                        sets.extend_from_slice(&own);
                    } else {
                        irregular.push(e);
                    }
                }
                (entities, sets, irregular)
            })
            .collect();
        let mut cal = Calendar {
            bits_first,
            bits,
            split_first,
            splits,
            words,
            entities: Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum()),
            sets: Vec::with_capacity(parts.iter().map(|p| p.1.len()).sum()),
            irregular: RoaringBitmap::new(),
        };
        for (e, s, irregular) in parts {
            cal.entities.extend(e);
            cal.sets.extend(s);
            cal.irregular.extend(irregular);
        }
        Some(cal)
    }

    /// Entities with rows, regular or not.
    pub fn with_rows(&self) -> u64 {
        self.entities.len() as u64 + self.irregular.len()
    }

    /// For each regular entity (in [`entities`](Self::entities) order): its rows whose bitset
    /// value is in `on` (a bitset over the bitset column's domain) and whose split value is
    /// one of `splits_on` (indexes from the split column's first value).
    pub fn counts(&self, on: &[u64], splits_on: &[usize]) -> Vec<u64> {
        let (words, stride) = (self.words, self.splits * self.words);
        if stride == 0 {
            return vec![0; self.entities.len()];
        }
        self.sets
            .par_chunks(stride * 4096)
            .flat_map_iter(|chunk| {
                chunk.chunks(stride).map(|sets| {
                    splits_on
                        .iter()
                        .filter_map(|&s| sets.get(s * words..(s + 1) * words))
                        .map(|set| {
                            set.iter()
                                .zip(on)
                                .map(|(a, b)| u64::from((a & b).count_ones()))
                                .sum::<u64>()
                        })
                        .sum()
                })
            })
            .collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.entities.len() * 4 + self.sets.len() * 8 + self.irregular.serialized_size()
    }
}

/// The calendars built so far, by table, bitset column and split column (`None` remembers
/// that no calendar can be built for them).
#[derive(Default)]
pub struct Calendars {
    built: Mutex<HashMap<CalendarKey, Option<Arc<Calendar>>>>,
}

/// A table, its bitset column and its split column.
type CalendarKey = (usize, usize, Option<usize>);

impl std::fmt::Debug for Calendars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.built.lock().map(|b| b.len()).unwrap_or(0);
        write!(f, "Calendars({n})")
    }
}

impl Calendars {
    /// The calendar of `table` over `bits_col` split by `split_col`, built on first use.
    pub fn get(
        &self,
        env: &Env<'_>,
        table: usize,
        bits_col: usize,
        split_col: Option<usize>,
    ) -> Option<Arc<Calendar>> {
        let key = (table, bits_col, split_col);
        if let Some(c) = self.built.lock().ok()?.get(&key) {
            return c.clone();
        }
        // Built outside the lock: it takes a scan of the table.
        let started = Instant::now();
        let c = Calendar::build(env, table, bits_col, split_col).map(Arc::new);
        env.prep.note(Step::Calendar, started, || {
            let name = |c: usize| env.cols.get(c).map_or("?", |x| x.0.as_str());
            match split_col {
                Some(s) => format!("{} by {}", name(bits_col), name(s)),
                None => name(bits_col).to_string(),
            }
        });
        if let Ok(mut built) = self.built.lock() {
            built.insert(key, c.clone());
        }
        c
    }

    /// Bytes held by the calendars.
    pub fn bytes(&self) -> usize {
        self.built
            .lock()
            .map(|b| b.values().flatten().map(|c| c.bytes()).sum())
            .unwrap_or(0)
    }

    /// Drops every calendar.
    pub fn clear(&self) {
        if let Ok(mut b) = self.built.lock() {
            b.clear();
        }
    }
}
