//! The analyzer's errors: why it cannot start, and how analysis errors become API errors.

use persys_kit::{ApiError, FieldViolation};

use crate::{analysis::AnalyzeError, tree::TreeError};

/// Why the analyzer could not run.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzerError {
    /// Configuration, certificates, ports, servers.
    #[error(transparent)]
    Start(#[from] persys_kit::server::StartError),
    /// The serving task panicked or was cancelled.
    #[error("analyzer task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

persys_kit::start_error_conversions!(AnalyzerError);

/// Maps a tree error; `field` names the request field holding the path.
pub fn tree_error(e: TreeError, field: &str) -> ApiError {
    match e {
        TreeError::BadPath { .. } => ApiError::InvalidArgument(vec![FieldViolation::new(field, e.to_string())]),
        TreeError::TooLarge { .. } | TreeError::TooManyFiles { .. } => ApiError::ResourceExhausted(e.to_string()),
        TreeError::Io { .. } => ApiError::internal(e),
    }
}

impl From<AnalyzeError> for ApiError {
    fn from(e: AnalyzeError) -> Self {
        match e {
            AnalyzeError::NothingToAnalyze { .. } => ApiError::FailedPrecondition(e.to_string()),
            AnalyzeError::Dockerfile(d) => ApiError::InvalidArgument(vec![FieldViolation::new(
                format!("{}:{}", d.file, d.line),
                format!("malformed Dockerfile: {}", d.message),
            )]),
            AnalyzeError::Compose(c) => ApiError::InvalidArgument(vec![FieldViolation::new(
                format!("{}:{}:{}", c.file, c.line, c.column),
                format!("malformed compose file: {}", c.message),
            )]),
            AnalyzeError::AppConfig(c) => ApiError::InvalidArgument(vec![FieldViolation::new(
                format!("{}:{}", c.file, c.line),
                format!("malformed .dorgu.yaml: {}", c.message),
            )]),
            AnalyzeError::InvalidOption { field, message } => {
                ApiError::InvalidArgument(vec![FieldViolation::new(format!("metadata.{field}"), message)])
            }
            AnalyzeError::Tree(t) => tree_error(t, "files"),
        }
    }
}
