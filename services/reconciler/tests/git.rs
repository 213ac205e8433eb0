//! Branch polling ([`persys_reconciler::git::branches`]) against a real git smart-HTTP server:
//! git's own `git http-backend` behind the test server of `common::git`, with and without
//! Basic authentication. The real `git clone` through the same server proves it faithful.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use persys_reconciler::git::{self, Basic, GitError};

mod common;

use common::git::GitServer;

const TIMEOUT: Duration = Duration::from_secs(10);
const USER: &str = "kapsa-bot";
const PASSWORD: &str = "s3cret-pass";

fn http() -> persys_kit::http::Client {
    persys_kit::http::client(None, "git").expect("an HTTP client")
}

fn heads(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(b, id)| ((*b).to_owned(), (*id).to_owned())).collect()
}

#[tokio::test]
async fn branches_are_the_heads_of_the_repository() {
    let server = GitServer::start(None).await;
    let repo = server.create_repo("app.git");
    repo.commit("main", "first");
    let main = repo.commit("main", "second");
    let feature = repo.commit("feature/login", "login");
    let refs = git::branches(&http(), &server.url("app.git"), None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("feature/login", &feature), ("main", &main)]));
    assert_eq!(refs.default_branch(), Some("main"));
    repo.set_head("feature/login");
    let refs = git::branches(&http(), &format!("{}/", server.url("app.git")), None, TIMEOUT).await.unwrap();
    assert_eq!(refs.head.as_deref(), Some("refs/heads/feature/login"));
}

#[tokio::test]
async fn new_commits_and_deleted_branches_are_seen_on_the_next_poll() {
    let server = GitServer::start(None).await;
    let repo = server.create_repo("app");
    let (http, url) = (http(), server.url("app"));
    let main = repo.commit("main", "first");
    let topic = repo.commit("topic", "topic");
    let refs = git::branches(&http, &url, None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("main", &main), ("topic", &topic)]));
    let main2 = repo.commit("main", "second");
    assert_ne!(main, main2);
    let refs = git::branches(&http, &url, None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("main", &main2), ("topic", &topic)]), "the new head, not a cached one");
    repo.delete_branch("topic");
    let refs = git::branches(&http, &url, None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("main", &main2)]));
}

#[tokio::test]
async fn an_empty_repository_has_no_branches() {
    let server = GitServer::start(None).await;
    server.create_repo("empty.git");
    let refs = git::branches(&http(), &server.url("empty.git"), None, TIMEOUT).await.unwrap();
    assert!(refs.branches.is_empty(), "{refs:?}");
}

#[tokio::test]
async fn credentials_are_sent_and_wrong_ones_are_named() {
    let server = GitServer::start(Some((USER, PASSWORD))).await;
    let repo = server.create_repo("private.git");
    let main = repo.commit("main", "first");
    let url = server.url("private.git");
    let http = http();

    let mut secret = Secret::default();
    secret.metadata.name = Some("repo-creds".into());
    secret.metadata.namespace = Some("kapsa".into());
    secret.type_ = Some("kubernetes.io/basic-auth".into());
    secret.data = Some(BTreeMap::from([
        ("username".to_owned(), ByteString(USER.into())),
        ("password".to_owned(), ByteString(PASSWORD.into())),
    ]));
    let good = git::credentials_from_secret(&secret).unwrap();
    let refs = git::branches(&http, &url, Some(&good), TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("main", &main)]));

    let wrong = Basic { username: USER.into(), password: "not-the-password".into() };
    let error = git::branches(&http, &url, Some(&wrong), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, GitError::AuthenticationFailed { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("authentication failed (check the credentials Secret)"), "{message}");
    assert!(!message.contains("not-the-password") && !format!("{error:?}").contains("not-the-password"));

    let error = git::branches(&http, &url, None, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, GitError::CredentialsRequired { .. }), "{error:?}");
    assert!(error.to_string().contains("credentials Secret"), "{error}");
}

#[tokio::test]
async fn a_missing_repository_is_not_found() {
    let server = GitServer::start(None).await;
    let error = git::branches(&http(), &server.url("nope.git"), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, GitError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("repository not found"), "{error}");
}

#[tokio::test]
async fn a_web_server_that_does_not_speak_smart_http_is_named() {
    let server = GitServer::start(None).await;
    let repo = server.create_repo("app.git");
    repo.commit("main", "first");
    // The repository's own files, info/refs included, as a plain web server serves them.
    let error = git::branches(&http(), &server.dumb_url("app.git"), None, TIMEOUT).await.unwrap_err();
    let GitError::NotSmart { content_type, .. } = &error else { panic!("{error:?}") };
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(error.to_string().contains("not a git smart-HTTP server"), "{error}");
}

#[tokio::test]
async fn redirects_are_followed() {
    let server = GitServer::start(None).await;
    let repo = server.create_repo("app.git");
    let main = repo.commit("main", "first");
    let refs = git::branches(&http(), &server.moved_url("app.git"), None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches, heads(&[("main", &main)]));
}

#[tokio::test]
async fn silent_and_absent_servers_say_so() {
    // Accepted by the kernel (the listener is bound) but never answered.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/app.git", silent.local_addr().unwrap());
    let error = git::branches(&http(), &url, None, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(error, GitError::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("no answer in 300ms"), "{error}");

    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let error = git::branches(&http(), &format!("http://{closed}/app.git"), None, TIMEOUT).await.unwrap_err();
    assert!(matches!(error, GitError::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn urls_git_cannot_poll_are_refused_before_any_request() {
    for url in ["git@github.com:kapsa/app.git", "https://bot:s3cret@github.com/kapsa/app.git"] {
        let error = git::branches(&http(), url, None, TIMEOUT).await.unwrap_err();
        assert!(matches!(error, GitError::Url(_)), "{error:?}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }
}

/// The real git client clones through the test server (ref discovery and the upload-pack
/// POST), and sees the commit `branches` reported.
#[tokio::test]
async fn git_itself_clones_through_the_test_server() {
    let server = GitServer::start(None).await;
    let repo = server.create_repo("app.git");
    let main = repo.commit("main", "hello from persys");
    let refs = git::branches(&http(), &server.url("app.git"), None, TIMEOUT).await.unwrap();
    assert_eq!(refs.branches["main"], main);

    // Protocol v2 (git's default, asked for with `Git-Protocol`) and the v0 this crate reads.
    for version in ["2", "0"] {
        let checkout = server.root().join(format!("checkout-v{version}"));
        let out = server
            .git()
            .args(["-c", &format!("protocol.version={version}"), "clone", "--quiet", &server.url("app.git")])
            .arg(&checkout)
            .env("GIT_TRACE_PACKET", "1")
            .output()
            .await
            .expect("git clone runs");
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "git clone (v{version}): {trace}");
        // The server passes Git-Protocol on: it answers v2 when asked, v0 otherwise.
        assert_eq!(trace.contains("< version 2"), version == "2", "{trace}");
        let head = server.git().arg("-C").arg(&checkout).args(["rev-parse", "HEAD"]).output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), main);
        assert_eq!(std::fs::read_to_string(checkout.join("README")).unwrap(), "hello from persys");
    }
}
