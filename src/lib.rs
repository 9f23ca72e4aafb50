//! mianshen (免申): entity resolution and policy matching for a city's government data.
//!
//! Data flows one way (DESIGN.md §3):
//!
//! ```text
//! source ─► ingest ─► resolve ─► profile ─► snapshot ─► policy ─► server
//! ```
//!
//! - [`source`]: source configs (what each department CSV column means) and the synthetic
//!   city generator with its ground truth, as files or as an in-process stream.
//! - [`ingest`]: normalization, validation, quarantine, normalized columnar segments.
//! - [`resolve`]: identity records → entities (keys, Fellegi–Sunter placement, constrained
//!   clustering, stable keys), event records → entities; and link evaluation.
//! - [`profile`]: one entity as the departments know it: records, relations, events.
//! - [`snapshot`]: the immutable, memory-mapped columnar generation the engine and server
//!   read; [`pipeline`] runs ingest → resolve → snapshot in one call.
//! - [`policy`]: the policy language (parser, static checks), the bitmap engine with
//!   three-valued conditions, columnar kernels (aggregates over event rows by one scan),
//!   explanations, what-if and case tests.
//! - [`workflow`]: the durable push → confirm → pay ledger (redb).
//! - [`server`]: the gRPC server (the only module that knows tonic and prost): the served
//!   generation, one file per service, auth, masking, audit, metrics, the load generator.
//! - [`ids`], [`date`]: national identifiers (GB 11643, GB 32100) and calendar arithmetic,
//!   shared by every stage; [`codec`]: the blocked integers and bit packing that ingest's
//!   segments and the snapshot both store.
//! - [`error`]: one error enum per layer; [`mmap`]: read-only maps and [`alloc`]: the
//!   allocator's retention of freed memory, the two `unsafe` places;
//!   [`parallel`]: work over threads with results used in order.
//!
//! Each stage imports only from the stages before it.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod alloc;
pub mod codec;
pub mod date;
pub mod error;
pub mod ids;
pub mod ingest;
pub mod mmap;
pub mod parallel;
pub mod pipeline;
pub mod policy;
pub mod profile;
pub mod resolve;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod workflow;
