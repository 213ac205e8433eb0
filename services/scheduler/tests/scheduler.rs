//! The scheduler served for real (mTLS, streams) with fake agents, on the embedded store and on
//! a real etcd.

mod common;
#[macro_use]
mod stores;

use std::{sync::Arc, time::Duration};

use common::*;
use persys_proto::scheduler::v1::{self as pb, connect_response::Payload};
use persys_scheduler::kv::{Kv, etcd::EtcdKv, mem::MemKv};
use tonic::Code;

fn spec(image: &str) -> pb::WorkloadSpec {
    pb::WorkloadSpec {
        image: image.into(),
        resources: Some(pb::ResourceRequirements { requests: Some(capacity(500, 256 << 20)), limits: None }),
        ..Default::default()
    }
}

/// Waits (on a watch, not a timer) until `key` is present or absent; returns its entry.
async fn wait_for_key<K: Kv>(kv: &K, key: &str, present: bool) -> Option<persys_scheduler::kv::Entry> {
    let (_, rev) = kv.range(key).await.unwrap();
    let mut changes = kv.watch(key, rev + 1).await.unwrap();
    loop {
        let current = kv.get(key).await.unwrap();
        if current.is_some() == present {
            return current;
        }
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut changes))
            .await
            .unwrap_or_else(|_| panic!("{key} never became {}", if present { "present" } else { "absent" }));
    }
}

async fn create(api: &mut Api, name: &str, spec: pb::WorkloadSpec) -> pb::Workload {
    api.create_workload(pb::CreateWorkloadRequest { name: name.into(), spec: Some(spec), request_id: String::new() })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
}

async fn a_joined_agent_runs_a_created_workload<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let token = token(&mut admin).await;
    let mut agent = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, "Worker-1.example").await;
    assert_eq!(agent.node_id, "worker-1-example");

    let mut member = api(&pki, s.running.grpc, "ada", "member");
    let w = create(&mut member, "web", spec("nginx:1.27")).await;
    assert_eq!(phase(&w), pb::WorkloadPhase::Pending, "create answers before placement");

    let (command_id, run) = agent.next_command().await;
    let Payload::Run(run) = run else { panic!("expected a run command, got {run:?}") };
    assert_eq!(run.workload_id, w.id);
    assert_eq!(run.owner_role(), persys_proto::common::v1::Role::Member, "the agent learns who owns it");
    assert_eq!(run.spec.unwrap().image, "nginx:1.27");

    // Pull progress shows on the instance, where `persys workload run --wait` displays it.
    agent
        .send(pb::ConnectRequest {
            payload: Some(persys_proto::scheduler::v1::connect_request::Payload::ImagePullProgress(
                pb::ImagePullProgress {
                    command_id,
                    instance_id: run.instance_id.clone(),
                    image: "nginx:1.27".into(),
                    current_bytes: 1 << 20,
                    total_bytes: 4 << 20,
                    status: "Downloading".into(),
                    done: false,
                },
            )),
        })
        .await;
    let pulling = wait_workload(&mut member, &w.id, |w| {
        w.status.as_ref().is_some_and(|s| s.instances.iter().any(|i| i.message.contains("1.0 of 4.0 MiB")))
    })
    .await;
    assert_eq!(pulling.status.unwrap().instances[0].reason, "PullingImage");
    agent.report(&w.id, &run.instance_id, pb::WorkloadPhase::Running, None).await;
    let running = wait_workload(&mut member, &w.id, |w| phase(w) == pb::WorkloadPhase::Running).await;
    let instance = &running.status.unwrap().instances[0];
    assert_eq!(instance.node_id, agent.node_id);

    // CoreDNS etcd-plugin records for the node and the running instance.
    let kv = s.running.sched.store.kv();
    let node_record =
        kv.get(&format!("/skydns/local/persys/nodes/{}", agent.node_id)).await.unwrap().expect("node record");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&node_record.value).unwrap()["host"], "192.0.2.10");
    let key = format!("/skydns/local/persys/workloads/web/{}", run.instance_id);
    let record = wait_for_key(kv.as_ref(), &key, true).await.expect("instance record");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&record.value).unwrap()["host"], "192.0.2.10");

    // The reservation is on the node.
    let node =
        admin.get_node(pb::GetNodeRequest { id: agent.node_id.clone() }).await.unwrap().into_inner().node.unwrap();
    assert_eq!(node.state(), pb::NodeState::Ready);
    assert_eq!(node.available.unwrap().cpu_millis, 3500);

    // Stop: the agent is told, reports Stopped, the reservation is given back.
    member.stop_workload(pb::StopWorkloadRequest { id: w.id.clone(), ..Default::default() }).await.unwrap();
    let (_, stop) = agent.next_command().await;
    assert!(matches!(stop, Payload::Stop(ref s) if s.instance_id == run.instance_id), "{stop:?}");
    agent.report(&w.id, &run.instance_id, pb::WorkloadPhase::Stopped, Some(0)).await;
    wait_workload(&mut member, &w.id, |w| phase(w) == pb::WorkloadPhase::Stopped).await;
    let node =
        admin.get_node(pb::GetNodeRequest { id: agent.node_id.clone() }).await.unwrap().into_inner().node.unwrap();
    assert_eq!(node.available.unwrap().cpu_millis, 4000);
}

async fn bad_tokens_and_impersonation_are_refused<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let good = fleet_token(&mut admin).await;
    let (id, _) = good.split_once('.').unwrap();
    for bad in [format!("{id}.0000000000000000"), "nothing".to_string(), String::new()] {
        let err = join(&pki, s.running.bootstrap, &bad, "x").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{bad}");
    }
    // A revoked token stops working.
    let revoked = token(&mut admin).await;
    admin
        .revoke_join_token(pb::RevokeJoinTokenRequest { id: revoked.split_once('.').unwrap().0.into() })
        .await
        .unwrap();
    assert_eq!(join(&pki, s.running.bootstrap, &revoked, "x").await.unwrap_err().code(), Code::Unauthenticated);

    let (a, tls_a, dir_a) = join(&pki, s.running.bootstrap, &good, "node-a").await.unwrap();
    let (b, _tls_b, _dir_b) = join(&pki, s.running.bootstrap, &good, "node-b").await.unwrap();
    let err = FakeAgent::connect(s.running.grpc, a.clone(), tls_a, dir_a, Some(&b)).await.err().expect("refused");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains(&a) && err.message().contains(&b), "{}", err.message());

    // A node certificate cannot call the user API either.
    let (_, tls, _dir) = join(&pki, s.running.bootstrap, &good, "node-c").await.unwrap();
    let channel = persys_kit::client::mtls_channel(
        &format!("http://localhost:{}", s.running.grpc.port()),
        &tls,
        &Default::default(),
    )
    .unwrap();
    let err = pb::scheduler_service_client::SchedulerServiceClient::new(channel)
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

async fn members_see_only_their_own_workloads<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut ada = api(&pki, s.running.grpc, "ada", "member");
    let mut bob = api(&pki, s.running.grpc, "bob", "member");
    let mut viewer = api(&pki, s.running.grpc, "vic", "viewer");
    let w = create(&mut ada, "mine", spec("busybox")).await;
    assert_eq!(bob.get_workload(pb::GetWorkloadRequest { id: w.id.clone() }).await.unwrap_err().code(), Code::NotFound);
    let err = bob.stop_workload(pb::StopWorkloadRequest { id: w.id.clone(), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let listed = bob.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads;
    assert!(listed.is_empty());
    assert_eq!(ada.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads.len(), 1);
    // Viewers read everything and change nothing.
    assert!(viewer.get_workload(pb::GetWorkloadRequest { id: w.id.clone() }).await.is_ok());
    let err = viewer
        .create_workload(pb::CreateWorkloadRequest { spec: Some(spec("x")), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Bad input names its fields.
    let err = ada
        .create_workload(pb::CreateWorkloadRequest {
            name: "Bad Name".into(),
            spec: Some(spec("")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("spec.image") && err.message().contains("name"), "{}", err.message());
}

async fn workloads_of_a_lost_node_run_again_elsewhere<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let token = fleet_token(&mut admin).await;
    let mut first = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, "first").await;
    let mut spec = spec("nginx");
    spec.restart_policy = pb::RestartPolicy::Always as i32;
    let w = create(&mut admin, "svc", spec).await;
    let (_, Payload::Run(run)) = first.next_command().await else { panic!("expected run") };
    first.report(&w.id, &run.instance_id, pb::WorkloadPhase::Running, None).await;
    wait_workload(&mut admin, &w.id, |w| phase(w) == pb::WorkloadPhase::Running).await;

    let mut second = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, "second").await;
    let lost = first.node_id.clone();
    let first_tls = first.tls.clone();
    first.kill();

    // NotReady once the lease lapses, then Down after the grace period.
    let mut nodes = admin.watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await.unwrap().into_inner();
    let mut states = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = nodes.message().await.unwrap() {
            if let Some(n) = e.node.filter(|n| n.id == lost) {
                if states.last() != Some(&n.state()) {
                    states.push(n.state());
                }
                if n.state() == pb::NodeState::Down {
                    return;
                }
            }
        }
    })
    .await
    .expect("the node went Down");
    assert_eq!(states.iter().filter(|s| **s == pb::NodeState::NotReady).count(), 1, "{states:?}");

    let (_, Payload::Run(again)) = second.next_command().await else { panic!("expected a run on the second node") };
    assert_eq!(again.workload_id, w.id);
    assert_ne!(again.instance_id, run.instance_id);
    second.report(&w.id, &again.instance_id, pb::WorkloadPhase::Running, None).await;
    let w = wait_workload(&mut admin, &w.id, |w| phase(w) == pb::WorkloadPhase::Running).await;
    let instances = w.status.unwrap().instances;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].node_id, second.node_id);

    // The first machine comes back, still running the old instance: it takes no work until it
    // has stopped it, and the workload keeps running once, on the second node.
    let running = pb::WorkloadStatusEvent {
        workload_id: w.id.clone(),
        status: Some(pb::InstanceStatus {
            instance_id: run.instance_id.clone(),
            node_id: lost.clone(),
            phase: pb::WorkloadPhase::Running as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let hello = pb::AgentHello { node_id: lost.clone(), instances: vec![running], ..hello() };
    let dir = tempfile::tempdir().unwrap();
    let mut back = FakeAgent::connect_with(s.running.grpc, lost.clone(), first_tls, dir, hello).await.unwrap();
    let node = admin.get_node(pb::GetNodeRequest { id: lost.clone() }).await.unwrap().into_inner().node.unwrap();
    assert_eq!(node.state(), pb::NodeState::NotReady, "not Ready before it stopped the moved instance");
    let (command_id, Payload::Remove(remove)) = back.next_command().await else { panic!("expected a remove") };
    assert_eq!(remove.instance_id, run.instance_id);
    back.send(pb::ConnectRequest {
        payload: Some(pb::connect_request::Payload::CommandResult(pb::CommandResult {
            command_id,
            success: true,
            ..Default::default()
        })),
    })
    .await;
    let mut nodes = admin.watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await.unwrap().into_inner();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = nodes.message().await.unwrap() {
            if e.node.is_some_and(|n| n.id == lost && n.state() == pb::NodeState::Ready) {
                return;
            }
        }
    })
    .await
    .expect("Ready once the removal was confirmed");
    let w = admin.get_workload(pb::GetWorkloadRequest { id: w.id.clone() }).await.unwrap().into_inner();
    let instances = w.workload.unwrap().status.unwrap().instances;
    assert_eq!(instances.iter().map(|i| i.node_id.as_str()).collect::<Vec<_>>(), [second.node_id.as_str()]);
}

async fn retried_creates_are_idempotent<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut ada = api(&pki, s.running.grpc, "ada", "member");
    let request =
        pb::CreateWorkloadRequest { name: "once".into(), spec: Some(spec("busybox")), request_id: "req-1".into() };
    let first = ada.create_workload(request.clone()).await.unwrap().into_inner().workload.unwrap();
    let again = ada.create_workload(request).await.unwrap().into_inner().workload.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(ada.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads.len(), 1);
}

async fn a_stale_expected_revision_is_aborted_and_changes_nothing<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut ada = api(&pki, s.running.grpc, "ada", "member");
    let w = create(&mut ada, "guarded", spec("busybox")).await;
    let stale = w.revision - 1;
    let stop =
        ada.stop_workload(pb::StopWorkloadRequest { id: w.id.clone(), expected_revision: stale, ..Default::default() });
    assert_eq!(stop.await.unwrap_err().code(), Code::Aborted);
    let restart = ada.restart_workload(pb::RestartWorkloadRequest {
        id: w.id.clone(),
        expected_revision: stale,
        ..Default::default()
    });
    assert_eq!(restart.await.unwrap_err().code(), Code::Aborted);
    let delete = ada.delete_workload(pb::DeleteWorkloadRequest {
        id: w.id.clone(),
        expected_revision: stale,
        ..Default::default()
    });
    assert_eq!(delete.await.unwrap_err().code(), Code::Aborted);
    // (Placement may write the workload meanwhile: compare what a refused call would change.)
    let now =
        ada.get_workload(pb::GetWorkloadRequest { id: w.id.clone() }).await.unwrap().into_inner().workload.unwrap();
    assert_eq!(now.desired_state(), pb::DesiredState::Running, "a refused call wrote");

    // The current revision passes (read again if placement wrote in between, as a client would).
    let mut stopped = None;
    for _ in 0..5 {
        let current =
            ada.get_workload(pb::GetWorkloadRequest { id: w.id.clone() }).await.unwrap().into_inner().workload.unwrap();
        let request =
            pb::StopWorkloadRequest { id: w.id.clone(), expected_revision: current.revision, ..Default::default() };
        match ada.stop_workload(request).await {
            Ok(r) => {
                stopped = r.into_inner().workload;
                break;
            }
            Err(e) if e.code() == Code::Aborted => continue,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(stopped.expect("stopped with the current revision").desired_state(), pb::DesiredState::Stopped);
}

async fn a_default_join_token_lets_one_machine_in<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let once = token(&mut admin).await;
    join(&pki, s.running.bootstrap, &once, "first").await.unwrap();
    let err = join(&pki, s.running.bootstrap, &once, "second").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "a default token is single use");
    let listed = admin
        .list_join_tokens(pb::ListJoinTokensRequest { include_inactive: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .join_tokens;
    let created = &listed.iter().find(|t| once.starts_with(&format!("{}.", t.id))).unwrap();
    assert_eq!((created.max_uses, created.use_count), (1, 1));
    let ttl = created.expires_at.unwrap().seconds - created.created_at.unwrap().seconds;
    assert!(ttl <= 3600, "default lifetime is short, got {ttl} s");

    // Unlimited use is there, but only when asked for.
    let fleet = fleet_token(&mut admin).await;
    for host in ["a", "b", "c"] {
        join(&pki, s.running.bootstrap, &fleet, host).await.unwrap();
    }
    let err = admin
        .create_join_token(pb::CreateJoinTokenRequest { max_uses: 2, unlimited_uses: true, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Returns the fields named by an INVALID_ARGUMENT status's field violations.
fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    details.bad_request().map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect()).unwrap_or_default()
}

async fn a_cluster_that_requires_limits_refuses_workloads_without_them<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &["--require-limits"])).await;
    let mut member = api(&pki, s.running.grpc, "ada", "member");
    let err = member
        .create_workload(pb::CreateWorkloadRequest { spec: Some(spec("busybox")), ..Default::default() })
        .await
        .expect_err("no limits");
    assert_eq!(violated_fields(&err), ["spec.resources.limits.cpu_millis", "spec.resources.limits.memory_bytes"]);
    let listed = member.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads;
    assert!(listed.is_empty(), "a refused workload is not stored");
    let limited = pb::WorkloadSpec {
        resources: Some(pb::ResourceRequirements {
            limits: Some(persys_proto::common::v1::ResourceQuantities {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                disk_bytes: 0,
            }),
            ..Default::default()
        }),
        ..spec("busybox")
    };
    create(&mut member, "limited", limited).await;
}

async fn only_admins_reach_the_hosts_network<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &["--allowed-networks", "backend"])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let mut member = api(&pki, s.running.grpc, "ada", "member");
    let on = |network: &str| pb::WorkloadSpec { network: network.into(), ..spec("busybox") };
    for refused in ["host", "container:other", "etcd-net"] {
        let err = member
            .create_workload(pb::CreateWorkloadRequest { spec: Some(on(refused)), ..Default::default() })
            .await
            .expect_err(refused);
        assert_eq!(violated_fields(&err), ["spec.network"], "{refused}");
    }
    for allowed in ["", "none", "backend"] {
        create(&mut member, "ok", on(allowed)).await;
    }
    let w = create(&mut admin, "sys", on("host")).await;
    assert_eq!(w.owner_role(), persys_proto::common::v1::Role::Admin);
    // What the admin stores is kept: nothing a member can create lists as an admin's.
    let listed = admin.list_workloads(pb::ListWorkloadsRequest::default()).await.unwrap().into_inner().workloads;
    assert!(
        listed.iter().filter(|w| w.owner_id == "ada").all(|w| w.owner_role() == persys_proto::common::v1::Role::Member)
    );
}

/// Reads a watch until an event for `id` of `kind`; returns every event before it.
async fn events_until(
    stream: &mut tonic::Streaming<pb::WatchWorkloadsResponse>,
    id: &str,
    kind: persys_proto::common::v1::WatchEventType,
) -> Vec<(persys_proto::common::v1::WatchEventType, String)> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} for {id}; saw {seen:?}"))
            .unwrap()
            .unwrap();
        let event = (e.r#type(), e.workload.map(|w| w.id).unwrap_or_default());
        if event.0 == kind && event.1 == id {
            return seen;
        }
        seen.push(event);
    }
}

async fn deletions_reach_only_watchers_who_could_see_them<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut ada = api(&pki, s.running.grpc, "ada", "member");
    let mut bob = api(&pki, s.running.grpc, "bob", "member");
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let watch = |api: &mut Api| {
        let mut api = api.clone();
        async move { api.watch_workloads(pb::WatchWorkloadsRequest::default()).await.unwrap().into_inner() }
    };
    let (mut ada_watch, mut admin_watch) = (watch(&mut ada).await, watch(&mut admin).await);
    let bobs = create(&mut bob, "bobs", spec("busybox")).await;
    bob.delete_workload(pb::DeleteWorkloadRequest { id: bobs.id.clone(), ..Default::default() }).await.unwrap();
    events_until(&mut admin_watch, &bobs.id, persys_proto::common::v1::WatchEventType::Deleted).await;
    // Ada's own workload, created after Bob's was deleted: everything before it on her watch
    // is what she was told about Bob's, which must be nothing.
    let adas = create(&mut ada, "adas", spec("busybox")).await;
    let before = events_until(&mut ada_watch, &adas.id, persys_proto::common::v1::WatchEventType::Added).await;
    assert!(before.iter().all(|(_, id)| id.is_empty()), "ada learnt of others' workloads: {before:?}");
    ada.delete_workload(pb::DeleteWorkloadRequest { id: adas.id.clone(), ..Default::default() }).await.unwrap();
    events_until(&mut ada_watch, &adas.id, persys_proto::common::v1::WatchEventType::Deleted).await;
}

async fn a_run_names_its_owner_and_bad_volumes_and_host_processes_are_refused<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let token = token(&mut admin).await;
    let mut agent = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, "vols").await;
    let mut member = api(&pki, s.running.grpc, "ada", "member");
    let mount = |source: &str| pb::VolumeMount { source: source.into(), target: "/data".into(), read_only: false };
    for (source, field) in [("persys-bob.data", "spec.volumes[0].source"), ("/srv/../etc", "spec.volumes[0].source")] {
        let bad = pb::WorkloadSpec { volumes: vec![mount(source)], ..spec("busybox") };
        let err = member
            .create_workload(pb::CreateWorkloadRequest { spec: Some(bad), ..Default::default() })
            .await
            .expect_err(source);
        assert_eq!(violated_fields(&err), [field], "{source}");
    }
    // No requests: the fake node's disk fits one of `spec`'s.
    let process = pb::WorkloadSpec { image: "process:///bin/sh".into(), resources: None, ..spec("") };
    let err = member
        .create_workload(pb::CreateWorkloadRequest { spec: Some(process.clone()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&err), ["spec.image"]);
    create(&mut admin, "host-proc", process).await;
    let (_, run) = agent.next_command().await;
    let Payload::Run(run) = run else { panic!("expected a run command, got {run:?}") };
    assert_eq!((run.owner_id.as_str(), run.owner_role()), ("root", persys_proto::common::v1::Role::Admin));

    let w =
        create(&mut member, "with-data", pb::WorkloadSpec { volumes: vec![mount("data")], ..spec("busybox") }).await;
    let (_, run) = agent.next_command().await;
    let Payload::Run(run) = run else { panic!("expected a run command, got {run:?}") };
    assert_eq!(
        (run.workload_id.as_str(), run.owner_id.as_str()),
        (w.id.as_str(), "ada"),
        "the agent scopes volumes by it"
    );
}

async fn node_identity_labels_and_capacity_are_fixed_at_join<K: Kv>(kv: Arc<K>, prefix: &str) {
    let pki = Pki::new();
    let s = serve(kv, config(&pki, prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let (grpc, bootstrap) = (s.running.grpc, s.running.bootstrap);
    let request = |token: String| pb::JoinRequest {
        token,
        hostname: "m1".into(),
        capacity: Some(capacity(4000, 8 << 30)),
        labels: [("team".to_owned(), "a".to_owned()), ("persys.io/gpu".to_owned(), "yes".to_owned())].into(),
        ..Default::default()
    };
    let (node_id, tls, dir) = join_with(&pki, bootstrap, request(token(&mut admin).await)).await.unwrap();
    // An agent that claims more than it had at join, and labels it was not given.
    let greedy = pb::AgentHello {
        node_id: node_id.clone(),
        capacity: Some(capacity(64_000, 512 << 30)),
        allocatable: Some(capacity(64_000, 512 << 30)),
        labels: [("zone".to_owned(), "gpu-rack".to_owned()), ("team".to_owned(), "b".to_owned())].into(),
        ..hello()
    };
    let agent = FakeAgent::connect_with(grpc, node_id.clone(), tls.clone(), dir, greedy).await.unwrap();
    let node = admin.get_node(pb::GetNodeRequest { id: node_id.clone() }).await.unwrap().into_inner().node.unwrap();
    assert_eq!(node.allocatable.unwrap().cpu_millis, 4000, "clamped to what it had at join");
    assert_eq!(node.capacity.unwrap().memory_bytes, 8 << 30);
    assert!(node.state_reason.contains("clamped"), "{}", node.state_reason);
    let labels: std::collections::BTreeMap<_, _> = node.labels.into_iter().collect();
    assert_eq!(
        labels,
        [("persys.io/hostname".to_owned(), "m1".to_owned()), ("team".to_owned(), "a".to_owned())].into()
    );

    // The machine is deleted and the name joins again: the old certificate is of no use.
    drop(agent);
    admin.delete_node(pb::DeleteNodeRequest { id: node_id.clone(), force: true }).await.unwrap();
    let (again, new_tls, new_dir) = join_with(&pki, bootstrap, request(token(&mut admin).await)).await.unwrap();
    assert_eq!(again, node_id, "the same name");
    let old_dir = tempfile::tempdir().unwrap();
    let Err(err) = FakeAgent::connect(grpc, node_id.clone(), tls.clone(), old_dir, None).await else {
        panic!("the deleted join's certificate connected")
    };
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let channel = persys_kit::client::mtls_channel(
        &format!("http://localhost:{}", grpc.port()),
        &tls,
        &persys_kit::client::ClientOptions::default(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().serialize_request(&key).unwrap();
    let renew = pb::RenewCertificateRequest { csr_pem: csr.pem().unwrap() };
    let err =
        pb::bootstrap_service_client::BootstrapServiceClient::new(channel).renew_certificate(renew).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    FakeAgent::connect(grpc, node_id, new_tls, new_dir, None).await.expect("the new join connects");
}

both_stores!(
    a_joined_agent_runs_a_created_workload,
    node_identity_labels_and_capacity_are_fixed_at_join,
    deletions_reach_only_watchers_who_could_see_them,
    a_run_names_its_owner_and_bad_volumes_and_host_processes_are_refused,
    bad_tokens_and_impersonation_are_refused,
    members_see_only_their_own_workloads,
    workloads_of_a_lost_node_run_again_elsewhere,
    retried_creates_are_idempotent,
    a_stale_expected_revision_is_aborted_and_changes_nothing,
    a_default_join_token_lets_one_machine_in,
    only_admins_reach_the_hosts_network,
    a_cluster_that_requires_limits_refuses_workloads_without_them,
);

async fn etcd_kv() -> Option<(Arc<EtcdKv>, String)> {
    let endpoints = persys_kit::testing::require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server")?;
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    Some((Arc::new(EtcdKv::connect(&endpoints).await.expect("etcd")), format!("/t-{}", uuid::Uuid::new_v4().simple())))
}

async fn leader_of(kv: &EtcdKv, prefix: &str) -> Option<String> {
    kv.get(&format!("{prefix}/leader")).await.unwrap().map(|e| String::from_utf8(e.value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_goes_and_placement_continues() {
    let Some((kv, prefix)) = etcd_kv().await else { return };
    let pki = Pki::new();
    let one = serve(kv.clone(), config(&pki, &prefix, &["--replica", "one"])).await;
    let mut admin = api(&pki, one.running.grpc, "root", "admin");
    // Wait until someone leads.
    let mut watch = kv.watch(&format!("{prefix}/leader"), 1).await.unwrap();
    if leader_of(&kv, &prefix).await.is_none() {
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut watch)).await.unwrap();
    }
    assert_eq!(leader_of(&kv, &prefix).await.as_deref(), Some("one"));
    let two = serve(kv.clone(), config(&pki, &prefix, &["--replica", "two"])).await;
    let token = token(&mut admin).await;
    // The agent streams to the second replica, which will survive.
    let mut agent = FakeAgent::start(&pki, two.running.grpc, two.running.bootstrap, &token, "n1").await;

    let from = kv.get(&format!("{prefix}/leader")).await.unwrap().unwrap().mod_revision + 1;
    let mut changes = kv.watch(&format!("{prefix}/leader"), from).await.unwrap();
    one.trigger.trigger();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(batch) = futures::StreamExt::next(&mut changes).await {
            if batch.unwrap().iter().any(|e| matches!(e, persys_scheduler::kv::Event::Put(en) if en.value == b"two")) {
                return;
            }
        }
    })
    .await
    .expect("replica two became leader");
    // How fast is a figure, not a pass/fail (it flaked under load as a 2 s assertion): printed.
    eprintln!("takeover after {:?} (lease TTL 1 s)", started.elapsed());

    let mut via_two = api(&pki, two.running.grpc, "root", "admin");
    let w = create(&mut via_two, "after-failover", spec("busybox")).await;
    let (_, Payload::Run(run)) = agent.next_command().await else { panic!("expected run") };
    assert_eq!(run.workload_id, w.id);
}

/// Polls `done` every 50 ms for up to 10 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_keep_alive_stream_ends_with_its_connection() {
    let Some((kv, prefix)) = etcd_kv().await else { return };
    let pki = Pki::new();
    let s = serve(kv.clone(), config(&pki, &prefix, &[])).await;
    let mut admin = api(&pki, s.running.grpc, "root", "admin");
    let token = fleet_token(&mut admin).await;
    for round in 0..3 {
        let agent = FakeAgent::start(&pki, s.running.grpc, s.running.bootstrap, &token, &format!("n{round}")).await;
        let live = kv.get(&format!("{prefix}/live/{}", agent.node_id)).await.unwrap().expect("a liveness key");
        assert_ne!(live.lease, 0);
        // Heartbeats (every 200 ms here) renew the lease over one stream.
        eventually("a keep-alive stream for the agent's lease", || kv.kept_alive().contains(&live.lease)).await;
        agent.kill();
        eventually("the keep-alive stream to end with the connection", || !kv.kept_alive().contains(&live.lease)).await;
    }
    // Only the leader's own lease is kept alive now: nothing piled up.
    assert!(kv.kept_alive().len() <= 1, "{:?}", kv.kept_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_scheduler_during_creates_loses_and_duplicates_nothing() {
    let Some((kv, prefix)) = etcd_kv().await else { return };
    let pki = Pki::new();
    let mut current = serve(kv.clone(), config(&pki, &prefix, &[])).await;
    let mut acknowledged = std::collections::BTreeSet::new();
    for round in 0..3 {
        let addr = current.running.grpc;
        let creates: Vec<_> = (0..20)
            .map(|i| {
                let mut ada = api(&pki, addr, "ada", "member");
                tokio::spawn(async move {
                    let request = pb::CreateWorkloadRequest {
                        name: format!("w-{round}-{i}"),
                        spec: Some(spec("busybox")),
                        request_id: format!("req-{round}-{i}"),
                    };
                    (request.clone(), ada.create_workload(request).await)
                })
            })
            .collect();
        // Restart while the creates are in flight.
        current.trigger.trigger();
        let _ = current.running.task.await;
        current = serve(kv.clone(), config(&pki, &prefix, &[])).await;
        let mut ada = api(&pki, current.running.grpc, "ada", "member");
        for c in creates {
            let (request, result) = c.await.unwrap();
            let w = match result {
                Ok(r) => r.into_inner().workload.unwrap(),
                // Not acknowledged: the client retries with the same request id.
                Err(_) => ada.create_workload(request.clone()).await.unwrap().into_inner().workload.unwrap(),
            };
            acknowledged.insert((request.request_id, w.id));
        }
    }
    let mut ada = api(&pki, current.running.grpc, "ada", "member");
    let stored: std::collections::BTreeSet<String> = ada
        .list_workloads(pb::ListWorkloadsRequest {
            page: Some(persys_proto::common::v1::PageRequest { page_size: 1000, page_token: String::new() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workloads
        .into_iter()
        .map(|w| w.id)
        .collect();
    let acked_ids: std::collections::BTreeSet<String> = acknowledged.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(acknowledged.len(), 60, "one acknowledgement per request");
    assert_eq!(acked_ids, stored, "every acknowledged workload is stored, and nothing else");
}
