//! The GitHub REST API as the DORA pipeline reads it: one commit, the commits between two
//! (the compare API, paginated), and the repository a commit lives in (commit search).
//! Answers are cached by `ETag` (a `304` costs no rate limit); an exhausted rate limit pauses
//! every call until GitHub's reset time instead of spending more of it.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use persys_kit::{config::Secret, http as client};
use serde_json::Value;

use super::github_app::{AppAuth, AppCredentials};
use crate::clock::now_ms;

/// Most commits read from one compare (GitHub pages them 100 at a time).
pub const MAX_COMPARE_COMMITS: usize = 1000;
/// Most cached answers.
const CACHE_ENTRIES: usize = 4096;
/// Longest pause for a rate limit whose reset time is missing or absurd.
const MAX_PAUSE_MS: i64 = 3_600_000;

/// One commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// The repository, normalised ([`normalise_repo_url`]).
    pub repo_url: String,
    /// Full SHA.
    pub sha: String,
    /// Message (first 1000 characters).
    pub message: String,
    /// Author name.
    pub author: String,
    /// Author date (else committer date), Unix ms; `None` when GitHub gave neither.
    pub authored_ms: Option<i64>,
}

/// Why a call gave no answer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum GithubError {
    /// Worth trying again soon: the network, a 5xx, an answer that is not what the API
    /// documents.
    #[error("{0}")]
    Retry(String),
    /// The rate limit is spent until `until_ms`.
    #[error("GitHub rate limit exhausted until {until_ms} (Unix ms)")]
    RateLimited {
        /// When GitHub resets the limit.
        until_ms: i64,
    },
    /// Refused for good (401, 403 without a rate limit, another 4xx): the token or the
    /// repository needs fixing, trying again will not help.
    #[error("{0}")]
    Refused(String),
}

/// How calls to GitHub are authenticated.
#[derive(Debug, Default)]
pub enum Auth {
    /// No credentials (60 calls an hour, public repositories only).
    #[default]
    Anonymous,
    /// A personal access or fine-grained token.
    Token(Secret),
    /// A GitHub App installation (its tokens are minted and renewed as needed).
    App(AppCredentials),
}

enum Credentials {
    None,
    Token(Secret),
    App(AppAuth),
}

/// A GitHub API client.
pub struct Github {
    http: client::Client,
    base: String,
    credentials: Credentials,
    timeout: Duration,
    cache: Mutex<HashMap<String, (String, Bytes)>>,
    paused_until_ms: AtomicI64,
}

impl Github {
    /// A client of the API at `base` (`https://api.github.com`, or a GitHub Enterprise
    /// `https://host/api/v3`).
    pub fn new(base: &str, auth: Auth, timeout: Duration) -> Result<Self, client::ClientError> {
        Ok(Self {
            http: client::client(None, "GitHub")?,
            base: base.trim_end_matches('/').to_owned(),
            credentials: match auth {
                Auth::Anonymous => Credentials::None,
                Auth::Token(token) => Credentials::Token(token),
                Auth::App(app) => Credentials::App(AppAuth::new(app)),
            },
            timeout,
            cache: Mutex::default(),
            paused_until_ms: AtomicI64::new(0),
        })
    }

    /// GETs `path` (with its query); `Ok(None)` for 404 and 422 (no such commit or range).
    async fn get(&self, path: &str) -> Result<Option<Bytes>, GithubError> {
        let paused = self.paused_until_ms.load(Ordering::Relaxed);
        if paused > now_ms() {
            return Err(GithubError::RateLimited { until_ms: paused });
        }
        let url = format!("{}{path}", self.base);
        let cached = self.cache.lock().map(|c| c.get(&url).cloned()).unwrap_or_default();
        let mut request = api_request(http::Method::GET, &url);
        let token = match &self.credentials {
            Credentials::None => None,
            Credentials::Token(token) => Some(token.clone()),
            Credentials::App(app) => Some(app.token(&self.http, &self.base, self.timeout).await?),
        };
        if let Some(token) = &token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        if let Some((etag, _)) = &cached {
            request = request.header(header::IF_NONE_MATCH, etag.as_str());
        }
        let request =
            request.body(Full::new(Bytes::new())).map_err(|e| GithubError::Refused(format!("{path}: {e}")))?;
        let response = client::send(&self.http, request, self.timeout)
            .await
            .map_err(|e| GithubError::Retry(format!("GitHub {path}: {e}")))?;
        let status = response.status;
        if status == StatusCode::NOT_MODIFIED {
            return match cached {
                Some((_, body)) => Ok(Some(body)),
                None => Err(GithubError::Retry(format!("GitHub {path}: 304 for an answer never cached"))),
            };
        }
        if let Some(until_ms) = rate_limited(status, &response.headers) {
            self.paused_until_ms.fetch_max(until_ms, Ordering::Relaxed);
            tracing::warn!(until_ms, "GitHub rate limit exhausted; pausing GitHub calls");
            return Err(GithubError::RateLimited { until_ms });
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::UNPROCESSABLE_ENTITY {
            return Ok(None);
        }
        // An installation token GitHub no longer takes (revoked, or expired early): the next
        // attempt mints a new one.
        if status == StatusCode::UNAUTHORIZED
            && let (Credentials::App(app), Some(token)) = (&self.credentials, &token)
        {
            app.forget(token).await;
            return Err(GithubError::Retry(format!("GitHub {path} refused the installation token (401); renewing it")));
        }
        let text = || String::from_utf8_lossy(&response.body).chars().take(200).collect::<String>();
        if status.is_server_error() {
            return Err(GithubError::Retry(format!("GitHub {path} answered {status}: {}", text())));
        }
        if !status.is_success() {
            return Err(GithubError::Refused(format!("GitHub {path} answered {status}: {}", text())));
        }
        if let Some(etag) = response.headers.get(header::ETAG).and_then(|v| v.to_str().ok())
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(url, (etag.to_owned(), response.body.clone()));
        }
        Ok(Some(response.body))
    }

    async fn get_json(&self, path: &str) -> Result<Option<Value>, GithubError> {
        let Some(body) = self.get(path).await? else { return Ok(None) };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| GithubError::Retry(format!("GitHub {path} answered something that is not JSON: {e}")))
    }

    /// One commit of `repo_url`, or `None` when GitHub knows no such commit.
    pub async fn commit(&self, repo_url: &str, sha: &str) -> Result<Option<Commit>, GithubError> {
        let (owner, repo) = owner_repo(repo_url)
            .ok_or_else(|| GithubError::Refused(format!("{repo_url} is not a https://host/<owner>/<repo> URL")))?;
        let path = format!("/repos/{owner}/{repo}/commits/{sha}");
        let Some(json) = self.get_json(&path).await? else { return Ok(None) };
        commit_of(repo_url, &json)
            .map(Some)
            .ok_or_else(|| GithubError::Retry(format!("GitHub {path}: no commit in the answer")))
    }

    /// The commits after `base` up to and including `head`, oldest first, and whether there
    /// were more than [`MAX_COMPARE_COMMITS`]; `None` when GitHub cannot compare them.
    pub async fn compare(
        &self,
        repo_url: &str,
        base: &str,
        head: &str,
    ) -> Result<Option<(Vec<Commit>, bool)>, GithubError> {
        let (owner, repo) = owner_repo(repo_url)
            .ok_or_else(|| GithubError::Refused(format!("{repo_url} is not a https://host/<owner>/<repo> URL")))?;
        let mut commits = Vec::new();
        for page in 1.. {
            let path = format!("/repos/{owner}/{repo}/compare/{base}...{head}?per_page=100&page={page}");
            let Some(json) = self.get_json(&path).await? else { return Ok(None) };
            let total = json.get("total_commits").and_then(Value::as_u64).unwrap_or(0) as usize;
            let Some(list) = json.get("commits").and_then(Value::as_array) else {
                return Err(GithubError::Retry(format!("GitHub {path}: no commits list in the answer")));
            };
            commits.extend(list.iter().filter_map(|c| commit_of(repo_url, c)));
            if list.is_empty() || commits.len() >= total.min(MAX_COMPARE_COMMITS) {
                let truncated = total > commits.len();
                commits.truncate(MAX_COMPARE_COMMITS);
                return Ok(Some((commits, truncated)));
            }
        }
        Ok(None)
    }

    /// The repository (`https://github.com/<owner>/<repo>`) holding `sha`, by commit search;
    /// `None` when nothing is found.
    pub async fn find_repo(&self, sha: &str) -> Result<Option<String>, GithubError> {
        let Some(json) = self.get_json(&format!("/search/commits?q=hash:{sha}&per_page=10")).await? else {
            return Ok(None);
        };
        Ok(json
            .get("items")
            .and_then(Value::as_array)
            .and_then(|items| items.iter().find_map(|i| i.pointer("/repository/html_url").and_then(Value::as_str)))
            .and_then(normalise_repo_url))
    }
}

/// A request to the REST API at `url` with the headers GitHub asks every client to send.
pub(super) fn api_request(method: http::Method, url: &str) -> http::request::Builder {
    Request::builder()
        .method(method)
        .uri(url)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header(header::USER_AGENT, concat!("persys-metrics-pipeline/", env!("CARGO_PKG_VERSION")))
}

/// The reset time when an answer says the rate limit is spent: 429, or 403 with
/// `x-ratelimit-remaining: 0` or a `retry-after` (a secondary limit).
fn rate_limited(status: StatusCode, headers: &http::HeaderMap) -> Option<i64> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let number =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let now = now_ms();
    let until = if let Some(secs) = number("retry-after") {
        now + secs.max(1) * 1000
    } else if number("x-ratelimit-remaining") == Some(0) {
        number("x-ratelimit-reset").map_or(now + 60_000, |reset| reset * 1000)
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        now + 60_000
    } else {
        return None;
    };
    Some(until.clamp(now + 1000, now + MAX_PAUSE_MS))
}

/// A commit from an API commit object (`/commits/{sha}`, or an element of a compare).
fn commit_of(repo_url: &str, json: &Value) -> Option<Commit> {
    let sha = json.get("sha")?.as_str()?;
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let date = |who: &str| {
        json.pointer(&format!("/commit/{who}/date"))
            .and_then(Value::as_str)
            .and_then(|d| time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok())
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let text = |p: &str| json.pointer(p).and_then(Value::as_str).unwrap_or_default();
    Some(Commit {
        repo_url: repo_url.to_owned(),
        sha: sha.to_ascii_lowercase(),
        message: text("/commit/message").chars().take(1000).collect(),
        author: text("/commit/author/name").to_owned(),
        authored_ms: date("author").or_else(|| date("committer")),
    })
}

/// A repository URL as DORA records compare it: https, lowercase host and path, no `.git`,
/// no trailing slash; `git@host:owner/repo.git` is read as `https://host/owner/repo`.
/// `None` for anything that is not a URL of a repository.
pub fn normalise_repo_url(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = if let Some(r) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) {
        r.to_owned()
    } else if let Some(r) = url.strip_prefix("git@") {
        r.replacen(':', "/", 1)
    } else {
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest).to_ascii_lowercase();
    let mut parts = rest.split('/');
    let host = parts.next().filter(|h| !h.is_empty() && !h.contains('@'))?;
    let path: Vec<&str> = parts.collect();
    if path.len() < 2 || path.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return None;
    }
    if !path.iter().all(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))) {
        return None;
    }
    Some(format!("https://{host}/{}", path.join("/")))
}

/// The owner and repository of a normalised URL `https://host/<owner>/<repo>`.
pub fn owner_repo(url: &str) -> Option<(String, String)> {
    let normal = normalise_repo_url(url)?;
    let mut parts = normal.strip_prefix("https://")?.split('/').skip(1);
    let (owner, repo) = (parts.next()?, parts.next()?);
    parts.next().is_none().then(|| (owner.to_owned(), repo.to_owned()))
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, StatusCode};

    use super::{normalise_repo_url, owner_repo, rate_limited};

    #[test]
    fn repository_urls_are_normalised() {
        for (given, want) in [
            ("https://GitHub.com/Acme/UI.git/", Some("https://github.com/acme/ui")),
            ("http://github.com/acme/ui", Some("https://github.com/acme/ui")),
            ("git@github.com:acme/ui.git", Some("https://github.com/acme/ui")),
            ("https://github.com/acme", None),
            ("ftp://github.com/acme/ui", None),
            ("https://github.com/acme/../ui", None),
            ("https://github.com/acme/ui?x=1", None),
        ] {
            assert_eq!(normalise_repo_url(given).as_deref(), want, "{given}");
        }
        assert_eq!(owner_repo("https://github.com/acme/ui.git"), Some(("acme".into(), "ui".into())));
        assert_eq!(owner_repo("https://gitlab.com/group/sub/project"), None);
    }

    #[test]
    fn a_spent_rate_limit_pauses_until_the_reset() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = crate::clock::now_ms() / 1000 + 120;
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset.to_string()).unwrap());
        assert_eq!(rate_limited(StatusCode::FORBIDDEN, &h), Some(reset * 1000));
        let mut other = HeaderMap::new();
        other.insert("x-ratelimit-remaining", HeaderValue::from_static("12"));
        assert_eq!(rate_limited(StatusCode::FORBIDDEN, &other), None, "a plain 403 is a refusal");
        assert_eq!(rate_limited(StatusCode::NOT_FOUND, &h), None);
        let mut after = HeaderMap::new();
        after.insert("retry-after", HeaderValue::from_static("30"));
        let until = rate_limited(StatusCode::FORBIDDEN, &after).unwrap();
        assert!((until - crate::clock::now_ms() - 30_000).abs() < 2_000);
    }
}
