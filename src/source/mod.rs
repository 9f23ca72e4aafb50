//! Where records come from: source configs that describe department CSV files, and the
//! synthetic reference city ([`city`]) that produces them, with ground truth, either as files
//! or as an in-process stream.

pub mod city;
pub mod config;
