//! Exit codes and the messages users see when a call fails: what went wrong and what to do.

use tonic::{Code, Status};
use tonic_types::StatusExt;

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
  `workload exec` exits with the command's own exit code.";

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

/// Returns the service a gateway `UNAVAILABLE` names (``service `scheduler` is ...``).
fn named_service(message: &str) -> Option<&str> {
    let rest = message.split_once("service `")?.1;
    Some(rest.split_once('`')?.0)
}

/// Turns a failed call to `server` into a message that says what to do.
pub fn describe(status: &Status, server: &str) -> Failure {
    let message = status.message();
    let text = match status.code() {
        Code::Unavailable => match named_service(message) {
            Some(service) => format!(
                "the {service} is not reachable through the gateway at {server}: is it running?\n  gateway said: {message}"
            ),
            None => format!(
                "cannot reach the gateway at {server}: is it running? (set --server or PERSYS_SERVER)\n  {message}"
            ),
        },
        Code::Unauthenticated => format!("{message}\n  run `persys login --server {server}`"),
        Code::PermissionDenied => format!("permission denied: {message}"),
        Code::InvalidArgument => {
            let mut text = String::from("the server refused the request:");
            let violations = status.get_error_details().bad_request().map(|b| b.field_violations.clone());
            match violations {
                Some(v) if !v.is_empty() => {
                    for v in v {
                        text.push_str(&format!("\n  {}: {}", v.field, v.description));
                    }
                }
                _ => text.push_str(&format!("\n  {message}")),
            }
            text
        }
        Code::DeadlineExceeded => format!("timed out waiting for {server}: {message} (raise --timeout?)"),
        Code::ResourceExhausted => format!("{message} (retry later)"),
        Code::Internal | Code::Unknown if message.is_empty() => format!("the server failed ({:?})", status.code()),
        _ => message.to_owned(),
    };
    Failure { exit: exit_for(status.code()), message: text, code: Some(status.code()) }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn gateway_unavailability_names_the_service_and_the_server() {
        let s = Status::unavailable("service `scheduler` is unreachable: connection refused");
        let f = describe(&s, "http://gw:8080");
        assert_eq!(f.exit, Exit::Unavailable);
        assert!(f.message.starts_with("the scheduler is not reachable through the gateway at http://gw:8080"));
        let f = describe(&Status::unavailable("tcp connect error"), "http://gw:8080");
        assert!(f.message.starts_with("cannot reach the gateway at http://gw:8080"), "{}", f.message);
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
