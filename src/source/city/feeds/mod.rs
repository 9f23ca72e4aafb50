//! Row emitters of every generated table, grouped by what they describe.

pub mod business;
pub mod people;
pub mod utility;
pub mod work;
