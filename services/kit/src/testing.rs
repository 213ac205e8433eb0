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

/// Returns a PostgreSQL `admin_url` with its database replaced by `database`, keeping the
/// credentials and the query (`scripts/test` exports an admin URL; tests and benchmarks make
/// databases of their own beside it).
pub fn database_url(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{server}/{database}{query}")
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://u:p@127.0.0.1:5432/postgres", "gw_1"),
            "postgres://u:p@127.0.0.1:5432/gw_1"
        );
        assert_eq!(
            database_url("postgres://u:p@h:1/postgres?sslmode=disable", "gw_1"),
            "postgres://u:p@h:1/gw_1?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "gw_1"), "postgres://u@h/gw_1");
    }
}
