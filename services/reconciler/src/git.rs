//! Polls a git repository's branch heads over the smart-HTTP protocol: one
//! `GET <repo>/info/refs?service=git-upload-pack` (protocol v0/v1, no `Git-Protocol` header),
//! optionally with HTTP Basic credentials from a Kubernetes Secret, read by
//! [`crate::decide::git::parse_advertisement`]. It fetches no objects and clones nothing.
//!
//! Redirects are followed (a few, as git does: GitLab sends `/group/app` to `/group/app.git`),
//! never from https to http, and credentials only ever go to the origin they were given for.
//! Secret values never appear in errors, logs or `Debug` output.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::Full;
use k8s_openapi::api::core::v1::Secret;

pub use crate::decide::git::Refs;
use crate::decide::git::{self, AdvertisementError, UrlError};

/// The `User-Agent` of every request; git hosts key behaviour on the `git/` prefix.
pub const USER_AGENT: &str = "git/persys-reconciler";

/// Redirects followed at most, as git's own default.
const MAX_REDIRECTS: usize = 5;

/// A user name and password (or token) for HTTP Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Basic {
    /// User name (`git` when the Secret names none).
    pub username: String,
    /// Password or token; never printed.
    pub password: String,
}

impl std::fmt::Debug for Basic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Basic").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Basic {
    /// Returns the `Authorization` header value, marked sensitive.
    pub fn header(&self) -> Result<HeaderValue, GitError> {
        let pair = format!("{}:{}", self.username, self.password);
        let mut value =
            HeaderValue::try_from(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
                .map_err(|_| GitError::Credentials("they cannot be sent as an HTTP header".into()))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// Why the branches of a repository are unknown; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository URL cannot be polled.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The credentials Secret does not hold usable credentials.
    #[error("{secret}: {why}")]
    Secret {
        /// `Secret <namespace>/<name>`.
        secret: String,
        /// What is missing or wrong (never a value).
        why: String,
    },
    /// Credentials that cannot be used at all.
    #[error("the git credentials cannot be used: {0}")]
    Credentials(String),
    /// No connection, or the connection broke.
    #[error("GET {url}: {reason} (is the git server reachable from the cluster?)")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What failed.
        reason: String,
    },
    /// No whole answer in time.
    #[error("GET {url}: no answer in {after:?} (is the git server reachable from the cluster?)")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The time allowed.
        after: Duration,
    },
    /// 401 or 403 although credentials were sent.
    #[error("GET {url}: authentication failed (check the credentials Secret): the server answered {status}")]
    AuthenticationFailed {
        /// The URL asked.
        url: String,
        /// 401 or 403.
        status: StatusCode,
    },
    /// 401 or 403 without credentials.
    #[error(
        "GET {url}: the server answered {status}: the repository needs credentials (reference a credentials Secret), or the URL is wrong"
    )]
    CredentialsRequired {
        /// The URL asked.
        url: String,
        /// 401 or 403.
        status: StatusCode,
    },
    /// 404.
    #[error(
        "GET {url}: repository not found (check the URL; some hosts also answer 404 for a private repository without valid credentials)"
    )]
    NotFound {
        /// The URL asked.
        url: String,
    },
    /// Any other unexpected status.
    #[error("GET {url}: the server answered {status}{detail}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: StatusCode,
        /// `: <first line of the body>`, when there is one.
        detail: String,
    },
    /// A redirect that is not followed.
    #[error("GET {url}: redirected to {location}, which is not followed: {why}")]
    Redirect {
        /// The URL asked.
        url: String,
        /// Where it pointed.
        location: String,
        /// Why not.
        why: &'static str,
    },
    /// 200, but not a smart-HTTP ref advertisement.
    #[error(
        "GET {url}: not a git smart-HTTP server (Content-Type `{content_type}`, not {}); give the repository's HTTPS clone URL",
        git::ADVERTISEMENT_TYPE
    )]
    NotSmart {
        /// The URL asked.
        url: String,
        /// What it answered with.
        content_type: String,
    },
    /// An advertisement that cannot be read.
    #[error("GET {url}: {source}")]
    Advertisement {
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        source: AdvertisementError,
    },
}

/// Returns the branches of the repository at `repo_url` (its `http(s)://` clone URL) and where
/// its `HEAD` points, asking with `credentials` (HTTP Basic) when given; the whole call,
/// redirects included, takes at most `timeout`.
pub async fn branches(
    http: &persys_kit::http::Client,
    repo_url: &str,
    credentials: Option<&Basic>,
    timeout: Duration,
) -> Result<Refs, GitError> {
    let first = git::info_refs_url(repo_url)?;
    let authorization = credentials.map(Basic::header).transpose()?;
    match tokio::time::timeout(timeout, follow(http, first.clone(), authorization, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(GitError::Timeout { url: first, after: timeout }),
    }
}

/// GETs `url`, following redirects, and reads the advertisement.
async fn follow(
    http: &persys_kit::http::Client,
    mut url: String,
    mut authorization: Option<HeaderValue>,
    timeout: Duration,
) -> Result<Refs, GitError> {
    let sent_credentials = authorization.is_some();
    for _ in 0..=MAX_REDIRECTS {
        let request = request(&url, authorization.as_ref())?;
        // The caller's bound on the whole call answers first; this one only backs it up.
        let response = persys_kit::http::send(http, request, timeout + Duration::from_secs(1))
            .await
            .map_err(|reason| GitError::Unreachable { url: url.clone(), reason })?;
        let status = response.status;
        if status.is_redirection()
            && let Some(location) = response.headers.get(header::LOCATION)
        {
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            let next = redirect(&url, &location)?;
            if !same_origin(&url, &next) {
                authorization = None;
            }
            url = next;
            continue;
        }
        return match status {
            StatusCode::OK => read(&url, &response),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if sent_credentials => {
                Err(GitError::AuthenticationFailed { url, status })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(GitError::CredentialsRequired { url, status }),
            StatusCode::NOT_FOUND => Err(GitError::NotFound { url }),
            _ => Err(GitError::Status { url, status, detail: detail(&response.body) }),
        };
    }
    Err(GitError::Redirect { url: url.clone(), location: url, why: "more than 5 redirects" })
}

fn request(url: &str, authorization: Option<&HeaderValue>) -> Result<Request<Full<Bytes>>, GitError> {
    let mut request = Request::get(url)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        // Polling wants the heads of now, not a cache's.
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::PRAGMA, "no-cache");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value.clone());
    }
    request
        .body(Full::new(Bytes::new()))
        .map_err(|e| GitError::Unreachable { url: url.to_owned(), reason: format!("cannot build the request: {e}") })
}

/// Reads a 200 answer: it must be an advertisement.
fn read(url: &str, response: &persys_kit::http::Response) -> Result<Refs, GitError> {
    let content_type = response
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case(git::ADVERTISEMENT_TYPE) {
        let content_type = if content_type.is_empty() { "none".to_owned() } else { content_type };
        return Err(GitError::NotSmart { url: url.to_owned(), content_type });
    }
    git::parse_advertisement(&response.body).map_err(|source| GitError::Advertisement { url: url.to_owned(), source })
}

/// The first line of `body`, shortened, as `: <line>`; empty without one.
fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    if line.is_empty() {
        return String::new();
    }
    let short: String = line.chars().take(200).flat_map(char::escape_debug).collect();
    format!(": {short}")
}

/// The absolute URL a `Location` from `url` points at, if it is to be followed.
fn redirect(url: &str, location: &str) -> Result<String, GitError> {
    let refuse = |why| GitError::Redirect { url: url.to_owned(), location: location.to_owned(), why };
    let base: Uri = url.parse().map_err(|_| refuse("the request URL cannot be read"))?;
    let next = if location.starts_with("//") {
        format!("{}:{location}", base.scheme_str().unwrap_or("https"))
    } else if location.starts_with('/') {
        let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
        format!("{}://{authority}{location}", base.scheme_str().unwrap_or("https"))
    } else if location.contains("://") {
        location.to_owned()
    } else {
        return Err(refuse("only absolute redirects are followed"));
    };
    let uri: Uri = next.parse().map_err(|_| refuse("it is not a URL"))?;
    match (base.scheme_str(), uri.scheme_str()) {
        (Some("https"), Some("http")) => Err(refuse("it leaves https for plain http")),
        (_, Some("http" | "https")) if uri.authority().is_some_and(|a| !a.as_str().contains('@')) => Ok(next),
        _ => Err(refuse("it is not an http(s) URL without credentials")),
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    let origin = |u: &str| {
        u.parse::<Uri>().ok().map(|u| {
            let scheme = u.scheme_str().unwrap_or_default().to_ascii_lowercase();
            let default = if scheme == "https" { 443 } else { 80 };
            (scheme, u.host().unwrap_or_default().to_ascii_lowercase(), u.port_u16().unwrap_or(default))
        })
    };
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// Reads git credentials from `secret`: `username` and `password` (a `kubernetes.io/basic-auth`
/// or Opaque Secret), or only `password` or `token`, the user name then being `git`. Errors
/// name the Secret and the keys, never a value.
pub fn credentials_from_secret(secret: &Secret) -> Result<Basic, GitError> {
    let name = format!(
        "Secret {}/{}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        secret.metadata.name.as_deref().unwrap_or_default()
    );
    let fail = |why: String| GitError::Secret { secret: name.clone(), why };
    match secret.type_.as_deref() {
        None | Some("" | "Opaque" | "kubernetes.io/basic-auth") => {}
        Some("kubernetes.io/ssh-auth") => {
            return Err(fail(
                "it holds an SSH key, but repositories are polled over HTTPS: use a kubernetes.io/basic-auth Secret with `username` and `password` (or a token)".into(),
            ));
        }
        Some(other) => {
            return Err(fail(format!(
                "its type is {other}: use a kubernetes.io/basic-auth or Opaque Secret with `username` and `password` (or `token`)"
            )));
        }
    }
    let value = |key: &str| -> Result<Option<String>, GitError> {
        let raw = match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(bytes) => Some(bytes.0.clone()),
            None => secret.string_data.as_ref().and_then(|d| d.get(key)).map(|s| s.clone().into_bytes()),
        };
        let Some(raw) = raw else { return Ok(None) };
        let text = String::from_utf8(raw).map_err(|_| fail(format!("its `{key}` is not UTF-8 text")))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(fail(format!("its `{key}` is empty")));
        }
        Ok(Some(text.to_owned()))
    };
    let username = value("username")?.unwrap_or_else(|| "git".to_owned());
    let password = match (value("password")?, value("token")?) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => return Err(fail("it holds neither `password` nor `token`".into())),
    };
    if username.contains(':') {
        return Err(fail("its `username` contains `:`, which HTTP Basic authentication cannot carry".into()));
    }
    Ok(Basic { username, password })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(type_: Option<&str>, data: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some("repo-creds".into());
        s.metadata.namespace = Some("kapsa".into());
        s.type_ = type_.map(str::to_owned);
        s.data = Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect());
        s
    }

    fn basic(username: &str, password: &str) -> Basic {
        Basic { username: username.into(), password: password.into() }
    }

    #[test]
    fn secrets_of_every_accepted_shape_are_read() {
        let pair = [("username", "kapsa-bot"), ("password", "s3cret\n")];
        assert_eq!(
            credentials_from_secret(&secret(Some("kubernetes.io/basic-auth"), &pair)).unwrap(),
            basic("kapsa-bot", "s3cret")
        );
        assert_eq!(credentials_from_secret(&secret(Some("Opaque"), &pair)).unwrap(), basic("kapsa-bot", "s3cret"));
        assert_eq!(
            credentials_from_secret(&secret(None, &[("token", "ghp_s3cret")])).unwrap(),
            basic("git", "ghp_s3cret")
        );
        assert_eq!(credentials_from_secret(&secret(None, &[("password", "s3cret")])).unwrap(), basic("git", "s3cret"));
        let mut written = secret(None, &[]);
        written.string_data = Some(BTreeMap::from([("token".to_owned(), "s3cret".to_owned())]));
        assert_eq!(credentials_from_secret(&written).unwrap(), basic("git", "s3cret"));
    }

    #[test]
    fn unusable_secrets_say_why_without_their_values() {
        for (s, want) in [
            (secret(None, &[("username", "s3cret-user")]), "neither `password` nor `token`"),
            (secret(None, &[("password", "  ")]), "`password` is empty"),
            (secret(Some("kubernetes.io/ssh-auth"), &[("ssh-privatekey", "s3cret")]), "SSH key"),
            (secret(Some("kubernetes.io/dockerconfigjson"), &[(".dockerconfigjson", "s3cret")]), "dockerconfigjson"),
            (secret(None, &[("username", "a:s3cret"), ("password", "s3cret")]), "contains `:`"),
        ] {
            let message = credentials_from_secret(&s).unwrap_err().to_string();
            assert!(message.starts_with("Secret kapsa/repo-creds: ") && message.contains(want), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        let mut binary = secret(None, &[]);
        binary.data = Some(BTreeMap::from([("password".to_owned(), ByteString(vec![0xff, 0xfe]))]));
        assert!(credentials_from_secret(&binary).unwrap_err().to_string().contains("not UTF-8"));
    }

    #[test]
    fn basic_never_shows_its_password() {
        let b = basic("kapsa-bot", "s3cret");
        let debug = format!("{b:?} {:?}", Some(&b));
        assert!(debug.contains("kapsa-bot") && !debug.contains("s3cret"), "{debug}");
        let header = b.header().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Basic a2Fwc2EtYm90OnMzY3JldA==");
        assert!(!format!("{header:?}").contains("a2Fw"), "a sensitive header hides its value");
    }

    #[test]
    fn redirects_are_resolved_and_never_downgrade() {
        let from = "https://gitlab.example/group/app/info/refs?service=git-upload-pack";
        let to = "/group/app.git/info/refs?service=git-upload-pack";
        assert_eq!(redirect(from, to).unwrap(), format!("https://gitlab.example{to}"));
        assert_eq!(redirect(from, "https://other.example/x").unwrap(), "https://other.example/x");
        assert_eq!(redirect(from, "//other.example/x").unwrap(), "https://other.example/x");
        assert!(matches!(redirect(from, "http://gitlab.example/x"), Err(GitError::Redirect { .. })));
        assert!(matches!(redirect(from, "app.git/info/refs"), Err(GitError::Redirect { .. })));
        assert!(matches!(redirect(from, "https://u:p@gitlab.example/x"), Err(GitError::Redirect { .. })));
        assert!(matches!(redirect(from, "ssh://gitlab.example/x"), Err(GitError::Redirect { .. })));
        assert!(same_origin(from, "https://GITLAB.example:443/other"));
        assert!(!same_origin(from, "https://gitlab.example:8443/other"));
        assert!(!same_origin(from, "https://evil.example/group/app"));
    }

    #[test]
    fn details_are_one_short_line() {
        assert_eq!(detail(b""), "");
        assert_eq!(detail(b"\n  Service Unavailable \nmore"), ": Service Unavailable");
        assert_eq!(detail("x".repeat(500).as_bytes()).len(), 202);
    }
}
