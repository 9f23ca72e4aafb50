//! The generated protocol buffer types and services (`proto/`, compiled by `build.rs`).

#![allow(missing_debug_implementations, clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("mianshen.v1");
}

pub mod yardstick {
    tonic::include_proto!("mianshen.yardstick");
}

/// The encoded descriptor set of every proto file, for server reflection.
pub const DESCRIPTOR: &[u8] = tonic::include_file_descriptor_set!("mianshen_descriptor");

/// The Eligibility service once more, server side only, its reply written as bytes
/// ([`super::eligibility::Encoded`]): see `build.rs`.
pub mod encoded {
    include!(concat!(env!("OUT_DIR"), "/encoded/mianshen.v1.rs"));
}
