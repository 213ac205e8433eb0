//! Local HTTP fakes of the SaaS the DORA pipeline talks to, following their documented APIs:
//! GitHub's REST API (commits, compare with pagination, commit search; ETags; rate limits)
//! and Apache DevLake's webhook deployments API with the validators DevLake applies.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

async fn listen(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// One commit of a fake repository.
#[derive(Clone, Debug)]
pub struct FakeCommit {
    pub sha: String,
    pub message: String,
    /// Author date, Unix ms; `None` for a commit GitHub gives no date for.
    pub authored_ms: Option<i64>,
}

/// A 40-hex SHA made from `seed`.
pub fn sha(seed: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for i in 0..3u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, i).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[derive(Default)]
struct GithubState {
    /// "owner/repo" -> commits, oldest first (a linear history).
    repos: HashMap<String, Vec<FakeCommit>>,
    token: Option<String>,
    /// Answer the next this many calls with 500.
    fail_next: usize,
    /// Answer the next this many calls with a garbage 200.
    garbage_next: usize,
    /// Answer the next this many calls with a spent rate limit resetting this many seconds on.
    rate_limit_next: usize,
    calls: Vec<String>,
    not_modified: usize,
    app: Option<FakeApp>,
}

/// A GitHub App the fake knows: installation tokens are minted for a JWT its key signed.
struct FakeApp {
    app_id: String,
    installation_id: u64,
    /// DER RSAPublicKey.
    public_key: Vec<u8>,
    /// Life of a minted token.
    token_life_s: i64,
    /// Tokens minted and still honoured.
    valid: Vec<String>,
    minted: usize,
    /// JWTs refused (bad signature, issuer or times).
    refused_jwts: usize,
}

/// A fake GitHub API.
#[derive(Clone, Default)]
pub struct FakeGithub {
    state: Arc<Mutex<GithubState>>,
}

impl FakeGithub {
    /// Adds `commits` to `owner/repo` (after those it has).
    pub fn push(&self, repo: &str, commits: impl IntoIterator<Item = FakeCommit>) {
        self.state.lock().unwrap().repos.entry(repo.to_owned()).or_default().extend(commits);
    }

    /// Requires `Authorization: Bearer <token>`.
    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().token = Some(token.to_owned());
    }

    /// Makes it an app installation's API: calls need a token minted at
    /// `POST /app/installations/{installation_id}/access_tokens` for a JWT signed by the key
    /// whose DER `RSAPublicKey` is `public_key`, with `iss` = `app_id`.
    pub fn require_app(&self, app_id: &str, installation_id: u64, public_key: Vec<u8>) {
        self.state.lock().unwrap().app = Some(FakeApp {
            app_id: app_id.to_owned(),
            installation_id,
            public_key,
            token_life_s: 3600,
            valid: Vec::new(),
            minted: 0,
            refused_jwts: 0,
        });
    }

    /// Revokes every installation token minted so far (as GitHub does when one expires or is
    /// revoked): calls with them get 401.
    pub fn revoke_app_tokens(&self) {
        if let Some(app) = &mut self.state.lock().unwrap().app {
            app.valid.clear();
        }
    }

    /// Installation tokens minted, and JWTs refused.
    pub fn app_tokens(&self) -> (usize, usize) {
        self.state.lock().unwrap().app.as_ref().map_or((0, 0), |a| (a.minted, a.refused_jwts))
    }

    /// Fails the next `n` calls with 500.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Answers the next `n` calls with a 200 that is not JSON.
    pub fn garbage_next(&self, n: usize) {
        self.state.lock().unwrap().garbage_next = n;
    }

    /// Answers the next `n` calls with 403 and a spent rate limit.
    pub fn rate_limit_next(&self, n: usize) {
        self.state.lock().unwrap().rate_limit_next = n;
    }

    /// Paths called so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many calls were answered 304 from an ETag.
    pub fn not_modified(&self) -> usize {
        self.state.lock().unwrap().not_modified
    }

    /// Serves it; returns the API base URL.
    pub async fn serve(&self) -> String {
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/commits/{sha}", get(gh_commit))
            .route("/repos/{owner}/{repo}/compare/{basehead}", get(gh_compare))
            .route("/search/commits", get(gh_search))
            .route("/app/installations/{id}/access_tokens", post(gh_access_token))
            .with_state(self.clone());
        format!("http://{}", listen(app).await)
    }

    /// Common checks: token, injected faults; `Err` is the answer to give.
    fn gate(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(uri.to_string());
        let sent = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let bad_credentials =
            || Err(Box::new((StatusCode::UNAUTHORIZED, r#"{"message":"Bad credentials"}"#).into_response()));
        if let Some(token) = &s.token
            && sent != format!("Bearer {token}")
        {
            return bad_credentials();
        }
        if let Some(app) = &s.app
            && !sent.strip_prefix("Bearer ").is_some_and(|t| app.valid.iter().any(|v| v == t))
        {
            return bad_credentials();
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(Box::new((StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response()));
        }
        if s.garbage_next > 0 {
            s.garbage_next -= 1;
            return Err(Box::new((StatusCode::OK, "<html>unicorn</html>").into_response()));
        }
        if s.rate_limit_next > 0 {
            s.rate_limit_next -= 1;
            let reset =
                (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 2).to_string();
            return Err(Box::new(
                (
                    StatusCode::FORBIDDEN,
                    [("x-ratelimit-remaining", "0".to_owned()), ("x-ratelimit-reset", reset)],
                    r#"{"message":"API rate limit exceeded"}"#,
                )
                    .into_response(),
            ));
        }
        Ok(())
    }

    fn find(&self, repo: &str, sha: &str) -> Option<(usize, FakeCommit)> {
        let s = self.state.lock().unwrap();
        let list = s.repos.get(repo)?;
        let matches: Vec<_> = list.iter().enumerate().filter(|(_, c)| c.sha.starts_with(sha)).collect();
        (matches.len() == 1 && sha.len() >= 7).then(|| (matches[0].0, matches[0].1.clone()))
    }
}

fn commit_json(c: &FakeCommit) -> Value {
    let date = c.authored_ms.map(rfc3339);
    json!({
        "sha": c.sha,
        "commit": {
            "message": c.message,
            "author": {"name": "Dev", "email": "dev@example.com", "date": date},
            "committer": {"name": "Dev", "email": "dev@example.com", "date": date},
        },
    })
}

/// An answer with an ETag, or 304 when the client already has it.
fn etagged(fake: &FakeGithub, headers: &HeaderMap, body: Value) -> Response {
    let text = body.to_string();
    let etag = format!("\"{}\"", super::fakes::sha(&text));
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        fake.state.lock().unwrap().not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    (StatusCode::OK, [("etag", etag), ("content-type", "application/json".into())], text).into_response()
}

async fn gh_commit(
    State(fake): State<FakeGithub>,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.gate(&uri, &headers) {
        return *r;
    }
    match fake.find(&format!("{owner}/{repo}"), &sha) {
        Some((_, c)) => etagged(&fake, &headers, commit_json(&c)),
        None => (StatusCode::UNPROCESSABLE_ENTITY, r#"{"message":"No commit found for SHA"}"#).into_response(),
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
        .collect()
}

async fn gh_compare(
    State(fake): State<FakeGithub>,
    Path((owner, repo, basehead)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.gate(&uri, &headers) {
        return *r;
    }
    let full = format!("{owner}/{repo}");
    let Some((base, head)) = basehead.split_once("...") else {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    };
    let (Some((b, _)), Some((h, _))) = (fake.find(&full, base), fake.find(&full, head)) else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let list: Vec<FakeCommit> =
        if h > b { fake.state.lock().unwrap().repos[&full][b + 1..=h].to_vec() } else { Vec::new() };
    let q = query(&uri);
    let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(250).min(100);
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
    let slice: Vec<Value> = list.iter().skip((page - 1) * per_page).take(per_page).map(commit_json).collect();
    etagged(
        &fake,
        &headers,
        json!({"status": "ahead", "ahead_by": list.len(), "total_commits": list.len(), "commits": slice}),
    )
}

/// `POST /app/installations/{installation_id}/access_tokens`, authenticated with the app's JWT.
async fn gh_access_token(State(fake): State<FakeGithub>, Path(id): Path<u64>, headers: HeaderMap) -> Response {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    let mut s = fake.state.lock().unwrap();
    s.calls.push(format!("/app/installations/{id}/access_tokens"));
    let Some(app) = &mut s.app else {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    };
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let verified = (|| {
        let mut parts = jwt.split('.');
        let (h, c, sig) = (parts.next()?, parts.next()?, parts.next()?);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &app.public_key)
            .verify(format!("{h}.{c}").as_bytes(), &signature)
            .ok()?;
        let (iat, exp) = (claims["iat"].as_i64()?, claims["exp"].as_i64()?);
        // GitHub: RS256, iss the app, issued in the past, expiring within 10 minutes.
        (header["alg"] == "RS256"
            && claims["iss"].as_str() == Some(app.app_id.as_str())
            && iat <= now
            && exp > now
            && exp - iat <= 600)
            .then_some(())
    })();
    if verified.is_none() {
        app.refused_jwts += 1;
        return (StatusCode::UNAUTHORIZED, r#"{"message":"A JSON web token could not be decoded"}"#).into_response();
    }
    if id != app.installation_id {
        return (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#).into_response();
    }
    app.minted += 1;
    let token = format!("ghs_fake{:04}", app.minted);
    app.valid.push(token.clone());
    let body = json!({
        "token": token,
        "expires_at": rfc3339((now + app.token_life_s) * 1000),
        "permissions": {"contents": "read"},
        "repository_selection": "all",
    });
    (StatusCode::CREATED, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn gh_search(State(fake): State<FakeGithub>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(r) = fake.gate(&uri, &headers) {
        return *r;
    }
    let q = query(&uri);
    let want = q.get("q").and_then(|q| q.strip_prefix("hash:")).unwrap_or_default().to_owned();
    let repos: Vec<String> = {
        let s = fake.state.lock().unwrap();
        s.repos.iter().filter(|(_, l)| l.iter().any(|c| c.sha.starts_with(&want))).map(|(r, _)| r.clone()).collect()
    };
    let items: Vec<Value> = repos
        .iter()
        .map(|r| json!({"sha": want, "repository": {"full_name": r, "html_url": format!("https://github.com/{r}")}}))
        .collect();
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"total_count": items.len(), "items": items}).to_string(),
    )
        .into_response()
}

#[derive(Default)]
struct DevlakeState {
    token: String,
    /// Every accepted post: (connection, body).
    posts: Vec<(String, Value)>,
    /// Every refused post with why.
    refused: Vec<String>,
    fail_next: usize,
    /// While set, posts wait for it to be cleared before being answered.
    hold: Option<Arc<tokio::sync::Notify>>,
    held: usize,
}

/// A fake DevLake webhook API.
#[derive(Clone, Default)]
pub struct FakeDevlake {
    state: Arc<Mutex<DevlakeState>>,
}

impl FakeDevlake {
    /// A DevLake whose webhook connections take API key `token`.
    pub fn new(token: &str) -> Self {
        let fake = Self::default();
        fake.state.lock().unwrap().token = token.to_owned();
        fake
    }

    /// Changes the API key it takes (a rotation).
    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_owned();
    }

    /// Answers the next `n` posts with 503.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    /// Holds posts (they wait, unanswered) until [`FakeDevlake::release`].
    pub fn hold(&self) {
        self.state.lock().unwrap().hold = Some(Arc::new(tokio::sync::Notify::new()));
    }

    /// Answers the held posts.
    pub fn release(&self) {
        if let Some(n) = self.state.lock().unwrap().hold.take() {
            n.notify_waiters();
        }
    }

    /// How many posts are waiting on a hold.
    pub fn held(&self) -> usize {
        self.state.lock().unwrap().held
    }

    /// Accepted posts: (connection, body).
    pub fn posts(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Accepted posts of deployment id `id`.
    pub fn posts_of(&self, id: &str) -> Vec<(String, Value)> {
        self.posts().into_iter().filter(|(_, b)| b["id"] == id).collect()
    }

    /// Refusals, with why.
    pub fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Serves it; returns the base URL.
    pub async fn serve(&self) -> String {
        let app = axum::Router::new()
            .route("/api/rest/plugins/webhook/connections/{id}/deployments", post(devlake_deployment))
            .with_state(self.clone());
        format!("http://{}", listen(app).await)
    }
}

/// DevLake's validation of a deployment body (`backend/plugins/webhook/api/deployments.go`).
pub fn devlake_validate(b: &Value) -> Result<(), String> {
    let date_ok = |v: &Value| {
        v.as_str()
            .is_some_and(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok())
    };
    if b["id"].as_str().is_none_or(str::is_empty) {
        return Err("id is required".into());
    }
    if !date_ok(&b["startedDate"]) || !date_ok(&b["finishedDate"]) {
        return Err("startedDate and finishedDate are required dates".into());
    }
    if let Some(r) = b.get("result")
        && !["SUCCESS", "FAILURE"].contains(&r.as_str().unwrap_or_default())
    {
        return Err(format!("result {r} is not SUCCESS or FAILURE"));
    }
    if let Some(e) = b.get("environment")
        && !["PRODUCTION", "STAGING", "TESTING", "DEVELOPMENT"].contains(&e.as_str().unwrap_or_default())
    {
        return Err(format!("environment {e} is not one of DevLake's"));
    }
    let commits = b["deploymentCommits"].as_array().ok_or("deploymentCommits is required")?;
    if commits.is_empty() {
        return Err("deploymentCommits must not be empty".into());
    }
    for c in commits {
        if c["repoUrl"].as_str().is_none_or(str::is_empty) || c["commitSha"].as_str().is_none_or(str::is_empty) {
            return Err("each commit needs repoUrl and commitSha".into());
        }
    }
    Ok(())
}

async fn devlake_deployment(
    State(fake): State<FakeDevlake>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hold = fake.state.lock().unwrap().hold.clone();
    if let Some(hold) = hold {
        let waiting = hold.notified();
        fake.state.lock().unwrap().held += 1;
        waiting.await;
        fake.state.lock().unwrap().held -= 1;
    }
    let mut s = fake.state.lock().unwrap();
    let sent = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if sent != format!("Bearer {}", s.token) {
        s.refused.push("unauthorized".into());
        return (StatusCode::UNAUTHORIZED, r#"{"message":"unauthorized"}"#).into_response();
    }
    if s.fail_next > 0 {
        s.fail_next -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        s.refused.push("not JSON".into());
        return (StatusCode::BAD_REQUEST, r#"{"message":"bad json"}"#).into_response();
    };
    if let Err(why) = devlake_validate(&json) {
        s.refused.push(why.clone());
        return (StatusCode::BAD_REQUEST, json!({"message": why}).to_string()).into_response();
    }
    s.posts.push((connection, json));
    (StatusCode::OK, r#"{"success":true}"#).into_response()
}
