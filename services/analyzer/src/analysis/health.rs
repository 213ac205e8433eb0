//! Health checks written as commands (a compose `healthcheck`, a Dockerfile HEALTHCHECK): the
//! HTTP request they make, when they make one to the container itself, so the probe can be an
//! HTTP GET on the same path and port.
//!
//! A shell-form check (`/bin/sh -c "curl -fsS http://localhost:$PORT/status || exit 1"`) runs in
//! a shell that sees the container's environment, so its variables are substituted first; an
//! exec-form check gets no shell, so a `$PORT` in it stays literal and gives no HTTP request.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::LazyLock,
};

use regex::Regex;

use crate::{compose, dockerfile::Stage, model::is_secret};

/// The HTTP GET a health check command makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    /// Path, with its query, e.g. `/status`.
    pub path: String,
    /// Port (80 when the URL names none).
    pub port: u16,
    /// Variables substituted to find it, with the values used, in order of use.
    pub variables: Vec<(String, String)>,
}

/// `http://` or (for curl and wget) scheme-less URLs to the container itself.
static LOCAL_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:^|[\s'"=(])(?:([A-Za-z][A-Za-z0-9+.-]*)://)?(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::([^/\s'"]*))?(/[^\s'"`;|)]*)?(?:$|[\s'"`;|)&])"#,
    )
    .expect("static")
});

/// Returns the HTTP GET `command` makes to the container itself, if it makes one.
/// `vars` is the environment the check runs with.
pub fn http_get(command: &[String], vars: &BTreeMap<String, String>) -> Option<HttpGet> {
    let (text, variables) = match shell_script(command) {
        Some(script) => substitute(script, vars)?,
        None => (command.join(" "), Vec::new()),
    };
    let tool = text.split(|c: char| c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | '\'' | '"')).any(|w| {
        let name = w.rsplit('/').next().unwrap_or(w);
        name == "curl" || name == "wget"
    });
    for caps in LOCAL_URL.captures_iter(&text) {
        let scheme = caps.get(1).map(|m| m.as_str().to_ascii_lowercase());
        match scheme.as_deref() {
            Some("http") => {}
            None if tool => {}
            // https needs a scheme the probe model does not carry; other schemes are not HTTP.
            _ => continue,
        }
        let port = match caps.get(3).map(|m| m.as_str()) {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                // `:$PORT` left unexpanded, or not a port: the request is unknown.
                _ => return None,
            },
        };
        let path = caps.get(4).map_or("/", |m| m.as_str()).to_owned();
        return Some(HttpGet { path, port, variables });
    }
    None
}

/// Returns the script of a shell-form command (`sh -c SCRIPT`, `bash -o pipefail -c SCRIPT`).
fn shell_script(command: &[String]) -> Option<&str> {
    let program = command.first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    if !name.ends_with("sh") {
        return None;
    }
    let c = command.iter().position(|a| a == "-c")?;
    command.get(c + 1).map(String::as_str)
}

/// Substitutes `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME-default}` as a shell would
/// (not inside single quotes); `None` when a variable has no value, so nothing is guessed.
fn substitute(script: &str, vars: &BTreeMap<String, String>) -> Option<(String, Vec<(String, String)>)> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = String::new();
    let mut used = Vec::new();
    let mut single = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            single = !single;
        }
        if c != '$' || single {
            out.push(c);
            i += 1;
            continue;
        }
        let rest = &chars[i + 1..];
        let (name, default, used_len) = if rest.first() == Some(&'{') {
            let close = rest.iter().position(|&c| c == '}')?;
            let inner: String = rest[1..close].iter().collect();
            let (name, default) = match inner.find([':', '-']) {
                Some(at) => {
                    let op = if inner[at..].starts_with(":-") {
                        2
                    } else if inner[at..].starts_with('-') {
                        1
                    } else {
                        0
                    };
                    if op == 0 {
                        return None;
                    }
                    (inner[..at].to_owned(), Some(inner[at + op..].to_owned()))
                }
                None => (inner, None),
            };
            (name, default, close + 1)
        } else {
            let len = rest.iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
            if len == 0 {
                out.push(c);
                i += 1;
                continue;
            }
            (rest[..len].iter().collect(), None, len)
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let value = vars.get(&name).filter(|v| !v.is_empty()).cloned().or(default)?;
        out.push_str(&value);
        if !used.iter().any(|(n, _)| *n == name) {
            used.push((name, value));
        }
        i += 1 + used_len;
    }
    Some((out, used))
}

/// The environment a health-check command runs with (the image's ENV, env_file, compose
/// `environment`), plus the stage's build ARGs, which the running container does not see.
pub struct CheckEnv {
    /// Values by name.
    pub vars: BTreeMap<String, String>,
    /// Names only a build ARG sets.
    pub build_only: BTreeSet<String>,
}

/// Returns the environment a check runs with. Secret-looking values are left out, so a probe
/// never carries one: a check that needs one stays a command, which reads it from the pod.
pub fn environment(
    service: Option<&compose::Service>,
    stage: Option<&Stage>,
    env_files: &BTreeMap<String, String>,
) -> CheckEnv {
    let mut env = CheckEnv { vars: BTreeMap::new(), build_only: BTreeSet::new() };
    for (k, v) in stage.map(|s| &s.args).into_iter().flatten() {
        env.vars.insert(k.clone(), v.clone());
        env.build_only.insert(k.clone());
    }
    let runtime = stage
        .map(|s| &s.env)
        .into_iter()
        .flatten()
        .chain(env_files)
        .map(|(k, v)| (k, Some(v)))
        .chain(service.map(|s| &s.environment).into_iter().flatten().map(|(k, v)| (k, v.as_ref())));
    for (k, v) in runtime {
        env.build_only.remove(k);
        match v {
            Some(v) => env.vars.insert(k.clone(), v.clone()),
            None => env.vars.remove(k),
        };
    }
    env.vars.retain(|k, v| !is_secret(k, Some(v)));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn get(path: &str, port: u16, variables: &[(&str, &str)]) -> Option<HttpGet> {
        let variables = variables.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Some(HttpGet { path: path.into(), port, variables })
    }

    #[test]
    fn reads_curl_and_wget_urls() {
        let none = BTreeMap::new();
        assert_eq!(http_get(&words("curl -fsS http://localhost:8080/healthz"), &none), get("/healthz", 8080, &[]));
        assert_eq!(http_get(&words("wget -qO- http://127.0.0.1/"), &none), get("/", 80, &[]));
        assert_eq!(http_get(&words("wget -q --spider localhost:3000/ready"), &none), get("/ready", 3000, &[]));
        assert_eq!(
            http_get(&sh("curl -f 0.0.0.0:9000/health?full=1 || exit 1"), &none),
            get("/health?full=1", 9000, &[])
        );
        assert_eq!(http_get(&words("/usr/bin/curl http://[::1]:8081"), &none), get("/", 8081, &[]));
        assert_eq!(http_get(&words("pg_isready -U app"), &none), None);
        // Only plain HTTP to the container itself becomes an HTTP probe.
        assert_eq!(http_get(&words("curl -fk https://localhost:8443/health"), &none), None);
        assert_eq!(http_get(&words("curl -f http://example.com:8080/health"), &none), None);
        // A bare host is a URL only for curl and wget.
        assert_eq!(http_get(&words("nc -z localhost:5432"), &none), None);
    }

    #[test]
    fn substitutes_the_environment_of_shell_checks() {
        let env = vars(&[("PORT", "8080"), ("HEALTH", "/status")]);
        let cmd = sh("curl -fsS http://localhost:$PORT/status || exit 1");
        assert_eq!(http_get(&cmd, &env), get("/status", 8080, &[("PORT", "8080")]));
        let cmd = sh("curl -fsS \"http://localhost:${PORT}${HEALTH}\"");
        assert_eq!(http_get(&cmd, &env), get("/status", 8080, &[("PORT", "8080"), ("HEALTH", "/status")]));
        let cmd = sh("wget -qO- http://localhost:${ADMIN_PORT:-9001}/live");
        assert_eq!(http_get(&cmd, &env), get("/live", 9001, &[("ADMIN_PORT", "9001")]));
        let bash =
            vec!["/bin/bash".into(), "-o".into(), "pipefail".into(), "-c".into(), "curl -f localhost:$PORT/".into()];
        assert_eq!(http_get(&bash, &env), get("/", 8080, &[("PORT", "8080")]));
    }

    #[test]
    fn unknown_values_give_no_request() {
        let env = vars(&[("PORT", "8080")]);
        // Unset: the port is unknown, not 80 and not `/`.
        assert_eq!(http_get(&sh("curl -f http://localhost:$MISSING/status"), &env), None);
        // Exec form has no shell: `$PORT` reaches curl literally.
        assert_eq!(http_get(&words("curl -f http://localhost:$PORT/status"), &env), None);
        // Single quotes keep `$PORT` literal in the shell too.
        assert_eq!(http_get(&sh("curl -f 'http://localhost:$PORT/status'"), &env), None);
        assert_eq!(http_get(&sh("curl -f http://localhost:${PORT:?unset}/status"), &env), None);
        assert_eq!(http_get(&sh("curl -f http://localhost:99999/"), &env), None);
    }
}
