//! Errors that stop the agent from starting, and failures of single commands.

use std::path::PathBuf;

/// Why the agent could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Configuration, certificates, ports, servers, addresses.
    #[error(transparent)]
    Start(#[from] persys_kit::server::StartError),
    /// The state directory could not be used.
    #[error("state dir {path}: {source}")]
    StateDir {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key could not be made, read or stored.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Joining the cluster failed.
    #[error("join: {0}")]
    Join(String),
    /// No driver could be started.
    #[error("driver: {0}")]
    Driver(String),
}

persys_kit::start_error_conversions!(AgentError);

/// Why a command failed: a PascalCase reason for `CommandResult.reason` and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct CommandError {
    /// Machine-readable reason, e.g. `ContainerNotFound`.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

impl CommandError {
    /// Returns an error with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }

    /// Returns the `Canceled` error of a command stopped by a CancelCommand.
    pub fn canceled() -> Self {
        Self::new("Canceled", "canceled")
    }
}

impl From<bollard::errors::Error> for CommandError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError { status_code: 404, message } => Self::new("ContainerNotFound", message),
            E::DockerResponseServerError { status_code: 409, message } => Self::new("Conflict", message),
            E::DockerResponseServerError { message, .. } => Self::new("RuntimeError", message),
            E::RequestTimeoutError => Self::new("RuntimeTimeout", "the container runtime did not answer in time"),
            other => Self::new("RuntimeUnavailable", other.to_string()),
        }
    }
}
