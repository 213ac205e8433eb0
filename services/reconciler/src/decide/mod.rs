//! The reconciler's decisions, as pure functions without I/O: which workload a persona
//! describes, its health, and the status that follows. The controllers only read and write.

pub mod access;
pub mod admission;
pub mod baseline;
pub mod discovery;
pub mod domain;
pub mod environment;
pub mod git;
pub mod health;
pub mod lease;
pub mod project;
pub mod registry;
pub mod resolve;
pub mod status;
