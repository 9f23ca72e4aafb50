//! Integer and text codecs shared by the segments ingest writes and the snapshots built from
//! them: bit packing ([`pack`], [`Packed`]), blocked integers ([`blocks`]), and text that
//! may be stored as the number it spells ([`decimal`], [`Text`]).
//!
//! Everything here reads within bounds whatever the bytes: a value that does not fit reads
//! as 0 or `None`, never a panic.

pub mod blocks;

/// The most digits a decimal text value may have to be stored as a number.
const MAX_DIGITS: usize = 18;

/// `s` as the number it spells, when it spells one canonically: digits only, no leading
/// zero (but "0"), at most 18 of them. Its text is then exactly the number's.
pub fn decimal(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > MAX_DIGITS || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// The greatest common divisor of all of `xs` (0 for none or all zero), stopping at the
/// first prefix whose divisor is 1: most blocks of real values get there within a few.
pub fn gcd_of(xs: impl IntoIterator<Item = u64>) -> u64 {
    let mut g = 0;
    for x in xs {
        // One division tells a multiple of the divisor so far (most of them, in a block of
        // amounts in whole yuan), which leaves it unchanged.
        if g != 0 && x % g == 0 {
            continue;
        }
        g = gcd(g, x);
        if g == 1 {
            break;
        }
    }
    g
}

/// The greatest common divisor (`gcd(0, x) = x`).
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The bits needed to hold `max`.
pub fn bits_for(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

pub fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

/// Appends `values` packed at `width` bits, LSB first, in whole little-endian u64 words.
pub fn pack(values: impl IntoIterator<Item = u64>, width: u8, out: &mut Vec<u8>) {
    let width = u32::from(width);
    let mut word = 0u64;
    let mut used = 0u32;
    let mut any = false;
    if width == 0 {
        return;
    }
    for v in values {
        any = true;
        let v = if width == 64 {
            v
        } else {
            v & ((1u64 << width) - 1)
        };
        word |= v << used;
        if used + width >= 64 {
            out.extend_from_slice(&word.to_le_bytes());
            let spill = used + width - 64;
            word = if spill == 0 { 0 } else { v >> (width - spill) };
            used = spill;
        } else {
            used += width;
        }
    }
    if any && used > 0 {
        out.extend_from_slice(&word.to_le_bytes());
    }
}

pub fn packed_bytes(n: usize, width: u8) -> Option<usize> {
    n.checked_mul(usize::from(width))
        .map(|bits| bits.div_ceil(64) * 8)
}

/// Reads 8 bytes little-endian at `at`, `None` past the end.
pub fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// The little-endian word at byte `at`, 0 past the end.
#[inline]
pub fn word_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..at.wrapping_add(8)) {
        Some(s) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        }
        None => 0,
    }
}

/// Value `j` of `width`-bit values packed from byte `at`.
#[inline]
pub fn bits_at(b: &[u8], at: usize, j: usize, width: u32) -> u64 {
    if width == 0 || width > 64 {
        return 0;
    }
    let bit = j.wrapping_mul(width as usize);
    let w = at.wrapping_add((bit / 64) * 8);
    let off = (bit % 64) as u32;
    let mut v = word_at(b, w) >> off;
    if off + width > 64 {
        v |= word_at(b, w.wrapping_add(8)) << (64 - off);
    }
    if width < 64 {
        v & ((1u64 << width) - 1)
    } else {
        v
    }
}

/// Values `j..j + out.len()` of `width`-bit values packed from byte `at`, unpacked word by
/// word: what [`bits_at`] reads for each (0 past the end), at a fraction of the cost.
pub fn unpack(b: &[u8], at: usize, j: usize, width: u32, out: &mut [u64]) {
    if width == 0 || width > 64 || out.is_empty() {
        out.fill(0);
        return;
    }
    let bit = j.wrapping_mul(width as usize);
    let from = at.wrapping_add((bit / 64) * 8);
    let mut words = b.get(from..).unwrap_or(&[]).chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        u64::from_le_bytes(a)
    });
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    let mut cur = words.next().unwrap_or(0);
    let mut pos = (bit % 64) as u32;
    for o in out {
        if pos + width <= 64 {
            *o = cur.checked_shr(pos).unwrap_or(0) & mask;
            pos += width;
        } else {
            let next = words.next().unwrap_or(0);
            let low = cur.checked_shr(pos).unwrap_or(0);
            *o = (low | next << (64 - pos)) & mask;
            cur = next;
            pos = pos + width - 64;
        }
    }
}

/// Bits `start..start + 64·out.len()` of a little-endian bitmap into words (0 past the end).
pub fn bit_words(b: &[u8], start: usize, out: &mut [u64]) {
    let off = (start % 64) as u32;
    let w = start / 64;
    for (q, o) in out.iter_mut().enumerate() {
        let lo = word_at(b, (w + q) * 8);
        *o = if off == 0 {
            lo
        } else {
            lo >> off | word_at(b, (w + q + 1) * 8) << (64 - off)
        };
    }
}

/// `len` bit-packed values.
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    words: &'a [u8],
    width: u32,
    len: usize,
}

impl<'a> Packed<'a> {
    /// Takes `len` values of `width` bits from the start of `b`; returns them and the bytes
    /// that follow.
    pub fn parse(b: &'a [u8], len: usize, width: u8) -> Option<(Packed<'a>, &'a [u8])> {
        if width > 64 {
            return None;
        }
        let n = packed_bytes(len, width)?;
        if b.len() < n {
            return None;
        }
        Some((
            Packed {
                words: &b[..n],
                width: u32::from(width),
                len,
            },
            &b[n..],
        ))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bits per value.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Value `i` (0 past the end).
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        if i >= self.len {
            return 0;
        }
        bits_at(self.words, 0, i, self.width)
    }
}

/// A text value as read: borrowed from the snapshot, or a decimal number that the snapshot
/// stores as a number. Compares and prints as the text it stands for.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    Str(&'a str),
    Digits(u64),
}

impl Text<'_> {
    /// The text's bytes, written into `buf` when they are a number's.
    pub fn bytes<'b>(&'b self, buf: &'b mut [u8; 20]) -> &'b [u8] {
        match *self {
            Text::Str(s) => s.as_bytes(),
            Text::Digits(mut n) => {
                let mut at = buf.len();
                loop {
                    at -= 1;
                    buf[at] = b'0' + (n % 10) as u8;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                &buf[at..]
            }
        }
    }
}

impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if let (Text::Str(a), Text::Str(b)) = (self, other) {
            return a.cmp(b);
        }
        let (mut x, mut y) = ([0u8; 20], [0u8; 20]);
        self.bytes(&mut x).cmp(other.bytes(&mut y))
    }
}

impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Text<'_> {}

/// Hashes the text's bytes, as equality compares them.
impl std::hash::Hash for Text<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buf = [0u8; 20];
        self.bytes(&mut buf).hash(state);
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == Text::Str(other)
    }
}

impl std::fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::Str(s) => f.write_str(s),
            Text::Digits(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_divisor_of_many_stops_at_one_and_agrees_with_the_fold() {
        assert_eq!(gcd_of([]), 0);
        assert_eq!(gcd_of([0, 0]), 0);
        assert_eq!(gcd_of([0, 12, 18, 30]), 6);
        assert_eq!(gcd_of([4, 6, 9, 12]), 1);
        let xs: Vec<u64> = (1..500).map(|i| i * i * 7).collect();
        assert_eq!(
            gcd_of(xs.iter().copied()),
            xs.iter().fold(0, |g, &x| gcd(g, x))
        );
    }

    proptest! {
        #[test]
        fn unpacking_reads_what_bits_at_reads(
            b in proptest::collection::vec(any::<u8>(), 0..200),
            at in 0usize..40,
            j in 0usize..100,
            width in 0u32..66,
            n in 0usize..80,
        ) {
            let mut out = vec![7u64; n];
            unpack(&b, at, j, width, &mut out);
            for (k, x) in out.iter().enumerate() {
                prop_assert_eq!(*x, bits_at(&b, at, j + k, width), "value {}", j + k);
            }
        }

        #[test]
        fn bit_words_read_each_bit(
            b in proptest::collection::vec(any::<u8>(), 0..64),
            start in 0usize..600,
            n in 0usize..6,
        ) {
            let mut out = vec![0u64; n];
            bit_words(&b, start, &mut out);
            for k in 0..n * 64 {
                let i = start + k;
                let want = le_u64(&b, (i / 64) * 8).is_some_and(|w| w >> (i % 64) & 1 == 1);
                prop_assert_eq!(out[k / 64] >> (k % 64) & 1 == 1, want, "bit {}", i);
            }
        }
    }
}
