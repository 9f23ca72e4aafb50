//! The audit log: one JSON line per read of personal data: who, when, which RPC, which entity
//! (or set of entities) and which fields.
//!
//! Lines are appended to a shared buffer (no system call, no wake-up on the request path); a
//! writer thread writes the buffer out every 20 ms and syncs the file to disk every second, and
//! [`Audit::flush`] writes it out at once (on shutdown).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::Caller;

#[derive(Debug)]
struct Inner {
    buf: Mutex<Vec<u8>>,
    file: Mutex<std::fs::File>,
}

impl Inner {
    fn flush(&self) {
        let lines = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        if lines.is_empty() {
            return;
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&lines) {
            eprintln!("mianshen serve: writing the audit log: {e}");
        }
    }
}

#[derive(Debug, Clone)]
pub struct Audit {
    inner: Arc<Inner>,
    path: PathBuf,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    at: i64,
    who: &'a str,
    role: &'a str,
    department: &'a str,
    rpc: &'a str,
    entity: &'a str,
    fields: &'a [&'a str],
}

impl Audit {
    /// Appends to `path` (created with its folder).
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let inner = Arc::new(Inner {
            buf: Mutex::new(Vec::new()),
            file: Mutex::new(file),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                let mut synced = Instant::now();
                // Ends when the last handle is gone, after writing what is left.
                loop {
                    std::thread::sleep(Duration::from_millis(20));
                    let Some(inner) = weak.upgrade() else { return };
                    inner.flush();
                    if synced.elapsed() > Duration::from_secs(1) {
                        let _ = inner.file.lock().map(|f| f.sync_data());
                        synced = Instant::now();
                    }
                }
            })?;
        Ok(Audit {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Writes out and syncs every line recorded so far.
    pub fn flush(&self) {
        self.inner.flush();
        let _ = self.inner.file.lock().map(|f| f.sync_data());
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that `caller` read `fields` of `entity` (a key, or a named set of entities).
    pub fn read(&self, caller: &Caller, rpc: &str, entity: &str, fields: &[&str]) {
        let line = Line {
            at: super::state::unix_now(),
            who: &caller.name,
            role: caller.role.as_str(),
            department: &caller.department,
            rpc,
            entity,
            fields,
        };
        let mut buf = self.inner.buf.lock().unwrap_or_else(|p| p.into_inner());
        if serde_json::to_writer(&mut *buf, &line).is_ok() {
            buf.push(b'\n');
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.flush();
        let _ = self.file.lock().map(|f| f.sync_all());
    }
}
