//! Why the pipeline cannot start.

/// Why the pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Configuration, certificates, ports, servers.
    #[error(transparent)]
    Start(#[from] persys_kit::server::StartError),
    /// The database could not be opened or migrated.
    #[error("metrics database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

persys_kit::start_error_conversions!(PipelineError);
