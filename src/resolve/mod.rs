//! Entity resolution: identity records → entities (persons, enterprises, households), event
//! records → entities through their local keys.
//!
//! - [`records`]: the features of every identity record, read from ingest's segments.
//! - [`compare`]: field comparisons for Chinese records (homophones, character variants,
//!   one-digit typos, address components) giving agreement levels.
//! - [`block`]: blocking keys with per-kind caps, so candidate pairs grow linearly.
//! - [`weights`]: the Fellegi–Sunter model, estimated by semi-supervised EM with the
//!   deterministic keys as free labels, and term-frequency adjustments.
//! - [`keys`]: valid identifiers one edit from a broken one; minted, persisted stable keys.
//! - [`cluster`]: keys, then placement of keyless records, then constrained clustering.
//! - [`incremental`]: `resolve --add`, new records placed into an earlier build's entities.
//! - [`links`]: the links, entities and model files a build writes, and the summary.
//! - [`events`]: attribution of event records to entities (a join on local keys).
//! - [`eval`]: pairwise precision, recall and F1 of a links file against truth files.

pub mod block;
pub mod cluster;
pub mod compare;
pub mod eval;
pub mod events;
pub mod incremental;
pub mod keys;
pub mod links;
pub mod records;
pub mod weights;

pub use cluster::{Linked, Thresholds, resolve_records};
pub use links::{ResolveOptions, ResolveReport, resolve_dir};
pub use records::Records;
