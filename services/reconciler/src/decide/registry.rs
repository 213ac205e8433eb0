//! Registry verification, the pure parts: the endpoint's base URL, the credentials a Secret
//! holds for it, the challenge in a `WWW-Authenticate` header, and the verdict written to the
//! Registry's status.

use std::collections::BTreeMap;

use base64::Engine;

/// The base URL of `endpoint` (`https://` when it names no scheme), without a trailing `/`.
pub fn base_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim();
    let url = if e.contains("://") { e.to_owned() } else { format!("https://{e}") };
    let url = url.trim_end_matches('/').to_owned();
    let uri: http::Uri = url.parse().map_err(|err| format!("spec.endpoint `{endpoint}` is not a URL: {err}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(url),
        _ => Err(format!("spec.endpoint `{endpoint}`: give a host, optionally with http:// or https://")),
    }
}

/// The host (and port) a registry is known by in a `.dockerconfigjson`.
fn registry_host(base_url: &str) -> String {
    base_url.split_once("://").map_or(base_url, |(_, rest)| rest).split('/').next().unwrap_or_default().to_owned()
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User.
    pub username: String,
    /// Password or token; never printed.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
    }
}

/// The credentials a Secret's `data` holds for the registry at `base_url`: `username` and
/// `password` keys (`kubernetes.io/basic-auth`, or Opaque), or the entry of a
/// `.dockerconfigjson` for the registry's host. `Err` says what is missing, never a value.
pub fn credentials(data: &BTreeMap<String, Vec<u8>>, base_url: &str) -> Result<Credentials, String> {
    let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).trim().to_owned());
    if let (Some(username), Some(password)) = (text("username"), text("password")) {
        return Ok(Credentials { username, password });
    }
    let Some(config) = data.get(".dockerconfigjson") else {
        return Err("it holds neither `username` and `password` nor `.dockerconfigjson`".into());
    };
    let config: serde_json::Value =
        serde_json::from_slice(config).map_err(|e| format!("its .dockerconfigjson is not JSON: {e}"))?;
    let host = registry_host(base_url);
    let auths = config["auths"].as_object().ok_or("its .dockerconfigjson has no `auths`")?;
    let entry = auths
        .iter()
        .find(|(k, _)| {
            registry_host(&format!("https://{}", k.split_once("://").map_or(k.as_str(), |(_, r)| r))) == host
        })
        .map(|(_, v)| v)
        .ok_or_else(|| format!("its .dockerconfigjson has no entry for {host}"))?;
    if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Ok(Credentials { username: u.to_owned(), password: p.to_owned() });
    }
    let auth = entry["auth"].as_str().ok_or_else(|| format!("its .dockerconfigjson entry for {host} has no `auth`"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| format!("its .dockerconfigjson `auth` for {host} is not base64"))?;
    let decoded = String::from_utf8_lossy(&decoded);
    let (u, p) = decoded
        .split_once(':')
        .ok_or_else(|| format!("its .dockerconfigjson `auth` for {host} is not user:password"))?;
    Ok(Credentials { username: u.to_owned(), password: p.to_owned() })
}

/// How a registry asks for credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic,
    /// A token from `realm` (the distribution token protocol).
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
        /// `scope` parameter.
        scope: Option<String>,
    },
    /// Anything else (its scheme).
    Other(String),
}

/// Reads a `WWW-Authenticate` header (RFC 7235: a scheme, then `key="value"` pairs).
pub fn challenge(header: &str) -> Challenge {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (quoted[..end].to_owned(), quoted.get(end + 1..).unwrap_or(""))
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => match params.remove("realm") {
            Some(realm) => {
                Challenge::Bearer { realm, service: params.remove("service"), scope: params.remove("scope") }
            }
            None => Challenge::Other(scheme.to_owned()),
        },
        _ => Challenge::Other(scheme.to_owned()),
    }
}

/// The token URL for a bearer challenge.
pub fn token_url(realm: &str, service: Option<&str>, scope: Option<&str>) -> String {
    let mut url = realm.to_owned();
    let mut sep = if realm.contains('?') { '&' } else { '?' };
    for (k, v) in [("service", service), ("scope", scope)] {
        if let Some(v) = v {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&percent(v));
            sep = '&';
        }
    }
    url
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// What a check found: `Ready` with its reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Reachable and, when it asks for them, the credentials accepted.
    pub verified: bool,
    /// The condition's reason.
    pub reason: &'static str,
    /// What happened, and what to do.
    pub message: String,
}

impl Verdict {
    /// A failed check.
    pub fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Self { verified: false, reason, message: message.into() }
    }

    /// A passed check.
    pub fn passed(message: impl Into<String>) -> Self {
        Self { verified: true, reason: "Verified", message: message.into() }
    }
}

/// Whether a 200 answer to `GET /v2/` came from a registry: the v2 API names itself in the
/// `Docker-Distribution-API-Version` header.
pub fn speaks_v2(api_version_header: Option<&str>) -> bool {
    api_version_header.is_some_and(|v| v.trim().starts_with("registry/2."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_base_urls() {
        assert_eq!(base_url("registry.example.com").unwrap(), "https://registry.example.com");
        assert_eq!(base_url("http://127.0.0.1:5000/").unwrap(), "http://127.0.0.1:5000");
        assert_eq!(base_url("https://harbor.corp/v2").unwrap(), "https://harbor.corp/v2");
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("").is_err());
        assert!(base_url("http://").is_err());
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn credentials_from_basic_auth_and_docker_config_secrets() {
        let basic = credentials(&data(&[("username", "bot"), ("password", "s3cret\n")]), "https://r.io").unwrap();
        assert_eq!((basic.username.as_str(), basic.password.as_str()), ("bot", "s3cret"));
        assert_eq!(basic.basic(), "Basic Ym90OnMzY3JldA==");
        assert!(!format!("{basic:?}").contains("s3cret"), "Debug never shows the password");

        let auth = base64::engine::general_purpose::STANDARD.encode("ci:tok:en");
        let config =
            format!(r#"{{"auths": {{"https://other.io": {{"auth": "eDp5"}}, "r.io:5000": {{"auth": "{auth}"}}}}}}"#);
        let c = credentials(&data(&[(".dockerconfigjson", &config)]), "https://r.io:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ci", "tok:en"));
        let fields = r#"{"auths": {"https://r.io": {"username": "u", "password": "p"}}}"#;
        assert_eq!(credentials(&data(&[(".dockerconfigjson", fields)]), "https://r.io").unwrap().username, "u");

        let missing = credentials(&data(&[(".dockerconfigjson", &config)]), "https://elsewhere.io").unwrap_err();
        assert_eq!(missing, "its .dockerconfigjson has no entry for elsewhere.io");
        assert!(credentials(&data(&[("token", "x")]), "https://r.io").unwrap_err().contains("neither"));
        assert!(credentials(&data(&[(".dockerconfigjson", "{")]), "https://r.io").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn challenges_are_read() {
        assert_eq!(challenge(r#"Basic realm="persys-test""#), Challenge::Basic);
        assert_eq!(
            challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:x:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:x:pull".into()),
            }
        );
        assert_eq!(
            challenge(r#"bearer realm="https://gitlab.corp/jwt/auth", service=container_registry"#),
            Challenge::Bearer {
                realm: "https://gitlab.corp/jwt/auth".into(),
                service: Some("container_registry".into()),
                scope: None
            }
        );
        assert_eq!(challenge("Bearer"), Challenge::Other("Bearer".into()));
        assert_eq!(challenge("Negotiate abc"), Challenge::Other("Negotiate".into()));
        assert_eq!(challenge(""), Challenge::Other(String::new()));
    }

    #[test]
    fn token_urls_carry_service_and_scope() {
        assert_eq!(
            token_url("https://auth.io/token", Some("registry.io"), Some("repository:a/b:pull")),
            "https://auth.io/token?service=registry.io&scope=repository%3Aa%2Fb%3Apull"
        );
        assert_eq!(token_url("https://auth.io/token?x=1", Some("s"), None), "https://auth.io/token?x=1&service=s");
    }

    #[test]
    fn only_a_v2_answer_counts() {
        assert!(speaks_v2(Some("registry/2.0")));
        assert!(!speaks_v2(None));
        assert!(!speaks_v2(Some("nginx")));
    }
}
