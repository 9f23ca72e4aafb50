//! The audit log: one JSON line per read of personal data: who, when, which RPC, which entity
//! (or set of entities) and which fields.
//!
//! Lines go through a channel to a writer thread, which writes them as they come and flushes
//! whenever the channel runs dry, and syncs the file to disk at least once a second: a request
//! never waits for the disk, and a line reaches the file within milliseconds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::auth::Caller;

#[derive(Debug, Clone)]
pub struct Audit {
    tx: mpsc::Sender<String>,
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
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                let mut synced = Instant::now();
                let mut buf = Vec::new();
                // Ends when every sender is gone, after writing what is left.
                while let Ok(line) = rx.recv() {
                    buf.extend_from_slice(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(more.as_bytes());
                    }
                    if let Err(e) = file.write_all(&buf) {
                        tracing_warn(&format!("audit log: {e}"));
                    }
                    buf.clear();
                    if synced.elapsed() > Duration::from_secs(1) {
                        let _ = file.sync_data();
                        synced = Instant::now();
                    }
                }
                let _ = file.sync_all();
            })?;
        Ok(Audit {
            tx,
            path: path.to_path_buf(),
        })
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
        if let Ok(mut s) = serde_json::to_string(&line) {
            s.push('\n');
            let _ = self.tx.send(s);
        }
    }
}

fn tracing_warn(msg: &str) {
    eprintln!("mianshen serve: {msg}");
}
