//! The one mapping from errors to `tonic::Status`.
//!
//! Handlers return [`ApiError`]; its conversion logs internal causes with their whole chain and
//! hands the caller a clean message. Validation failures carry field violations
//! (`google.rpc.BadRequest`) so clients can point at the field to fix.

use std::fmt;

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The domain of the `google.rpc.ErrorInfo` details Persys attaches.
pub const ERROR_DOMAIN: &str = "persys.dev";
/// `ErrorInfo.reason` of a call whose service could not be reached (by the gateway).
pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
/// `ErrorInfo.metadata` key naming the service that failed.
pub const SERVICE_KEY: &str = "service";

/// Returns the status of a call whose `service` could not be reached: `UNAVAILABLE`, with an
/// `ErrorInfo` naming the service, so clients can tell "the scheduler is down" from "the
/// gateway is down" without reading the message.
pub fn service_unavailable(service: &str, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(
        SERVICE_UNAVAILABLE,
        ERROR_DOMAIN,
        HashMap::from([(SERVICE_KEY.to_owned(), service.to_owned())]),
    );
    Status::with_error_details(Code::Unavailable, message, details)
}

/// Returns the service a status names as the one that failed (a Persys `ErrorInfo` detail).
pub fn failing_service(status: &Status) -> Option<String> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    (info.domain == ERROR_DOMAIN).then(|| info.metadata.get(SERVICE_KEY).cloned()).flatten()
}

/// One invalid field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field path, e.g. `spec.image`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub description: String,
}

impl FieldViolation {
    /// Returns a violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// An error a handler returns; converts into a `tonic::Status`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; each violation names a field.
    #[error("invalid request: {}", display_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named thing does not exist (or the caller may not know it does).
    #[error("{0} not found")]
    NotFound(String),
    /// The thing exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller is not authenticated; the message says what to present.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but not allowed.
    #[error("{0}")]
    PermissionDenied(String),
    /// The state of the system does not allow the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won (an `expected_revision` that no longer holds); read again and
    /// retry.
    #[error("{0}")]
    Aborted(String),
    /// A limit was hit (size, rate).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency cannot be reached; worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// A fault on our side; the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn display_violations(v: &[FieldViolation]) -> String {
    v.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl ApiError {
    /// Returns an internal error wrapping `source`.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(source.into())
    }

    /// Returns an `InvalidArgument` error for a single field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = display_violations(&violations);
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, format!("invalid request: {message}"), details)
            }
            ApiError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ApiError::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Aborted(m) => Status::aborted(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::Internal(source) => {
                tracing::error!(error = %Chain(source.as_ref()), "internal error");
                Status::internal("internal error; see the server log")
            }
        }
    }
}

/// Collects field violations while validating a request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Returns an empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation when `bad` holds.
    pub fn check(&mut self, bad: bool, field: &str, description: impl Into<String>) -> &mut Self {
        if bad {
            self.0.push(FieldViolation::new(field, description));
        }
        self
    }

    /// Returns `Err(InvalidArgument)` when any violation was recorded.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::InvalidArgument(self.0)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status: Status = ApiError::InvalidArgument(vec![
            FieldViolation::new("username", "must not be empty"),
            FieldViolation::new("password", "must be at least 12 characters"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        let fields: Vec<_> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["username", "password"]);
        assert!(status.message().contains("username: must not be empty"));
    }

    #[test]
    fn an_unavailable_service_is_named_in_the_details() {
        let status = service_unavailable("scheduler", "service `scheduler` is unavailable");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(failing_service(&status).as_deref(), Some("scheduler"));
        assert_eq!(failing_service(&Status::unavailable("service `scheduler` is unavailable")), None);
        let foreign = Status::with_error_details(
            Code::Unavailable,
            "x",
            ErrorDetails::with_error_info("X", "example.com", HashMap::from([(SERVICE_KEY.into(), "y".into())])),
        );
        assert_eq!(failing_service(&foreign), None);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status: Status = ApiError::internal(std::io::Error::other("disk /dev/sda1 on fire")).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("sda1"));
    }

    #[test]
    fn violations_collect_only_failed_checks() {
        let mut v = Violations::new();
        v.check(false, "a", "fine").check(true, "b", "bad");
        match v.finish() {
            Err(ApiError::InvalidArgument(list)) => assert_eq!(list, vec![FieldViolation::new("b", "bad")]),
            other => panic!("unexpected {other:?}"),
        }
    }
}
