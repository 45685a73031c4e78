//! Verity's shared vocabulary: the types every other crate speaks.
//!
//! This crate stays free of heavy dependencies so that everything can depend on it.

mod hash;

pub use hash::{sha256, Hash, HashParseError};
