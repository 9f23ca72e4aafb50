//! Blocked integers (FORMAT.md, `blocked`): the values of a column cut into blocks of 2^k
//! rows, each block encoded the way that makes it smallest, every value still read in
//! constant time.
//!
//! A block's value `j` is `base + step·j + mult·r[j]`, where `r[j]` is the block's packed
//! residual, or an entry of the block's own small dictionary that the packed code selects.
//! The encoder tries, per block:
//! - frame of reference: `base` the block's minimum, `mult` the residuals' common divisor
//!   (amounts in whole yuan are multiples of 100 fen);
//! - a line: `step` the block's mean slope, so sequence numbers (invoice 1, 2, 3, …) and the
//!   codes of a first-occurrence dictionary cost almost nothing;
//! - a dictionary: the block's distinct residuals, each row a code of `log2(distinct)` bits
//!   (a person's five monthly contribution amounts, repeated month after month);
//! - runs: a few runs of one value each, stored as each run's value and first row (an
//!   entity's key on its event rows, changing where the next entity's rows begin);
//! - runs along a line: the block's majority step taken out, then runs (sequences that
//!   restart: each entity's months, each enterprise's invoice numbers);
//!
//! and keeps the smallest. A run of one value (an entity's key on every one of its event
//! rows) is a block of width 0: 16 bytes for 256 rows. A column whose values are all equal
//! has no blocks at all.
//!
//! The reader parses the header once and then reads within bounds whatever the bytes: a
//! block that does not fit its section reads as 0 (`verify` runs before a snapshot is
//! trusted).

use rayon::prelude::*;

use super::{Packed, bits_at, bits_for, gcd_of, le_u64, pack, pad8, unpack, word_at};

/// Rows per block, as a power of two: 256.
pub const BLOCK_LOG2: u8 = 8;

const STEP: u8 = 1;
const MULT: u8 = 2;
const DICT: u8 = 4;
const RUNS: u8 = 8;

fn words(n: usize, width: u32) -> usize {
    (n * width as usize).div_ceil(64)
}

/// One block's chosen encoding.
struct Plan {
    flags: u8,
    base: i64,
    step: i64,
    mult: u64,
    /// Residuals (or dictionary codes) per row.
    residuals: Vec<u64>,
    width: u8,
    dict: Vec<u64>,
    dict_width: u8,
    /// Size in 64-bit words, header included.
    cost: usize,
}

/// Frame of reference, with the residuals' common divisor taken out.
fn frame(v: &[i64]) -> Plan {
    let lo = v.iter().copied().min().unwrap_or(0);
    let g = gcd_of(v.iter().map(|&x| x.wrapping_sub(lo) as u64));
    frame_of(v, lo, g)
}

/// [`frame`] given the block's minimum `lo` and the common divisor `g` of the values'
/// distances from it.
fn frame_of(v: &[i64], lo: i64, g: u64) -> Plan {
    let (flags, mult, r) = if g > 1 {
        let r: Vec<u64> = v.iter().map(|&x| x.wrapping_sub(lo) as u64 / g).collect();
        (MULT, g, r)
    } else {
        let r: Vec<u64> = v.iter().map(|&x| x.wrapping_sub(lo) as u64).collect();
        (0, 1, r)
    };
    let width = bits_for(r.iter().copied().max().unwrap_or(0));
    let cost = 2 + usize::from(flags == MULT) + words(v.len(), u32::from(width));
    Plan {
        flags,
        base: lo,
        step: 0,
        mult,
        residuals: r,
        width,
        dict: Vec::new(),
        dict_width: 0,
        cost,
    }
}

/// A line through the first and last values, and the residuals above its lowest point.
fn line(v: &[i64]) -> Option<Plan> {
    let n = v.len();
    let step = line_step(v)?;
    let d: Vec<i128> = v
        .iter()
        .enumerate()
        .map(|(j, &x)| i128::from(x) - i128::from(step) * j as i128)
        .collect();
    let lo = d.iter().copied().min()?;
    let r: Vec<u64> = d
        .iter()
        .map(|&x| u64::try_from(x - lo).ok())
        .collect::<Option<_>>()?;
    let width = bits_for(r.iter().copied().max().unwrap_or(0));
    Some(Plan {
        flags: STEP,
        // Wrapping: the decoder's wrapping sum is the value modulo 2^64, which is the value.
        base: lo as i64,
        step,
        mult: 1,
        residuals: r,
        width,
        dict: Vec::new(),
        dict_width: 0,
        cost: 3 + words(n, u32::from(width)),
    })
}

/// The frame's residuals through a dictionary of the distinct ones.
fn dictionary(f: &Plan) -> Option<Plan> {
    let n = f.residuals.len();
    let mut dict = f.residuals.clone();
    dict.sort_unstable();
    dict.dedup();
    if dict.len() * 2 > n {
        return None;
    }
    let dict_width = bits_for(dict.last().copied().unwrap_or(0));
    let width = bits_for(dict.len() as u64 - 1);
    let residuals = f
        .residuals
        .iter()
        .map(|x| dict.binary_search(x).unwrap_or(0) as u64)
        .collect();
    let cost = f.cost - words(n, u32::from(f.width))
        + words(dict.len(), u32::from(dict_width))
        + words(n, u32::from(width));
    Some(Plan {
        flags: f.flags | DICT,
        base: f.base,
        step: 0,
        mult: f.mult,
        residuals,
        width,
        dict,
        dict_width,
        cost,
    })
}

/// The frame's residuals as runs of one value: each run's value and first row.
fn runs(f: &Plan) -> Option<Plan> {
    let n = f.residuals.len();
    let mut values = Vec::new();
    let mut starts = Vec::new();
    for (j, &r) in f.residuals.iter().enumerate() {
        if values.last() != Some(&r) || j == 0 {
            values.push(r);
            starts.push(j as u64);
            if values.len() * 8 > n {
                return None;
            }
        }
    }
    let dict_width = bits_for(values.iter().copied().max().unwrap_or(0));
    let width = bits_for(n as u64 - 1);
    let cost = f.cost - words(n, u32::from(f.width))
        + words(values.len(), u32::from(dict_width))
        + words(values.len(), u32::from(width));
    Some(Plan {
        flags: f.flags | RUNS,
        base: f.base,
        step: 0,
        mult: f.mult,
        residuals: starts,
        width,
        dict: values,
        dict_width,
        cost,
    })
}

/// Runs along a line: the block's most common step between neighbours taken out, then runs
/// of one value each. Sequences that restart (an entity's months 1, 2, 3, … and the next
/// entity's, its invoice numbers) cost a few words per block instead of a frame's width.
fn stepped_runs(v: &[i64]) -> Option<Plan> {
    // The majority step (a step that is not a majority only loses).
    let step = majority_step(v)?;
    let d: Vec<i64> = v
        .iter()
        .enumerate()
        .map(|(j, &x)| x.wrapping_sub(step.wrapping_mul(j as i64)))
        .collect();
    let mut p = runs(&frame(&d))?;
    p.flags |= STEP;
    p.step = step;
    p.cost += 1;
    Some(p)
}

/// The block's encoding: the smallest of frame, line, dictionary, runs and runs along a line,
/// a tie going to the earlier of them. Each one's size is worked out from a few figures of
/// the block (its runs, range, common divisor, distinct values) without building it, and
/// only the chosen one is built: the same choice as building them all
/// ([`plan_by_building_all`], which the tests hold it to), at a fraction of the work.
fn plan(v: &[i64]) -> Plan {
    let n = v.len();
    if !(2..=BLOCK).contains(&n) {
        return plan_by_building_all(v);
    }
    let mut scratch = [0i64; BLOCK];
    // The values of the block's runs of one value: lowest, highest, the common divisor of
    // their distances from the lowest, and the distinct values are the block's own.
    let Some(runs_of_v) = run_values(v.iter().copied(), &mut scratch, n) else {
        return plan_by_building_all(v);
    };
    let r = &scratch[..runs_of_v];
    let f = Shape::of(r);
    let f_cost = 2 + f.mult_word() + words(n, u32::from(f.width));
    if f.width == 0 {
        return frame_of(v, f.lo, f.g);
    }
    // Runs cost the run values and their first rows in place of every row's residual.
    let start_width = u32::from(bits_for(n as u64 - 1));
    let in_place_of_rows = f_cost - words(n, u32::from(f.width));
    let runs_cost = (runs_of_v * 8 <= n).then(|| {
        in_place_of_rows + words(runs_of_v, u32::from(f.width)) + words(runs_of_v, start_width)
    });
    let dict_cost = distinct_at_most(r, n / 2).map(|k| {
        in_place_of_rows
            + words(k, u32::from(f.width))
            + words(n, u32::from(bits_for(k as u64 - 1)))
    });
    let line_cost = line_width(v).map(|w| 3 + words(n, u32::from(w)));
    let stepped_cost = majority_step(v).and_then(|step| {
        let along = v
            .iter()
            .enumerate()
            .map(|(j, &x)| x.wrapping_sub(step.wrapping_mul(j as i64)));
        let k = run_values(along, &mut scratch, n / 8)?;
        let d = Shape::of(&scratch[..k]);
        Some(3 + d.mult_word() + words(k, u32::from(d.width)) + words(k, start_width))
    });
    let mut best = (0, f_cost);
    for (kind, cost) in [
        (1, line_cost),
        (2, dict_cost),
        (3, runs_cost),
        (4, stepped_cost),
    ] {
        if let Some(c) = cost
            && c < best.1
        {
            best = (kind, c);
        }
    }
    let built = match best.0 {
        1 => line(v),
        2 => dictionary(&frame_of(v, f.lo, f.g)),
        3 => runs(&frame_of(v, f.lo, f.g)),
        4 => stepped_runs(v),
        _ => None,
    };
    let p = built.unwrap_or_else(|| frame_of(v, f.lo, f.g));
    debug_assert_eq!(p.cost, best.1, "block plan {} costed wrongly", best.0);
    p
}

/// Rows per block.
const BLOCK: usize = 1 << BLOCK_LOG2;

/// Writes the values of `values`' runs of one value into `out`, returning how many there
/// are, or `None` past `most` of them.
fn run_values(
    values: impl Iterator<Item = i64>,
    out: &mut [i64; BLOCK],
    most: usize,
) -> Option<usize> {
    let mut k = 0;
    for x in values {
        if k == 0 || out[k - 1] != x {
            if k == most.min(BLOCK) {
                return None;
            }
            out[k] = x;
            k += 1;
        }
    }
    Some(k)
}

/// A frame of reference's figures for some values: whether a common divisor above 1 comes
/// out, and the residuals' width.
struct Shape {
    /// The least value, and the common divisor of the values' distances from it.
    lo: i64,
    g: u64,
    mult: bool,
    width: u8,
}

impl Shape {
    fn of(v: &[i64]) -> Shape {
        let lo = v.iter().copied().min().unwrap_or(0);
        let hi = v.iter().copied().max().unwrap_or(0);
        let g = gcd_of(v.iter().map(|&x| x.wrapping_sub(lo) as u64));
        let top = hi.wrapping_sub(lo) as u64;
        Shape {
            lo,
            g,
            mult: g > 1,
            width: bits_for(if g > 1 { top / g } else { top }),
        }
    }

    fn mult_word(&self) -> usize {
        usize::from(self.mult)
    }
}

/// How many distinct values `v` holds, or `None` when that is more than `most`.
fn distinct_at_most(v: &[i64], most: usize) -> Option<usize> {
    // Open addressing over twice the block's rows; the empty mark is a value of its own.
    const SLOTS: usize = 2 * BLOCK;
    const EMPTY: i64 = i64::MIN;
    let mut table = [EMPTY; SLOTS];
    let mut empty_seen = false;
    let mut k = 0;
    for &x in v {
        if x == EMPTY {
            if !empty_seen {
                empty_seen = true;
                k += 1;
            }
        } else {
            let mut i = ((x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55) as usize;
            loop {
                if table[i] == x {
                    break;
                }
                if table[i] == EMPTY {
                    table[i] = x;
                    k += 1;
                    break;
                }
                i = (i + 1) % SLOTS;
            }
        }
        if k > most {
            return None;
        }
    }
    Some(k)
}

/// The slope of the line through a block's first and last values, when a line applies
/// (three values or more, a slope other than 0 that fits).
fn line_step(v: &[i64]) -> Option<i64> {
    let n = v.len();
    if n < 3 {
        return None;
    }
    let step = (i128::from(v[n - 1]) - i128::from(v[0])) / (n as i128 - 1);
    i64::try_from(step).ok().filter(|&s| s != 0)
}

/// The width of [`line`]'s residuals, when a line applies.
fn line_width(v: &[i64]) -> Option<u8> {
    let step = line_step(v)?;
    let (mut lo, mut hi) = (i128::MAX, i128::MIN);
    for (j, &x) in v.iter().enumerate() {
        let d = i128::from(x) - i128::from(step) * j as i128;
        lo = lo.min(d);
        hi = hi.max(d);
    }
    u64::try_from(hi - lo).ok().map(bits_for)
}

/// The most common step between neighbours when it is a majority (Boyer–Moore vote) and not
/// 0, as [`stepped_runs`] takes it.
fn majority_step(v: &[i64]) -> Option<i64> {
    let (mut step, mut votes) = (0i64, 0usize);
    for w in v.windows(2) {
        let d = w[1].wrapping_sub(w[0]);
        if votes == 0 {
            step = d;
        }
        votes = if d == step { votes + 1 } else { votes - 1 };
    }
    (step != 0).then_some(step)
}

/// Builds every encoding and keeps the smallest: what [`plan`] computes, the slow way.
fn plan_by_building_all(v: &[i64]) -> Plan {
    let f = frame(v);
    let mut best = f;
    if best.width > 0 {
        for p in [line(v), dictionary(&best), runs(&best), stepped_runs(v)]
            .into_iter()
            .flatten()
        {
            if p.cost < best.cost {
                best = p;
            }
        }
    }
    best
}

fn write_block(p: &Plan, out: &mut Vec<u8>) {
    out.extend_from_slice(&[p.flags, p.width, p.dict_width, 0]);
    out.extend_from_slice(&(p.dict.len() as u32).to_le_bytes());
    out.extend_from_slice(&p.base.to_le_bytes());
    if p.flags & STEP != 0 {
        out.extend_from_slice(&p.step.to_le_bytes());
    }
    if p.flags & MULT != 0 {
        out.extend_from_slice(&p.mult.to_le_bytes());
    }
    if p.flags & (DICT | RUNS) != 0 {
        pack(p.dict.iter().copied(), p.dict_width, out);
    }
    pack(p.residuals.iter().copied(), p.width, out);
}

/// Rows buffered before their blocks are planned (in parallel).
const BATCH: usize = 256 << BLOCK_LOG2;

/// Blocked integers written as they come, row by row: only the encoded blocks and one batch
/// of rows are held, so a column of a billion rows is written in the memory of its encoding.
///
/// A missing row (`None`) is stored as the value before it (the block's first present
/// value for leading missing rows), so that it never widens its block; readers answer
/// missing from the column's validity bitmap.
#[derive(Debug, Default)]
pub struct Writer {
    pending: Vec<Option<i64>>,
    /// The last present value before `pending`.
    carry: Option<i64>,
    blocks: Vec<u8>,
    dir: Vec<u64>,
    len: usize,
    range: Option<(i64, i64)>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer {
            dir: vec![0],
            ..Writer::default()
        }
    }

    #[inline]
    pub fn push(&mut self, v: Option<i64>) {
        if let Some(x) = v {
            self.range = Some(self.range.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))));
        }
        self.pending.push(v);
        self.len += 1;
        if self.pending.len() == BATCH {
            self.flush();
        }
    }

    /// Plans and writes the pending rows' blocks (all of them: `pending` holds whole blocks,
    /// or the column's last rows).
    fn flush(&mut self) {
        let chunks: Vec<(&[Option<i64>], Option<i64>)> = {
            let mut carry = self.carry;
            self.pending
                .chunks(1 << BLOCK_LOG2)
                .map(|c| {
                    let before = carry;
                    if let Some(x) = c.iter().rev().flatten().next() {
                        carry = Some(*x);
                    }
                    (c, before)
                })
                .collect()
        };
        let encoded: Vec<Vec<u8>> = chunks
            .par_iter()
            .map(|&(c, before)| {
                let mut last = before.or_else(|| c.iter().flatten().next().copied());
                let values: Vec<i64> = c
                    .iter()
                    .map(|v| {
                        if v.is_some() {
                            last = *v;
                        }
                        last.unwrap_or(0)
                    })
                    .collect();
                let mut b = Vec::new();
                write_block(&plan(&values), &mut b);
                b
            })
            .collect();
        if let Some(x) = self.pending.iter().rev().flatten().next() {
            self.carry = Some(*x);
        }
        for b in encoded {
            self.blocks.extend_from_slice(&b);
            self.dir.push(self.blocks.len() as u64 / 8);
        }
        self.pending.clear();
    }

    /// Appends the blocked integers (8-byte aligned at both ends).
    pub fn finish(self, out: &mut Vec<u8>) {
        let blocks = self.finish_split(out);
        out.extend_from_slice(&blocks);
        pad8(out);
    }

    /// Appends the blocked integers' head and directory, and returns their blocks, the bytes
    /// that follow (a whole number of words): a caller writing a large column to a file
    /// writes the blocks from where they are rather than copying them.
    pub fn finish_split(mut self, out: &mut Vec<u8>) -> Vec<u8> {
        debug_assert!(out.len().is_multiple_of(8));
        self.flush();
        let (lo, hi) = self.range.unwrap_or((0, 0));
        if lo == hi {
            // Every value is `lo`: no blocks.
            self.blocks.clear();
            self.dir.truncate(1);
        }
        let dir_width = bits_for(self.dir.last().copied().unwrap_or(0));
        out.extend_from_slice(&[BLOCK_LOG2, dir_width, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(self.len as u64).to_le_bytes());
        out.extend_from_slice(&lo.to_le_bytes());
        out.extend_from_slice(&hi.to_le_bytes());
        out.extend_from_slice(&((self.dir.len() - 1) as u64).to_le_bytes());
        pack(self.dir.iter().copied(), dir_width, out);
        pad8(out);
        std::mem::take(&mut self.blocks)
    }
}

/// Blocked integers read in place.
#[derive(Debug, Clone, Copy)]
pub struct Blocked<'a> {
    log2: u32,
    len: usize,
    min: i64,
    max: i64,
    dir: Packed<'a>,
    blocks: &'a [u8],
}

impl<'a> Blocked<'a> {
    /// Parses blocked integers of `len` values at the start of `b`; returns them and the
    /// bytes that follow. `None` when the header does not fit or disagrees with `len`.
    pub fn parse(b: &'a [u8], len: usize) -> Option<(Blocked<'a>, &'a [u8])> {
        let log2 = u32::from(*b.first()?);
        let dir_width = *b.get(1)?;
        if !(1..=20).contains(&log2) || le_u64(b, 8)? != len as u64 {
            return None;
        }
        let min = le_u64(b, 16)? as i64;
        let max = le_u64(b, 24)? as i64;
        let blocks = usize::try_from(le_u64(b, 32)?).ok()?;
        let constant = min == max;
        if blocks != if constant { 0 } else { len.div_ceil(1 << log2) } {
            return None;
        }
        let (dir, rest) = Packed::parse(b.get(40..)?, blocks.checked_add(1)?, dir_width)?;
        let total = usize::try_from(dir.get(blocks)).ok()?.checked_mul(8)?;
        let data = rest.get(..total)?;
        Some((
            Blocked {
                log2,
                len,
                min,
                max,
                dir,
                blocks: data,
            },
            &rest[total..],
        ))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The least and the greatest value.
    pub fn range(&self) -> (i64, i64) {
        (self.min, self.max)
    }

    /// Value `i` (0 past the end or in a block that does not fit).
    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        if i >= self.len {
            return 0;
        }
        if self.min == self.max {
            return self.min;
        }
        let b = i >> self.log2;
        let j = i & ((1usize << self.log2) - 1);
        let n = (self.len - (b << self.log2)).min(1 << self.log2);
        self.in_block(b, j, n).unwrap_or(0)
    }

    /// Values `start..start + out.len()` into `out`, a block at a time (each block's head
    /// parsed once): the scan that aggregates read. Values past the end, or in a block that
    /// does not fit, read as 0, as [`Blocked::get`] reads them.
    pub fn decode(&self, start: usize, out: &mut [i64]) {
        if self.min == self.max {
            let n = self.len.saturating_sub(start).min(out.len());
            out[..n].fill(self.min);
            out[n..].fill(0);
            return;
        }
        let size = 1usize << self.log2;
        let mut i = 0;
        while i < out.len() {
            let row = start + i;
            if row >= self.len {
                out[i..].fill(0);
                return;
            }
            let b = row >> self.log2;
            let j = row & (size - 1);
            let n = (self.len - (b << self.log2)).min(size);
            let take = (n - j).min(out.len() - i);
            let dst = &mut out[i..i + take];
            match self.block(b) {
                Some((blk, view)) => view.decode(blk, j, n, dst),
                None => dst.fill(0),
            }
            i += take;
        }
    }

    #[inline]
    fn in_block(&self, b: usize, j: usize, n: usize) -> Option<i64> {
        let (blk, view) = self.block(b)?;
        Some(view.value(blk, j, n))
    }

    /// Block `b`'s bytes (to the end of the blocks) and its parsed head.
    #[inline]
    fn block(&self, b: usize) -> Option<(&'a [u8], BlockView)> {
        let start = usize::try_from(self.dir.get(b)).ok()?.checked_mul(8)?;
        let blk = self.blocks.get(start..)?;
        Some((blk, BlockView::parse(blk)?))
    }
}

/// A block's head: how its values are found.
#[derive(Debug, Clone, Copy)]
struct BlockView {
    flags: u8,
    width: u32,
    dict_width: u32,
    k: usize,
    base: i64,
    step: i64,
    mult: u64,
    /// Where the table (DICT, RUNS) or the residuals begin.
    at: usize,
    /// Where the codes begin after a table.
    codes: usize,
}

impl BlockView {
    #[inline]
    fn parse(blk: &[u8]) -> Option<BlockView> {
        let head = word_at(blk, 0);
        let flags = head as u8;
        let dict_width = u32::from((head >> 16) as u8);
        let k = (head >> 32) as usize;
        let mut v = BlockView {
            flags,
            width: u32::from((head >> 8) as u8),
            dict_width,
            k,
            base: word_at(blk, 8) as i64,
            step: 0,
            mult: 1,
            at: 16,
            codes: 16,
        };
        if flags & STEP != 0 {
            v.step = word_at(blk, v.at) as i64;
            v.at += 8;
        }
        if flags & MULT != 0 {
            v.mult = word_at(blk, v.at);
            v.at += 8;
        }
        v.codes = v.at;
        if flags & (DICT | RUNS) != 0 {
            v.codes =
                v.at.checked_add(k.checked_mul(dict_width as usize)?.div_ceil(64) * 8)?;
        }
        Some(v)
    }

    /// Values `j..j + out.len()` of the block of `n` rows whose bytes begin `blk`.
    fn decode(&self, blk: &[u8], j: usize, n: usize, out: &mut [i64]) {
        let (base, step, mult) = (self.base, self.step, self.mult);
        let at = |row: usize, x: u64| {
            base.wrapping_add(step.wrapping_mul(row as i64))
                .wrapping_add(mult.wrapping_mul(x) as i64)
        };
        let mut x = [0u64; 256];
        if self.flags & (DICT | RUNS) == 0 {
            // Frame of reference or a line: residuals straight from the packed words.
            for (c, chunk) in out.chunks_mut(x.len()).enumerate() {
                let first = j + c * x.len();
                let x = &mut x[..chunk.len()];
                unpack(blk, self.at, first, self.width, x);
                for (k, (o, r)) in chunk.iter_mut().zip(x.iter()).enumerate() {
                    *o = at(first + k, *r);
                }
            }
        } else if self.flags & RUNS != 0 && self.runs_ascend(blk) {
            // Walk the runs that overlap the rows, filling each one's rows.
            let start = |i: usize| bits_at(blk, self.codes, i, self.width) as usize;
            let end = j + out.len();
            // The last run starting at or before `j`.
            let mut i = (1..self.k)
                .take_while(|&i| start(i) <= j)
                .last()
                .unwrap_or(0);
            let mut row = j;
            while row < end {
                let next = if i + 1 < self.k {
                    start(i + 1).min(end)
                } else {
                    end
                };
                let x = bits_at(blk, self.at, i, self.dict_width);
                for r in row..next {
                    out[r - j] = at(r, x);
                }
                row = next;
                i += 1;
            }
        } else if self.flags & RUNS == 0 && self.k <= 1 << 12 {
            // A dictionary: codes unpacked, each looked up (codes past the table read as
            // `value` reads them).
            let mut table = [0u64; 1 << 12];
            for (i, t) in table.iter_mut().enumerate().take(self.k) {
                *t = bits_at(blk, self.at, i, self.dict_width);
            }
            let table = &table[..self.k];
            for (c, chunk) in out.chunks_mut(x.len()).enumerate() {
                let first = j + c * x.len();
                let x = &mut x[..chunk.len()];
                unpack(blk, self.codes, first, self.width, x);
                for (k, (o, code)) in chunk.iter_mut().zip(x.iter()).enumerate() {
                    let row = first + k;
                    *o = match table.get(*code as usize) {
                        Some(&t) if row < n => at(row, t),
                        _ => self.value(blk, row, n),
                    };
                }
            }
        } else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = self.value(blk, j + k, n);
            }
        }
    }

    /// Whether a RUNS block's run starts ascend from 0, so that walking them reads what the
    /// binary search of [`BlockView::value`] reads.
    fn runs_ascend(&self, blk: &[u8]) -> bool {
        let start = |i: usize| bits_at(blk, self.codes, i, self.width);
        self.k > 0 && start(0) == 0 && (1..self.k).all(|i| start(i) > start(i - 1))
    }

    /// Value `j` of the block of `n` rows whose bytes begin `blk`.
    #[inline]
    fn value(&self, blk: &[u8], j: usize, n: usize) -> i64 {
        if self.flags == 0 {
            // Frame of reference: the common case, kept short.
            return self
                .base
                .wrapping_add(bits_at(blk, self.at, j, self.width) as i64);
        }
        let x = if self.flags & (DICT | RUNS) == 0 {
            bits_at(blk, self.at, j, self.width)
        } else {
            let i = if self.flags & RUNS != 0 {
                // The last run starting at or before `j`.
                let (mut lo, mut hi) = (0usize, self.k);
                while hi - lo > 1 {
                    let mid = (lo + hi) / 2;
                    if bits_at(blk, self.codes, mid, self.width) <= j as u64 {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                lo
            } else {
                bits_at(blk, self.codes, j.min(n), self.width) as usize
            };
            bits_at(blk, self.at, i, self.dict_width)
        };
        self.base
            .wrapping_add(self.step.wrapping_mul(j as i64))
            .wrapping_add(self.mult.wrapping_mul(x) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(values: impl IntoIterator<Item = Option<i64>>, out: &mut Vec<u8>) {
        let mut w = Writer::new();
        values.into_iter().for_each(|v| w.push(v));
        w.finish(out);
    }

    fn round_trip(v: &[i64]) -> usize {
        let mut b = Vec::new();
        encode(v.iter().map(|&x| Some(x)), &mut b);
        assert_eq!(b.len() % 8, 0);
        b.extend_from_slice(&[7u8; 8]);
        let (c, rest) = Blocked::parse(&b, v.len()).unwrap();
        assert_eq!(rest, &[7u8; 8]);
        for (i, &x) in v.iter().enumerate() {
            assert_eq!(c.get(i), x, "value {i} of {}", v.len());
        }
        // Decoded in slices that start and end anywhere, past the end included.
        for (start, len) in [(0, v.len()), (1, 300), (255, 258), (v.len() / 3, 1000)] {
            let mut out = vec![-1; len];
            c.decode(start, &mut out);
            for (k, got) in out.iter().enumerate() {
                assert_eq!(*got, v.get(start + k).copied().unwrap_or(0), "{start}+{k}");
            }
        }
        b.len() - 8
    }

    /// Shapes the encoder has a plan for, and noise.
    fn shaped() -> impl Strategy<Value = Vec<i64>> {
        let piece = prop_oneof![
            (any::<i64>(), 1usize..400).prop_map(|(x, n)| vec![x; n]),
            (-1000i64..1000, -50i64..50, 1usize..600)
                .prop_map(|(x, s, n)| (0..n as i64).map(|j| x + s * j).collect()),
            (proptest::collection::vec(-3i64..3, 1..5), 1usize..500)
                .prop_map(|(d, n)| (0..n).map(|j| d[j % d.len()] * 100).collect()),
            proptest::collection::vec(any::<i64>(), 1..300),
            proptest::collection::vec(prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0)], 1..300),
            // Sequences restarting at random points, steps of any size.
            (
                any::<i64>(),
                any::<i64>(),
                proptest::collection::vec(1usize..80, 1..8)
            )
                .prop_map(|(x, s, cuts)| cuts
                    .iter()
                    .enumerate()
                    .flat_map(|(k, &n)| (0..n as i64).map(move |j| x
                        .wrapping_add((k as i64).wrapping_mul(7_919))
                        .wrapping_add(s.wrapping_mul(j))))
                    .collect()),
        ];
        proptest::collection::vec(piece, 0..5).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn every_shape_round_trips(v in shaped()) {
            round_trip(&v);
        }

        /// The plan chosen from costs worked out is the one chosen by building them all,
        /// byte for byte (ties and all).
        #[test]
        fn the_costed_plan_is_the_one_built(v in shaped(), skip in 0usize..256) {
            for block in v[skip.min(v.len())..].chunks(BLOCK) {
                let (mut costed, mut built) = (Vec::new(), Vec::new());
                write_block(&plan(block), &mut costed);
                write_block(&plan_by_building_all(block), &mut built);
                prop_assert_eq!(costed, built, "{:?}", block);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            b in proptest::collection::vec(any::<u8>(), 0..400),
            len in 0usize..2000,
            i in 0usize..2000,
        ) {
            if let Some((c, _)) = Blocked::parse(&b, len) {
                let _ = (c.get(i), c.range());
                let mut out = vec![0; 600];
                c.decode(i, &mut out);
                // The slice reads what value by value reads.
                for (k, x) in out.iter().enumerate() {
                    prop_assert_eq!(*x, c.get(i + k));
                }
            }
        }
    }

    #[test]
    fn a_long_column_with_missing_rows_streams_through_batches() {
        let n = BATCH * 2 + 1_000;
        let v: Vec<Option<i64>> = (0..n as i64)
            .map(|i| (i % 97 != 0).then_some((i / 300) * 1_000 + i % 7))
            .collect();
        let mut b = Vec::new();
        encode(v.iter().copied(), &mut b);
        let (c, _) = Blocked::parse(&b, n).unwrap();
        for (i, x) in v.iter().enumerate() {
            if let Some(x) = x {
                assert_eq!(c.get(i), *x, "row {i}");
            }
        }
        // Missing rows repeat a neighbour: the blocks stay as narrow as without them.
        let mut full = Vec::new();
        encode(
            (0..n as i64).map(|i| Some((i / 300) * 1_000 + i % 7)),
            &mut full,
        );
        assert!(
            b.len() <= full.len() * 21 / 20,
            "{} vs {}",
            b.len(),
            full.len()
        );
    }

    #[test]
    fn shapes_cost_what_they_should() {
        // Sequence numbers restarting per entity: a line per block, width 0 between restarts.
        let seq: Vec<i64> = (0..100_000).map(|i| i % 5_000 + 1).collect();
        assert!(round_trip(&seq) < 100_000 / 5, "{}", round_trip(&seq));
        // One value per run of 300 rows: mostly width-0 blocks.
        let runs: Vec<i64> = (0..100_000).map(|i| (i / 300) * 7_919).collect();
        assert!(round_trip(&runs) < 100_000 / 5, "{}", round_trip(&runs));
        // Whole yuan in fen: the common divisor comes out.
        let yuan: Vec<i64> = (0..4096).map(|i| (i * 7_919 % 5_000) * 100).collect();
        assert!(
            round_trip(&yuan) <= 4096 * 13 / 8 + 16 * 24 + 64,
            "{}",
            round_trip(&yuan)
        );
        // Five amounts repeated: a dictionary of five, three bits a row.
        let five: Vec<i64> = (0..4096)
            .map(|i| [89_760, 3_927, 2_244, 44_880, 11_220][i % 5])
            .collect();
        assert!(round_trip(&five) <= 4096 * 3 / 8 + 16 * 40 + 64);
        // Months restarting per entity (36 each) and invoice numbers per enterprise (a run
        // of 1,150): runs along a line of step 1, a few words per block.
        let months: Vec<i64> = (0..36_000)
            .map(|i| 600 + (i / 36 * 7) % 11 + i % 36)
            .collect();
        assert!(round_trip(&months) < 36_000 / 4, "{}", round_trip(&months));
        let invoices: Vec<i64> = (0..100_000)
            .map(|i| (i / 1_150) * 100_000 + i % 1_150 + 1)
            .collect();
        // (A width-0 line is three words a block: 0.09 bytes a row.)
        assert!(
            round_trip(&invoices) < 100_000 / 6,
            "{}",
            round_trip(&invoices)
        );
        // All equal: no blocks at all.
        assert_eq!(round_trip(&vec![42; 10_000]), 40);
    }
}
