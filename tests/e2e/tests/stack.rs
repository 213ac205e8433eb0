//! The all-in-one `persys-stack` binary, driven the way a user would: log in through its
//! gateway, see its built-in agent's node, run a workload on the process driver, read its
//! logs, stop it; `dorgu --server` analyzes through it; its agent's metrics are queried back
//! from the SQLite database under its directory.

use std::time::Duration;

use persys_client::testing::{expect_log, expect_workload};
use persys_e2e::{
    analyzer::{dorgu, files, fixture},
    bin,
    process::Service,
    stack::bearer,
};
use persys_kit::client::{ClientOptions, plain_channel};
use persys_proto::{
    common::v1::TimeRange,
    gateway::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    metrics::v1::{
        LatestHostMetricsRequest, Metric, QueryRangeRequest, Rollup,
        metrics_query_service_client::MetricsQueryServiceClient,
    },
    scheduler::v1::{self as pb, scheduler_service_client::SchedulerServiceClient},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_a_workload_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let stack = start_stack(dir.path(), &state, &["--driver", "process"]).await;
    let mut api = admin_api(&stack, &state).await;

    // The built-in agent joins and its node becomes Ready.
    let mut nodes = api.watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await.unwrap().into_inner();
    let node = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = nodes.message().await.unwrap() {
            if let Some(n) = e.node.filter(|n| n.state() == pb::NodeState::Ready) {
                return n;
            }
        }
        panic!("node watch ended")
    })
    .await
    .unwrap_or_else(|_| panic!("no node became Ready; stack log:\n{}", stack.log()));
    assert!(node.drivers.iter().any(|d| d == "process"), "{:?}", node.drivers);

    let w = api
        .create_workload(pb::CreateWorkloadRequest {
            name: "hello".into(),
            spec: Some(pb::WorkloadSpec {
                image: "process://".into(),
                command: vec!["sh".into(), "-c".into(), "echo hello-from-the-stack; sleep 60".into()],
                ..Default::default()
            }),
            request_id: "e2e-stack-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();

    let phase = |w: &pb::Workload| pb::WorkloadPhase::try_from(w.status.as_ref().map_or(0, |s| s.phase)).unwrap();
    expect_workload(&api, &w.id, Duration::from_secs(30), |w| phase(w) == pb::WorkloadPhase::Running).await;

    // Logs cross gateway, scheduler and agent; follow until the line shows up.
    expect_log(&api, &w.id, "hello-from-the-stack", Duration::from_secs(30)).await;

    api.stop_workload(pb::StopWorkloadRequest { id: w.id.clone(), ..Default::default() }).await.unwrap();
    expect_workload(&api, &w.id, Duration::from_secs(30), |w| phase(w) == pb::WorkloadPhase::Stopped).await;

    // The stack runs the analyzer: `dorgu --server`, logged in with `persys login`'s session,
    // writes what the offline library writes.
    let url = format!("http://{}", stack.addr("public"));
    let sessions = dir.path().join("persys");
    let password = std::fs::read_to_string(state.join("admin-password")).unwrap();
    persys_client::login(
        &persys_client::Connection::new(&url, None).unwrap(),
        &persys_client::store::Store::at(sessions.join("credentials.json")),
        "admin",
        password.trim(),
    )
    .await
    .unwrap();
    let app = fixture("node-express");
    let (offline, online) = (dir.path().join("offline"), dir.path().join("online"));
    let common = ["generate", app.to_str().unwrap(), "--name", "shop", "-n", "apps"];
    let out = dorgu(&[&common[..], &["-o", offline.to_str().unwrap()]].concat(), &[], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dorgu(
        &[&common[..], &["-o", online.to_str().unwrap(), "--server", &url]].concat(),
        &[("PERSYS_CONFIG_DIR", sessions.as_path())],
        dir.path(),
    );
    assert!(out.status.success(), "{}\nstack log:\n{}", String::from_utf8_lossy(&out.stderr), stack.log());
    assert!(!files(&offline).is_empty());
    assert_eq!(files(&offline), files(&online), "--server output differs from offline output");
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");
}

fn docker(docker_host: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("docker").env("DOCKER_HOST", docker_host).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The workload's containers: id, state and start time.
fn containers_of(docker_host: &str, workload: &str) -> Vec<(String, String, String)> {
    let ids =
        docker(docker_host, &["ps", "-aq", "--no-trunc", "--filter", &format!("label=persys.workload-id={workload}")]);
    ids.lines()
        .map(|id| {
            let state = docker(docker_host, &["inspect", "-f", "{{.State.Status}} {{.State.StartedAt}}", id]);
            let (status, started) = state.split_once(' ').unwrap_or((&state, ""));
            (id.to_owned(), status.to_owned(), started.to_owned())
        })
        .collect()
}

/// Starts `persys-stack` on its directory `state` with `driver_args` (which driver, and how).
async fn start_stack(dir: &std::path::Path, state: &std::path::Path, driver_args: &[&str]) -> Service {
    let mut args: Vec<String> = ["--dir", state.to_str().unwrap(), "--listen", "127.0.0.1:0", "--admin-listen", "off"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(driver_args.iter().map(|s| s.to_string()));
    Service::start_expecting(
        "stack",
        Some("gateway"),
        bin("persys-stack").unwrap(),
        &args,
        &[],
        dir,
        Duration::from_secs(60),
    )
    .await
    .unwrap()
}

fn docker_args(docker_host: &str) -> [&str; 6] {
    ["--driver", "docker", "--docker-host", docker_host, "--network-mode", "none"]
}

type Api = SchedulerServiceClient<
    tonic::service::interceptor::InterceptedService<persys_kit::client::TracedChannel, persys_e2e::stack::Bearer>,
>;

/// A channel to the stack's gateway and the admin's access token.
async fn admin_login(stack: &Service, state: &std::path::Path) -> (persys_kit::client::TracedChannel, String) {
    let channel = plain_channel(&format!("http://{}", stack.addr("public")), &ClientOptions::default()).unwrap();
    let password = std::fs::read_to_string(state.join("admin-password")).unwrap();
    let login = AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: "admin".into(), password: password.trim().into() })
        .await
        .unwrap()
        .into_inner();
    (channel, login.access_token)
}

async fn admin_api(stack: &Service, state: &std::path::Path) -> Api {
    let (channel, token) = admin_login(stack, state).await;
    SchedulerServiceClient::with_interceptor(channel, bearer(token))
}

type Metrics = MetricsQueryServiceClient<
    tonic::service::interceptor::InterceptedService<persys_kit::client::TracedChannel, persys_e2e::stack::Bearer>,
>;

async fn admin_metrics(stack: &Service, state: &std::path::Path) -> Metrics {
    let (channel, token) = admin_login(stack, state).await;
    MetricsQueryServiceClient::with_interceptor(channel, bearer(token))
}

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// The CPU figures of the stack's node between `from_ms` and `to_ms`, each sample's own point
/// (a 1 ms step reads the raw samples; at most 11 000 points, so at most 11 s).
async fn cpu_points(metrics: &mut Metrics, from_ms: i64, to_ms: i64) -> Vec<(i64, f64)> {
    let range = QueryRangeRequest {
        metrics: vec![Metric::CpuUsagePercent as i32],
        range: Some(TimeRange { start: Some(ts(from_ms)), end: Some(ts(to_ms)) }),
        step: Some(prost_types::Duration { seconds: 0, nanos: 1_000_000 }),
        rollup: Rollup::Last as i32,
        ..Default::default()
    };
    let answer = metrics.query_range(range).await.unwrap().into_inner();
    answer.series.iter().flat_map(|s| s.points.iter().map(|p| (ms(p.time.as_ref().unwrap()), p.value))).collect()
}

/// Without `--metrics-database-url` the stack runs the metrics pipeline on SQLite under its
/// directory: the built-in agent's samples are answered through the gateway, from the raw
/// samples and the one-minute rollups, and are still there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_keeps_its_agents_metrics_in_sqlite_without_a_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let stack = start_stack(dir.path(), &state, &["--driver", "process"]).await;
    assert!(state.join("metrics.db").exists(), "no metrics.db in {}", state.display());
    let mut metrics = admin_metrics(&stack, &state).await;

    // The agent ships a batch every 5 s; its newest sample shows up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let sample = loop {
        let latest = metrics.latest_host_metrics(LatestHostMetricsRequest::default()).await.unwrap().into_inner();
        if let Some(m) = latest.metrics.into_iter().next() {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no sample in 60 s; stack log:\n{}", stack.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(stack.log().contains("metrics pipeline on SQLite in"), "the banner says where; log:\n{}", stack.log());
    let at = ms(sample.time.as_ref().unwrap());
    let cpu = sample.cpu.as_ref().unwrap().usage_percent;
    assert!((0.0..=100.0).contains(&cpu), "{sample:?}");
    // What was stored is what the range query answers: that sample's CPU figure at its time.
    let points = cpu_points(&mut metrics, at - 10_000, at + 1).await;
    assert!(points.contains(&(at, cpu)), "sample at {at} ({cpu}%) missing from {points:?}");
    // Whole-minute steps read the one-minute rollups: the sample's minute has a point.
    let minutes = QueryRangeRequest {
        metrics: vec![Metric::CpuUsagePercent as i32],
        range: Some(TimeRange { start: Some(ts(at - at % 60_000)), end: Some(ts(at + 1)) }),
        step: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        rollup: Rollup::Max as i32,
        ..Default::default()
    };
    let answer = metrics.query_range(minutes.clone()).await.unwrap().into_inner();
    let minute = &answer.series[0].points;
    assert_eq!(minute.len(), 1, "{answer:?}");
    assert!(minute[0].value >= cpu, "the minute's max {} is below a sample in it ({cpu})", minute[0].value);
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");

    // Started again on its directory: what was acknowledged is still there.
    let stack = start_stack(dir.path(), &state, &["--driver", "process"]).await;
    let mut metrics = admin_metrics(&stack, &state).await;
    let again = cpu_points(&mut metrics, at - 10_000, at + 1).await;
    assert_eq!(again, points, "the samples before the restart, from metrics.db");
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");
}

/// Killed with SIGKILL and started again on its directory, the stack still has its workloads,
/// its agent is the same node, and the container that kept running is adopted: the same one,
/// never restarted, and no second one appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stack_comes_back_with_its_workloads_and_adopts_their_containers() {
    let (Some(docker_host), Some(image)) = (
        persys_kit::testing::require_env("DOCKER_HOST", "a Docker engine"),
        persys_kit::testing::require_env("PERSYS_TEST_IMAGE", "a local test image"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let stack = start_stack(dir.path(), &state, &docker_args(&docker_host)).await;
    let mut api = admin_api(&stack, &state).await;
    let phase = |w: &pb::Workload| pb::WorkloadPhase::try_from(w.status.as_ref().map_or(0, |s| s.phase)).unwrap();
    let w = api
        .create_workload(pb::CreateWorkloadRequest {
            name: "durable".into(),
            spec: Some(pb::WorkloadSpec {
                image: image.clone(),
                command: vec!["sh".into(), "-c".into(), "echo still-here; exec sleep 3600".into()],
                image_pull_policy: pb::ImagePullPolicy::Never as i32,
                ..Default::default()
            }),
            request_id: "e2e-durable-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    let running =
        expect_workload(&api, &w.id, Duration::from_secs(60), |w| phase(w) == pb::WorkloadPhase::Running).await;
    let node = running.status.as_ref().unwrap().instances[0].node_id.clone();
    let before = containers_of(&docker_host, &w.id);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].1, "running");
    let tokens = |mut api: Api| async move {
        api.list_join_tokens(pb::ListJoinTokensRequest::default()).await.unwrap().into_inner().join_tokens.len()
    };
    // The built-in agent's join token, as the listing shows it once used.
    let first_tokens = tokens(api.clone()).await;

    stack.kill().await.unwrap();
    let stack = start_stack(dir.path(), &state, &docker_args(&docker_host)).await;
    let mut api = admin_api(&stack, &state).await;
    let back = expect_workload(&api, &w.id, Duration::from_secs(60), |w| phase(w) == pb::WorkloadPhase::Running).await;
    assert_eq!(back.status.as_ref().unwrap().instances[0].node_id, node, "the same node runs it");
    let listed = api.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads;
    assert_eq!(listed.iter().filter(|l| l.id == w.id).count(), 1, "{listed:?}");
    let nodes = api.list_nodes(pb::ListNodesRequest::default()).await.unwrap().into_inner().nodes;
    assert_eq!(nodes.len(), 1, "the agent came back as the node it was: {nodes:?}");
    let after = containers_of(&docker_host, &w.id);
    assert_eq!(after, before, "the container was adopted: same id, still running, never restarted");
    expect_log(&api, &w.id, "still-here", Duration::from_secs(30)).await;
    assert_eq!(tokens(api.clone()).await, first_tokens, "the agent kept its identity: no new join token");

    // Stopped the polite way (Ctrl-C is SIGINT, a service manager sends SIGTERM): the same.
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");
    let stack = start_stack(dir.path(), &state, &docker_args(&docker_host)).await;
    let mut api = admin_api(&stack, &state).await;
    expect_workload(&api, &w.id, Duration::from_secs(60), |w| phase(w) == pb::WorkloadPhase::Running).await;
    assert_eq!(containers_of(&docker_host, &w.id), before, "adopted again after a clean stop");

    api.delete_workload(pb::DeleteWorkloadRequest { id: w.id.clone(), ..Default::default() }).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !containers_of(&docker_host, &w.id).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the deleted workload's container is still there");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");
}
