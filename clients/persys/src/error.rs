//! Exit codes and the messages users see when a call fails: what went wrong and what to do.

use persys_client::{CallError, Error};
use tonic::{Code, Status};

/// The documented exit codes (see `persys --help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Any other error.
    Error = 1,
    /// Bad command line or a request the server refused as invalid.
    Usage = 2,
    /// The named object does not exist (or is not visible to you).
    NotFound = 3,
    /// Not logged in, session ended, or not allowed.
    Auth = 4,
    /// The gateway or a service behind it is unreachable or overloaded; retry later.
    Unavailable = 5,
    /// The object's state does not allow the change (already exists, changed meanwhile).
    Conflict = 6,
    /// A deadline passed.
    Timeout = 7,
    /// `workload run --wait` saw the workload fail.
    WorkloadFailed = 8,
}

/// The text of the exit codes, for `persys --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  error
  2  usage: bad flags or arguments, or the server refused the request as invalid
  3  not found
  4  not logged in, session ended, or permission denied
  5  unavailable: the gateway or a service behind it cannot be reached (retry later)
  6  conflict: already exists, changed meanwhile, or not allowed in the current state
  7  timed out
  8  the workload failed (workload run --wait)
  `workload exec` and `exec-host` exit with the command's own exit code.";

/// An error with the exit code it maps to; the message is already meant for users.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The process exit code.
    pub exit: Exit,
    /// What happened and what to do.
    pub message: String,
    /// The gRPC code, when a call failed.
    pub code: Option<Code>,
}

impl Failure {
    /// Returns a failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into(), code: None }
    }
}

/// Returns the exit code a gRPC status maps to.
pub fn exit_for(code: Code) -> Exit {
    match code {
        Code::InvalidArgument | Code::OutOfRange => Exit::Usage,
        Code::NotFound => Exit::NotFound,
        Code::Unauthenticated | Code::PermissionDenied => Exit::Auth,
        Code::Unavailable | Code::ResourceExhausted => Exit::Unavailable,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => Exit::Conflict,
        Code::DeadlineExceeded => Exit::Timeout,
        _ => Exit::Error,
    }
}

/// Turns a failed call to `server` into a message that says what to do.
pub fn describe(status: &Status, server: &str) -> Failure {
    describe_call(&CallError::new(status.clone(), server))
}

/// Turns a failed call into a message that says what to do.
pub fn describe_call(e: &CallError) -> Failure {
    let server = e.server();
    let message = e.message();
    let text = match e.code() {
        Code::Unavailable => match e.service() {
            Some(service) => format!(
                "the {service} is not reachable through the gateway at {server}: is it running?\n  gateway said: {message}"
            ),
            None if e.unreachable() => format!(
                "cannot reach the gateway at {server}: is it running? (set --server or PERSYS_SERVER)\n  {message}"
            ),
            None => message.to_owned(),
        },
        Code::Unauthenticated => format!("{message}\n  run `persys login --server {server}`"),
        Code::PermissionDenied => format!("permission denied: {message}"),
        Code::InvalidArgument if !e.violations().is_empty() => e.to_string(),
        Code::InvalidArgument => format!("the server refused the request:\n  {message}"),
        Code::DeadlineExceeded => format!("timed out waiting for {server}: {message} (raise --timeout?)"),
        Code::ResourceExhausted => format!("{message} (retry later)"),
        Code::Internal | Code::Unknown if message.is_empty() => format!("the server failed ({:?})", e.code()),
        _ => message.to_owned(),
    };
    Failure { exit: exit_for(e.code()), message: text, code: Some(e.code()) }
}

/// Turns an error of the client library into a message that says what to do, with its exit
/// code.
pub fn fail(e: Error, server: &str) -> Failure {
    match e {
        Error::Call(call) => describe_call(&call),
        Error::Address(_) => {
            Failure::new(Exit::Usage, format!("--server `{server}` is not a URL like http://127.0.0.1:8080"))
        }
        Error::NotLoggedIn { .. } => {
            Failure::new(Exit::Auth, format!("not logged in to {server}: run `persys login --server {server}`"))
        }
        Error::SessionEnded { .. } => Failure::new(
            Exit::Auth,
            format!("your session at {server} has ended: run `persys login --server {server}`"),
        ),
        Error::MalformedToken { .. } => {
            Failure::new(Exit::Auth, format!("the stored token is malformed: run `persys login --server {server}`"))
        }
        Error::Certificate { path, reason } => Failure::new(Exit::Usage, format!("--ca {}: {reason}", path.display())),
        other => Failure::new(Exit::Error, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    #[test]
    fn gateway_unavailability_names_the_service_and_the_server() {
        let s = persys_kit::error::service_unavailable("scheduler", "service `scheduler` is unavailable; try again");
        let f = describe(&s, "http://gw:8080");
        assert_eq!(f.exit, Exit::Unavailable);
        assert!(f.message.starts_with("the scheduler is not reachable through the gateway at http://gw:8080"));
        // A server that answers UNAVAILABLE itself was reached: it is not "cannot reach".
        let f = describe(&Status::unavailable("node `n1` is not connected; retry"), "http://gw:8080");
        assert_eq!(f.exit, Exit::Unavailable);
        assert_eq!(f.message, "node `n1` is not connected; retry");
    }

    #[test]
    fn field_violations_print_one_per_line() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("spec.image", "required");
        details.add_bad_request_violation("name", "1-63 characters of [a-z0-9-]");
        let s = Status::with_error_details(Code::InvalidArgument, "invalid request", details);
        let f = describe(&s, "x");
        assert_eq!(f.exit, Exit::Usage);
        assert_eq!(
            f.message,
            "the server refused the request:\n  spec.image: required\n  name: 1-63 characters of [a-z0-9-]"
        );
    }

    #[test]
    fn codes_map_to_documented_exits() {
        assert_eq!(exit_for(Code::NotFound), Exit::NotFound);
        assert_eq!(exit_for(Code::PermissionDenied), Exit::Auth);
        assert_eq!(exit_for(Code::Unauthenticated), Exit::Auth);
        assert_eq!(exit_for(Code::Unavailable), Exit::Unavailable);
        assert_eq!(exit_for(Code::Aborted), Exit::Conflict);
        assert_eq!(exit_for(Code::Internal), Exit::Error);
        for (code, n) in [(Exit::Usage, 2), (Exit::NotFound, 3), (Exit::Auth, 4), (Exit::Unavailable, 5)] {
            assert_eq!(code as i32, n);
            assert!(EXIT_CODES_HELP.contains(&format!("  {n}  ")));
        }
    }
}
