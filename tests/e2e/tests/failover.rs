//! Two real scheduler processes on one real etcd: SIGKILL the leader and the other takes over
//! within the lease TTL, and placement goes on (a real agent's workload runs).

use std::time::{Duration, Instant};

use futures::StreamExt;
use persys_client::testing::{AsUser, expect_workload};
use persys_e2e::{bin, certs_init, process::Service, tls_args};
use persys_kit::identity::Role;
use persys_kit::{client::ClientOptions, testing::require_env, tls::CertsDir};
use persys_proto::scheduler::v1::{self as pb, scheduler_service_client::SchedulerServiceClient};
use persys_scheduler::kv::{Event, Kv, etcd::EtcdKv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_hands_over_within_the_lease_ttl() {
    let Some(etcd) = require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server") else { return };
    let Some(docker_host) = require_env("DOCKER_HOST", "a Docker engine") else { return };
    let Some(image) = require_env("PERSYS_TEST_IMAGE", "a local test image") else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    certs_init(&certs).unwrap();
    let prefix = format!("/failover-{}", std::process::id());
    let kv = EtcdKv::connect(&etcd.split(',').map(str::to_owned).collect::<Vec<_>>()).await.unwrap();
    let leader_key = format!("{prefix}/leader");
    let (_, start_rev) = kv.range(&leader_key).await.unwrap();
    let mut leader_changes = kv.watch(&leader_key, start_rev + 1).await.unwrap();

    let scheduler = |replica: &str| {
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--bootstrap-listen",
            "127.0.0.1:0",
            "--etcd",
            &etcd,
            "--prefix",
            &prefix,
            "--replica",
            replica,
            "--heartbeat",
            "500ms",
            "--lease-ttl",
            "2s",
            "--down-grace",
            "5s",
            "--admin-listen",
            "off",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--ca-key".into(), certs.join("ca-key.pem").display().to_string()]);
        args.extend(tls_args(&certs, "scheduler"));
        args
    };
    let timeout = Duration::from_secs(60);
    let one = Service::start("scheduler-one", bin("scheduler").unwrap(), &scheduler("one"), &[], dir.path(), timeout)
        .await
        .unwrap();
    // "one" campaigns first and wins.
    let first = tokio::time::timeout(Duration::from_secs(10), leader_changes.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&first[0], Event::Put(e) if e.value == b"one"), "{first:?}");
    let two = Service::start("scheduler-two", bin("scheduler").unwrap(), &scheduler("two"), &[], dir.path(), timeout)
        .await
        .unwrap();

    // A real agent streams to the replica that will survive.
    let tls = CertsDir::new(&certs).load("gateway").unwrap();
    let channel = persys_kit::client::mtls_channel(
        &format!("http://localhost:{}", two.addr("grpc").port()),
        &tls,
        &ClientOptions::default(),
    )
    .unwrap();
    let mut api = SchedulerServiceClient::with_interceptor(channel, AsUser::named("root", Role::Admin));
    let token = api.create_join_token(pb::CreateJoinTokenRequest::default()).await.unwrap().into_inner().token;
    let node = format!("failover-{}", std::process::id());
    let _agent =
        persys_e2e::cluster::start_agent(dir.path(), &certs, &two, &node, &token, &docker_host, &[]).await.unwrap();

    let killed = Instant::now();
    one.kill().await.unwrap();
    let took = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(batch) = leader_changes.next().await {
            if batch.unwrap().iter().any(|e| matches!(e, Event::Put(en) if en.value == b"two")) {
                return killed.elapsed();
            }
        }
        panic!("leader watch ended")
    })
    .await
    .expect("replica two takes over");
    // The dead leader's lease (TTL 2 s) must lapse first (measured: about 2.3 s). The bound is
    // loose on purpose, so a busy machine cannot fail it, yet far below anything that is not
    // lease-driven (the down grace here is 5 s, the default 60 s).
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    eprintln!("takeover after SIGKILL of the leader: {took:?}");

    // Placement goes on under the new leader.
    let w = api
        .create_workload(pb::CreateWorkloadRequest {
            name: "after-failover".into(),
            spec: Some(pb::WorkloadSpec {
                image,
                command: vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
                image_pull_policy: pb::ImagePullPolicy::Never as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    expect_workload(&api, &w.id, Duration::from_secs(60), |w| {
        w.status.as_ref().is_some_and(|s| s.phase == pb::WorkloadPhase::Running as i32)
    })
    .await;
    api.delete_workload(pb::DeleteWorkloadRequest { id: w.id, force: true, ..Default::default() }).await.unwrap();
    let ids = std::process::Command::new("docker")
        .env("DOCKER_HOST", &docker_host)
        .args(["ps", "-aq", "--filter", &format!("label=persys.node-id={node}")])
        .output()
        .unwrap();
    for id in String::from_utf8_lossy(&ids.stdout).lines() {
        let _ = std::process::Command::new("docker").env("DOCKER_HOST", &docker_host).args(["rm", "-f", id]).output();
    }
}
