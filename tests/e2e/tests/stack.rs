//! The all-in-one `persys-stack` binary, driven the way a user would: log in through its
//! gateway, see its built-in agent's node, run a workload on the process driver, read its
//! logs, stop it.

use std::time::Duration;

use persys_client::testing::{expect_log, expect_workload};
use persys_e2e::{bin, process::Service, stack::bearer};
use persys_kit::client::{ClientOptions, plain_channel};
use persys_proto::{
    gateway::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    scheduler::v1::{self as pb, scheduler_service_client::SchedulerServiceClient},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_runs_a_workload_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args: Vec<String> =
        ["--dir", state.to_str().unwrap(), "--listen", "127.0.0.1:0", "--driver", "process", "--admin-listen", "off"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let stack = Service::start_expecting(
        "stack",
        Some("gateway"),
        bin("persys-stack").unwrap(),
        &args,
        &[],
        dir.path(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let public = format!("http://{}", stack.addr("public"));
    let channel = plain_channel(&public, &ClientOptions::default()).unwrap();
    let password = std::fs::read_to_string(state.join("admin-password")).unwrap();
    let login = AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: "admin".into(), password: password.trim().into() })
        .await
        .unwrap()
        .into_inner();
    let mut api = SchedulerServiceClient::with_interceptor(channel, bearer(login.access_token));

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
    assert!(stack.stop().await.unwrap(), "the stack exits cleanly on SIGTERM");
}
