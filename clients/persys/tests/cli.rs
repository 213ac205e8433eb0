//! The `persys` CLI run as a user would: the real binary against the real gateway and
//! scheduler (in-memory store, no agents), with its config directory in a temp dir.

use std::{
    os::unix::fs::PermissionsExt,
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use persys_e2e::{
    cluster::{Cluster, ClusterOptions},
    stack::{ADMIN, ADMIN_PASSWORD},
};
use persys_kit::client::{ClientOptions, plain_channel};
use persys_proto::{
    common::v1::Role,
    gateway::v1::{
        CreateUserRequest, LoginRequest, auth_service_client::AuthServiceClient, user_service_client::UserServiceClient,
    },
};
use serde_json::Value;

mod common;

use common::{Persys, code, text};

async fn cluster(gateway_args: &[&str]) -> Cluster {
    let options =
        ClusterOptions { gateway_args: gateway_args.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    Cluster::start(options).await.expect("gateway and scheduler start")
}

/// Waits until `check` holds, failing after 20 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn login_stores_private_credentials_and_whoami_answers() {
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());

    let not_yet = cli.run(&["whoami"]).await;
    assert_eq!(code(&not_yet), 4);
    assert!(text(&not_yet.stderr).contains("run `persys login"), "{}", text(&not_yet.stderr));

    let wrong = cli.run_with_stdin(&["login", "-u", ADMIN, "--password-stdin"], "wrong-password\n").await;
    assert_eq!(code(&wrong), 4, "{}", text(&wrong.stderr));
    assert!(!cli.credentials_path().exists());

    cli.login(ADMIN, ADMIN_PASSWORD).await;
    let mode = std::fs::metadata(cli.credentials_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(cli.credentials()["username"], ADMIN);

    let me = cli.json(&["whoami"]).await;
    assert_eq!(me["username"], ADMIN);
    assert_eq!(me["role"], "Admin");
    assert_eq!(me["auth_method"], "jwt");
    assert!(cli.ok(&["whoami"]).await.contains("Role:"));

    cli.ok(&["logout"]).await;
    assert_eq!(cli.credentials(), Value::Null);
    assert_eq!(code(&cli.run(&["whoami"]).await), 4);
}

/// `persys passwd` changes the password: this session goes on (its new tokens stored), another
/// one ends, the old password no longer logs in and the new one does; mistakes change nothing.
#[tokio::test]
async fn passwd_changes_the_password_and_keeps_this_session() {
    // Password attempts count as logins (5 a minute per user by default): room for this test's.
    let c = cluster(&["--login-per-user", "50"]).await;
    let (cli, other) = (Persys::new(c.url()), Persys::new(c.url()));
    cli.login(ADMIN, ADMIN_PASSWORD).await;
    other.login(ADMIN, ADMIN_PASSWORD).await;
    let before = cli.credentials()["access_token"].clone();

    let wrong = cli.run_with_stdin(&["passwd", "--password-stdin"], "not-the-password\na-new-long-passphrase\n").await;
    assert_eq!(code(&wrong), 2, "{}", text(&wrong.stderr));
    assert!(text(&wrong.stderr).contains("current_password"), "{}", text(&wrong.stderr));
    let short = cli.run_with_stdin(&["passwd", "--password-stdin"], &format!("{ADMIN_PASSWORD}\nshort\n")).await;
    assert_eq!(code(&short), 2, "{}", text(&short.stderr));
    assert!(text(&short.stderr).contains("at least 12 characters"), "{}", text(&short.stderr));
    other.ok(&["whoami"]).await;

    let new = "a-new-long-passphrase";
    let changed = cli.run_with_stdin(&["passwd", "--password-stdin"], &format!("{ADMIN_PASSWORD}\n{new}\n")).await;
    assert_eq!(code(&changed), 0, "{}", text(&changed.stderr));
    assert_ne!(cli.credentials()["access_token"], before, "the new session is stored");
    assert_eq!(cli.json(&["whoami"]).await["username"], ADMIN, "this session goes on");
    let ended = other.run(&["whoami"]).await;
    assert_eq!(code(&ended), 4, "the other session ended: {}", text(&ended.stderr));
    let old = other.run_with_stdin(&["login", "-u", ADMIN, "--password-stdin"], &format!("{ADMIN_PASSWORD}\n")).await;
    assert_eq!(code(&old), 4, "{}", text(&old.stderr));
    other.login(ADMIN, new).await;
    other.ok(&["whoami"]).await;
}

/// Returns the `exp` claim of a JWT.
fn jwt_exp(token: &str) -> i64 {
    let payload = token.split('.').nth(1).expect("jwt payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice::<Value>(&bytes).unwrap()["exp"].as_i64().unwrap()
}

async fn until_expired(token: &str) {
    let exp = jwt_exp(token);
    eventually("the access token to expire", move || async move {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 > exp
    })
    .await;
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_transparently() {
    let cluster = cluster(&["--access-ttl", "2s"]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    // Expired by the stored expiry: refreshed before the call.
    let first = cli.credentials();
    until_expired(first["access_token"].as_str().unwrap()).await;
    assert_eq!(cli.json(&["whoami"]).await["username"], ADMIN);
    let second = cli.credentials();
    assert_ne!(second["refresh_token"], first["refresh_token"], "the refresh token rotated");
    assert_ne!(second["access_token"], first["access_token"]);

    // Expired, but the CLI does not know it: the gateway refuses, the CLI refreshes and retries.
    until_expired(second["access_token"].as_str().unwrap()).await;
    let mut file: Value = serde_json::from_slice(&std::fs::read(cli.credentials_path()).unwrap()).unwrap();
    file["servers"][&cli.server]["access_expires_at"] = Value::from(0);
    std::fs::write(cli.credentials_path(), serde_json::to_vec(&file).unwrap()).unwrap();
    assert_eq!(cli.json(&["whoami"]).await["username"], ADMIN);
    assert_ne!(cli.credentials()["refresh_token"], second["refresh_token"]);

    // A session the gateway no longer knows: the CLI says to log in again.
    let third = cli.credentials();
    until_expired(third["access_token"].as_str().unwrap()).await;
    file["servers"][&cli.server] = third.clone();
    file["servers"][&cli.server]["refresh_token"] = Value::from("not-a-refresh-token");
    std::fs::write(cli.credentials_path(), serde_json::to_vec(&file).unwrap()).unwrap();
    let ended = cli.run(&["whoami"]).await;
    assert_eq!(code(&ended), 4);
    assert!(text(&ended.stderr).contains("run `persys login"), "{}", text(&ended.stderr));
}

#[tokio::test]
async fn workloads_run_pending_list_stop_and_remove() {
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    let run = [
        "workload",
        "run",
        "nginx:1.27",
        "--name",
        "web",
        "--detach",
        "--cpu",
        "500m",
        "--memory",
        "256Mi",
        "-e",
        "MODE=prod",
        "--secret-env",
        "TOKEN=hunter2",
        "-p",
        "8080:80",
        "--label",
        "app=web",
        "--request-id",
        "retry-me",
    ];
    let id = cli.ok(&run).await.trim().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "prints the id: {id}");
    // Same request id: the same workload, not a second one.
    assert_eq!(cli.ok(&run).await.trim(), id);

    // No agents: placement keeps it Pending and says why.
    let deadline = Instant::now() + Duration::from_secs(20);
    let workload = loop {
        let w = cli.json(&["workload", "get", &id]).await;
        if w["status"]["reason"] == "Unschedulable" {
            break w;
        }
        assert!(Instant::now() < deadline, "no Unschedulable reason: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(workload["status"]["phase"], "Pending");
    assert!(workload["status"]["message"].as_str().unwrap().contains("no nodes"), "{workload}");
    assert_eq!(workload["spec"]["requests"]["cpu_millis"], 500);
    assert_eq!(workload["spec"]["requests"]["memory_bytes"], 256 << 20);
    let env = workload["spec"]["env"].as_array().unwrap();
    let secret = env.iter().find(|e| e["name"] == "TOKEN").unwrap();
    assert_eq!(secret["sensitive"], true);
    assert_ne!(secret["value"], "hunter2", "secrets never come back");
    assert_eq!(workload["spec"]["ports"][0]["host_port"], 8080);

    let listed: Value = persys_kit::yaml::from_str(&cli.ok(&["workload", "list", "-o", "yaml"]).await).unwrap();
    let listed = listed.as_array().expect("a yaml list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let table = cli.ok(&["workload", "list"]).await;
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("ID") && header.contains("PHASE") && header.contains("READY"), "{table}");
    assert!(table.contains("web") && table.contains("Pending") && table.contains("0/1"), "{table}");
    // By name, and by the end or the start of the id too.
    assert!(cli.ok(&["workload", "get", "web"]).await.contains("Unschedulable"));
    let short = &id[id.len() - 8..];
    assert!(table.contains(short), "tables show the random end of the id: {table}");
    assert_eq!(cli.json(&["workload", "get", short]).await["id"], id.as_str());
    assert_eq!(cli.json(&["workload", "get", &id[..13]]).await["id"], id.as_str());

    cli.ok(&["workload", "stop", &id]).await;
    assert_eq!(cli.json(&["workload", "get", &id]).await["desired_state"], "Stopped");
    cli.ok(&["workload", "start", "web"]).await;
    assert_eq!(cli.json(&["workload", "get", &id]).await["desired_state"], "Running");

    cli.ok(&["workload", "rm", &id]).await;
    let (c, i) = (&cli, &id);
    eventually("the workload to be gone", move || async move { code(&c.run(&["workload", "get", i]).await) == 3 })
        .await;
    let missing = cli.run(&["workload", "get", "web"]).await;
    assert_eq!(code(&missing), 3, "{}", text(&missing.stderr));

    // The server's field violations are printed one per line, and mean bad input.
    let invalid = cli.run(&["workload", "run", "", "--name", "Not_A_Name", "--detach"]).await;
    assert_eq!(code(&invalid), 2, "{}", text(&invalid.stderr));
    let stderr = text(&invalid.stderr);
    assert!(stderr.lines().any(|l| l.trim_start().starts_with("spec.image:")), "{stderr}");
}

#[tokio::test]
async fn a_viewer_is_refused_changes_with_exit_code_4() {
    let cluster = cluster(&[]).await;
    let channel = plain_channel(&cluster.url(), &ClientOptions::default()).unwrap();
    let admin = AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: ADMIN.into(), password: ADMIN_PASSWORD.into() })
        .await
        .unwrap()
        .into_inner();
    UserServiceClient::with_interceptor(channel, persys_e2e::stack::bearer(admin.access_token))
        .create_user(CreateUserRequest {
            username: "vera".into(),
            password: "a-long-viewer-password".into(),
            role: Role::Viewer as i32,
        })
        .await
        .unwrap();

    let cli = Persys::new(cluster.url());
    cli.login("vera", "a-long-viewer-password").await;
    let refused = cli.run(&["workload", "run", "nginx:1.27", "--detach"]).await;
    assert_eq!(code(&refused), 4);
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("permission denied") && stderr.contains("viewer"), "{stderr}");
    // Reading is allowed.
    assert_eq!(cli.json(&["workload", "list"]).await, Value::Array(vec![]));
    assert_eq!(code(&cli.run(&["token", "create"]).await), 4);
}

#[tokio::test]
async fn bad_flags_exit_2_naming_the_flag() {
    let cli = Persys::new("http://127.0.0.1:9".into());
    let out = cli.run(&["workload", "run", "nginx", "--memory", "12XB"]).await;
    assert_eq!(code(&out), 2);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--memory") && stderr.contains("12XB"), "{stderr}");
    let out = cli.run(&["workload", "run", "nginx", "--cpu", "lots"]).await;
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("--cpu"));
    assert_eq!(code(&cli.run(&["workload", "run", "nginx", "-p", "http"]).await), 2);

    // A gateway that is not there: unavailable, and the message says where it looked.
    std::fs::create_dir_all(cli.credentials_path().parent().unwrap()).unwrap();
    let session = serde_json::json!({"servers": {"http://127.0.0.1:9": {
        "username": "x", "access_token": "a", "refresh_token": "r", "access_expires_at": 0, "refresh_expires_at": 0
    }}});
    std::fs::write(cli.credentials_path(), session.to_string()).unwrap();
    let out = cli.run(&["node", "list"]).await;
    assert_eq!(code(&out), 5, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot reach the gateway at http://127.0.0.1:9"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn help_documents_exit_codes_and_completions_generate() {
    let cli = Persys::new("http://127.0.0.1:9".into());
    let help = cli.ok(&["--help"]).await;
    assert!(help.contains("Exit codes:") && help.contains("4  not logged in"), "{help}");
    assert!(cli.ok(&["workload", "run", "--help"]).await.contains("Examples:"));
    for shell in ["bash", "zsh", "fish"] {
        assert!(cli.ok(&["completions", shell]).await.contains("workload"), "{shell}");
    }
}

#[tokio::test]
async fn join_tokens_are_created_listed_and_revoked() {
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    let token = cli.ok(&["token", "create", "--ttl", "1h", "--max-uses", "2", "--label", "rack=r4"]).await;
    let token = token.trim();
    let (id, secret) = token.split_once('.').expect("id.secret");
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");
    assert!(token.chars().all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()), "{token}");

    let listed = cli.json(&["token", "list"]).await;
    let entry = listed.as_array().unwrap().iter().find(|t| t["id"] == id).expect("listed");
    assert_eq!(entry["max_uses"], 2);
    assert_eq!(entry["node_labels"]["rack"], "r4");
    assert!(!text(&cli.run(&["token", "list"]).await.stdout).contains(secret), "the secret is shown once");

    // Single use unless asked: unlimited use is explicit.
    let single = cli.ok(&["token", "create"]).await;
    let fleet = cli.ok(&["token", "create", "--unlimited-uses"]).await;
    let listed = cli.json(&["token", "list"]).await;
    let max_uses = |token: &str| {
        let id = token.trim().split_once('.').unwrap().0;
        listed.as_array().unwrap().iter().find(|t| t["id"] == id).expect("listed")["max_uses"].clone()
    };
    assert_eq!((max_uses(&single), max_uses(&fleet)), (1.into(), 0.into()));

    cli.ok(&["token", "revoke", id]).await;
    let all = cli.json(&["token", "list", "--all"]).await;
    let entry = all.as_array().unwrap().iter().find(|t| t["id"] == id).expect("still listed with --all");
    assert!(entry["revoked_at"].is_string(), "{entry}");
}

#[tokio::test]
async fn nodes_list_empty_and_an_absent_scheduler_is_named() {
    let mut cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    let out = cli.run(&["node", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no nodes yet"));
    assert_eq!(cli.json(&["node", "list"]).await, Value::Array(vec![]));
    assert_eq!(code(&cli.run(&["node", "get", "nope"]).await), 3);

    cluster.stop_scheduler().await.unwrap();
    let out = cli.run(&["node", "list"]).await;
    assert_eq!(code(&out), 5);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("the scheduler is not reachable through the gateway at {}", cluster.url())),
        "{stderr}"
    );
}

#[tokio::test]
async fn watch_streams_the_snapshot_then_changes() {
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;
    let first = cli.ok(&["workload", "run", "busybox", "--name", "first", "--detach"]).await;

    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_persys"))
        .args(["watch", "workloads", "-o", "json"])
        .env("HOME", cli.home.path())
        .env("XDG_CONFIG_HOME", cli.home.path().join(".config"))
        .env("PERSYS_SERVER", &cli.server)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    };

    let added = next().await;
    assert_eq!((added["type"].as_str(), added["object"]["id"].as_str()), (Some("Added"), Some(first.trim())));
    let second = cli.ok(&["workload", "run", "busybox", "--name", "second", "--detach"]).await;
    loop {
        let event = next().await;
        assert!(event["revision"].as_i64().unwrap() > 0);
        if event["object"]["id"] == second.trim() {
            // The contract says Added; the scheduler reports every live put as Modified for now.
            assert!(event["type"] == "Added" || event["type"] == "Modified", "{event}");
            break;
        }
    }
    watch.kill().await.unwrap();
}

#[tokio::test]
async fn run_wait_shows_why_a_workload_is_pending_and_gives_up_on_time() {
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    let out = cli.run(&["workload", "run", "busybox", "--name", "waiter", "--wait", "--wait-timeout", "3s"]).await;
    assert_eq!(code(&out), 7, "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    // Not a terminal: plain progress lines, with the placement reason and the event.
    assert!(stderr.contains("waiter: Pending 0/1 ready"), "{stderr}");
    assert!(stderr.contains("Unschedulable"), "{stderr}");
    assert!(stderr.contains("gave up waiting after 3s"), "{stderr}");
}

#[tokio::test]
async fn https_gateways_are_verified_against_the_given_ca() {
    let cluster = cluster(&["--public-tls"]).await;
    let url = format!("https://localhost:{}", cluster.gateway.addr("public").port());
    let cli = Persys::new(url);
    let ca = cluster.certs().join("ca.pem");
    let ca = ca.to_str().unwrap();

    let out = cli
        .run_with_stdin(&["--ca", ca, "login", "-u", ADMIN, "--password-stdin"], &format!("{ADMIN_PASSWORD}\n"))
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(cli.json(&["--ca", ca, "whoami"]).await["username"], ADMIN);

    // Without the CA the gateway's certificate is not trusted: refused, not ignored.
    let untrusted = cli.run(&["whoami"]).await;
    assert_eq!(code(&untrusted), 5, "{}", text(&untrusted.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_run_wait_logs_stop_on_a_real_agent_and_docker() {
    let Some(docker_host) = persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine") else { return };
    let Some(image) = persys_kit::testing::require_env("PERSYS_TEST_IMAGE", "a local test image") else { return };
    let cluster = cluster(&[]).await;
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;
    let created = cli.json(&["token", "create"]).await;
    let token = created["token"].as_str().expect("token in the json output").to_owned();
    let node = format!("cli-{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000);
    let _agent = cluster.agent(&node, &token, &docker_host).await.expect("agent joins");
    eventually("the agent's node to be Ready", || async {
        let nodes = cli.json(&["node", "list"]).await;
        nodes.as_array().is_some_and(|a| a.iter().any(|n| n["id"] == node.as_str() && n["state"] == "Ready"))
    })
    .await;

    let out = cli
        .run(&[
            "workload",
            "run",
            &image,
            "--name",
            "hi-cli",
            "--restart",
            "never",
            "--pull",
            "never",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo hello-from-the-cli; exec sleep 600",
        ])
        .await;
    assert!(out.status.success(), "run --wait failed: {}{}", text(&out.stdout), text(&out.stderr));
    let w = cli.json(&["workload", "get", "hi-cli"]).await;
    assert_eq!(w["status"]["phase"], "Running", "{w}");

    eventually("the container's output in the logs", || async {
        cli.ok(&["workload", "logs", "hi-cli", "--tail", "20"]).await.contains("hello-from-the-cli")
    })
    .await;

    cli.ok(&["workload", "stop", "hi-cli"]).await;
    eventually("the workload to stop", || async {
        cli.json(&["workload", "get", "hi-cli"]).await["status"]["phase"] == "Stopped"
    })
    .await;
    cli.ok(&["workload", "rm", "hi-cli"]).await;
    eventually("the workload to be gone", || async { code(&cli.run(&["workload", "get", "hi-cli"]).await) == 3 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_latest_and_range_show_what_a_real_agent_sent() {
    let Some(database_url) = persys_kit::testing::require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL") else { return };
    let Some(docker_host) = persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine") else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let options =
        ClusterOptions { metrics: Some((database_url, format!("cli_metrics_{nanos:x}"))), ..Default::default() };
    let cluster = Cluster::start(options).await.expect("gateway, scheduler and metrics pipeline start");
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;
    let created = cli.json(&["token", "create"]).await;
    let token = created["token"].as_str().expect("token in the json output").to_owned();
    let node = format!("cli-m-{}", nanos % 1_000_000_000);
    let _agent = cluster.agent(&node, &token, &docker_host).await.expect("agent joins");

    // The agent samples every 200 ms; until its first sample the node is unknown to the
    // pipeline (an error naming it). Wait until two CPU points are stored.
    let range = ["metrics", "range", "--node", &node, "--since", "5m", "--step", "1s", "--rollup", "last"];
    eventually("two CPU samples of the node", || async {
        let out = cli.run(&[&range[..], &["-o", "json"]].concat()).await;
        out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout)
                .is_ok_and(|s| s[0]["points"].as_array().is_some_and(|p| p.len() >= 2))
    })
    .await;
    let series = cli.json(&range).await;
    assert_eq!(series.as_array().unwrap().len(), 1, "{series}");
    assert_eq!(series[0]["node_id"], node.as_str());
    for point in series[0]["points"].as_array().unwrap() {
        let cpu = point[1].as_f64().expect("a number");
        assert!((0.0..=100.0).contains(&cpu), "{point}");
        assert!(point[0].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 time: {point}");
    }

    let latest = cli.json(&["metrics", "latest", "--node", &node]).await;
    let sample = &latest[0];
    assert_eq!(sample["node_id"], node.as_str());
    assert!(sample["cores"].as_i64().unwrap() >= 1 && sample["memory_total_bytes"].as_i64().unwrap() > 0, "{sample}");
    let yaml = cli.ok(&["metrics", "latest", "-o", "yaml"]).await;
    assert!(yaml.contains(&format!("node_id: {node}")), "{yaml}");

    // The table and the chart.
    let table = cli.ok(&["metrics", "latest"]).await;
    assert!(table.starts_with("NODE") && table.contains(&node), "{table}");
    let chart = cli.ok(&["metrics", "range", "--node", &node, "--since", "5m", "--step", "1s", "-m", "memory"]).await;
    assert!(chart.contains(&format!("{node} MemoryUsagePercent")), "{chart}");
    assert!(chart.chars().any(|c| ('▁'..='█').contains(&c)), "a sparkline: {chart}");

    // A node that never sent anything is named in the error.
    let ghost = cli.run(&["metrics", "range", "--node", "ghost"]).await;
    assert!(!ghost.status.success());
    let err = text(&ghost.stderr);
    assert!(err.contains("ghost") && err.contains("node_ids[0]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_from_a_file_raise_alerts_that_an_admin_lists_and_acknowledges() {
    let Some(database_url) = persys_kit::testing::require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL") else { return };
    let Some(docker_host) = persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine") else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let options =
        ClusterOptions { metrics: Some((database_url, format!("cli_alerts_{nanos:x}"))), ..Default::default() };
    let cluster = Cluster::start(options).await.expect("gateway, scheduler and metrics pipeline start");
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    // A mistake in the file is reported with what to fix, and nothing is created.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: typo\nmetric: cpu\ncomparator: \"=>\"\nthreshold: 1\n").unwrap();
    let out = cli.run(&["rules", "create", "-f", bad.to_str().unwrap()]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("use one of > >= < <= == !="), "{}", text(&out.stderr));
    assert_eq!(cli.json(&["rules", "list"]).await, serde_json::json!([]));

    // Memory in use is always above 0 %: this rule fires on the node's first sample.
    let good = dir.path().join("rule.yaml");
    std::fs::write(&good, "name: memory in use\nmetric: memory\ncomparator: \">\"\nthreshold: 0\nseverity: info\n")
        .unwrap();
    let rule = cli.json(&["rules", "create", "-f", good.to_str().unwrap()]).await;
    assert_eq!(
        (rule["metric"].as_str(), rule["comparator"].as_str()),
        (Some("MemoryUsagePercent"), Some("GreaterThan"))
    );
    let rules = cli.ok(&["rules", "list"]).await;
    assert!(rules.contains("memory in use") && rules.contains("MemoryUsagePercent GreaterThan 0"), "{rules}");

    let created = cli.json(&["token", "create"]).await;
    let token = created["token"].as_str().unwrap().to_owned();
    let node = format!("cli-a-{}", nanos % 1_000_000_000);
    let _agent = cluster.agent(&node, &token, &docker_host).await.expect("agent joins");
    eventually("the rule to fire for the node", || async {
        cli.json(&["alerts", "list", "--node", &node]).await[0]["state"] == "Firing"
    })
    .await;
    let firing = cli.json(&["alerts", "list", "--node", &node]).await[0].clone();
    assert_eq!((firing["rule_name"].as_str(), firing["severity"].as_str()), (Some("memory in use"), Some("Info")));
    let id = firing["id"].as_str().unwrap().to_owned();
    let acked = cli.json(&["alerts", "ack", &id, "--comment", "expected"]).await;
    assert_eq!((acked["state"].as_str(), acked["acknowledged_by"].as_str()), (Some("Acknowledged"), Some(ADMIN)));
    let table = cli.ok(&["alerts", "list"]).await;
    assert!(table.starts_with("ID") && table.contains(&id) && table.contains("Acknowledged"), "{table}");

    // Deleting the rule resolves its alert.
    cli.ok(&["rules", "delete", rule["id"].as_str().unwrap()]).await;
    assert_eq!(cli.json(&["alerts", "list"]).await, serde_json::json!([]));
    let history = cli.json(&["alerts", "list", "--all"]).await;
    assert!(
        history.as_array().unwrap().iter().any(|a| a["id"] == id.as_str() && a["state"] == "Resolved"),
        "{history}"
    );

    // Silences: created, listed, ended; a bad matcher says what to fix.
    let bad = cli.run(&["alerts", "silence", "-m", "web-1", "--comment", "x"]).await;
    assert!(!bad.status.success() && text(&bad.stderr).contains("NAME=VALUE"), "{}", text(&bad.stderr));
    let matcher = format!("node_id={node}");
    let silence = cli.json(&["alerts", "silence", "-m", &matcher, "--for", "2h", "--comment", "maintenance"]).await;
    assert_eq!(silence["matchers"], serde_json::json!([matcher]));
    assert_eq!(silence["created_by"], ADMIN);
    let sid = silence["id"].as_str().unwrap().to_owned();
    let table = cli.ok(&["alerts", "silences"]).await;
    assert!(table.starts_with("ID") && table.contains(&sid) && table.contains("maintenance"), "{table}");
    cli.ok(&["alerts", "unsilence", &sid]).await;
    assert_eq!(cli.json(&["alerts", "silences"]).await, serde_json::json!([]));
    let ended = cli.json(&["alerts", "silences", "--all"]).await;
    assert!(ended[0]["id"] == sid.as_str() && ended[0]["expired_at"].is_string(), "{ended}");
}

#[tokio::test]
async fn dora_records_lists_shows_and_computes_the_four_keys() {
    let Some(database_url) = persys_kit::testing::require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL") else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let options = ClusterOptions { metrics: Some((database_url, format!("cli_dora_{nanos:x}"))), ..Default::default() };
    let cluster = Cluster::start(options).await.expect("gateway, scheduler and metrics pipeline start");
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    let bad = cli
        .run(&[
            "dora",
            "record",
            "--app",
            "shop-prod",
            "--cluster",
            "prod",
            "--revision",
            "abc1234def",
            "--at",
            "yesterday",
        ])
        .await;
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("RFC 3339"), "{}", text(&bad.stderr));

    let earlier = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let earlier = earlier.format(&time::format_description::well_known::Rfc3339).unwrap();
    let failed = cli
        .json(&[
            "dora",
            "record",
            "--app",
            "shop-prod",
            "--cluster",
            "prod",
            "--revision",
            "bbb2222aaa",
            "--status",
            "failed",
            "--at",
            &earlier,
        ])
        .await;
    assert_eq!(failed["id"], "shop:prod:production:bbb2222aaa");
    assert_eq!(failed["status"], "Failed");
    let ok = cli
        .json(&[
            "dora",
            "record",
            "--app",
            "shop-prod",
            "--cluster",
            "prod",
            "--revision",
            "abc1234def",
            "--image",
            "registry.example.com/shop:latest",
        ])
        .await;
    let id = ok["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "shop:prod:production:abc1234def");
    let again =
        cli.run(&["dora", "record", "--app", "shop-prod", "--cluster", "prod", "--revision", "abc1234def"]).await;
    assert!(text(&again.stdout).contains("recorded already"), "{}", text(&again.stdout));

    let list = cli.json(&["dora", "deployments"]).await;
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [id.as_str(), "shop:prod:production:bbb2222aaa"], "newest first");
    let table = cli.ok(&["dora", "deployments", "--status", "failed"]).await;
    assert!(table.contains("DEVLAKE") && table.contains("bbb2222aaa") && !table.contains("abc1234def"), "{table}");
    // No DevLake is configured: the push is skipped, saying so.
    eventually("the push to be skipped", || async {
        cli.json(&["dora", "show", &id]).await["devlake"]["state"] == "Skipped"
    })
    .await;
    let shown = cli.ok(&["dora", "show", &id]).await;
    assert!(shown.contains("tag \"latest\" is not a commit SHA"), "{shown}");
    assert!(shown.contains("DevLake is not configured"), "{shown}");

    let keys = cli.json(&["dora", "metrics", "--window", "7d"]).await;
    assert_eq!((keys["deployments_total"].as_i64(), keys["deployments_failed"].as_i64()), (Some(2), Some(1)));
    assert_eq!(keys["change_failure_rate"].as_f64(), Some(0.5));
    assert_eq!(keys["levels"]["change_failure_rate"], "Low");
    assert_eq!(keys["levels"]["time_to_restore"], "High", "restored within two hours: {keys}");
    let table = cli.ok(&["dora", "metrics", "--window", "7d"]).await;
    assert!(table.contains("change failure rate") && table.contains("50.0% (1 failed)"), "{table}");

    let retry = cli.run(&["dora", "retry", &id]).await;
    assert!(!retry.status.success());
    assert!(text(&retry.stderr).contains("only a FAILED push"), "{}", text(&retry.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_host_runs_what_the_node_allows_and_exits_with_its_code() {
    let Some(database_url) = persys_kit::testing::require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL") else { return };
    let Some(docker_host) = persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine") else { return };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let options = ClusterOptions { metrics: Some((database_url, format!("cli_host_{nanos:x}"))), ..Default::default() };
    let cluster = Cluster::start(options).await.expect("gateway, scheduler and metrics pipeline start");
    let cli = Persys::new(cluster.url());
    cli.login(ADMIN, ADMIN_PASSWORD).await;
    let created = cli.json(&["token", "create"]).await;
    let token = created["token"].as_str().expect("token in the json output").to_owned();
    let node = format!("cli-h-{}", nanos % 1_000_000_000);
    let _agent =
        cluster.agent_with(&node, &token, &docker_host, &["--host-commands", "echo,false"]).await.expect("agent joins");

    // Until the node's stream is up, the command fails (not connected); then it runs.
    eventually("the node to run a command", || async {
        let out = cli.run(&["exec-host", &node, "--", "echo", "hi", "there"]).await;
        out.status.success() && text(&out.stdout) == "hi there\n"
    })
    .await;
    let failing = cli.run(&["exec-host", &node, "--", "false"]).await;
    assert_eq!(failing.status.code(), Some(1), "the command's own exit code: {}", text(&failing.stderr));

    let refused = cli.run(&["exec-host", &node, "--", "cat", "/etc/hostname"]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(err.contains("refused") && err.contains("allowed host commands"), "{err}");
    assert!(refused.stdout.is_empty(), "nothing ran: {}", text(&refused.stdout));

    let missing = cli.run(&["exec-host", &node]).await;
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));

    let history = cli.json(&["host", "history", "--node", &node]).await;
    let records = history.as_array().unwrap();
    let newest: Vec<(&str, &str)> =
        records.iter().take(3).map(|r| (r["command"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(newest, [("cat /etc/hostname", "Rejected"), ("false", "Completed"), ("echo hi there", "Completed")]);
    assert_eq!(records[1]["exit_code"], 1);
    assert_eq!(records[2]["output_tail"], "hi there\n");
    let table = cli.ok(&["host", "history", "--node", &node]).await;
    assert!(table.starts_with("ID") && table.contains("cat /etc/hostname") && table.contains("Rejected"), "{table}");
    // Who ran it, by name: the admin who is logged in.
    assert_eq!(records[0]["username"], "admin");
    assert!(table.lines().nth(1).is_some_and(|l| l.split_whitespace().any(|w| w == "admin")), "{table}");
}
