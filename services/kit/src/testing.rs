//! Helpers for tests that need a real backing service (PostgreSQL, Redis, etcd, Docker).
//!
//! `scripts/test` starts those services and exports where they are. A test asks for the
//! variable it needs: when it is missing the test fails under `CI=true` and is reported as
//! skipped, with the reason, everywhere else.

/// Returns the value of `var`, or `None` after printing why the test is skipped. Panics when
/// `CI=true`, so CI never counts a test that could not run as passed.
pub fn require_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            let message = format!("{var} is not set: this test needs {what}; run it through scripts/test");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!("SKIPPED: {message}");
            None
        }
    }
}
