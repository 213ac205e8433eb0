//! The Persys analyzer: from an application's source (Dockerfile, compose file, code) to
//! production-grade Kubernetes manifests and an `ApplicationPersona`, plus the persona
//! validation rules.
//!
//! One library holds all the logic: [`result::analyze_tree`] turns a [`tree::SourceTree`] and
//! the request metadata into the contract's `AnalysisResult`; the gRPC service ([`grpc`],
//! [`api`]) and the `dorgu` CLI's offline mode both call it, so their output is identical.
//! It is stateless and makes no network calls except to an optional language model ([`llm`]).
//! It does not apply anything to a cluster: that is the CLI's and the reconciler's job.

pub mod analysis;
#[cfg(feature = "server")]
pub mod api;
pub mod appconfig;
pub mod compose;
#[cfg(feature = "server")]
pub mod config;
pub mod detect;
pub mod dockerfile;
#[cfg(feature = "server")]
pub mod error;
pub mod generate;
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod llm;
pub mod model;
pub mod persona;
pub mod quantity;
pub mod result;
pub mod tree;
#[cfg(feature = "server")]
pub mod upload;
pub mod validate;
pub use persys_kit::yaml;

pub use result::analyze_tree;
#[cfg(feature = "server")]
pub use result::analyze_tree_with;

#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
pub use serve::{Running, run, start};
