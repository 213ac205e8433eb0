//! A real git smart-HTTP server for tests: git's own `git http-backend`, run as a CGI program
//! by a small HTTP/1.1 server (axum) on `127.0.0.1:0`, serving bare repositories under a
//! temporary directory, optionally behind HTTP Basic authentication. Repositories are filled
//! with git plumbing, so no git configuration of the machine is read or needed.
//!
//! Paths: `/git/<repo>/...` is git-http-backend (smart HTTP, fetches and clones);
//! `/dumb/<repo>/...` serves the repository's files as `text/plain`, like a plain web server
//! (the dumb protocol); `/moved/<repo>/...` redirects to `/git/<repo>/...`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// A running server; stopped (and its repositories removed) when dropped.
pub struct GitServer {
    task: tokio::task::JoinHandle<()>,
    addr: SocketAddr,
    root: tempfile::TempDir,
}

struct Shared {
    root: PathBuf,
    backend: PathBuf,
    /// `Basic <base64>` expected, and the user it stands for.
    auth: Option<(String, String)>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitServer {
    /// Starts a server, answering only requests with the Basic credentials `auth` when given.
    /// It accepts connections as soon as this returns (the listener is bound first).
    pub async fn start(auth: Option<(&str, &str)>) -> GitServer {
        let root = tempfile::tempdir().expect("a temporary directory");
        let exec_path = std::process::Command::new("git").arg("--exec-path").output().expect("git is installed");
        let exec_path = String::from_utf8(exec_path.stdout).expect("a path").trim().to_owned();
        let backend = Path::new(&exec_path).join("git-http-backend");
        assert!(backend.exists(), "{} is missing (install git)", backend.display());
        let auth = auth.map(|(user, password)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (format!("Basic {encoded}"), user.to_owned())
        });
        let shared = Arc::new(Shared { root: root.path().to_owned(), backend, auth });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the git server runs");
        });
        GitServer { task, addr, root }
    }

    /// Returns the smart-HTTP clone URL of `repo`.
    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/git/{repo}", self.addr)
    }

    /// Returns a URL of `repo` served as plain files (a web server that does not speak git's
    /// smart protocol).
    pub fn dumb_url(&self, repo: &str) -> String {
        format!("http://{}/dumb/{repo}", self.addr)
    }

    /// Returns a URL of `repo` that redirects (301) to [`GitServer::url`].
    pub fn moved_url(&self, repo: &str) -> String {
        format!("http://{}/moved/{repo}", self.addr)
    }

    /// Creates the empty bare repository `name` (its `HEAD` at `main`).
    pub fn create_repo(&self, name: &str) -> Repo {
        let path = self.root.path().join(name);
        let home = self.root.path().to_owned();
        run_git(&home, None, &["init", "--quiet", "--bare", "--initial-branch=main", &path.to_string_lossy()], None);
        let repo = Repo { path, home };
        repo.update_server_info();
        repo
    }

    /// Returns a `git` command whose environment reads no configuration of the machine or user.
    pub fn git(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("git");
        command.env_clear().envs(isolated_env(self.root.path())).kill_on_drop(true);
        command
    }

    /// Returns the server's temporary root (repositories and `HOME` of its git processes).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// A bare repository of a [`GitServer`].
pub struct Repo {
    path: PathBuf,
    home: PathBuf,
}

impl Repo {
    /// Commits a `README` holding `message` on `branch` (created if needed, on top of its head
    /// otherwise); returns the commit's object id.
    pub fn commit(&self, branch: &str, message: &str) -> String {
        let git_dir = Some(self.path.as_path());
        let reference = format!("refs/heads/{branch}");
        let parent = run_git_status(&self.home, git_dir, &["rev-parse", "--verify", "--quiet", &reference]);
        let blob = run_git(&self.home, git_dir, &["hash-object", "-w", "--stdin"], Some(message.as_bytes()));
        let tree = run_git(&self.home, git_dir, &["mktree"], Some(format!("100644 blob {blob}\tREADME\n").as_bytes()));
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
        if let Some(parent) = &parent {
            args.extend(["-p", parent.as_str()]);
        }
        let commit = run_git(&self.home, git_dir, &args, None);
        let old = parent.unwrap_or_else(|| "0".repeat(40));
        run_git(&self.home, git_dir, &["update-ref", &reference, &commit, &old], None);
        self.update_server_info();
        commit
    }

    /// Deletes `branch`.
    pub fn delete_branch(&self, branch: &str) {
        run_git(&self.home, Some(&self.path), &["update-ref", "-d", &format!("refs/heads/{branch}")], None);
        self.update_server_info();
    }

    /// Points `HEAD` at `branch`.
    pub fn set_head(&self, branch: &str) {
        run_git(&self.home, Some(&self.path), &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")], None);
    }

    /// Returns the repository's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `info/refs`, which the dumb protocol (the `/dumb/` path) reads.
    fn update_server_info(&self) {
        run_git(&self.home, Some(&self.path), &["update-server-info"], None);
    }
}

/// The environment of every git process: no system or user configuration, no prompts, fixed
/// identities.
fn isolated_env(home: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("HOME", home.to_string_lossy().into_owned()),
        ("XDG_CONFIG_HOME", home.join(".config").to_string_lossy().into_owned()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_AUTHOR_NAME", "Persys Test".into()),
        ("GIT_AUTHOR_EMAIL", "test@persys.invalid".into()),
        ("GIT_COMMITTER_NAME", "Persys Test".into()),
        ("GIT_COMMITTER_EMAIL", "test@persys.invalid".into()),
        ("LANG", "C".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Ok(path) = std::env::var("PATH") {
        env.push(("PATH".into(), path));
    }
    env
}

fn git_command(home: &Path, git_dir: Option<&Path>, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new("git");
    command.env_clear().envs(isolated_env(home)).args(args);
    if let Some(dir) = git_dir {
        command.env("GIT_DIR", dir);
    }
    command
}

fn output(mut command: std::process::Command, stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("writing to git");
    }
    drop(input);
    child.wait_with_output().expect("git runs")
}

/// Runs git; its trimmed stdout. Panics with its stderr when it fails.
fn run_git(home: &Path, git_dir: Option<&Path>, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = output(git_command(home, git_dir, args), stdin);
    assert!(out.status.success(), "git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
}

/// Runs git; its trimmed stdout, or `None` when it exits unsuccessfully.
fn run_git_status(home: &Path, git_dir: Option<&Path>, args: &[&str]) -> Option<String> {
    let out = output(git_command(home, git_dir, args), None);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mut user = None;
    if let Some((expected, name)) = &shared.auth {
        if request.headers().get(header::AUTHORIZATION).is_none_or(|v| v.as_bytes() != expected.as_bytes()) {
            let mut response = text(StatusCode::UNAUTHORIZED, "authentication required\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"persys test git\""));
            return response;
        }
        user = Some(name.clone());
    }
    let path = request.uri().path().to_owned();
    if path.split('/').any(|segment| segment == "..") {
        return text(StatusCode::BAD_REQUEST, "no `..` in paths\n");
    }
    if let Some(rest) = path.strip_prefix("/git/") {
        return cgi(&shared, request, &format!("/{rest}"), user).await;
    }
    if let Some(rest) = path.strip_prefix("/moved/") {
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        let mut response = text(StatusCode::MOVED_PERMANENTLY, "moved\n");
        let location = HeaderValue::try_from(format!("/git/{rest}{query}")).expect("a header value");
        response.headers_mut().insert(header::LOCATION, location);
        return response;
    }
    if let Some(rest) = path.strip_prefix("/dumb/") {
        return match tokio::fs::read(shared.root.join(rest)).await {
            Ok(bytes) => {
                let mut response = text(StatusCode::OK, "");
                *response.body_mut() = Body::from(bytes);
                response
            }
            Err(_) => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}

/// Runs git-http-backend for `request` (CGI/1.1, RFC 3875), `path_info` the repository path.
async fn cgi(shared: &Shared, request: Request, path_info: &str, user: Option<String>) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
    };
    let mut command = tokio::process::Command::new(&shared.backend);
    command
        .env_clear()
        .envs(isolated_env(&shared.root))
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "persys-test-git")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", path_info)
        .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(content_type) = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        command.env("CONTENT_TYPE", content_type);
    }
    if let Some(user) = user {
        command.env("REMOTE_USER", user).env("AUTH_TYPE", "Basic");
    }
    // Every other header as HTTP_<NAME>: git-http-backend reads Git-Protocol (protocol v2) and
    // Content-Encoding (gzip request bodies) from them.
    for (name, value) in &parts.headers {
        if matches!(*name, header::AUTHORIZATION | header::CONTENT_TYPE | header::CONTENT_LENGTH) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            command.env(format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_")), value);
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("git-http-backend: {e}\n")),
    };
    let mut stdin = child.stdin.take();
    let write = async move {
        if let Some(input) = stdin.as_mut() {
            // A backend that stops reading early (an error answer) closes the pipe; its own
            // output says why.
            let _ = input.write_all(&body).await;
        }
        drop(stdin);
    };
    let (_, out) = tokio::join!(write, child.wait_with_output());
    let out = match out {
        Ok(o) => o,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("git-http-backend: {e}\n")),
    };
    if !out.status.success() && out.stdout.is_empty() {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("git-http-backend failed: {stderr}\n"));
    }
    cgi_response(&out.stdout)
}

/// A CGI program's output as a response: header lines (`Status:` among them) up to an empty
/// line, then the body.
fn cgi_response(stdout: &[u8]) -> Response {
    let crlf = stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let Some((head_end, body_start)) = [crlf, lf].into_iter().flatten().min() else {
        return text(StatusCode::BAD_GATEWAY, "git-http-backend wrote no headers\n");
    };
    let head = String::from_utf8_lossy(&stdout[..head_end]);
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse::<u16>().ok());
            status = code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
        } else if let (Ok(name), Ok(value)) = (header::HeaderName::try_from(name.trim()), HeaderValue::try_from(value))
        {
            headers.append(name, value);
        }
    }
    let mut response = Response::new(Body::from(stdout[body_start..].to_vec()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}
