//! Error types, one enum per layer. Messages are sentences a user can act on.

use std::path::PathBuf;

/// Errors reading source configs and department files.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("source config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("{path}: the header lacks column {column:?} declared in the source config")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}: the header row is unreadable: {msg}")]
    Header { path: PathBuf, msg: String },
}

/// Errors writing or reading normalized columnar segments.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a segment file (bad magic)")]
    Magic { path: PathBuf },
    #[error("{path}: segment format version {got}, this build reads {oldest}..={expected}")]
    Version {
        path: PathBuf,
        expected: u32,
        oldest: u32,
        got: u32,
    },
    #[error("{path}: checksum mismatch in {section}")]
    Checksum { path: PathBuf, section: String },
    #[error("{path}: corrupt segment: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("segment has no column {0:?}")]
    NoColumn(String),
    #[error("column {column:?} is {actual}, not {wanted}")]
    ColumnType {
        column: String,
        actual: &'static str,
        wanted: &'static str,
    },
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid generator parameters: {0}")]
    Params(String),
}

/// Errors of the ingest stage. Bad rows are never errors: they go to quarantine.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no source configs (*.toml) found under {0}")]
    NoSources(PathBuf),
}

/// Errors of the resolve stage and of link evaluation.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The segment error names the file already.
    #[error("{source}")]
    Segment {
        path: PathBuf,
        #[source]
        source: SegmentError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
}

/// Errors writing, opening or verifying a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a mianshen snapshot (bad magic)")]
    Magic { path: PathBuf },
    #[error("{path}: snapshot format version {got}, this build reads {oldest}..={expected}")]
    Version {
        path: PathBuf,
        expected: u32,
        oldest: u32,
        got: u32,
    },
    #[error("{path}: the file is truncated or its trailer is damaged ({msg})")]
    Truncated { path: PathBuf, msg: String },
    #[error("{path}: checksum mismatch in section {section:?}: the snapshot is corrupt")]
    Checksum { path: PathBuf, section: String },
    #[error("{path}: section {section:?} is malformed: {msg}")]
    Corrupt {
        path: PathBuf,
        section: String,
        msg: String,
    },
    #[error("{path}: the snapshot has no section {section:?}")]
    Missing { path: PathBuf, section: String },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Input(String),
}

/// Errors of a whole build (`mianshen build`): the stage that failed says why.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("ingest: {0}")]
    Ingest(#[from] IngestError),
    #[error("resolve: {0}")]
    Resolve(#[from] ResolveError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    #[error("ingest: {count} source(s) could not be ingested:\n{details}")]
    Sources { count: usize, details: String },
}
