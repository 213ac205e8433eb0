//! Errors that stop the gateway from starting or serving.

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Configuration, certificates, ports, servers.
    #[error(transparent)]
    Start(#[from] persys_kit::server::StartError),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Bootstrapping the admin failed.
    #[error("bootstrap admin: {0}")]
    Bootstrap(#[from] persys_kit::ApiError),
}

persys_kit::start_error_conversions!(GatewayError);
