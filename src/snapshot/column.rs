//! Column encodings (FORMAT.md, `column`): integers, dictionary codes and free text, with an
//! optional validity bitmap saying which rows have a value. Missing is missing, never zero.
//!
//! Version 2 stores every column's integers (values, dictionary codes, free text's codes into
//! its first-occurrence dictionary) as blocked integers ([`blocks`]): each
//! block of 256 rows in its smallest encoding, every value read in constant time. The flat
//! encodings of version 1 (one frame of reference for the whole column, free text row by
//! row) are still written, by [`encode_flat`], for the small sections that lookups
//! binary-search.
//!
//! Readers parse a column's layout once, checking that every part fits its section, so that
//! later accessors read within bounds whatever the bytes; they return `None` rather than panic
//! on content that only a checksum would catch (a dictionary code past the dictionary, offsets
//! out of order): `verify` runs before a snapshot is trusted.

use std::collections::HashMap;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use crate::codec::blocks::{self, Blocked};
pub use crate::codec::{Packed, Text, bits_at, bits_for, decimal, le_u64, pack, pad8, word_at};

/// Type tags.
pub const INT: u8 = 0;
pub const DICT: u8 = 1;
pub const BYTES: u8 = 2;
/// Version 2: integers in blocks (`blocked`).
pub const INT_BLOCKED: u8 = 3;
pub const DICT_BLOCKED: u8 = 4;
/// Version 2: free text as a first-occurrence dictionary and blocked codes.
pub const BYTES_BLOCKED: u8 = 5;
/// Version 2: free text whose every value is a decimal number (invoice numbers, account
/// numbers), stored as the numbers, blocked.
pub const DIGITS: u8 = 6;
/// Version 3: integers predicted from one or two integer columns of the same table's rows,
/// stored as what the prediction misses (an invoice's tax from its amount, a settlement's
/// self-paid share from its total and the fund's share).
pub const INT_PREDICTED: u8 = 7;

/// A prediction of an integer column from one or two other integer columns of the same rows:
/// `(p·a + s·b) / q`, truncated toward zero (a missing base value counts as 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linear {
    pub a: String,
    pub b: Option<String>,
    pub coef: Coef,
}

/// The coefficients of a [`Linear`] prediction, in lowest terms (`q > 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coef {
    pub p: i64,
    pub s: i64,
    pub q: i64,
}

impl Coef {
    /// `(p·a + s·b) / q` in lowest terms; `None` when `q` is not positive.
    pub fn new(p: i64, s: i64, q: i64) -> Option<Coef> {
        if q <= 0 {
            return None;
        }
        let g = crate::codec::gcd_of([q, p, s].map(i64::unsigned_abs)) as i64;
        Some(Coef {
            p: p / g,
            s: s / g,
            q: q / g,
        })
    }

    /// The prediction for base values `a` and `b`, wrapped to 64 bits.
    #[inline]
    pub fn at(&self, a: i64, b: i64) -> i64 {
        if self.q == 1 {
            return self.p.wrapping_mul(a).wrapping_add(self.s.wrapping_mul(b));
        }
        match self
            .p
            .checked_mul(a)
            .and_then(|x| self.s.checked_mul(b).and_then(|y| x.checked_add(y)))
        {
            Some(x) => x / self.q,
            None => {
                let x = i128::from(self.p) * i128::from(a) + i128::from(self.s) * i128::from(b);
                (x / i128::from(self.q)) as i64
            }
        }
    }
}

/// Strings: bit-packed offsets and their bytes.
#[derive(Debug, Clone, Copy)]
pub struct Strings<'a> {
    offsets: Packed<'a>,
    data: &'a [u8],
}

impl<'a> Strings<'a> {
    fn write<'s>(values: impl Iterator<Item = &'s str> + Clone, out: &mut Vec<u8>) {
        let total: u64 = values.clone().map(|s| s.len() as u64).sum();
        let width = bits_for(total);
        out.push(width);
        out.extend_from_slice(&[0u8; 7]);
        let mut at = 0u64;
        let offsets = std::iter::once(0).chain(values.clone().map(|s| {
            at += s.len() as u64;
            at
        }));
        pack(offsets, width, out);
        for s in values {
            out.extend_from_slice(s.as_bytes());
        }
        pad8(out);
    }

    fn parse(b: &'a [u8], n: usize) -> Option<(Strings<'a>, &'a [u8])> {
        let width = *b.first()?;
        let (offsets, rest) = Packed::parse(b.get(8..)?, n.checked_add(1)?, width)?;
        let total = usize::try_from(offsets.get(n)).ok()?;
        let data = rest.get(..total)?;
        let after = rest.get(total.div_ceil(8) * 8..).unwrap_or(&[]);
        Some((Strings { offsets, data }, after))
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// String `i`; `None` past the end or on bytes that are not a string we wrote.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        if i >= self.len() {
            return None;
        }
        let (s, e) = (
            self.offsets.get(i) as usize,
            self.offsets.get(i + 1) as usize,
        );
        std::str::from_utf8(self.data.get(s..e)?).ok()
    }
}

/// Values to encode as one column.
#[derive(Debug)]
pub enum ColumnValues<'s> {
    Int(Vec<Option<i64>>),
    /// Dictionary-encoded strings: few distinct values.
    Dict(Vec<Option<&'s str>>),
    /// Free text, read back with [`Column::str`].
    Bytes(Vec<Option<&'s str>>),
    /// Free text read back with [`Column::text`]: stored as numbers when every value is a
    /// decimal number, as [`ColumnValues::Bytes`] otherwise.
    Text(Vec<Option<&'s str>>),
}

/// Encodes a column section (the current version's encodings: every body's integers
/// blocked, free text through a first-occurrence dictionary).
pub fn encode(values: &ColumnValues<'_>, out: &mut Vec<u8>) {
    let mut w = match values {
        ColumnValues::Int(_) => ColumnWriter::int(),
        ColumnValues::Dict(v) => {
            let mut dict: Vec<&str> = v.iter().flatten().copied().collect();
            dict.sort_unstable();
            dict.dedup();
            ColumnWriter::dict(dict)
        }
        ColumnValues::Bytes(_) => ColumnWriter::text(),
        ColumnValues::Text(v) if v.iter().flatten().all(|s| decimal(s).is_some()) => {
            ColumnWriter::digits()
        }
        ColumnValues::Text(_) => ColumnWriter::text(),
    };
    match values {
        ColumnValues::Int(v) => v.iter().for_each(|&x| w.push_int(x)),
        ColumnValues::Dict(v) | ColumnValues::Bytes(v) | ColumnValues::Text(v) => {
            for &x in v {
                // Every value fits the writer chosen for them.
                let _ = w.push_str(x);
            }
        }
    }
    w.finish(out);
}

/// One column section written row by row, in the current version's encodings: what the
/// snapshot stage streams a table's rows through, holding only the encoding.
#[derive(Debug)]
pub struct ColumnWriter<'s> {
    ty: u8,
    /// Validity words, and how many rows are missing.
    valid: Vec<u64>,
    missing: usize,
    rows: usize,
    values: blocks::Writer,
    /// A dictionary column's dictionary, sorted.
    dict: Vec<&'s str>,
    /// Free text's distinct values in order of first occurrence, and their codes.
    strings: Vec<Text<'s>>,
    seen: HashMap<Text<'s>, i64, Xxh3DefaultBuilder>,
    /// The last text value and its code: an entity's rows often repeat a value.
    last: Option<(Text<'s>, i64)>,
    /// A predicted column's prediction, and the least and greatest value it holds.
    linear: Option<Linear>,
    range: Option<(i64, i64)>,
}

impl<'s> ColumnWriter<'s> {
    fn of(ty: u8) -> ColumnWriter<'s> {
        ColumnWriter {
            ty,
            valid: Vec::new(),
            missing: 0,
            rows: 0,
            values: blocks::Writer::new(),
            dict: Vec::new(),
            strings: Vec::new(),
            seen: HashMap::default(),
            last: None,
            linear: None,
            range: None,
        }
    }

    /// Integers predicted by `linear` from other integer columns of the same rows, pushed
    /// with [`ColumnWriter::push_predicted`]. The bases are read from their own sections:
    /// they must be plain integer columns ([`ColumnWriter::int`]) of the same table.
    pub fn predicted(linear: Linear) -> ColumnWriter<'s> {
        ColumnWriter {
            linear: Some(linear),
            ..ColumnWriter::of(INT_PREDICTED)
        }
    }

    /// Integers.
    pub fn int() -> ColumnWriter<'s> {
        ColumnWriter::of(INT_BLOCKED)
    }

    /// Strings from `dict` (sorted, distinct), stored as codes into it.
    pub fn dict(dict: Vec<&'s str>) -> ColumnWriter<'s> {
        ColumnWriter {
            dict,
            ..ColumnWriter::of(DICT_BLOCKED)
        }
    }

    /// Free text, through a dictionary of its distinct values.
    pub fn text() -> ColumnWriter<'s> {
        ColumnWriter::of(BYTES_BLOCKED)
    }

    /// Free text whose every value is a decimal number ([`decimal`]), stored as the numbers.
    pub fn digits() -> ColumnWriter<'s> {
        ColumnWriter::of(DIGITS)
    }

    #[inline]
    fn mark(&mut self, present: bool) {
        if self.rows.is_multiple_of(64) {
            self.valid.push(0);
        }
        if present {
            if let Some(w) = self.valid.last_mut() {
                *w |= 1 << (self.rows % 64);
            }
        } else {
            self.missing += 1;
        }
        self.rows += 1;
    }

    /// Appends an integer row (an integer column's).
    #[inline]
    pub fn push_int(&mut self, v: Option<i64>) {
        self.mark(v.is_some());
        self.values.push(v);
    }

    /// Appends a predicted column's row: its value and the prediction for the row (the
    /// column's [`Coef::at`] of the row's base values, 0 for a missing one).
    #[inline]
    pub fn push_predicted(&mut self, v: Option<i64>, guess: i64) {
        if let Some(x) = v {
            self.range = Some(self.range.map_or((x, x), |(lo, hi)| (lo.min(x), hi.max(x))));
        }
        self.push_int(v.map(|x| x.wrapping_sub(guess)));
    }

    /// Appends a text row; `false` (and a missing row) when the value does not fit the
    /// writer: not in a dictionary column's dictionary, not a number in a digits column, or
    /// text in an integer column.
    #[inline]
    pub fn push_str(&mut self, v: Option<&'s str>) -> bool {
        self.push_text(v.map(Text::Str))
    }

    /// Appends a text row given as read from a segment (text, or a number stored for
    /// decimal text); `false` as for [`ColumnWriter::push_str`].
    #[inline]
    pub fn push_text(&mut self, v: Option<Text<'s>>) -> bool {
        self.push_coded(v).is_some()
    }

    /// Appends a text row as [`ColumnWriter::push_text`] does, returning the integer stored
    /// for it (a dictionary column's code; `Some(None)` for a missing row), or `None` (and a
    /// missing row) when the value does not fit the writer.
    #[inline]
    pub fn push_coded(&mut self, v: Option<Text<'s>>) -> Option<Option<i64>> {
        let (code, fits) = match v {
            None => (None, true),
            Some(t) if self.last.is_some_and(|(l, _)| l == t) => (self.last.map(|l| l.1), true),
            Some(t) => {
                let code = match (self.ty, t) {
                    (DICT_BLOCKED, _) => self
                        .dict
                        .binary_search_by(|d| Text::Str(d).cmp(&t))
                        .ok()
                        .map(|c| c as i64),
                    (BYTES_BLOCKED, _) => Some(*self.seen.entry(t).or_insert_with(|| {
                        self.strings.push(t);
                        self.strings.len() as i64 - 1
                    })),
                    (DIGITS, Text::Digits(n)) => i64::try_from(n).ok(),
                    (DIGITS, Text::Str(s)) => decimal(s),
                    _ => None,
                };
                if let Some(c) = code
                    && matches!(self.ty, DICT_BLOCKED | BYTES_BLOCKED)
                {
                    self.last = Some((t, c));
                }
                (code, code.is_some())
            }
        };
        self.push_int(code);
        fits.then_some(code)
    }

    /// Appends the column section.
    pub fn finish(self, out: &mut Vec<u8>) {
        let tail = self.finish_split(out);
        out.extend_from_slice(&tail);
        pad8(out);
    }

    /// Appends the column section but for its blocks, which it returns: the section is
    /// `out`'s new bytes, then the blocks (see [`blocks::Writer::finish_split`]).
    pub fn finish_split(self, out: &mut Vec<u8>) -> Vec<u8> {
        header(
            self.ty,
            self.rows,
            (self.missing > 0).then_some(&self.valid[..]),
            out,
        );
        match self.ty {
            DICT_BLOCKED => {
                out.extend_from_slice(&(self.dict.len() as u32).to_le_bytes());
                out.extend_from_slice(&[0u8; 4]);
                Strings::write(self.dict.iter().copied(), out);
            }
            BYTES_BLOCKED => {
                out.extend_from_slice(&(self.strings.len() as u64).to_le_bytes());
                let mut bufs = vec![[0u8; 20]; self.strings.len()];
                let text: Vec<&str> = self
                    .strings
                    .iter()
                    .zip(&mut bufs)
                    .map(|(t, buf)| match t {
                        Text::Str(s) => s,
                        // Digits are ASCII.
                        Text::Digits(_) => std::str::from_utf8(t.bytes(buf)).unwrap_or(""),
                    })
                    .collect();
                Strings::write(text.iter().copied(), out);
            }
            INT_PREDICTED => {
                let (lo, hi) = self.range.unwrap_or((0, 0));
                let (a, b, c) = match &self.linear {
                    Some(l) => (l.a.as_str(), l.b.as_deref().unwrap_or(""), l.coef),
                    None => ("", "", Coef { p: 0, s: 0, q: 1 }),
                };
                for x in [lo, hi, c.p, c.s, c.q] {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                out.extend_from_slice(&(a.len() as u16).to_le_bytes());
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(&[0u8; 4]);
                out.extend_from_slice(a.as_bytes());
                out.extend_from_slice(b.as_bytes());
            }
            _ => {}
        }
        pad8(out);
        self.values.finish_split(out)
    }
}

/// A column's head: type, rows and the validity words when some row is missing.
fn header(ty: u8, rows: usize, validity: Option<&[u64]>, out: &mut Vec<u8>) {
    out.push(ty);
    out.push(u8::from(validity.is_some()));
    out.extend_from_slice(&[0u8; 6]);
    out.extend_from_slice(&(rows as u64).to_le_bytes());
    for w in validity.unwrap_or_default() {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// Encodes a column section in the flat encodings (types 0–2, all of version 1): one frame
/// of reference for the whole column, free text row by row. Larger than [`encode`]'s, but a
/// value is one shift and mask away: for the small sections that lookups binary-search
/// (entity runs, the key map).
pub fn encode_flat(values: &ColumnValues<'_>, out: &mut Vec<u8>) {
    let (ty, valid): (u8, Vec<bool>) = match values {
        ColumnValues::Int(v) => (INT, v.iter().map(Option::is_some).collect()),
        ColumnValues::Dict(v) => (DICT, v.iter().map(Option::is_some).collect()),
        ColumnValues::Bytes(v) | ColumnValues::Text(v) => {
            (BYTES, v.iter().map(Option::is_some).collect())
        }
    };
    let words: Vec<u64> = valid
        .chunks(64)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u64, |w, (i, &v)| w | u64::from(v) << i)
        })
        .collect();
    let all_valid = valid.iter().all(|&v| v);
    header(ty, valid.len(), (!all_valid).then_some(&words[..]), out);
    match values {
        ColumnValues::Int(v) => {
            let base = v.iter().flatten().copied().min().unwrap_or(0);
            let max = v
                .iter()
                .flatten()
                .map(|&x| x.wrapping_sub(base) as u64)
                .max()
                .unwrap_or(0);
            let width = bits_for(max);
            out.extend_from_slice(&base.to_le_bytes());
            out.push(width);
            out.extend_from_slice(&[0u8; 7]);
            pack(
                v.iter()
                    .map(|x| x.map_or(0, |x| x.wrapping_sub(base) as u64)),
                width,
                out,
            );
        }
        ColumnValues::Dict(v) => {
            let mut dict: Vec<&str> = v.iter().flatten().copied().collect();
            dict.sort_unstable();
            dict.dedup();
            out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
            out.extend_from_slice(&[0u8; 4]);
            Strings::write(dict.iter().copied(), out);
            let width = bits_for(dict.len().saturating_sub(1) as u64);
            out.push(width);
            out.extend_from_slice(&[0u8; 7]);
            pack(
                v.iter()
                    .map(|x| x.and_then(|s| dict.binary_search(&s).ok()).unwrap_or(0) as u64),
                width,
                out,
            );
        }
        ColumnValues::Bytes(v) | ColumnValues::Text(v) => {
            Strings::write(v.iter().map(|x| x.unwrap_or("")), out)
        }
    }
    pad8(out);
}

/// A column read in place.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    rows: usize,
    validity: Option<&'a [u8]>,
    body: Body<'a>,
}

/// Integers of either version: one frame for the column (version 1) or blocked.
// A column is a view read in place and copied freely: the predicted variant carries its
// bases' views inline rather than behind a pointer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
enum Ints<'a> {
    Packed {
        base: i64,
        values: Packed<'a>,
    },
    Blocked(Blocked<'a>),
    /// Version 3: residuals of a prediction from base columns.
    Predicted(Predicted<'a>),
}

/// A predicted column's integers: residuals, and the base columns they are added to.
#[derive(Debug, Clone, Copy)]
struct Predicted<'a> {
    residual: Blocked<'a>,
    coef: Coef,
    a: Base<'a>,
    b: Option<Base<'a>>,
    /// The least and greatest value of the column.
    min: i64,
    max: i64,
}

/// A base column of a prediction: a plain blocked integer column, missing values read as 0.
#[derive(Debug, Clone, Copy)]
struct Base<'a> {
    validity: Option<&'a [u8]>,
    values: Blocked<'a>,
}

impl Base<'_> {
    #[inline]
    fn get(&self, i: usize) -> i64 {
        match self.validity {
            Some(v) if le_u64(v, (i / 64) * 8).is_none_or(|w| w >> (i % 64) & 1 == 0) => 0,
            _ => self.values.get(i),
        }
    }

    fn decode(&self, start: usize, out: &mut [i64]) {
        self.values.decode(start, out);
        if let Some(v) = self.validity {
            let mut present = vec![0u64; out.len().div_ceil(64)];
            crate::codec::bit_words(v, start, &mut present);
            for (k, o) in out.iter_mut().enumerate() {
                if present[k / 64] >> (k % 64) & 1 == 0 {
                    *o = 0;
                }
            }
        }
    }
}

impl Predicted<'_> {
    #[inline]
    fn get(&self, i: usize) -> i64 {
        let b = self.b.map_or(0, |b| b.get(i));
        self.residual
            .get(i)
            .wrapping_add(self.coef.at(self.a.get(i), b))
    }

    fn decode(&self, start: usize, out: &mut [i64]) {
        self.residual.decode(start, out);
        let mut a = vec![0i64; out.len()];
        self.a.decode(start, &mut a);
        match self.b {
            Some(base) => {
                let mut b = vec![0i64; out.len()];
                base.decode(start, &mut b);
                for ((o, &x), &y) in out.iter_mut().zip(&a).zip(&b) {
                    *o = o.wrapping_add(self.coef.at(x, y));
                }
            }
            None => {
                for (o, &x) in out.iter_mut().zip(&a) {
                    *o = o.wrapping_add(self.coef.at(x, 0));
                }
            }
        }
    }
}

impl Ints<'_> {
    #[inline]
    fn get(&self, i: usize) -> i64 {
        match self {
            Ints::Packed { base, values } => base.wrapping_add(values.get(i) as i64),
            Ints::Blocked(b) => b.get(i),
            Ints::Predicted(p) => p.get(i),
        }
    }

    fn decode(&self, start: usize, out: &mut [i64]) {
        match self {
            Ints::Packed { .. } => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = self.get(start + k);
                }
            }
            Ints::Blocked(b) => b.decode(start, out),
            Ints::Predicted(p) => p.decode(start, out),
        }
    }

    /// `(first, count)` of the values the integers can take.
    fn domain(&self) -> Option<(i64, u64)> {
        match self {
            Ints::Packed { base, values } => Some((*base, 1u64.checked_shl(values.width())?)),
            Ints::Blocked(b) => {
                let (lo, hi) = b.range();
                Some((lo, (hi.wrapping_sub(lo) as u64).checked_add(1)?))
            }
            Ints::Predicted(p) => Some((p.min, (p.max.wrapping_sub(p.min) as u64).checked_add(1)?)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    Int(Ints<'a>),
    Dict {
        dict: Strings<'a>,
        codes: Ints<'a>,
    },
    /// Version 1: the strings row by row.
    Bytes(Strings<'a>),
    /// Distinct strings in order of first occurrence, and each row's code.
    Coded {
        strings: Strings<'a>,
        codes: Ints<'a>,
    },
    /// Free text whose values are decimal numbers, as the numbers.
    Digits(Ints<'a>),
}

/// One value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Missing,
    Int(i64),
    Str(Text<'a>),
}

impl<'a> Column<'a> {
    /// Parses a column section; `None` when its layout does not fit, or when it is a
    /// predicted column (which needs its table's other columns: [`Column::parse_in`]).
    pub fn parse(b: &'a [u8]) -> Option<Column<'a>> {
        Column::parse_in(b, &|_| None)
    }

    /// Parses a column section whose bases, if it is predicted, `base` finds by column name
    /// in the same table. `None` when its layout does not fit, or a base is missing, of
    /// another length, or not a plain integer column.
    pub fn parse_in(b: &'a [u8], base: &dyn Fn(&str) -> Option<Column<'a>>) -> Option<Column<'a>> {
        let ty = *b.first()?;
        let has_validity = *b.get(1)? != 0;
        let rows = usize::try_from(le_u64(b, 8)?).ok()?;
        let mut rest = b.get(16..)?;
        let validity = if has_validity {
            let n = rows.div_ceil(64) * 8;
            let v = rest.get(..n)?;
            rest = &rest[n..];
            Some(v)
        } else {
            None
        };
        let blocked = |b: &'a [u8]| Blocked::parse(b, rows).map(|(c, _)| Ints::Blocked(c));
        let body = match ty {
            INT => {
                let base = le_u64(rest, 0)? as i64;
                let width = *rest.get(8)?;
                let (values, _) = Packed::parse(rest.get(16..)?, rows, width)?;
                Body::Int(Ints::Packed { base, values })
            }
            INT_BLOCKED => Body::Int(blocked(rest)?),
            DICT | DICT_BLOCKED => {
                let n = le_u64(rest, 0)? as u32 as usize;
                let (dict, after) = Strings::parse(rest.get(8..)?, n)?;
                let codes = if ty == DICT {
                    let width = *after.first()?;
                    let (values, _) = Packed::parse(after.get(8..)?, rows, width)?;
                    Ints::Packed { base: 0, values }
                } else {
                    blocked(after)?
                };
                Body::Dict { dict, codes }
            }
            BYTES => Body::Bytes(Strings::parse(rest, rows)?.0),
            BYTES_BLOCKED => {
                let n = usize::try_from(le_u64(rest, 0)?).ok()?;
                let (strings, after) = Strings::parse(rest.get(8..)?, n)?;
                Body::Coded {
                    strings,
                    codes: blocked(after)?,
                }
            }
            DIGITS => Body::Digits(blocked(rest)?),
            INT_PREDICTED => {
                let field = |k: usize| le_u64(rest, k * 8).map(|x| x as i64);
                let (min, max) = (field(0)?, field(1)?);
                let coef = Coef::new(field(2)?, field(3)?, field(4)?)?;
                let la = usize::from(u16::from_le_bytes([*rest.get(40)?, *rest.get(41)?]));
                let lb = usize::from(u16::from_le_bytes([*rest.get(42)?, *rest.get(43)?]));
                let names = rest.get(48..48 + la + lb)?;
                let name_a = std::str::from_utf8(&names[..la]).ok()?;
                let name_b = std::str::from_utf8(&names[la..]).ok()?;
                let head = (48 + la + lb).div_ceil(8) * 8;
                let residual = Blocked::parse(rest.get(head..)?, rows)?.0;
                let base_of = |name: &str| -> Option<Base<'a>> {
                    let c = base(name)?;
                    match c.body {
                        Body::Int(Ints::Blocked(values)) if c.rows == rows => Some(Base {
                            validity: c.validity,
                            values,
                        }),
                        _ => None,
                    }
                };
                let b = if name_b.is_empty() {
                    None
                } else {
                    Some(base_of(name_b)?)
                };
                Body::Int(Ints::Predicted(Predicted {
                    residual,
                    coef,
                    a: base_of(name_a)?,
                    b,
                    min,
                    max,
                }))
            }
            _ => return None,
        };
        Some(Column {
            rows,
            validity,
            body,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn type_name(&self) -> &'static str {
        match self.body {
            Body::Int(_) => "int",
            Body::Dict { .. } => "dict",
            Body::Bytes(_) | Body::Coded { .. } | Body::Digits(_) => "bytes",
        }
    }

    #[inline]
    pub fn is_valid(&self, row: usize) -> bool {
        if row >= self.rows {
            return false;
        }
        match self.validity {
            None => true,
            Some(v) => le_u64(v, (row / 64) * 8).is_some_and(|w| w >> (row % 64) & 1 == 1),
        }
    }

    /// An int column's value at `row`.
    #[inline]
    pub fn int(&self, row: usize) -> Option<i64> {
        match self.body {
            Body::Int(values) if self.is_valid(row) => Some(values.get(row)),
            _ => None,
        }
    }

    /// A dictionary column's code at `row`.
    #[inline]
    pub fn code(&self, row: usize) -> Option<u32> {
        match self.body {
            Body::Dict { codes, .. } if self.is_valid(row) => Some(codes.get(row) as u32),
            _ => None,
        }
    }

    /// The raw value at `row`: an int column's value or a dictionary column's code.
    #[inline]
    pub fn raw(&self, row: usize) -> Option<i64> {
        match self.body {
            Body::Int(_) => self.int(row),
            Body::Dict { .. } => self.code(row).map(i64::from),
            Body::Bytes(_) | Body::Coded { .. } | Body::Digits(_) => None,
        }
    }

    /// Raw values of rows `start..start + out.len()` (see [`Column::raw`]) into `out`, and
    /// which are present as bits into `present` (`out.len().div_ceil(64)` words, bits past
    /// the slice cleared): a scan reads a slice at a time. Free-text columns read as all
    /// missing.
    pub fn decode_raw(&self, start: usize, out: &mut [i64], present: &mut [u64]) {
        match self.body {
            Body::Int(v) => v.decode(start, out),
            Body::Dict { codes, .. } => {
                codes.decode(start, out);
                out.iter_mut().for_each(|c| *c = i64::from(*c as u32));
            }
            Body::Bytes(_) | Body::Coded { .. } | Body::Digits(_) => {
                present.fill(0);
                return;
            }
        }
        match self.validity {
            Some(v) => crate::codec::bit_words(v, start, present),
            None => present.fill(u64::MAX),
        }
        // Rows past the slice or past the column are missing.
        let live = self.rows.saturating_sub(start).min(out.len());
        for (q, w) in present.iter_mut().enumerate() {
            let from = q * 64;
            if live <= from {
                *w = 0;
            } else if live - from < 64 {
                *w &= (1u64 << (live - from)) - 1;
            }
        }
    }

    /// Every raw value the column can hold, `(first, count)`: an int column's packed range,
    /// a dictionary column's codes; `None` for free text.
    pub fn raw_domain(&self) -> Option<(i64, u64)> {
        match self.body {
            Body::Int(values) => values.domain(),
            Body::Dict { dict, .. } => Some((0, dict.len() as u64)),
            Body::Bytes(_) | Body::Coded { .. } | Body::Digits(_) => None,
        }
    }

    /// A dictionary column's value for `code`.
    pub fn dict_value(&self, code: u32) -> Option<&'a str> {
        match self.body {
            Body::Dict { dict, .. } => dict.get(code as usize),
            _ => None,
        }
    }

    /// The dictionary of a dictionary column, in code order (sorted).
    pub fn dict(&self) -> Vec<&'a str> {
        match self.body {
            Body::Dict { dict, .. } => (0..dict.len()).filter_map(|i| dict.get(i)).collect(),
            _ => Vec::new(),
        }
    }

    /// The code of `value` in a dictionary column.
    pub fn code_of(&self, value: &str) -> Option<u32> {
        match self.body {
            Body::Dict { dict, .. } => {
                let (mut lo, mut hi) = (0usize, dict.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    match dict.get(mid)?.cmp(value) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(mid as u32),
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// A string or dictionary column's value at `row`.
    #[inline]
    pub fn str(&self, row: usize) -> Option<&'a str> {
        if !self.is_valid(row) {
            return None;
        }
        match self.body {
            Body::Dict { dict, codes } => dict.get(usize::try_from(codes.get(row)).ok()?),
            Body::Bytes(s) => s.get(row),
            Body::Coded { strings, codes } => strings.get(usize::try_from(codes.get(row)).ok()?),
            Body::Int(_) | Body::Digits(_) => None,
        }
    }

    /// A text column's value at `row`, whatever its encoding (the only way to read a column
    /// written from [`ColumnValues::Text`]).
    #[inline]
    pub fn text(&self, row: usize) -> Option<Text<'a>> {
        match self.body {
            Body::Digits(n) if self.is_valid(row) => Some(Text::Digits(n.get(row) as u64)),
            Body::Digits(_) | Body::Int(_) => None,
            _ => self.str(row).map(Text::Str),
        }
    }

    pub fn value(&self, row: usize) -> Value<'a> {
        match self.body {
            Body::Int(_) => self.int(row).map_or(Value::Missing, Value::Int),
            _ => self.text(row).map_or(Value::Missing, Value::Str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bit(words: &[u64], k: usize) -> bool {
        words[k / 64] >> (k % 64) & 1 == 1
    }

    proptest! {
        #[test]
        fn ints_round_trip(
            v in proptest::collection::vec(proptest::option::of(any::<i64>()), 0..300),
            flat in any::<bool>(),
        ) {
            let mut b = Vec::new();
            if flat {
                encode_flat(&ColumnValues::Int(v.clone()), &mut b);
            } else {
                encode(&ColumnValues::Int(v.clone()), &mut b);
            }
            prop_assert_eq!(b.len() % 8, 0);
            let c = Column::parse(&b).unwrap();
            prop_assert_eq!(c.rows(), v.len());
            for (i, x) in v.iter().enumerate() {
                prop_assert_eq!(c.int(i), *x);
            }
            prop_assert_eq!(c.int(v.len()), None);
            // A slice decoded at once reads what row by row reads, past the end included.
            let start = v.len() / 3;
            let mut out = vec![0; v.len() + 5 - start];
            let mut present = vec![u64::MAX; out.len().div_ceil(64)];
            c.decode_raw(start, &mut out, &mut present);
            for (k, x) in out.iter().enumerate() {
                prop_assert_eq!(bit(&present, k).then_some(*x), c.raw(start + k));
            }
        }

        #[test]
        fn strings_round_trip(
            v in proptest::collection::vec(proptest::option::of("[a-c正常死亡]{0,4}"), 0..200),
            dict in any::<bool>(),
            flat in any::<bool>(),
        ) {
            let refs: Vec<Option<&str>> = v.iter().map(|s| s.as_deref()).collect();
            let mut b = Vec::new();
            let values = if dict { ColumnValues::Dict(refs) } else { ColumnValues::Bytes(refs) };
            if flat {
                encode_flat(&values, &mut b);
            } else {
                encode(&values, &mut b);
            }
            let c = Column::parse(&b).unwrap();
            for (i, x) in v.iter().enumerate() {
                prop_assert_eq!(c.str(i), x.as_deref());
                let (mut raw, mut present) = ([0], [u64::MAX]);
                c.decode_raw(i, &mut raw, &mut present);
                prop_assert_eq!(bit(&present, 0).then_some(raw[0]), c.raw(i));
                if dict {
                    prop_assert_eq!(c.code(i).map(|k| c.dict()[k as usize]), x.as_deref());
                    if let Some(x) = x {
                        prop_assert_eq!(c.code_of(x), c.code(i));
                    }
                }
            }
        }

        #[test]
        fn predicted_ints_read_back_their_values(
            rows in proptest::collection::vec(
                (proptest::option::of(-1_000_000i64..1_000_000),
                 proptest::option::of(any::<i64>()),
                 proptest::option::of(-1_000i64..1_000),
                 any::<bool>()),
                0..700),
            p in -2_000i64..2_000,
            s in -3i64..3,
            q in 1i64..1_000,
            two in any::<bool>(),
        ) {
            let coef = Coef::new(p, if two { s } else { 0 }, q).unwrap();
            let a: Vec<Option<i64>> = rows.iter().map(|r| r.0).collect();
            let b: Vec<Option<i64>> = rows.iter().map(|r| r.2).collect();
            // Values near the prediction (or anything at all).
            let x: Vec<Option<i64>> = rows
                .iter()
                .map(|r| {
                    let guess = coef.at(r.0.unwrap_or(0), if two { r.2.unwrap_or(0) } else { 0 });
                    r.1.map(|v| if r.3 { guess.wrapping_add(v % 3) } else { v })
                })
                .collect();
            let (mut sa, mut sb) = (Vec::new(), Vec::new());
            encode(&ColumnValues::Int(a.clone()), &mut sa);
            encode(&ColumnValues::Int(b.clone()), &mut sb);
            let mut w = ColumnWriter::predicted(Linear {
                a: "a".into(),
                b: two.then(|| "b".into()),
                coef,
            });
            for (i, v) in x.iter().enumerate() {
                let guess = coef.at(a[i].unwrap_or(0), if two { b[i].unwrap_or(0) } else { 0 });
                w.push_predicted(*v, guess);
            }
            let mut sx = Vec::new();
            w.finish(&mut sx);
            prop_assert_eq!(sx.len() % 8, 0);
            let find = |n: &str| match n {
                "a" => Column::parse(&sa),
                "b" => Column::parse(&sb),
                _ => None,
            };
            prop_assert!(Column::parse(&sx).is_none(), "a predicted column needs its bases");
            let c = Column::parse_in(&sx, &find).unwrap();
            for (i, v) in x.iter().enumerate() {
                prop_assert_eq!(c.int(i), *v);
            }
            let start = x.len() / 3;
            let mut out = vec![0; x.len() + 5 - start];
            let mut present = vec![u64::MAX; out.len().div_ceil(64)];
            c.decode_raw(start, &mut out, &mut present);
            for (k, v) in out.iter().enumerate() {
                prop_assert_eq!(bit(&present, k).then_some(*v), c.raw(start + k));
            }
            if let Some((lo, n)) = c.raw_domain() {
                for v in x.iter().flatten() {
                    prop_assert!(((*v).wrapping_sub(lo) as u64) < n);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200), row in 0usize..100, base in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Arbitrary bytes for a column and for any base it may name.
            let find = |_: &str| Column::parse(&base);
            if let Some(c) = Column::parse_in(&b, &find) {
                let _ = (c.int(row), c.str(row), c.code(row), c.dict(), c.value(row));
                let (mut raw, mut present) = ([0; 70], [u64::MAX; 2]);
                c.decode_raw(row, &mut raw, &mut present);
                for (k, x) in raw.iter().enumerate() {
                    prop_assert_eq!(bit(&present, k).then_some(*x), c.raw(row + k));
                }
            }
        }
    }
}
