//! Errors that stop the scheduler from starting or serving.

/// Why the scheduler could not run.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] persys_kit::config::ConfigError),
    /// Certificates could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] persys_kit::tls::TlsError),
    /// The CA could not be loaded.
    #[error("ca: {0}")]
    Ca(#[from] persys_kit::pki::PkiError),
    /// The state store failed.
    #[error("state store: {0}")]
    Kv(#[from] crate::kv::KvError),
    /// A server failed.
    #[error("serve: {0}")]
    Serve(#[from] persys_kit::server::ServeError),
    /// Binding a port failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}
