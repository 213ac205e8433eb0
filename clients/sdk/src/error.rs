//! What can go wrong talking to Persys, described for the people who must fix it.

use std::{fmt, path::PathBuf};

use persys_kit::FieldViolation;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// An error of this library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call reached a server (or tried to) and failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The server address is not usable.
    #[error("`{0}` is not a server address like http://127.0.0.1:8080 or https://persys.example.com:8080")]
    Address(String),
    /// A CA or certificate file is not usable.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No session is stored for the server.
    #[error("not logged in to {server}")]
    NotLoggedIn {
        /// The server address.
        server: String,
    },
    /// The stored session expired, was revoked or logged out; log in again.
    #[error("the session at {server} has ended")]
    SessionEnded {
        /// The server address.
        server: String,
    },
    /// A stored token cannot be sent (not ASCII).
    #[error("the stored token for {server} is malformed; log in again")]
    MalformedToken {
        /// The server address.
        server: String,
    },
    /// Reading or writing a local file failed.
    #[error("{action} {path}: {source}")]
    File {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The credentials file cannot be read as one.
    #[error("{path} is not a valid credentials file: delete it and log in again")]
    CorruptCredentials {
        /// The file.
        path: PathBuf,
    },
    /// No configuration directory to keep credentials in.
    #[error("cannot find your config directory: set HOME, XDG_CONFIG_HOME or PERSYS_CONFIG_DIR")]
    NoConfigDir,
}

impl Error {
    /// Returns the gRPC code when a call failed.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Call(c) => Some(c.code()),
            _ => None,
        }
    }
}

/// A failed call: the status, the server it was sent to, and what the details say.
#[derive(Clone, Debug)]
pub struct CallError {
    status: Status,
    server: String,
}

impl CallError {
    /// Wraps a status returned by a call to `server`.
    pub fn new(status: Status, server: impl Into<String>) -> Self {
        Self { status, server: server.into() }
    }

    /// Returns the gRPC code.
    pub fn code(&self) -> Code {
        self.status.code()
    }

    /// Returns the server's message.
    pub fn message(&self) -> &str {
        self.status.message()
    }

    /// Returns the status as received.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Returns the address the call was sent to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Returns the service that failed when the server named one (the gateway names an
    /// upstream it cannot reach), from the `ErrorInfo` detail.
    pub fn service(&self) -> Option<String> {
        persys_kit::error::failing_service(&self.status)
    }

    /// Returns whether no server answered at all: the connection itself failed (refused,
    /// timed out, TLS), as opposed to a server answering `UNAVAILABLE`.
    pub fn unreachable(&self) -> bool {
        self.code() == Code::Unavailable && std::error::Error::source(&self.status).is_some()
    }

    /// Returns the field violations of an `INVALID_ARGUMENT` (`google.rpc.BadRequest`).
    pub fn violations(&self) -> Vec<FieldViolation> {
        self.status
            .get_error_details()
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| FieldViolation::new(&v.field, &v.description)).collect())
            .unwrap_or_default()
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let violations = self.violations();
        if !violations.is_empty() {
            f.write_str("the server refused the request:")?;
            for v in violations {
                write!(f, "\n  {}: {}", v.field, v.description)?;
            }
            return Ok(());
        }
        if self.unreachable() {
            return write!(f, "cannot reach {}: {}", self.server, self.message());
        }
        if let Some(service) = self.service() {
            return write!(f, "the {service} is not reachable through {}: {}", self.server, self.message());
        }
        match self.message() {
            "" => write!(f, "the call failed ({:?})", self.code()),
            m => f.write_str(m),
        }
    }
}

impl std::error::Error for CallError {}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn violations_are_listed_one_per_line() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("spec.image", "required");
        details.add_bad_request_violation("name", "1-63 characters of [a-z0-9-]");
        let e = CallError::new(Status::with_error_details(Code::InvalidArgument, "invalid request", details), "x");
        assert_eq!(e.violations().len(), 2);
        assert_eq!(
            e.to_string(),
            "the server refused the request:\n  spec.image: required\n  name: 1-63 characters of [a-z0-9-]"
        );
    }

    #[test]
    fn the_failing_service_comes_from_the_details_not_the_message() {
        let named = CallError::new(persys_kit::error::service_unavailable("scheduler", "down"), "http://gw:8080");
        assert_eq!(named.service().as_deref(), Some("scheduler"));
        assert!(!named.unreachable());
        assert_eq!(named.to_string(), "the scheduler is not reachable through http://gw:8080: down");
        // The same words without the detail name nothing.
        let plain = CallError::new(Status::unavailable("service `scheduler` is unavailable"), "http://gw:8080");
        assert_eq!(plain.service(), None);
        assert!(!plain.unreachable(), "a server said UNAVAILABLE: it was reached");
    }
}
