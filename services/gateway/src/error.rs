//! Errors that stop the gateway from starting or serving.

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] persys_kit::config::ConfigError),
    /// Certificates could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] persys_kit::tls::TlsError),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A server failed.
    #[error("serve: {0}")]
    Serve(#[from] persys_kit::server::ServeError),
    /// An upstream address is invalid.
    #[error("upstream: {0}")]
    Client(#[from] persys_kit::client::ClientError),
    /// Binding a port failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Bootstrapping the admin failed.
    #[error("bootstrap admin: {0}")]
    Bootstrap(#[from] persys_kit::ApiError),
}
