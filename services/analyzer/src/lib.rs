//! The Persys analyzer.

pub mod compose;
pub mod dockerfile;
pub mod tree;
