//! Read-only memory maps of immutable files: the one place with `unsafe`.
//!
//! Contract: mianshen maps only files it wrote itself under a temporary name and published by
//! rename (segments now, snapshots later), which are never modified in place afterwards. A file
//! truncated or rewritten by another process while mapped would make reads fault (SIGBUS) or see
//! changing bytes; every structure checks its checksums before trusting content, and operators
//! replace files by rename, never in place.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

/// Bytes of a file: mapped when it has any, an empty buffer otherwise (an empty file cannot be
/// mapped portably).
#[derive(Debug)]
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> std::io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and the file is one mianshen published by rename and
        // never modifies in place (see the module contract); readers validate what they read.
        #[allow(unsafe_code)]
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes::Mapped(map))
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}
