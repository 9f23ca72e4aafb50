//! Normalized columnar segments: what ingest writes and resolve reads.
//!
//! One file per source, written in row groups so that memory stays bounded however large the
//! source. The grammar (all integers little-endian, every section 8-byte aligned):
//!
//! ```text
//! segment      := header group* footer trailer
//! header       := "MSSEGMNT" u32:version u32:0
//! group        := chunk{ncols}                      -- one chunk per column, in schema order
//! chunk(int)   := validity blocked                  -- a missing row holds its predecessor's value
//! chunk(dict)  := validity blocked                  -- codes into the column's dictionary
//! chunk(bytes) := validity u64:0 repeats u32{n+1}:offsets u8*:data pad8
//!                                                   -- n = valid rows whose repeat bit is 0;
//!                                                   -- a repeat row has its predecessor's value
//!               | validity u64:1 blocked            -- every value is the decimal text of its
//!                                                   -- number: digits, no leading zero, ≤ 18
//! validity     := u64{ceil(rows/64)}                -- bit i set = row i has a value
//! repeats      := u64{ceil(rows/64)}                -- bit i set = row i repeats row i-1
//! blocked      := the snapshot's blocked integers (src/snapshot/FORMAT.md), `rows` values
//! footer       := u32:ncols (str:name u8:type){ncols}
//!                 u32:nmeta (str:key str:value){nmeta}
//!                 u32:ngroups (u64:rows (u64:offset u64:len u64:xxh3){ncols}){ngroups}
//!                 (u32:nvalues str{nvalues}){ndict}  -- dictionaries of dict columns, in order
//! trailer      := u64:footer_offset u64:footer_len u64:footer_xxh3 "MSSEGEND"
//! str          := u32:len u8{len}
//! type         := 0 int | 1 bytes | 2 dict
//! ```
//!
//! Missing values are absent from the validity bitmap, never zero. `open` checks the magic,
//! version, trailer and footer checksum; `verify` checks every chunk's xxh3.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{Xxh3DefaultBuilder, xxh3_64};

use crate::codec::blocks::{self, Blocked};
use crate::codec::{Text, decimal};
use crate::error::SegmentError;
use crate::mmap::FileBytes;

pub const MAGIC: &[u8; 8] = b"MSSEGMNT";
pub const END_MAGIC: &[u8; 8] = b"MSSEGEND";
pub const FORMAT_VERSION: u32 = 4;
pub const OLDEST_SUPPORTED: u32 = 4;
const TRAILER_LEN: usize = 32;

/// A chunk's place in the file: offset, length, xxh3.
type ChunkRef = (u64, u64, u64);
/// A row group: its row count and one chunk per column.
type Group = (u64, Vec<ChunkRef>);
/// A dict column's codes by value, and values by code.
type Dictionary = (HashMap<Vec<u8>, u32, Xxh3DefaultBuilder>, Vec<Vec<u8>>);

/// Physical type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `i64` values: dates (days), months, amounts (fen), quantities (thousandths), integers,
    /// flags.
    Int,
    /// UTF-8 strings.
    Bytes,
    /// UTF-8 strings from a small set, dictionary-encoded.
    Dict,
}

impl ColumnType {
    fn code(self) -> u8 {
        match self {
            ColumnType::Int => 0,
            ColumnType::Bytes => 1,
            ColumnType::Dict => 2,
        }
    }
    fn from_code(c: u8) -> Option<ColumnType> {
        match c {
            0 => Some(ColumnType::Int),
            1 => Some(ColumnType::Bytes),
            2 => Some(ColumnType::Dict),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Bytes => "bytes",
            ColumnType::Dict => "dict",
        }
    }
}

/// A column's name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    pub name: String,
    pub ty: ColumnType,
}

/// Values of one column for one row group, as built by ingest workers. Dict columns keep a
/// small dictionary of their own (codes in `ints`); the writer maps it onto the segment's.
#[derive(Debug, Clone, Default)]
pub struct ColumnData {
    /// One byte per row: 1 = the row has a value (packed into bits when written).
    valid: Vec<u8>,
    ints: Vec<i64>,
    /// Bytes columns, one byte per row: 1 = repeats the previous row's value (not stored again).
    repeat: Vec<u8>,
    /// Bytes columns: offsets of the stored values (one per valid, non-repeated row, plus one).
    offsets: Vec<u32>,
    data: Vec<u8>,
    dict: Option<LocalDict>,
}

/// A row group's dictionary of one column.
#[derive(Debug, Clone, Default)]
struct LocalDict {
    values: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, u32, Xxh3DefaultBuilder>,
    last: u32,
}

impl LocalDict {
    fn code(&mut self, v: &[u8]) -> u32 {
        if self.values.get(self.last as usize).is_some_and(|l| l == v) {
            return self.last;
        }
        // Few distinct values (statuses, types): a scan beats hashing.
        let found = if self.values.len() <= 32 {
            self.values.iter().position(|x| x == v).map(|p| p as u32)
        } else {
            self.index.get(v).copied()
        };
        let code = found.unwrap_or_else(|| {
            let c = self.values.len() as u32;
            self.values.push(v.to_vec());
            self.index.insert(v.to_vec(), c);
            c
        });
        self.last = code;
        code
    }
}

impl ColumnData {
    /// An empty column of the given type.
    pub fn of_type(ty: ColumnType) -> ColumnData {
        ColumnData {
            dict: (ty == ColumnType::Dict).then(LocalDict::default),
            ..ColumnData::default()
        }
    }

    /// Empty builders for one row group of `schema`.
    pub fn group(schema: &[ColumnSchema]) -> Vec<ColumnData> {
        schema.iter().map(|c| ColumnData::of_type(c.ty)).collect()
    }

    pub fn rows(&self) -> usize {
        self.valid.len()
    }

    pub fn push_int(&mut self, v: Option<i64>) {
        self.valid.push(u8::from(v.is_some()));
        self.ints.push(v.unwrap_or(0));
    }

    pub fn push_str(&mut self, v: Option<&str>) {
        self.push_utf8(v.map(str::as_bytes));
    }

    /// Pushes bytes the caller guarantees to be UTF-8 (ASCII identifiers built by
    /// validation).
    pub(crate) fn push_utf8(&mut self, v: Option<&[u8]>) {
        if let Some(d) = self.dict.as_mut() {
            let code = v.map_or(0, |s| d.code(s));
            self.valid.push(u8::from(v.is_some()));
            self.ints.push(i64::from(code));
            return;
        }
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        // Exports are sorted by entity: a value equal to the previous row's is only flagged.
        let repeat = match v {
            Some(s) if self.valid.last() == Some(&1) => {
                let start = self
                    .offsets
                    .len()
                    .checked_sub(2)
                    .and_then(|k| self.offsets.get(k));
                start
                    .and_then(|&k| self.data.get(k as usize..))
                    .is_some_and(|last| last == s)
            }
            _ => false,
        };
        self.valid.push(u8::from(v.is_some()));
        self.repeat.push(u8::from(repeat));
        if !repeat && let Some(s) = v {
            self.data.extend_from_slice(s);
            self.offsets.push(self.data.len() as u32);
        }
    }

    /// Empties the column, keeping its allocations for the next row group.
    pub fn clear(&mut self) {
        if let Some(d) = self.dict.as_mut() {
            d.values.clear();
            d.index.clear();
            d.last = 0;
        }
        self.valid.clear();
        self.repeat.clear();
        self.ints.clear();
        self.offsets.clear();
        self.data.clear();
    }

    /// Drops rows from `rows` on (undoes a partly pushed row).
    pub fn truncate(&mut self, rows: usize) {
        if rows >= self.rows() {
            return;
        }
        self.valid.truncate(rows);
        if !self.ints.is_empty() {
            self.ints.truncate(rows);
        }
        if !self.offsets.is_empty() {
            self.repeat.truncate(rows);
            // Stored values among the rows kept: valid and not repeats.
            let stored = self
                .valid
                .iter()
                .zip(&self.repeat)
                .filter(|(v, r)| **v == 1 && **r == 0)
                .count();
            self.offsets.truncate(stored + 1);
            let end = self.offsets[stored] as usize;
            self.data.truncate(end);
        }
    }

    fn is_valid(&self, i: usize) -> bool {
        self.valid[i] == 1
    }
}

/// Packs one flag byte per row into little-endian bit words (bit i of word i/64 = row i).
fn pack_flags(flags: &[u8], words: &mut Vec<u64>) {
    words.clear();
    words.extend(flags.chunks(64).map(|chunk| {
        chunk
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &f)| w | (u64::from(f & 1) << i))
    }));
}

/// Writes a segment file row group by row group.
#[derive(Debug)]
pub struct SegmentWriter {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    schema: Vec<ColumnSchema>,
    groups: Vec<Group>,
    dicts: Vec<Dictionary>,
    validity_words: Vec<u64>,
    repeat_words: Vec<u64>,
}

/// Chunk modes of a bytes column.
const TEXT: u64 = 0;
const DIGITS: u64 = 1;

/// `rows` values as blocked integers ([`blocks`]): missing rows write as their predecessor's
/// value, so they never widen a block.
fn blocked(rows: impl Iterator<Item = Option<i64>>) -> Vec<u8> {
    let mut w = blocks::Writer::new();
    rows.for_each(|v| w.push(v));
    let mut out = Vec::new();
    w.finish(&mut out);
    out
}

/// A bytes column's values as numbers, row by row (a repeat row's value again), when every
/// stored value is the canonical decimal text of one ([`decimal`]): sequence numbers and
/// account numbers then cost what numbers cost.
fn as_digits(col: &ColumnData) -> Option<Vec<Option<i64>>> {
    let mut out = Vec::with_capacity(col.rows());
    let mut next = 0usize;
    let mut cur = None;
    for r in 0..col.rows() {
        if !col.is_valid(r) {
            out.push(None);
            continue;
        }
        if col.repeat[r] == 0 {
            let (s, e) = (col.offsets[next] as usize, col.offsets[next + 1] as usize);
            next += 1;
            cur = Some(decimal(std::str::from_utf8(&col.data[s..e]).ok()?)?);
        }
        out.push(cur);
    }
    Some(out)
}

/// Values as little-endian bytes: a view on little-endian machines, a copy elsewhere.
fn le_bytes<T: bytemuck::Pod + ToLe>(v: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(v))
    } else {
        std::borrow::Cow::Owned(v.iter().flat_map(|x| x.to_le_vec()).collect())
    }
}

trait ToLe {
    fn to_le_vec(&self) -> Vec<u8>;
}
impl ToLe for u64 {
    fn to_le_vec(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}
impl ToLe for i64 {
    fn to_le_vec(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}
impl ToLe for u32 {
    fn to_le_vec(&self) -> Vec<u8> {
        self.to_le_bytes().to_vec()
    }
}

impl SegmentWriter {
    /// Writes one chunk made of `parts`, padded to 8 bytes; returns (offset, length, xxh3).
    fn emit(&mut self, parts: &[&[u8]]) -> Result<ChunkRef, SegmentError> {
        let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
        let mut len = 0usize;
        for p in parts {
            hasher.update(p);
            self.out.write_all(p).map_err(|e| SegmentError::Io {
                path: self.path.clone(),
                source: e,
            })?;
            len += p.len();
        }
        let pad = (8 - len % 8) % 8;
        if pad > 0 {
            let zeros = [0u8; 8];
            hasher.update(&zeros[..pad]);
            self.out
                .write_all(&zeros[..pad])
                .map_err(|e| SegmentError::Io {
                    path: self.path.clone(),
                    source: e,
                })?;
            len += pad;
        }
        let at = self.pos;
        self.pos += len as u64;
        Ok((at, len as u64, hasher.digest()))
    }

    pub fn create(path: &Path, schema: Vec<ColumnSchema>) -> Result<SegmentWriter, SegmentError> {
        let io = |e| SegmentError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        let file = File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&0u32.to_le_bytes()).map_err(io)?;
        let dicts = schema.iter().map(|_| Default::default()).collect();
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            out,
            pos: 16,
            schema,
            groups: Vec::new(),
            dicts,
            validity_words: Vec::new(),
            repeat_words: Vec::new(),
        })
    }

    pub fn schema(&self) -> &[ColumnSchema] {
        &self.schema
    }

    /// Empty builders for one row group, one per column.
    pub fn new_group(&self) -> Vec<ColumnData> {
        ColumnData::group(&self.schema)
    }

    /// Appends one row group. Every column must hold the same number of rows.
    pub fn write_group(&mut self, columns: &[ColumnData]) -> Result<(), SegmentError> {
        let rows = columns.first().map_or(0, ColumnData::rows);
        if columns.len() != self.schema.len() || columns.iter().any(|c| c.rows() != rows) {
            return Err(SegmentError::Corrupt {
                path: self.path.clone(),
                msg: "row group columns disagree on length (a bug in the caller)".into(),
            });
        }
        if rows == 0 {
            return Ok(());
        }
        let mut chunks = Vec::with_capacity(columns.len());
        for (i, col) in columns.iter().enumerate() {
            let mut validity_words = std::mem::take(&mut self.validity_words);
            pack_flags(&col.valid, &mut validity_words);
            let mut repeat_words = std::mem::take(&mut self.repeat_words);
            pack_flags(&col.repeat, &mut repeat_words);
            repeat_words.resize(validity_words.len(), 0);
            let validity = le_bytes(&validity_words);
            let chunk = match self.schema[i].ty {
                ColumnType::Int => {
                    let values = (0..rows).map(|r| col.is_valid(r).then(|| col.ints[r]));
                    self.emit(&[&validity, &blocked(values)])?
                }
                ColumnType::Bytes => match as_digits(col) {
                    Some(numbers) => self.emit(&[
                        &validity,
                        &DIGITS.to_le_bytes(),
                        &blocked(numbers.into_iter()),
                    ])?,
                    None => {
                        let offsets: &[u32] = if col.offsets.is_empty() {
                            &[0]
                        } else {
                            &col.offsets
                        };
                        self.emit(&[
                            &validity,
                            &TEXT.to_le_bytes(),
                            &le_bytes(&repeat_words),
                            &le_bytes(offsets),
                            &col.data,
                        ])?
                    }
                },
                ColumnType::Dict => {
                    let Some(local) = col.dict.as_ref() else {
                        return Err(SegmentError::Corrupt {
                            path: self.path.clone(),
                            msg: format!(
                                "column {:?} was not built as a dictionary column (a bug in the caller)",
                                self.schema[i].name
                            ),
                        });
                    };
                    // Map this group's dictionary onto the segment's, then translate codes.
                    let (map, values) = &mut self.dicts[i];
                    let translate: Vec<u32> = local
                        .values
                        .iter()
                        .map(|v| {
                            *map.entry(v.clone()).or_insert_with(|| {
                                values.push(v.clone());
                                values.len() as u32 - 1
                            })
                        })
                        .collect();
                    let codes = (0..rows).map(|r| {
                        col.is_valid(r).then(|| {
                            i64::from(translate.get(col.ints[r] as usize).copied().unwrap_or(0))
                        })
                    });
                    self.emit(&[&validity, &blocked(codes)])?
                }
            };
            chunks.push(chunk);
            drop(validity);
            self.validity_words = validity_words;
            self.repeat_words = repeat_words;
        }
        self.groups.push((rows as u64, chunks));
        Ok(())
    }

    /// Writes the footer and trailer, flushes and syncs. `meta` is free key/value provenance
    /// (source name, config, as-of date).
    pub fn finish(mut self, meta: &[(String, String)]) -> Result<u64, SegmentError> {
        let mut f = Vec::new();
        let put_str = |f: &mut Vec<u8>, s: &[u8]| {
            f.extend_from_slice(&(s.len() as u32).to_le_bytes());
            f.extend_from_slice(s);
        };
        f.extend_from_slice(&(self.schema.len() as u32).to_le_bytes());
        for c in &self.schema {
            put_str(&mut f, c.name.as_bytes());
            f.push(c.ty.code());
        }
        f.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        for (k, v) in meta {
            put_str(&mut f, k.as_bytes());
            put_str(&mut f, v.as_bytes());
        }
        f.extend_from_slice(&(self.groups.len() as u32).to_le_bytes());
        for (rows, chunks) in &self.groups {
            f.extend_from_slice(&rows.to_le_bytes());
            for (off, len, hash) in chunks {
                f.extend_from_slice(&off.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                f.extend_from_slice(&hash.to_le_bytes());
            }
        }
        for (i, c) in self.schema.iter().enumerate() {
            if c.ty == ColumnType::Dict {
                let values = &self.dicts[i].1;
                f.extend_from_slice(&(values.len() as u32).to_le_bytes());
                for v in values {
                    put_str(&mut f, v);
                }
            }
        }
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let io = |e| SegmentError::Io {
            path: self.path.clone(),
            source: e,
        };
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&self.pos.to_le_bytes());
        trailer.extend_from_slice(&(f.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&xxh3_64(&f).to_le_bytes());
        trailer.extend_from_slice(END_MAGIC);
        self.out.write_all(&f).map_err(io)?;
        self.out.write_all(&trailer).map_err(io)?;
        let total = self.pos + f.len() as u64 + TRAILER_LEN as u64;
        let file = self.out.into_inner().map_err(|e| SegmentError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io)?;
        Ok(total)
    }
}

/// A segment opened for reading.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    bytes: FileBytes,
    schema: Vec<ColumnSchema>,
    meta: Vec<(String, String)>,
    groups: Vec<Group>,
    dicts: HashMap<usize, Vec<String>>,
}

/// A little-endian cursor that turns every overrun into a `Corrupt` error.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SegmentError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(SegmentError::Corrupt {
                path: self.path.to_path_buf(),
                msg: "footer ends early".into(),
            });
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, SegmentError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SegmentError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, SegmentError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String, SegmentError> {
        let n = self.u32()? as usize;
        let path = self.path.to_path_buf();
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| SegmentError::Corrupt {
            path,
            msg: "a footer string is not UTF-8".into(),
        })
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Segment {
    /// Opens a segment file (memory-mapped), checking magic, version, trailer and the footer
    /// checksum. Chunks are read in place; `verify` checks their checksums.
    pub fn open(path: &Path) -> Result<Segment, SegmentError> {
        let bytes = FileBytes::open(path).map_err(|e| SegmentError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Segment::parse(path, bytes)
    }

    /// Parses a segment held in memory.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Segment, SegmentError> {
        Segment::parse(path, FileBytes::Owned(bytes))
    }

    fn parse(path: &Path, bytes: FileBytes) -> Result<Segment, SegmentError> {
        let corrupt = |msg: &str| SegmentError::Corrupt {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        };
        if bytes.len() < 16 + TRAILER_LEN || &bytes[..8] != MAGIC {
            return Err(SegmentError::Magic {
                path: path.to_path_buf(),
            });
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if !(OLDEST_SUPPORTED..=FORMAT_VERSION).contains(&version) {
            return Err(SegmentError::Version {
                path: path.to_path_buf(),
                expected: FORMAT_VERSION,
                oldest: OLDEST_SUPPORTED,
                got: version,
            });
        }
        if bytes[12..16] != [0, 0, 0, 0] {
            return Err(corrupt("reserved header bytes are not zero"));
        }
        let t = bytes.len() - TRAILER_LEN;
        if &bytes[t + 24..] != END_MAGIC {
            return Err(corrupt("the trailer is missing (truncated file?)"));
        }
        let f_off = le_u64(&bytes, t) as usize;
        let f_len = le_u64(&bytes, t + 8) as usize;
        let f_hash = le_u64(&bytes, t + 16);
        if f_off.checked_add(f_len) != Some(t) || f_off < 16 {
            return Err(corrupt("the trailer points outside the file"));
        }
        let footer = &bytes[f_off..t];
        if xxh3_64(footer) != f_hash {
            return Err(SegmentError::Checksum {
                path: path.to_path_buf(),
                section: "footer".into(),
            });
        }
        let mut c = Cursor {
            b: footer,
            at: 0,
            path,
        };
        let ncols = c.u32()? as usize;
        let mut schema = Vec::with_capacity(ncols.min(4096));
        for _ in 0..ncols {
            let name = c.string()?;
            let ty =
                ColumnType::from_code(c.u8()?).ok_or_else(|| corrupt("unknown column type"))?;
            schema.push(ColumnSchema { name, ty });
        }
        let nmeta = c.u32()? as usize;
        let mut meta = Vec::with_capacity(nmeta.min(4096));
        for _ in 0..nmeta {
            meta.push((c.string()?, c.string()?));
        }
        let ngroups = c.u32()? as usize;
        let mut groups = Vec::with_capacity(ngroups.min(1 << 20));
        for _ in 0..ngroups {
            let rows = c.u64()?;
            let mut chunks = Vec::with_capacity(ncols);
            for _ in &schema {
                let (off, len, hash) = (c.u64()?, c.u64()?, c.u64()?);
                let end = off
                    .checked_add(len)
                    .ok_or_else(|| corrupt("chunk offset overflows"))?;
                if off < 16 || end > f_off as u64 {
                    return Err(corrupt("a chunk points outside the data area"));
                }
                let words = rows.div_ceil(64) * 8;
                // Validity, then at least a blocked header or a text chunk's mode.
                if len < words + 8 {
                    return Err(corrupt("a chunk is shorter than its row count needs"));
                }
                chunks.push((off, len, hash));
            }
            groups.push((rows, chunks));
        }
        let mut dicts = HashMap::new();
        for (i, col) in schema.iter().enumerate() {
            if col.ty == ColumnType::Dict {
                let n = c.u32()? as usize;
                let mut values = Vec::with_capacity(n.min(1 << 20));
                for _ in 0..n {
                    values.push(c.string()?);
                }
                dicts.insert(i, values);
            }
        }
        Ok(Segment {
            path: path.to_path_buf(),
            bytes,
            schema,
            meta,
            groups,
            dicts,
        })
    }

    /// Checks every chunk's checksum, naming the first one at fault.
    pub fn verify(&self) -> Result<(), SegmentError> {
        for (g, (_, chunks)) in self.groups.iter().enumerate() {
            for (col, &(off, len, hash)) in self.schema.iter().zip(chunks) {
                let chunk = &self.bytes[off as usize..(off + len) as usize];
                if xxh3_64(chunk) != hash {
                    return Err(SegmentError::Checksum {
                        path: self.path.clone(),
                        section: format!("row group {g}, column {:?}", col.name),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn schema(&self) -> &[ColumnSchema] {
        &self.schema
    }

    pub fn rows(&self) -> u64 {
        self.groups.iter().map(|g| g.0).sum()
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn column_index(&self, name: &str, wanted: &[ColumnType]) -> Result<usize, SegmentError> {
        let i = self
            .schema
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| SegmentError::NoColumn(name.to_string()))?;
        if !wanted.contains(&self.schema[i].ty) {
            return Err(SegmentError::ColumnType {
                column: name.to_string(),
                actual: self.schema[i].ty.as_str(),
                wanted: wanted[0].as_str(),
            });
        }
        Ok(i)
    }

    fn chunk(&self, group: usize, col: usize) -> (usize, &[u8]) {
        let (rows, chunks) = &self.groups[group];
        let (off, len, _) = chunks[col];
        (
            *rows as usize,
            &self.bytes[off as usize..(off + len) as usize],
        )
    }

    fn corrupt(&self, column: &str, msg: &str) -> SegmentError {
        SegmentError::Corrupt {
            path: self.path.clone(),
            msg: format!("column {column:?}: {msg}"),
        }
    }

    /// Column `col`'s chunks, their layouts parsed and checked, and the first row of each
    /// group followed by the row count.
    fn chunks(&self, col: usize) -> Result<(Vec<GroupChunk<'_>>, Vec<u64>), SegmentError> {
        self.chunks_of(col, 0..self.groups.len())
    }

    /// As [`Self::chunks`], of groups `groups` only (the row starts counted from the first).
    fn chunks_of(
        &self,
        col: usize,
        groups: std::ops::Range<usize>,
    ) -> Result<(Vec<GroupChunk<'_>>, Vec<u64>), SegmentError> {
        let name = &self.schema[col].name;
        let short = || self.corrupt(name, "chunk shorter than its layout");
        let mut starts = vec![0u64];
        let mut chunks = Vec::with_capacity(groups.len());
        for (k, g) in groups.enumerate() {
            let (rows, b) = self.chunk(g, col);
            starts.push(starts[k] + rows as u64);
            let words = rows.div_ceil(64) * 8;
            let valid = b.get(..words).ok_or_else(short)?;
            let rest = &b[words..];
            let numbers = |b| match Blocked::parse(b, rows) {
                Some((values, _)) => Ok(values),
                None => Err(self.corrupt(name, "blocked integers do not fit their chunk")),
            };
            chunks.push(match self.schema[col].ty {
                ColumnType::Int => GroupChunk::Int {
                    valid,
                    values: numbers(rest)?,
                },
                ColumnType::Dict => GroupChunk::Dict {
                    valid,
                    codes: numbers(rest)?,
                },
                ColumnType::Bytes => match crate::codec::le_u64(rest, 0) {
                    Some(DIGITS) => GroupChunk::Digits {
                        valid,
                        values: numbers(&rest[8..])?,
                    },
                    Some(TEXT) => {
                        let rest = &rest[8..];
                        let repeat = rest.get(..words).ok_or_else(short)?;
                        let mut rank = Vec::with_capacity(rows.div_ceil(64));
                        let mut stored = 0u32;
                        for w in 0..rows.div_ceil(64) {
                            rank.push(stored);
                            let v = le_u64(valid, w * 8) & !le_u64(repeat, w * 8);
                            let live = if (w + 1) * 64 > rows {
                                v & ((1u64 << (rows - w * 64)) - 1)
                            } else {
                                v
                            };
                            stored += live.count_ones();
                        }
                        let offsets = rest
                            .get(words..words + (stored as usize + 1) * 4)
                            .ok_or_else(short)?;
                        GroupChunk::Bytes {
                            valid,
                            repeat,
                            offsets,
                            data: &rest[words + offsets.len()..],
                            rank,
                        }
                    }
                    _ => return Err(self.corrupt(name, "unknown text chunk mode")),
                },
            });
        }
        Ok((chunks, starts))
    }

    /// All values of an int column, `None` where missing.
    pub fn ints(&self, name: &str) -> Result<Vec<Option<i64>>, SegmentError> {
        let mut out = Vec::with_capacity(self.rows() as usize);
        self.for_each_int(name, |_, v| out.push(v))?;
        Ok(out)
    }

    /// Visits every value of an int column in row order: `f(row, value)`, `None` where
    /// missing; nothing is held but one group's parsed layout.
    pub fn for_each_int(
        &self,
        name: &str,
        f: impl FnMut(usize, Option<i64>),
    ) -> Result<(), SegmentError> {
        self.for_each_int_in(name, 0..self.rows() as usize, f)
    }

    /// Visits the values of an int column at `rows` (a range of row numbers; rows past the
    /// end are not visited), in row order, decoded a block at a time.
    pub fn for_each_int_in(
        &self,
        name: &str,
        rows: std::ops::Range<usize>,
        mut f: impl FnMut(usize, Option<i64>),
    ) -> Result<(), SegmentError> {
        const STEP: usize = 4096;
        let col = self.column_index(name, &[ColumnType::Int])?;
        let mut first = 0;
        let mut buf = vec![0i64; STEP];
        for (g, (n, _)) in self.groups.iter().enumerate() {
            let n = *n as usize;
            let (from, to) = (rows.start.max(first), rows.end.min(first + n));
            if from < to {
                let (chunks, _) = self.chunks_of(col, g..g + 1)?;
                let Some(GroupChunk::Int { valid, values }) = chunks.first() else {
                    unreachable!("an int column's chunks are int chunks")
                };
                let mut r = from - first;
                while r < to - first {
                    let len = STEP.min(to - first - r);
                    values.decode(r, &mut buf[..len]);
                    for (k, &v) in buf[..len].iter().enumerate() {
                        f(first + r + k, bit(valid, r + k).then_some(v));
                    }
                    r += len;
                }
            }
            first += n;
            if first >= rows.end {
                break;
            }
        }
        Ok(())
    }

    /// All values of a bytes or dict column, `None` where missing.
    pub fn strings(&self, name: &str) -> Result<Vec<Option<String>>, SegmentError> {
        let mut out = Vec::with_capacity(self.rows() as usize);
        self.for_each_str(name, |_, v| out.push(v.map(str::to_string)))?;
        Ok(out)
    }

    /// The dictionary of a dict column: every value it holds, each once.
    pub fn dictionary(&self, name: &str) -> Result<&[String], SegmentError> {
        let col = self.column_index(name, &[ColumnType::Dict])?;
        Ok(self.dicts.get(&col).map_or(&[], Vec::as_slice))
    }

    /// Visits every value of a bytes or dict column in row order: `f(row, value)`, `None`
    /// where missing. Nothing is allocated per row: text is borrowed from the map, numbers
    /// stored for decimal text are written into one buffer.
    pub fn for_each_str(
        &self,
        name: &str,
        mut f: impl FnMut(usize, Option<&str>),
    ) -> Result<(), SegmentError> {
        self.for_each_str_while(name, |row, v| {
            f(row, v);
            true
        })
    }

    /// [`Segment::for_each_str`] until `f` returns `false`.
    pub fn for_each_str_while(
        &self,
        name: &str,
        mut f: impl FnMut(usize, Option<&str>) -> bool,
    ) -> Result<(), SegmentError> {
        let col = self.column_index(name, &[ColumnType::Bytes, ColumnType::Dict])?;
        let dict = self.dicts.get(&col).map_or(&[][..], Vec::as_slice);
        let mut row = 0usize;
        let (chunks, starts) = self.chunks(col)?;
        for (g, chunk) in chunks.iter().enumerate() {
            let rows = (starts[g + 1] - starts[g]) as usize;
            match chunk {
                GroupChunk::Dict { valid, codes } => {
                    for r in 0..rows {
                        let v = if bit(valid, r) {
                            let v = usize::try_from(codes.get(r)).ok().and_then(|c| dict.get(c));
                            Some(v.ok_or_else(|| self.corrupt(name, "code outside dictionary"))?)
                        } else {
                            None
                        };
                        if !f(row + r, v.map(String::as_str)) {
                            return Ok(());
                        }
                    }
                }
                GroupChunk::Digits { valid, values } => {
                    let mut buf = [0u8; 20];
                    for r in 0..rows {
                        if bit(valid, r) {
                            let text = Text::Digits(values.get(r) as u64);
                            let b = text.bytes(&mut buf);
                            // Digits are ASCII.
                            if !f(row + r, std::str::from_utf8(b).ok()) {
                                return Ok(());
                            }
                        } else if !f(row + r, None) {
                            return Ok(());
                        }
                    }
                }
                GroupChunk::Bytes {
                    valid,
                    repeat,
                    offsets,
                    data,
                    ..
                } => {
                    let mut cur: Option<&str> = None;
                    let mut next = 0usize;
                    for r in 0..rows {
                        if !bit(valid, r) {
                            if !f(row + r, None) {
                                return Ok(());
                            }
                            continue;
                        }
                        if !bit(repeat, r) {
                            cur = Some(
                                text_at(offsets, data, next).map_err(|m| self.corrupt(name, m))?,
                            );
                            next += 1;
                        } else if cur.is_none() {
                            return Err(
                                self.corrupt(name, "a repeat flag without a previous value")
                            );
                        }
                        if !f(row + r, cur) {
                            return Ok(());
                        }
                    }
                }
                GroupChunk::Int { .. } => unreachable!("a text column's chunks are text chunks"),
            }
            row += rows;
        }
        Ok(())
    }
}

/// Stored value `i` of a text chunk.
fn text_at<'s>(offsets: &[u8], data: &'s [u8], i: usize) -> Result<&'s str, &'static str> {
    let u32_at = |k: usize| {
        offsets
            .get(k * 4..k * 4 + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (Some(s), Some(e)) = (u32_at(i), u32_at(i + 1)) else {
        return Err("offsets run past the chunk");
    };
    let bytes = data
        .get(s..e)
        .filter(|_| s <= e)
        .ok_or("string offsets out of range")?;
    simdutf8::basic::from_utf8(bytes).map_err(|_| "string is not UTF-8")
}

/// One group's chunk of a column, its layout parsed and checked.
#[derive(Debug)]
enum GroupChunk<'s> {
    Int {
        valid: &'s [u8],
        values: Blocked<'s>,
    },
    Dict {
        valid: &'s [u8],
        codes: Blocked<'s>,
    },
    /// Decimal text stored as the numbers it spells.
    Digits {
        valid: &'s [u8],
        values: Blocked<'s>,
    },
    Bytes {
        valid: &'s [u8],
        repeat: &'s [u8],
        offsets: &'s [u8],
        data: &'s [u8],
        /// Stored (valid, not repeated) values before each 64-row word.
        rank: Vec<u32>,
    },
}

/// Random access to one column's values by row, for readers that visit rows in their own
/// order (the snapshot stage reads them grouped by entity) without materializing the column.
/// Each group's layout is checked when the reader is made; reads stay within the chunk.
#[derive(Debug)]
pub struct ColumnReader<'s> {
    seg: &'s Segment,
    name: String,
    /// First row of each group, then the row count.
    starts: Vec<u64>,
    /// The group holding row `k << coarse_shift` for each `k`: a row's group is found from
    /// there in a step or two, whether or not the groups are even (a batch's quarantined
    /// rows leave its group short), not by a binary search over every group (a cache miss a
    /// probe, per row read).
    coarse: Vec<u32>,
    coarse_shift: u32,
    chunks: Vec<GroupChunk<'s>>,
    dict: &'s [String],
}

fn bit(words: &[u8], r: usize) -> bool {
    words
        .get((r / 64) * 8..(r / 64) * 8 + 8)
        .is_some_and(|w| le_u64(w, 0) >> (r % 64) & 1 == 1)
}

impl Segment {
    /// A random-access reader of column `name`.
    pub fn reader(&self, name: &str) -> Result<ColumnReader<'_>, SegmentError> {
        let col = self.column_index(
            name,
            &[ColumnType::Int, ColumnType::Bytes, ColumnType::Dict],
        )?;
        let (chunks, starts) = self.chunks(col)?;
        // The group holding row `k << coarse_shift`, for each `k`, with a power of two no
        // larger than the mean group: a bucket spans about one group boundary.
        let rows = starts.last().copied().unwrap_or(0);
        let mean = rows / (starts.len() as u64 - 1).max(1);
        let coarse_shift = mean.max(1).ilog2().min(40);
        let mut coarse = Vec::new();
        if rows > 0 {
            let mut g = 0usize;
            for k in 0..=((rows - 1) >> coarse_shift) {
                let row = k << coarse_shift;
                while starts[g + 1] <= row {
                    g += 1;
                }
                coarse.push(g as u32);
            }
        }
        Ok(ColumnReader {
            seg: self,
            name: name.to_string(),
            starts,
            coarse,
            coarse_shift,
            chunks,
            dict: self.dicts.get(&col).map_or(&[], Vec::as_slice),
        })
    }
}

impl<'s> ColumnReader<'s> {
    fn corrupt(&self, msg: &str) -> SegmentError {
        self.seg.corrupt(&self.name, msg)
    }

    /// The group holding `row` and the row's place in it.
    #[inline]
    fn locate(&self, row: usize) -> Option<(usize, usize)> {
        let row = row as u64;
        if row >= *self.starts.last()? {
            return None;
        }
        let mut g = *self.coarse.get((row >> self.coarse_shift) as usize)? as usize;
        while *self.starts.get(g + 1)? <= row {
            g += 1;
        }
        Some((g, (row - self.starts[g]) as usize))
    }

    /// Splits `rows` into runs of consecutive rows within one group and calls
    /// `run(Some((group, first row in the group)), len)` for each (`None` for a row past
    /// the end). A table whose export is clustered by entity is read almost wholly in runs.
    fn runs(&self, rows: &[u32], mut run: impl FnMut(Option<(usize, usize)>, usize)) {
        let mut i = 0;
        while i < rows.len() {
            let Some((g, r)) = self.locate(rows[i] as usize) else {
                run(None, 1);
                i += 1;
                continue;
            };
            let room = (self.starts[g + 1] - self.starts[g]) as usize - r;
            let mut len = 1;
            while len < room && i + len < rows.len() && rows[i + len] == rows[i] + len as u32 {
                len += 1;
            }
            run(Some((g, r)), len);
            i += len;
        }
    }

    /// The int values of `rows`, in the order given, appended to `out` (as [`Self::int`]
    /// reads each); runs of consecutive rows are decoded a block at a time.
    pub fn ints_at(&self, rows: &[u32], out: &mut Vec<Option<i64>>) {
        let mut buf = Vec::new();
        self.runs(rows, |at, len| {
            match at.map(|(g, r)| (&self.chunks[g], r)) {
                Some((GroupChunk::Int { valid, values }, r)) => {
                    buf.resize(len, 0);
                    values.decode(r, &mut buf);
                    out.extend(
                        buf.iter()
                            .enumerate()
                            .map(|(k, &v)| bit(valid, r + k).then_some(v)),
                    );
                }
                _ => out.extend(std::iter::repeat_n(None, len)),
            }
        });
    }

    /// The text values of `rows`, in the order given, appended to `out` (as [`Self::text`]
    /// reads each); runs of consecutive dictionary codes and numbers are decoded a block at
    /// a time.
    pub fn texts_at(
        &self,
        rows: &[u32],
        out: &mut Vec<Option<Text<'s>>>,
    ) -> Result<(), SegmentError> {
        let mut buf = Vec::new();
        let mut bad: Option<SegmentError> = None;
        self.runs(rows, |at, len| {
            let Some((g, r)) = at else {
                out.push(None);
                return;
            };
            match &self.chunks[g] {
                GroupChunk::Dict { valid, codes } => {
                    buf.resize(len, 0);
                    codes.decode(r, &mut buf);
                    for (k, &c) in buf.iter().enumerate() {
                        if !bit(valid, r + k) {
                            out.push(None);
                            continue;
                        }
                        let s = usize::try_from(c).ok().and_then(|c| self.dict.get(c));
                        if s.is_none() {
                            bad.get_or_insert_with(|| self.corrupt("code outside dictionary"));
                        }
                        out.push(s.map(|s| Text::Str(s.as_str())));
                    }
                }
                GroupChunk::Digits { valid, values } => {
                    buf.resize(len, 0);
                    values.decode(r, &mut buf);
                    out.extend(
                        buf.iter()
                            .enumerate()
                            .map(|(k, &v)| bit(valid, r + k).then_some(Text::Digits(v as u64))),
                    );
                }
                GroupChunk::Int { .. } => {
                    bad.get_or_insert_with(|| self.corrupt("not a text column"));
                    out.extend(std::iter::repeat_n(None, len));
                }
                GroupChunk::Bytes { .. } => {
                    let first = self.starts[g] as usize + r;
                    for row in first..first + len {
                        match self.text(row) {
                            Ok(t) => out.push(t),
                            Err(e) => {
                                bad.get_or_insert(e);
                                out.push(None);
                            }
                        }
                    }
                }
            }
        });
        bad.map_or(Ok(()), Err)
    }

    /// Whether every group stores the column as decimal numbers (or has no values): all its
    /// text is decimal digits without a leading zero, known without reading a row.
    pub fn all_digits(&self) -> bool {
        self.chunks.iter().all(|c| match c {
            GroupChunk::Digits { values, .. } => {
                let (lo, hi) = values.range();
                values.is_empty() || (lo >= 0 && hi < 1_000_000_000_000_000_000)
            }
            GroupChunk::Bytes { valid, .. } | GroupChunk::Dict { valid, .. } => {
                valid.iter().all(|&b| b == 0)
            }
            GroupChunk::Int { .. } => false,
        })
    }

    /// An int column's value at `row` (`None` where missing, past the end, or not an int
    /// column).
    #[inline]
    pub fn int(&self, row: usize) -> Option<i64> {
        let (g, r) = self.locate(row)?;
        match &self.chunks[g] {
            GroupChunk::Int { valid, values } if bit(valid, r) => Some(values.get(r)),
            _ => None,
        }
    }

    /// A bytes or dict column's value at `row` (`None` where missing or past the end): text
    /// borrowed from the map, or the number that decimal text is stored as.
    pub fn text(&self, row: usize) -> Result<Option<Text<'s>>, SegmentError> {
        let Some((g, r)) = self.locate(row) else {
            return Ok(None);
        };
        match &self.chunks[g] {
            GroupChunk::Int { .. } => Err(self.corrupt("not a text column")),
            GroupChunk::Dict { valid, codes } => {
                if !bit(valid, r) {
                    return Ok(None);
                }
                usize::try_from(codes.get(r))
                    .ok()
                    .and_then(|c| self.dict.get(c))
                    .map(|s| Some(Text::Str(s.as_str())))
                    .ok_or_else(|| self.corrupt("code outside dictionary"))
            }
            GroupChunk::Digits { valid, values } => {
                Ok(bit(valid, r).then(|| Text::Digits(values.get(r) as u64)))
            }
            GroupChunk::Bytes {
                valid,
                repeat,
                offsets,
                data,
                rank,
            } => {
                if !bit(valid, r) {
                    return Ok(None);
                }
                // The stored values up to and including row r; a repeated row has the value
                // of the last stored row before it.
                let w = le_u64(valid, (r / 64) * 8) & !le_u64(repeat, (r / 64) * 8);
                let upto = if r % 64 == 63 {
                    w
                } else {
                    w & ((1u64 << (r % 64 + 1)) - 1)
                };
                let n = rank[r / 64] as usize + upto.count_ones() as usize;
                let i = n
                    .checked_sub(1)
                    .ok_or_else(|| self.corrupt("a repeat flag without a previous value"))?;
                text_at(offsets, data, i)
                    .map(|s| Some(Text::Str(s)))
                    .map_err(|m| self.corrupt(m))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Vec<ColumnSchema> {
        vec![
            ColumnSchema {
                name: "n".into(),
                ty: ColumnType::Int,
            },
            ColumnSchema {
                name: "s".into(),
                ty: ColumnType::Bytes,
            },
            ColumnSchema {
                name: "d".into(),
                ty: ColumnType::Dict,
            },
        ]
    }

    fn write(path: &Path, groups: usize, rows: usize) {
        let mut w = SegmentWriter::create(path, schema()).unwrap();
        for g in 0..groups {
            let mut cols = w.new_group();
            for r in 0..rows {
                let i = (g * rows + r) as i64;
                cols[0].push_int((i % 7 != 0).then_some(i - 50));
                cols[1].push_str((i % 5 != 0).then(|| format!("值{i}")).as_deref());
                cols[2]
                    .push_str((i % 3 != 0).then_some(["正常", "迁出", "死亡注销"][i as usize % 3]));
            }
            w.write_group(&cols).unwrap();
        }
        w.finish(&[("source".into(), "GA.person".into())]).unwrap();
    }

    #[test]
    fn a_column_reader_reads_any_row_as_the_scans_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.seg");
        let mut w = SegmentWriter::create(&path, schema()).unwrap();
        // Groups of uneven sizes; text in runs (stored once, then repeat flags), missing rows
        // inside runs and at group starts.
        for (g, rows) in [100usize, 64, 1, 257, 0, 130].into_iter().enumerate() {
            let mut cols = w.new_group();
            for r in 0..rows {
                let i = (g * 1000 + r) as i64;
                cols[0].push_int((i % 11 != 3).then_some(i * 7 - 500));
                let text = format!("值{}", r / 9);
                cols[1].push_str((r % 13 != 5 && r % 64 != 0).then_some(text.as_str()));
                cols[2].push_str((i % 4 != 1).then_some(["正常", "迁出"][r / 30 % 2]));
            }
            w.write_group(&cols).unwrap();
        }
        w.finish(&[]).unwrap();
        let seg = Segment::open(&path).unwrap();
        let ints = seg.ints("n").unwrap();
        let n = seg.reader("n").unwrap();
        for (r, v) in ints.iter().enumerate() {
            assert_eq!(n.int(r), *v, "n row {r}");
        }
        assert_eq!(n.int(ints.len()), None);
        // A range of rows is visited as the whole scan visits it, within a group, across
        // groups (the empty one among them) and past the end.
        let len = ints.len();
        for range in [
            0..len,
            0..0,
            3..99,
            99..101,
            100..165,
            160..430,
            164..165,
            500..len + 40,
        ] {
            let mut got = Vec::new();
            seg.for_each_int_in("n", range.clone(), |r, v| got.push((r, v)))
                .unwrap();
            let want: Vec<_> = (range.start..range.end.min(len))
                .map(|r| (r, ints[r]))
                .collect();
            assert_eq!(got, want, "rows {range:?}");
        }
        for col in ["s", "d"] {
            let strings = seg.strings(col).unwrap();
            let reader = seg.reader(col).unwrap();
            // Backwards, so no row is read after its predecessor by accident.
            for r in (0..strings.len()).rev() {
                assert_eq!(
                    reader.text(r).unwrap().map(|t| t.to_string()),
                    strings[r],
                    "{col} row {r}"
                );
            }
            assert_eq!(reader.text(strings.len()).unwrap(), None);
        }

        // The batch readers agree with the row reader for rows in runs across group
        // boundaries, backwards, repeated, and past the end.
        let rows = ints.len() as u32;
        let orders: Vec<Vec<u32>> = vec![
            (0..rows).collect(),
            (0..rows).rev().collect(),
            (0..rows).map(|r| (r * 37) % rows).collect(),
            [
                95,
                96,
                97,
                98,
                99,
                100,
                101,
                163,
                164,
                165,
                5,
                5,
                5,
                rows,
                rows + 9,
                0,
            ]
            .into(),
            (90..rows + 3).step_by(2).chain(90..rows + 3).collect(),
        ];
        for order in &orders {
            let mut got = vec![Some(-1)];
            n.ints_at(order, &mut got);
            let want: Vec<_> = order.iter().map(|&r| n.int(r as usize)).collect();
            assert_eq!(got[0], Some(-1), "ints_at appends");
            assert_eq!(&got[1..], want, "ints_at {order:?}");
            for col in ["s", "d"] {
                let reader = seg.reader(col).unwrap();
                let mut got = Vec::new();
                reader.texts_at(order, &mut got).unwrap();
                let want: Vec<_> = order
                    .iter()
                    .map(|&r| reader.text(r as usize).unwrap())
                    .collect();
                assert_eq!(got, want, "{col} texts_at {order:?}");
            }
        }
        assert!(!seg.reader("s").unwrap().all_digits());
    }

    #[test]
    fn decimal_text_is_stored_as_numbers_and_read_back_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.seg");
        let schema = vec![ColumnSchema {
            name: "no".into(),
            ty: ColumnType::Bytes,
        }];
        let mut w = SegmentWriter::create(&path, schema).unwrap();
        // Group 0: sequence numbers with repeats and gaps (numbers); group 1: a leading zero
        // and a letter among numbers (text); group 2: 18 digits and "0" (numbers).
        let groups: [Vec<Option<&str>>; 3] = [
            (0..3000)
                .map(|i| (i % 17 != 4).then(|| ["1", "2", "2", "3", "1000"][i % 5]))
                .collect(),
            vec![Some("7"), Some("007"), None, Some("12X"), Some("12X")],
            vec![Some("999999999999999999"), Some("0"), None, Some("0")],
        ];
        let mut want = Vec::new();
        for rows in &groups {
            let mut cols = w.new_group();
            for v in rows {
                cols[0].push_str(*v);
                want.push(v.map(str::to_string));
            }
            w.write_group(&cols).unwrap();
        }
        w.finish(&[]).unwrap();
        let seg = Segment::open(&path).unwrap();
        seg.verify().unwrap();
        assert_eq!(seg.strings("no").unwrap(), want);
        let (chunks, _) = seg.chunks(0).unwrap();
        let modes: Vec<&str> = chunks
            .iter()
            .map(|c| match c {
                GroupChunk::Digits { .. } => "digits",
                _ => "text",
            })
            .collect();
        assert_eq!(modes, ["digits", "text", "digits"]);
        let reader = seg.reader("no").unwrap();
        assert!(!reader.all_digits(), "group 1 is text");
        let all: Vec<u32> = (0..want.len() as u32).collect();
        let mut batch = Vec::new();
        reader.texts_at(&all, &mut batch).unwrap();
        let batch: Vec<_> = batch.iter().map(|t| t.map(|t| t.to_string())).collect();
        assert_eq!(batch, want);
        assert_eq!(reader.text(1).unwrap(), Some(Text::Digits(2)));
        // Without the text group, every value is known decimal without a read.
        let numbers = dir.path().join("n.seg");
        let mut w = SegmentWriter::create(&numbers, seg.schema().to_vec()).unwrap();
        for rows in [&groups[0], &groups[2]] {
            let mut cols = w.new_group();
            rows.iter().for_each(|v| cols[0].push_str(*v));
            w.write_group(&cols).unwrap();
        }
        w.finish(&[]).unwrap();
        assert!(
            Segment::open(&numbers)
                .unwrap()
                .reader("no")
                .unwrap()
                .all_digits()
        );
        for (r, v) in want.iter().enumerate() {
            assert_eq!(
                reader.text(r).unwrap().map(|t| t.to_string()),
                *v,
                "row {r}"
            );
        }
    }

    #[test]
    fn reading_corrupt_chunks_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.seg");
        write(&p, 2, 300);
        let good = std::fs::read(&p).unwrap();
        // Every byte of the data area, flipped, read without `verify` through every reader.
        let data_end = good.len() - 2000.min(good.len() / 4);
        for i in (16..data_end).step_by(3) {
            let mut bad = good.clone();
            bad[i] ^= 0xA5;
            let Ok(seg) = Segment::from_bytes(&p, bad) else {
                continue;
            };
            let _ = seg.ints("n");
            let _ = seg.strings("s");
            let _ = seg.strings("d");
            for col in ["n", "s", "d"] {
                if let Ok(r) = seg.reader(col) {
                    for row in [0, 1, 64, 299, 300, 599, 600] {
                        let _ = (r.int(row), r.text(row));
                    }
                    let rows: Vec<u32> = (250..620).collect();
                    let (mut ints, mut texts) = (Vec::new(), Vec::new());
                    r.ints_at(&rows, &mut ints);
                    let _ = r.texts_at(&rows, &mut texts);
                    let _ = r.all_digits();
                }
            }
        }
    }

    #[test]
    fn round_trips_values_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.seg");
        write(&p, 3, 100);
        let s = Segment::open(&p).unwrap();
        s.verify().unwrap();
        assert_eq!(s.rows(), 300);
        assert_eq!(s.meta("source"), Some("GA.person"));
        let n = s.ints("n").unwrap();
        let st = s.strings("s").unwrap();
        let d = s.strings("d").unwrap();
        for i in 0..300usize {
            let ii = i as i64;
            assert_eq!(n[i], (ii % 7 != 0).then_some(ii - 50));
            assert_eq!(st[i], (i % 5 != 0).then(|| format!("值{i}")));
            assert_eq!(
                d[i].as_deref(),
                (i % 3 != 0).then_some(["正常", "迁出", "死亡注销"][i % 3])
            );
        }
        assert!(matches!(s.ints("s"), Err(SegmentError::ColumnType { .. })));
        assert!(matches!(s.ints("zz"), Err(SegmentError::NoColumn(_))));
    }

    #[test]
    fn repeated_values_survive_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.seg");
        let mut w = SegmentWriter::create(
            &p,
            vec![ColumnSchema {
                name: "s".into(),
                ty: ColumnType::Bytes,
            }],
        )
        .unwrap();
        let mut cols = w.new_group();
        let mut want = Vec::new();
        for (i, v) in ["a", "a", "a", "", "b", "b", "a", "a"].iter().enumerate() {
            let v = (!v.is_empty()).then_some(*v);
            cols[0].push_str(v);
            // Undo every third push, as a rejected row does.
            if i % 3 == 2 {
                let n = cols[0].rows();
                cols[0].truncate(n - 1);
            } else {
                want.push(v.map(str::to_string));
            }
        }
        for _ in 0..70 {
            cols[0].push_str(Some("c"));
            want.push(Some("c".to_string()));
        }
        w.write_group(&cols).unwrap();
        w.finish(&[]).unwrap();
        let s = Segment::open(&p).unwrap();
        s.verify().unwrap();
        assert_eq!(s.strings("s").unwrap(), want);
    }

    #[test]
    fn bit_packing_keeps_extremes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.seg");
        let values = [
            Some(i64::MIN),
            None,
            Some(i64::MAX),
            Some(0),
            Some(-1),
            Some(7),
        ];
        let mut w = SegmentWriter::create(
            &p,
            vec![ColumnSchema {
                name: "v".into(),
                ty: ColumnType::Int,
            }],
        )
        .unwrap();
        for chunk in [&values[..], &values[3..], &values[1..2]] {
            let mut cols = w.new_group();
            for v in chunk {
                cols[0].push_int(*v);
            }
            w.write_group(&cols).unwrap();
        }
        w.finish(&[]).unwrap();
        let s = Segment::open(&p).unwrap();
        s.verify().unwrap();
        let mut want = values.to_vec();
        want.extend_from_slice(&values[3..]);
        want.extend_from_slice(&values[1..2]);
        assert_eq!(s.ints("v").unwrap(), want);
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.seg");
        write(&p, 2, 70);
        let good = std::fs::read(&p).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x5A;
            let r = Segment::from_bytes(&p, bad).and_then(|s| s.verify());
            assert!(r.is_err(), "flip at {i} went unnoticed");
        }
        for len in 0..good.len() {
            let r = Segment::from_bytes(&p, good[..len].to_vec()).and_then(|s| s.verify());
            assert!(r.is_err(), "truncation to {len} went unnoticed");
        }
    }
}
