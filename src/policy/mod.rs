//! Policies: a text language analysts can read, checked at load, compiled into set operations
//! over a snapshot's entities (DESIGN.md §3.6, §5; the grammar is in
//! `datasets/policies/README.md`).
//!
//! - [`ast`], [`parse`]: the syntax tree and the recursive-descent parser (errors with line and
//!   column);
//! - [`schema`]: what fields exist and their types, from a snapshot or from source configs;
//! - [`check`]: static checks of a catalogue (unknown fields, types, parameters, bands,
//!   cycles) and its dependency order;
//! - [`eval`]: compilation against a snapshot and the three-valued evaluation of one entity;
//! - [`engine`]: conditions as TRUE / UNKNOWN bitmaps, cached and shared; candidates,
//!   to-verify, near-miss, amounts ([`amounts`]: kept as the rule that computes them when it
//!   is a constant or reads one field; otherwise evaluated a chunk of candidates at a time
//!   over typed lanes, `lanes`);
//! - [`columns`]: the engine's columnar kernels: atoms and amounts on one field evaluated per
//!   distinct value (thresholds by binary search), kept aggregates, tabulated row filters;
//! - [`combine`]: a policy's conditions combined into its candidates, to-verify and
//!   near-miss sets, a block of words at a time (the last two written out when asked for);
//! - [`dense`]: roaring sets as 64-bit words over a span of ids, for combining a policy's
//!   conditions a word at a time;
//! - [`count`]: many policies counted at once, block-major, their shared conditions combined
//!   once (a prefix tree), for sweeps, screens and the catalogue's candidate sets;
//! - [`scan`]: aggregates over a table's rows for every entity at once, by one columnar scan;
//! - [`calendar`]: an event table's rows per entity as bitsets over a small column (months), so
//!   that windowed counts are popcounts;
//! - [`explain`], [`whatif`]: one entity's reasons; a changed policy against the saved one;
//!   [`sweep`]: one parameter over many values, counted together;
//! - [`cases`]: each policy's case tests, run against a snapshot built from the case;
//! - [`prep`]: what preparing a snapshot for policies cost (derived structures, conditions).

pub mod amounts;
pub mod ast;
pub mod calendar;
pub mod cases;
pub mod check;
pub mod columns;
pub mod combine;
pub mod count;
pub mod dense;
pub mod engine;
pub mod eval;
pub mod explain;
mod lanes;
pub mod parse;
pub mod prep;
pub mod render;
pub mod scan;
pub mod schema;
pub mod sweep;
pub mod whatif;
