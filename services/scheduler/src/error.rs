//! Errors that stop the scheduler from starting or serving.

/// Why the scheduler could not run.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Configuration, certificates, ports, servers.
    #[error(transparent)]
    Start(#[from] persys_kit::server::StartError),
    /// The CA could not be loaded.
    #[error("ca: {0}")]
    Ca(#[from] persys_kit::pki::PkiError),
    /// The state store failed.
    #[error("state store: {0}")]
    Kv(#[from] crate::kv::KvError),
}

persys_kit::start_error_conversions!(SchedulerError);
