//! Roaring bitmaps as dense words over a span of ids, and back.
//!
//! A policy's condition sets are dense where the subject universe is (most persons are
//! alive, registered here, of some age band). Combining them into candidates, to-verify and
//! near-miss sets one roaring operation at a time builds an intermediate set per step;
//! combining them a 64-bit word at a time, all conditions at once, reads each condition's
//! words once and builds nothing in between (DESIGN.md §3.6: block by block over the id
//! space, without intermediates). The engine keeps a condition's words with its sets, so they
//! are read from roaring once, when the condition is first combined.
//!
//! A [`Span`] covers whole roaring containers (65,536 ids, 1,024 words), so that a container
//! maps onto one aligned block of words. Bitmaps are read through their portable
//! serialization (the RoaringFormatSpec layout, which `roaring` writes): a bitmap container
//! is copied, an array or run container is scattered into its block.

use std::sync::Arc;

use rayon::prelude::*;
use roaring::RoaringBitmap;

/// Words per roaring container.
pub const BLOCK: usize = 1024;

/// Whole containers `[first, first + count)` of the 32-bit id space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: u32,
    pub count: usize,
}

impl Span {
    /// The containers from `set`'s least to its greatest id (none when it is empty).
    pub fn of(set: &RoaringBitmap) -> Span {
        match (set.min(), set.max()) {
            (Some(lo), Some(hi)) => Span {
                first: lo >> 16,
                count: ((hi >> 16) - (lo >> 16)) as usize + 1,
            },
            _ => Span { first: 0, count: 0 },
        }
    }

    /// Words the span holds.
    pub fn words(&self) -> usize {
        self.count * BLOCK
    }
}

/// The words of `set` within `span` (bit `i` of word `w` is id `first · 65536 + 64 w + i`);
/// ids outside the span are left out.
pub fn words(set: &RoaringBitmap, span: Span) -> Vec<u64> {
    let mut out = vec![0u64; span.words()];
    if set.is_empty() || span.count == 0 {
        return out;
    }
    let mut bytes = Vec::with_capacity(set.serialized_size());
    let parsed = set.serialize_into(&mut bytes).is_ok() && scatter(&bytes, span, &mut out);
    if !parsed {
        // Not the layout this module reads (a future `roaring`): one id at a time.
        out.iter_mut().for_each(|w| *w = 0);
        let lo = span.first << 16;
        for id in set.range(lo..) {
            let i = ((id - lo) / 64) as usize;
            match out.get_mut(i) {
                Some(w) => *w |= 1 << (id % 64),
                None => break,
            }
        }
    }
    out
}

/// The set whose words within `span` are `words`.
///
/// A container of at most 4,096 ids (an array container) has its ids read out here, into
/// the portable serialization roaring reads back (`array_container`); a denser one is copied
/// as a bitmap container.
pub fn bitmap(words: &[u64], span: Span) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    for (b, block) in words.as_chunks::<BLOCK>().0.iter().enumerate() {
        let n: usize = block.iter().map(|w| w.count_ones() as usize).sum();
        if n > 0 {
            out |= block_set(block, span.first + b as u32, n);
        }
    }
    out
}

/// The ids of `block` (container `key`, `n` ids) as a set of one container: an array
/// container when there are few, else a bitmap container.
pub fn block_set(block: &[u64; BLOCK], key: u32, n: usize) -> RoaringBitmap {
    match n {
        0 => RoaringBitmap::new(),
        1..=ARRAY_MAX => array_container(block, key, n),
        _ => bitmap_container(block, key),
    }
}

/// Block `block` of container `key`, dense, as a bitmap container.
fn bitmap_container(block: &[u64; BLOCK], key: u32) -> RoaringBitmap {
    if cfg!(target_endian = "little") {
        // The words' bytes in memory are their little-endian bytes.
        RoaringBitmap::from_lsb0_bytes(key << 16, bytemuck::cast_slice(block))
    } else {
        let bytes: Vec<u8> = block.iter().flat_map(|w| w.to_le_bytes()).collect();
        RoaringBitmap::from_lsb0_bytes(key << 16, &bytes)
    }
}

/// Block `block` of container `key`, holding `n` ids (1 to [`ARRAY_MAX`]), as an array
/// container: its ids read out into the portable serialization of a one-container bitmap
/// (cookie, container count, key and cardinality, offset, the ids), which roaring reads back
/// as it stands.
///
/// roaring's own reading of words (`from_lsb0_bytes`) loops over each word's bits: a sparse
/// block mispredicts a branch at nearly every word. Here each word writes its first `K` ids
/// whether it has them or not (the next word overwrites the slots it did not fill), and only
/// a word with more than `K` loops, with `K` chosen from the block's density so that such
/// words are rare: two to three times faster on blocks of 0.5-6% of ids.
fn array_container(block: &[u64; BLOCK], key: u32, n: usize) -> RoaringBitmap {
    // Spans are of 32-bit ids: a container's key is 16 bits.
    let Ok(key16) = u16::try_from(key) else {
        return bitmap_container(block, key);
    };
    let mut ids = [0u16; ARRAY_MAX + 64];
    let written = match n {
        0..=512 => read_ids::<1>(block, &mut ids),
        513..=1536 => read_ids::<2>(block, &mut ids),
        1537..=3072 => read_ids::<4>(block, &mut ids),
        _ => read_ids::<8>(block, &mut ids),
    };
    let ids = &ids[..written.min(ARRAY_MAX)];
    let mut bytes = Vec::with_capacity(16 + 2 * ids.len());
    bytes.extend_from_slice(&NO_RUNS.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&key16.to_le_bytes());
    bytes.extend_from_slice(&((ids.len().max(1) - 1) as u16).to_le_bytes());
    bytes.extend_from_slice(&16u32.to_le_bytes());
    if cfg!(target_endian = "little") {
        // The ids' bytes in memory are their little-endian bytes.
        bytes.extend_from_slice(bytemuck::cast_slice(ids));
    } else {
        ids.iter()
            .for_each(|id| bytes.extend_from_slice(&id.to_le_bytes()));
    }
    RoaringBitmap::deserialize_unchecked_from(&bytes[..])
        .unwrap_or_else(|_| bitmap_container(block, key))
}

/// The offsets of `block`'s ids into `out`, ascending; returns how many. Each word writes
/// `K` slots unconditionally (slots past its ids are overwritten by the next word's).
fn read_ids<const K: usize>(block: &[u64; BLOCK], out: &mut [u16; ARRAY_MAX + 64]) -> usize {
    let mut pos = 0usize;
    for (i, &word) in block.iter().enumerate() {
        let mut w = word;
        let base = (i * 64) as u16;
        let at = pos.min(ARRAY_MAX);
        for k in 0..K {
            out[at + k] = base.wrapping_add(w.trailing_zeros() as u16);
            w &= w.wrapping_sub(1);
        }
        let mut k = at + K;
        while w != 0 && k < out.len() {
            out[k] = base + w.trailing_zeros() as u16;
            w &= w - 1;
            k += 1;
        }
        pos += word.count_ones() as usize;
    }
    pos
}

/// A set's part in one block, read within the universe's part there, in the form that
/// costs least to read while combining: a condition TRUE for nearly everyone (alive, a local
/// hukou) is the few ids it leaves out, a rare one (aged 80 or more, 特困) the few it holds;
/// only a part in between is read as the block's 1,024 words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// None of the universe's ids.
    None,
    /// All of the universe's ids.
    All,
    /// These ids (offsets in the block), ascending.
    Ids(Box<[u16]>),
    /// All of the universe's ids but these (offsets in the block), ascending.
    AllBut(Box<[u16]>),
    /// The block's words (no bit outside the universe's). Shared: a condition's TRUE and
    /// not-FALSE parts are often the same block (nothing UNKNOWN there).
    Words(Arc<[u64; BLOCK]>),
}

/// A part lists its ids (or those it leaves out) when they are at most this many: a quarter
/// of the bytes of the block's words.
const LISTED_MAX: u32 = 1024;

impl Part {
    /// The part of the block `set` within the universe's block `x`, and how many ids it
    /// holds.
    pub fn of(set: &[u64; BLOCK], x: &[u64; BLOCK]) -> (Part, u32) {
        let (mut n, mut m) = (0, 0);
        for i in 0..BLOCK {
            n += (set[i] & x[i]).count_ones();
            m += x[i].count_ones();
        }
        let part = if n == 0 {
            Part::None
        } else if n == m {
            Part::All
        } else if n <= LISTED_MAX {
            Part::Ids(offsets(|i| set[i] & x[i]))
        } else if m - n <= LISTED_MAX {
            Part::AllBut(offsets(|i| x[i] & !set[i]))
        } else {
            let mut w = [0u64; BLOCK];
            for i in 0..BLOCK {
                w[i] = set[i] & x[i];
            }
            Part::Words(Arc::new(w))
        };
        (part, n)
    }

    /// Whether the part holds offset `o`, an id of the universe's block.
    pub fn holds(&self, o: u16) -> bool {
        match self {
            Part::None => false,
            Part::All => true,
            Part::Ids(ids) => ids.binary_search(&o).is_ok(),
            Part::AllBut(left) => left.binary_search(&o).is_err(),
            Part::Words(w) => {
                let (i, m) = bit(o);
                w[i] & m != 0
            }
        }
    }

    /// Heap bytes the part takes.
    pub fn bytes(&self) -> usize {
        match self {
            Part::None | Part::All => 0,
            Part::Ids(ids) | Part::AllBut(ids) => 2 * ids.len(),
            Part::Words(_) => 8 * BLOCK,
        }
    }
}

/// The words a part stands for, within the universe's words `x`.
pub fn part_words(part: &Part, x: &[u64; BLOCK]) -> [u64; BLOCK] {
    let mut out = [0u64; BLOCK];
    match part {
        Part::None => {}
        Part::All => out = *x,
        Part::Ids(ids) => ids.iter().for_each(|&o| {
            let (i, m) = bit(o);
            out[i] |= m;
        }),
        Part::AllBut(left) => all_but_into(&mut out, x, left),
        Part::Words(w) => out = **w,
    }
    out
}

/// The word and bit of offset `o` in a block.
pub fn bit(o: u16) -> (usize, u64) {
    (usize::from(o / 64), 1 << (o % 64))
}

/// `out` becomes the block `x` without the ids `left` (offsets in the block).
pub fn all_but_into(out: &mut [u64; BLOCK], x: &[u64; BLOCK], left: &[u16]) {
    *out = *x;
    for &o in left {
        let (i, m) = bit(o);
        out[i] &= !m;
    }
}

/// Calls `f` with the offset of each bit set in the block `words`, ascending.
#[inline]
pub fn for_each_offset(words: &[u64; BLOCK], mut f: impl FnMut(u16)) {
    for (i, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            f((i * 64) as u16 + w.trailing_zeros() as u16);
            w &= w - 1;
        }
    }
}

/// The offsets of the bits set in `word(0) … word(BLOCK - 1)`, ascending.
fn offsets(word: impl Fn(usize) -> u64) -> Box<[u16]> {
    let mut out = Vec::new();
    for i in 0..BLOCK {
        let mut w = word(i);
        while w != 0 {
            out.push((i * 64) as u16 + w.trailing_zeros() as u16);
            w &= w - 1;
        }
    }
    out.into_boxed_slice()
}

/// A set within a universe, over the universe's span: a [`Part`] per block and how many
/// ids each holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub parts: Vec<Part>,
    pub counts: Vec<u32>,
}

impl Parts {
    /// The parts of `set` (words over a span) within `universe` (words over the same span).
    /// The blocks are read in parallel.
    pub fn of(set: &[u64], universe: &[u64]) -> Parts {
        let (parts, counts) = set
            .as_chunks::<BLOCK>()
            .0
            .par_iter()
            .zip(universe.as_chunks::<BLOCK>().0)
            .map(|(s, x)| Part::of(s, x))
            .unzip();
        Parts { parts, counts }
    }

    /// Heap bytes the parts take.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(Part::bytes).sum::<usize>()
            + self.parts.len() * std::mem::size_of::<Part>()
            + 4 * self.counts.len()
    }

    /// These parts (of `set`'s words) with the ids of `more` (words over the same span)
    /// added, within `universe`: where `more` adds nothing to a block, its part is this one's
    /// (its words shared).
    pub fn with(&self, more: &[u64], universe: &[u64]) -> Parts {
        let (parts, counts) = more
            .as_chunks::<BLOCK>()
            .0
            .par_iter()
            .zip(universe.as_chunks::<BLOCK>().0)
            .enumerate()
            .map(|(b, (more, x))| {
                let part = &self.parts[b];
                if more.iter().zip(x).all(|(m, x)| m & x == 0) {
                    return (part.clone(), self.counts[b]);
                }
                let mut w = part_words(part, x);
                w.iter_mut().zip(more).for_each(|(w, m)| *w |= m);
                Part::of(&w, x)
            })
            .unzip();
        Parts { parts, counts }
    }

    /// Heap bytes the parts take beyond the words they share with `other`'s (a condition's
    /// not-FALSE parts beside its TRUE parts).
    pub fn bytes_beside(&self, other: &Parts) -> usize {
        let shared: usize = self
            .parts
            .iter()
            .zip(&other.parts)
            .filter(
                |(a, b)| matches!((a, b), (Part::Words(a), Part::Words(b)) if Arc::ptr_eq(a, b)),
            )
            .count();
        self.bytes() - shared * 8 * BLOCK
    }
}

/// Cookies of the portable format: without run containers, and with (in its low half).
const NO_RUNS: u32 = 12346;
const WITH_RUNS: u16 = 12347;
/// Containers of at most this many values are arrays; more, bitmaps.
const ARRAY_MAX: usize = 4096;

/// Scatters a serialized bitmap into `out` (all zero); false when `bytes` is not the layout
/// expected.
fn scatter(bytes: &[u8], span: Span, out: &mut [u64]) -> bool {
    let u16_at = |i: usize| -> Option<usize> {
        Some(u16::from_le_bytes(bytes.get(i..i + 2)?.try_into().ok()?) as usize)
    };
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    let parse = |out: &mut [u64]| -> Option<()> {
        let cookie = u32_at(0)?;
        let (size, runs, header) = if cookie as u16 == WITH_RUNS {
            let size = (cookie >> 16) as usize + 1;
            let flags = bytes.get(4..4 + size.div_ceil(8))?;
            (size, Some(flags), 4 + size.div_ceil(8))
        } else if cookie == NO_RUNS {
            (u32_at(4)? as usize, None, 8)
        } else {
            return None;
        };
        // Keys and cardinalities, then offsets (always without runs; with them, from four
        // containers on), then the containers in order.
        let mut pos = header + 4 * size;
        if runs.is_none() || size >= 4 {
            pos += 4 * size;
        }
        for c in 0..size {
            let key = u16_at(header + 4 * c)? as u32;
            let card = u16_at(header + 4 * c + 2)? + 1;
            let is_run = runs.is_some_and(|f| f[c / 8] & (1 << (c % 8)) != 0);
            let block = key
                .checked_sub(span.first)
                .map(|k| k as usize)
                .filter(|&k| k < span.count)
                .map(|k| k * BLOCK);
            if is_run {
                let n = u16_at(pos)?;
                for r in 0..n {
                    let start = u16_at(pos + 2 + 4 * r)?;
                    let len = u16_at(pos + 4 + 4 * r)?;
                    if let Some(b) = block {
                        set_range(&mut out[b..b + BLOCK], start, start + len);
                    }
                }
                pos += 2 + 4 * n;
            } else if card > ARRAY_MAX {
                let src = bytes.get(pos..pos + 8 * BLOCK)?;
                if let Some(b) = block {
                    for (w, chunk) in out[b..b + BLOCK].iter_mut().zip(src.chunks_exact(8)) {
                        *w = u64::from_le_bytes(chunk.try_into().ok()?);
                    }
                }
                pos += 8 * BLOCK;
            } else {
                let src = bytes.get(pos..pos + 2 * card)?;
                if let Some(b) = block {
                    let words = &mut out[b..b + BLOCK];
                    for v in src.chunks_exact(2) {
                        let v = u16::from_le_bytes([v[0], v[1]]) as usize;
                        words[v / 64] |= 1 << (v % 64);
                    }
                }
                pos += 2 * card;
            }
        }
        Some(())
    };
    parse(out).is_some()
}

/// Sets bits `start..=end` of one block.
fn set_range(words: &mut [u64], start: usize, end: usize) {
    let end = end.min(BLOCK * 64 - 1);
    for (i, w) in words
        .iter_mut()
        .enumerate()
        .take(end / 64 + 1)
        .skip(start / 64)
    {
        let lo = if i == start / 64 { start % 64 } else { 0 };
        let hi = if i == end / 64 { end % 64 } else { 63 };
        *w |= (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_words_are_counted_once() {
        // Two blocks of a full universe: half of the first, a few ids of the second.
        let x = vec![u64::MAX; 2 * BLOCK];
        let mut set = vec![0u64; 2 * BLOCK];
        set[..BLOCK / 2].fill(u64::MAX);
        set[BLOCK] = 0b101;
        let t = Parts::of(&set, &x);
        assert!(matches!(t.parts[0], Part::Words(_)));
        assert!(matches!(t.parts[1], Part::Ids(_)));
        let shared = t.clone();
        assert_eq!(shared.bytes_beside(&t), t.bytes() - 8 * BLOCK);
        let copied = Parts::of(&set, &x);
        assert_eq!(copied, t);
        assert_eq!(copied.bytes_beside(&t), t.bytes());
    }

    fn naive(set: &RoaringBitmap, span: Span) -> Vec<u64> {
        let mut out = vec![0u64; span.words()];
        let lo = u64::from(span.first) << 16;
        for id in set {
            let d = u64::from(id).wrapping_sub(lo);
            if u64::from(id) >= lo && (d / 64) < out.len() as u64 {
                out[(d / 64) as usize] |= 1 << (d % 64);
            }
        }
        out
    }

    #[test]
    fn parts_take_the_form_that_reads_least() {
        // The universe: the first 3,000 ids of block 0 and all of block 1.
        let x: RoaringBitmap = (0..3000).chain(65_536..131_072).collect();
        let span = Span { first: 0, count: 2 };
        let xw = words(&x, span);
        let form = |set: RoaringBitmap| {
            let p = Parts::of(&words(&set, span), &xw);
            p.parts
                .iter()
                .zip(&p.counts)
                .map(|(p, &n)| {
                    let name = match p {
                        Part::None => "none",
                        Part::All => "all",
                        Part::Ids(_) => "ids",
                        Part::AllBut(_) => "all but",
                        Part::Words(_) => "words",
                    };
                    (name, n)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(form(RoaringBitmap::new()), [("none", 0), ("none", 0)]);
        // Ids outside the universe do not count.
        assert_eq!(form((3000..6000).collect()), [("none", 0), ("none", 0)]);
        assert_eq!(form(x.clone()), [("all", 3000), ("all", 65_536)]);
        assert_eq!(
            form((0..10).chain(65_536..65_546).collect()),
            [("ids", 10), ("ids", 10)]
        );
        assert_eq!(
            form((5..3000).chain(65_536 + 1024..131_072).collect()),
            [("all but", 2995), ("all but", 64_512)]
        );
        assert_eq!(
            form((0..1500).chain(65_536..100_000).collect()),
            [("words", 1500), ("words", 34_464)]
        );
    }

    proptest::proptest! {
        /// Array, bitmap and run containers, at and across container edges, read as the
        /// ids one at a time say, and written back to the same set.
        #[test]
        fn words_agree_with_the_ids(
            ids in proptest::collection::vec(0u32..400_000, 0..3000),
            ranges in proptest::collection::vec((0u32..400_000, 0u32..70_000), 0..4),
            dense_block in proptest::option::of(0u32..6),
            optimize in proptest::bool::ANY,
            first in 0u32..3,
        ) {
            let mut set: RoaringBitmap = ids.into_iter().collect();
            for (s, len) in ranges {
                set.insert_range(s..s.saturating_add(len));
            }
            if let Some(b) = dense_block {
                // More than 4,096 values in one container: a bitmap container.
                set.extend((b << 16..(b << 16) + 65_536).step_by(3));
            }
            if optimize {
                set.optimize();
            }
            let span = Span { first, count: 5 };
            let w = words(&set, span);
            proptest::prop_assert_eq!(&w, &naive(&set, span));
            let lo = first << 16;
            let within: RoaringBitmap = set.range(lo..lo + 5 * 65_536).collect();
            proptest::prop_assert_eq!(bitmap(&w, span), within);
        }

        /// A block read into a roaring set at any density (each of the array readers' `K`,
        /// and a bitmap container past 4,096 ids) holds exactly the block's ids.
        #[test]
        fn a_block_reads_into_its_ids(
            per_mille in 0u32..120,
            seed in proptest::num::u64::ANY,
            key in proptest::prop_oneof![0u32..4, 65_530u32..65_536],
        ) {
            let mut x = seed | 1;
            let mut block = [0u64; BLOCK];
            let mut want = RoaringBitmap::new();
            for i in 0..65_536u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if (x % 1000) < u64::from(per_mille) {
                    block[i as usize / 64] |= 1 << (i % 64);
                    want.insert((key << 16) + i);
                }
            }
            let got = bitmap(&block, Span { first: key, count: 1 });
            proptest::prop_assert_eq!(got, want);
        }

        /// A set's parts within a universe stand for the set's words within the universe's,
        /// and count them.
        #[test]
        fn parts_stand_for_the_words_within_the_universe(
            universe in proptest::collection::vec((0u32..200_000, 0u32..70_000), 0..4),
            ids in proptest::collection::vec(0u32..200_000, 0..3000),
            drop in proptest::collection::vec(0u32..200_000, 0..3000),
            ranges in proptest::collection::vec((0u32..200_000, 0u32..70_000), 0..3),
        ) {
            let mut x = RoaringBitmap::new();
            for (s, len) in universe {
                x.insert_range(s..s + len);
            }
            let mut set: RoaringBitmap = ids.into_iter().collect();
            for (s, len) in ranges {
                set.insert_range(s..s + len);
            }
            for d in drop {
                set.remove(d);
            }
            let span = Span { first: 0, count: 4 };
            let (xw, sw) = (words(&x, span), words(&set, span));
            let parts = Parts::of(&sw, &xw);
            for (b, (part, &n)) in parts.parts.iter().zip(&parts.counts).enumerate() {
                let xb: &[u64; BLOCK] = &xw.as_chunks().0[b];
                let want: Vec<u64> = sw[b * BLOCK..(b + 1) * BLOCK]
                    .iter()
                    .zip(xb)
                    .map(|(s, x)| s & x)
                    .collect();
                proptest::prop_assert_eq!(&part_words(part, xb)[..], &want[..]);
                let count: u32 = want.iter().map(|w| w.count_ones()).sum();
                proptest::prop_assert_eq!(n, count);
            }
            // With more ids (some blocks' none within the universe): the parts of the
            // union, sharing the words of the blocks where nothing was added.
            let more: RoaringBitmap = (0..4u32).filter(|b| b % 2 == 1).flat_map(|b| {
                let lo = (b << 16) + 7;
                lo..lo + 3
            }).collect();
            let mw = words(&more, span);
            let union: Vec<u64> = sw.iter().zip(&mw).map(|(s, m)| s | m).collect();
            let with = parts.with(&mw, &xw);
            proptest::prop_assert_eq!(&with, &Parts::of(&union, &xw));
            for (b, (w, p)) in with.parts.iter().zip(&parts.parts).enumerate() {
                if let (Part::Words(w), Part::Words(p)) = (w, p) {
                    let adds = mw[b * BLOCK..(b + 1) * BLOCK].iter().zip(&xw[b * BLOCK..]).any(|(m, x)| m & x != 0);
                    proptest::prop_assert_eq!(Arc::ptr_eq(w, p), !adds);
                }
            }
        }
    }

    #[test]
    fn span_covers_the_containers_of_a_set() {
        let set: RoaringBitmap = [70_000u32, 200_000].into_iter().collect();
        assert_eq!(Span::of(&set), Span { first: 1, count: 3 });
        assert_eq!(Span::of(&RoaringBitmap::new()).count, 0);
    }
}
