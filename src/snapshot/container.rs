//! The snapshot container: a header, named 8-byte-aligned sections, a footer with the section
//! table and one xxh3 checksum per section, and a fixed-size trailer (FORMAT.md, `file`).
//!
//! Writing goes to a temporary name beside the destination; `finish` fsyncs the file, renames
//! it into place and fsyncs the folder, so a reader sees either the old snapshot or the whole
//! new one. Opening checks the header, the trailer and the footer's own checksum: constant
//! work whatever the size. `verify` reads every section and checks its checksum.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

use super::column::le_u64;
use crate::error::SnapshotError;
use crate::mmap::FileBytes;

pub const MAGIC: &[u8; 8] = b"MSSNAPSH";
pub const END_MAGIC: &[u8; 8] = b"MSSNAPND";
/// The version this build writes.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest version this build reads.
pub const OLDEST_SUPPORTED: u32 = 1;
const HEADER_LEN: usize = 16;
const TRAILER_LEN: usize = 32;
/// A footer larger than this is not one we wrote (a snapshot has hundreds of sections).
const MAX_FOOTER: u64 = 64 << 20;

/// One entry of the section table.
#[derive(Debug, Clone)]
pub struct SectionEntry {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    pub xxh3: u64,
}

/// Writes a container section by section.
pub struct ContainerWriter {
    dest: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    sections: Vec<SectionEntry>,
    open: Option<(String, u64, Xxh3)>,
}

impl std::fmt::Debug for ContainerWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerWriter")
            .field("dest", &self.dest)
            .field("pos", &self.pos)
            .field("sections", &self.sections.len())
            .finish()
    }
}

impl ContainerWriter {
    /// Starts writing the container that `finish` will publish at `dest`.
    pub fn create(dest: &Path) -> Result<ContainerWriter, SnapshotError> {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "snapshot".into());
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| SnapshotError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        let mut w = ContainerWriter {
            dest: dest.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            sections: Vec::new(),
            open: None,
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        w.raw(&header)?;
        Ok(w)
    }

    fn io(&self, e: std::io::Error) -> SnapshotError {
        SnapshotError::Io {
            path: self.tmp.clone(),
            source: e,
        }
    }

    fn raw(&mut self, b: &[u8]) -> Result<(), SnapshotError> {
        self.out.write_all(b).map_err(|e| self.io(e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), SnapshotError> {
        let pad = (8 - (self.pos % 8) as usize) % 8;
        self.raw(&[0u8; 8][..pad])
    }

    /// Starts a section; `write` appends to it and `end` closes it.
    pub fn begin(&mut self, name: &str) -> Result<(), SnapshotError> {
        if let Some((open, ..)) = &self.open {
            return Err(SnapshotError::Input(format!(
                "section {name:?} begun while {open:?} is open"
            )));
        }
        if self.sections.iter().any(|s| s.name == name) {
            return Err(SnapshotError::Input(format!(
                "section {name:?} written twice"
            )));
        }
        self.pad()?;
        self.open = Some((name.to_string(), self.pos, Xxh3::new()));
        Ok(())
    }

    /// Appends bytes to the open section.
    pub fn write(&mut self, b: &[u8]) -> Result<(), SnapshotError> {
        match &mut self.open {
            Some((_, _, h)) => h.update(b),
            None => return Err(SnapshotError::Input("write outside a section".into())),
        }
        self.raw(b)
    }

    /// Closes the open section.
    pub fn end(&mut self) -> Result<(), SnapshotError> {
        let Some((name, offset, h)) = self.open.take() else {
            return Err(SnapshotError::Input("end without a section".into()));
        };
        self.sections.push(SectionEntry {
            name,
            offset,
            len: self.pos - offset,
            xxh3: h.digest(),
        });
        Ok(())
    }

    /// Writes a whole section.
    pub fn section(&mut self, name: &str, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.begin(name)?;
        self.write(bytes)?;
        self.end()
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Writes the footer and trailer, fsyncs, and renames the file into place. Returns the
    /// file's size.
    pub fn finish(mut self) -> Result<u64, SnapshotError> {
        if let Some((name, ..)) = &self.open {
            return Err(SnapshotError::Input(format!("section {name:?} left open")));
        }
        self.pad()?;
        let mut f = Vec::new();
        f.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for s in &self.sections {
            f.extend_from_slice(&(s.name.len() as u32).to_le_bytes());
            f.extend_from_slice(s.name.as_bytes());
            f.extend_from_slice(&s.offset.to_le_bytes());
            f.extend_from_slice(&s.len.to_le_bytes());
            f.extend_from_slice(&s.xxh3.to_le_bytes());
        }
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let footer_offset = self.pos;
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&footer_offset.to_le_bytes());
        trailer.extend_from_slice(&(f.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&xxh3_64(&f).to_le_bytes());
        trailer.extend_from_slice(END_MAGIC);
        self.raw(&f)?;
        self.raw(&trailer)?;
        let size = self.pos;
        let tmp = self.tmp.clone();
        let file = self.out.into_inner().map_err(|e| SnapshotError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        let io = |e| SnapshotError::Io {
            path: tmp.clone(),
            source: e,
        };
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.dest).map_err(io)?;
        if let Some(dir) = self.dest.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            // Persist the rename; a folder that cannot be fsynced (some filesystems) still
            // holds a complete file.
            let _ = d.sync_all();
        }
        Ok(size)
    }
}

/// A container opened for reading: the section table over the mapped bytes.
#[derive(Debug)]
pub struct Container {
    path: PathBuf,
    bytes: FileBytes,
    version: u32,
    sections: Vec<SectionEntry>,
    /// Section name → index in `sections`.
    index: std::collections::HashMap<String, usize>,
    footer_offset: u64,
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Container {
    /// Maps `path` and checks its structure (not the section checksums: `verify`).
    pub fn open(path: &Path) -> Result<Container, SnapshotError> {
        let bytes = FileBytes::open(path).map_err(|e| SnapshotError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Container::parse(path, bytes)
    }

    /// Parses a container held in memory (tests, fuzzing).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Container, SnapshotError> {
        Container::parse(path, FileBytes::Owned(bytes))
    }

    fn parse(path: &Path, bytes: FileBytes) -> Result<Container, SnapshotError> {
        let truncated = |msg: &str| SnapshotError::Truncated {
            path: path.to_path_buf(),
            msg: msg.to_string(),
        };
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(SnapshotError::Magic {
                path: path.to_path_buf(),
            });
        }
        let version = le_u32(&bytes, 8).ok_or_else(|| truncated("no header"))?;
        if le_u32(&bytes, 12) != Some(0) {
            return Err(truncated("the header's reserved word is not zero"));
        }
        if !(OLDEST_SUPPORTED..=FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::Version {
                path: path.to_path_buf(),
                expected: FORMAT_VERSION,
                oldest: OLDEST_SUPPORTED,
                got: version,
            });
        }
        let n = bytes.len();
        if n < HEADER_LEN + TRAILER_LEN || &bytes[n - 8..] != END_MAGIC {
            return Err(truncated("the end marker is missing"));
        }
        let t = n - TRAILER_LEN;
        let (Some(foff), Some(flen), Some(fsum)) = (
            le_u64(&bytes, t),
            le_u64(&bytes, t + 8),
            le_u64(&bytes, t + 16),
        ) else {
            return Err(truncated("no trailer"));
        };
        if flen > MAX_FOOTER || foff < HEADER_LEN as u64 || foff.checked_add(flen) != Some(t as u64)
        {
            return Err(truncated(
                "the footer does not end where the trailer begins",
            ));
        }
        let footer = &bytes[foff as usize..t];
        if xxh3_64(footer) != fsum {
            return Err(SnapshotError::Checksum {
                path: path.to_path_buf(),
                section: "footer".into(),
            });
        }
        let corrupt = |msg: String| SnapshotError::Corrupt {
            path: path.to_path_buf(),
            section: "footer".into(),
            msg,
        };
        let count = le_u32(footer, 0).ok_or_else(|| corrupt("empty".into()))? as usize;
        let mut at = 4usize;
        let mut sections = Vec::with_capacity(count.min(footer.len() / 28));
        for _ in 0..count {
            let len = le_u32(footer, at).ok_or_else(|| corrupt("ends early".into()))? as usize;
            let name = footer
                .get(at + 4..at + 4 + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| corrupt("a section name is unreadable".into()))?
                .to_string();
            at += 4 + len;
            let (Some(offset), Some(slen), Some(xxh3)) = (
                le_u64(footer, at),
                le_u64(footer, at + 8),
                le_u64(footer, at + 16),
            ) else {
                return Err(corrupt("ends early".into()));
            };
            at += 24;
            let in_bounds = offset >= HEADER_LEN as u64
                && offset % 8 == 0
                && offset.checked_add(slen).is_some_and(|e| e <= foff);
            if !in_bounds {
                return Err(corrupt(format!("section {name:?} lies outside the data")));
            }
            sections.push(SectionEntry {
                name,
                offset,
                len: slen,
                xxh3,
            });
        }
        let index = sections
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Ok(Container {
            path: path.to_path_buf(),
            bytes,
            version,
            sections,
            index,
            footer_offset: foff,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn sections(&self) -> &[SectionEntry] {
        &self.sections
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes of a section, if there is one by that name.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let s = &self.sections[*self.index.get(name)?];
        self.bytes
            .get(s.offset as usize..(s.offset + s.len) as usize)
    }

    /// The bytes of a section that must exist.
    pub fn section(&self, name: &str) -> Result<&[u8], SnapshotError> {
        self.get(name).ok_or_else(|| SnapshotError::Missing {
            path: self.path.clone(),
            section: name.to_string(),
        })
    }

    /// Checks every section's checksum, naming the first that fails, and that the padding
    /// between sections is zero: every byte of the file is covered by some check.
    pub fn verify(&self) -> Result<(), SnapshotError> {
        use rayon::prelude::*;
        let mut spans: Vec<(u64, u64)> = self
            .sections
            .iter()
            .map(|s| (s.offset, s.offset + s.len))
            .collect();
        spans.sort_unstable();
        let mut at = HEADER_LEN as u64;
        for (start, end) in spans
            .into_iter()
            .chain([(self.footer_offset, self.footer_offset)])
        {
            if start > at
                && self.bytes[at as usize..start as usize]
                    .iter()
                    .any(|&b| b != 0)
            {
                return Err(self.corrupt("padding", format!("non-zero bytes at {at}..{start}")));
            }
            at = at.max(end);
        }
        let bad = self.sections.par_iter().find_first(|s| {
            let b = &self.bytes[s.offset as usize..(s.offset + s.len) as usize];
            xxh3_64(b) != s.xxh3
        });
        match bad {
            Some(s) => Err(SnapshotError::Checksum {
                path: self.path.clone(),
                section: s.name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A malformed-section error for `section`.
    pub fn corrupt(&self, section: &str, msg: impl Into<String>) -> SnapshotError {
        SnapshotError::Corrupt {
            path: self.path.clone(),
            section: section.to_string(),
            msg: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.msnap");
        let mut w = ContainerWriter::create(&path).unwrap();
        w.section("a", b"hello").unwrap();
        w.begin("b").unwrap();
        w.write(&[1, 2, 3]).unwrap();
        w.write(&[4]).unwrap();
        w.end().unwrap();
        w.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn round_trip_and_alignment() {
        let (_d, path) = sample();
        let c = Container::open(&path).unwrap();
        c.verify().unwrap();
        assert_eq!(c.get("a").unwrap(), b"hello");
        assert_eq!(c.get("b").unwrap(), &[1, 2, 3, 4]);
        assert!(c.sections().iter().all(|s| s.offset % 8 == 0));
        assert!(c.get("c").is_none());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn every_flipped_byte_is_detected_and_nothing_panics() {
        let (_d, path) = sample();
        let bytes = std::fs::read(&path).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            let r = Container::from_bytes(&path, b).and_then(|c| c.verify());
            assert!(r.is_err(), "byte {i} flipped went unnoticed");
        }
        for n in 0..bytes.len() {
            assert!(Container::from_bytes(&path, bytes[..n].to_vec()).is_err());
        }
    }
}
