//! Workloads end to end with every real part: the gateway, the scheduler on a real etcd, real
//! agents running real containers on a real Docker engine (`scripts/test` starts etcd and a
//! private dockerd, and imports a busybox image).

use std::time::Duration;

use persys_client::testing::{expect_log, expect_workload};
use persys_e2e::{
    cluster::{Cluster, ClusterOptions},
    stack::{ADMIN, ADMIN_PASSWORD, Bearer, bearer},
};
use persys_kit::testing::require_env;
use persys_proto::{
    gateway::v1::{
        CreateUserRequest, LoginRequest, auth_service_client::AuthServiceClient, user_service_client::UserServiceClient,
    },
    scheduler::v1::{self as pb, scheduler_service_client::SchedulerServiceClient},
};
use tonic::service::interceptor::InterceptedService;

type Api = SchedulerServiceClient<InterceptedService<persys_kit::client::TracedChannel, Bearer>>;

struct Env {
    docker_host: String,
    image: String,
    etcd: String,
}

fn env() -> Option<Env> {
    Some(Env {
        docker_host: require_env("DOCKER_HOST", "a Docker engine")?,
        image: require_env("PERSYS_TEST_IMAGE", "a local test image")?,
        etcd: require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server")?,
    })
}

async fn cluster(env: &Env) -> Cluster {
    let prefix = format!("/e2e-{}", uuid_like());
    let args =
        ["--etcd", &env.etcd, "--prefix", &prefix, "--heartbeat", "500ms", "--lease-ttl", "2s", "--down-grace", "2s"];
    Cluster::start(ClusterOptions {
        scheduler_args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn uuid_like() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

async fn login(c: &Cluster, user: &str, password: &str) -> String {
    let channel = persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap();
    AuthServiceClient::new(channel)
        .login(LoginRequest { username: user.into(), password: password.into() })
        .await
        .unwrap()
        .into_inner()
        .access_token
}

fn api(c: &Cluster, token: &str) -> Api {
    let channel = persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap();
    SchedulerServiceClient::with_interceptor(channel, bearer(token))
}

async fn join_token(admin: &mut Api) -> String {
    admin.create_join_token(pb::CreateJoinTokenRequest::default()).await.unwrap().into_inner().token
}

fn phase(w: &pb::Workload) -> pb::WorkloadPhase {
    pb::WorkloadPhase::try_from(w.status.as_ref().map_or(0, |s| s.phase)).unwrap()
}

async fn wait_workload(api: &mut Api, id: &str, done: impl Fn(&pb::Workload) -> bool) -> pb::Workload {
    expect_workload(api, id, Duration::from_secs(60), done).await
}

async fn wait_node(api: &mut Api, node: &str, state: pb::NodeState) {
    let mut watch = api.watch_nodes(pb::WatchNodesRequest { since_revision: 0 }).await.unwrap().into_inner();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = watch.message().await.unwrap() {
            if e.node.is_some_and(|n| n.id == node && n.state() == state) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("node {node} never became {state:?}"));
}

fn docker(env: &Env, args: &[&str]) -> String {
    let out = std::process::Command::new("docker").env("DOCKER_HOST", &env.docker_host).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn containers_of(env: &Env, workload: &str) -> Vec<(String, String)> {
    docker(
        env,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=persys.workload-id={workload}"),
            "--format",
            "{{.Label \"persys.node-id\"}} {{.State}}",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' ').map(|(n, s)| (n.to_owned(), s.to_owned())))
    .collect()
}

fn spec(env: &Env, restart: pb::RestartPolicy) -> pb::WorkloadSpec {
    pb::WorkloadSpec {
        image: env.image.clone(),
        command: vec!["sh".into(), "-c".into(), "echo hello-from-a-container; exec sleep 3600".into()],
        restart_policy: restart as i32,
        image_pull_policy: pb::ImagePullPolicy::Never as i32,
        stop_timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_runs_in_a_container_logs_and_stops() {
    let Some(env) = env() else { return };
    let c = cluster(&env).await;
    let admin_token = login(&c, ADMIN, ADMIN_PASSWORD).await;
    let mut admin = api(&c, &admin_token);
    UserServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap(),
        bearer(admin_token.clone()),
    )
    .create_user(CreateUserRequest { username: "ada".into(), password: "ada-long-password".into(), role: 2 })
    .await
    .unwrap();
    let node = format!("e2e-{}", &uuid_like()[..10]);
    let _agent = c.agent(&node, &join_token(&mut admin).await, &env.docker_host).await.unwrap();
    wait_node(&mut admin, &node, pb::NodeState::Ready).await;

    let mut ada = api(&c, &login(&c, "ada", "ada-long-password").await);
    let created = ada
        .create_workload(pb::CreateWorkloadRequest {
            name: "hello".into(),
            spec: Some(spec(&env, pb::RestartPolicy::Never)),
            request_id: uuid_like(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    assert_eq!(phase(&created), pb::WorkloadPhase::Pending, "the create call answers before placement");
    let running = wait_workload(&mut ada, &created.id, |w| phase(w) == pb::WorkloadPhase::Running).await;
    assert_eq!(running.status.unwrap().instances[0].node_id, node);
    assert_eq!(containers_of(&env, &created.id), vec![(node.clone(), "running".to_string())]);

    expect_log(&ada, &created.id, "hello-from-a-container", Duration::from_secs(30)).await;

    // An admin runs a command inside the container, and so does its owner.
    let exec = admin
        .exec_workload(pb::ExecWorkloadRequest {
            workload_id: created.id.clone(),
            command: vec!["sh".into(), "-c".into(), "echo exec-ok; exit 3".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (output, exit) = exec_output(exec).await;
    assert!(output.contains("exec-ok"), "{output:?}");
    assert_eq!(exit, Some(3));
    let own = ada
        .exec_workload(pb::ExecWorkloadRequest {
            workload_id: created.id.clone(),
            command: vec!["sh".into(), "-c".into(), "echo owner-exec".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let (output, exit) = exec_output(own).await;
    assert!(output.contains("owner-exec"), "{output:?}");
    assert_eq!(exit, Some(0));
    // The gateway's audit log names who ran what where.
    let audit = UserServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap(),
        bearer(admin_token.clone()),
    )
    .list_audit_events(persys_proto::gateway::v1::ListAuditEventsRequest::default())
    .await
    .unwrap()
    .into_inner()
    .events;
    let exec_events: Vec<_> = audit.iter().filter(|e| e.action == "workload.exec").collect();
    assert!(
        exec_events.iter().any(|e| e.target == created.id && e.actor_name == ADMIN && e.detail.contains("exec-ok")),
        "{audit:#?}"
    );

    // Another member sees nothing of it.
    let mut admin_users = UserServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap(),
        bearer(admin_token.clone()),
    );
    admin_users
        .create_user(CreateUserRequest { username: "bob".into(), password: "bob-long-password".into(), role: 2 })
        .await
        .unwrap();
    let mut bob = api(&c, &login(&c, "bob", "bob-long-password").await);
    let hidden = bob.get_workload(pb::GetWorkloadRequest { id: created.id.clone() }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let no_exec = bob
        .exec_workload(pb::ExecWorkloadRequest {
            workload_id: created.id.clone(),
            command: vec!["id".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_exec.code(), tonic::Code::NotFound, "{no_exec:?}");
    // The audit log tells the exec that ran from the one refused.
    let audit = UserServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&c.url(), &Default::default()).unwrap(),
        bearer(admin_token.clone()),
    )
    .list_audit_events(persys_proto::gateway::v1::ListAuditEventsRequest::default())
    .await
    .unwrap()
    .into_inner()
    .events;
    let execs = |actor: &str| -> Vec<bool> {
        audit.iter().filter(|e| e.action == "workload.exec" && e.actor_name == actor).map(|e| e.success).collect()
    };
    assert_eq!(execs("ada"), vec![true], "{audit:#?}");
    assert_eq!(execs("bob"), vec![false], "{audit:#?}");
    let refused =
        bob.stop_workload(pb::StopWorkloadRequest { id: created.id.clone(), ..Default::default() }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    ada.stop_workload(pb::StopWorkloadRequest { id: created.id.clone(), ..Default::default() }).await.unwrap();
    wait_workload(&mut ada, &created.id, |w| phase(w) == pb::WorkloadPhase::Stopped).await;
    assert_eq!(containers_of(&env, &created.id), vec![(node.clone(), "exited".to_string())]);

    let mut watch = ada
        .watch_workloads(pb::WatchWorkloadsRequest { workload_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    ada.delete_workload(pb::DeleteWorkloadRequest { id: created.id.clone(), ..Default::default() }).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = watch.message().await.unwrap() {
            if e.r#type == persys_proto::common::v1::WatchEventType::Deleted as i32 {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(gone, "the workload record is deleted after its container is removed");
    assert!(containers_of(&env, &created.id).is_empty(), "the container is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_agent_moves_its_workload_to_the_other_node() {
    let Some(env) = env() else { return };
    let c = cluster(&env).await;
    let mut admin = api(&c, &login(&c, ADMIN, ADMIN_PASSWORD).await);
    let token = join_token(&mut admin).await;
    let tag = &uuid_like()[..10];
    let (first, second) = (format!("e2e-a-{tag}"), format!("e2e-b-{tag}"));
    let agent_a = c.agent(&first, &token, &env.docker_host).await.unwrap();
    wait_node(&mut admin, &first, pb::NodeState::Ready).await;
    let created = admin
        .create_workload(pb::CreateWorkloadRequest {
            name: "svc".into(),
            spec: Some(spec(&env, pb::RestartPolicy::Always)),
            request_id: uuid_like(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    wait_workload(&mut admin, &created.id, |w| {
        phase(w) == pb::WorkloadPhase::Running && w.status.as_ref().unwrap().instances[0].node_id == first
    })
    .await;
    // Join tokens are single use by default: the second machine gets its own.
    let _agent_b = c.agent(&second, &join_token(&mut admin).await, &env.docker_host).await.unwrap();
    wait_node(&mut admin, &second, pb::NodeState::Ready).await;

    agent_a.kill().await.unwrap();
    wait_node(&mut admin, &first, pb::NodeState::NotReady).await;
    wait_node(&mut admin, &first, pb::NodeState::Down).await;
    let moved = wait_workload(&mut admin, &created.id, |w| {
        phase(w) == pb::WorkloadPhase::Running
            && w.status.as_ref().unwrap().instances.iter().all(|i| i.node_id == second)
    })
    .await;
    assert_eq!(moved.status.unwrap().instances.len(), 1);
    let containers = containers_of(&env, &created.id);
    assert!(containers.contains(&(second.clone(), "running".to_string())), "{containers:?}");
    // Clean up the containers of both nodes (the first agent is dead and cannot).
    let ids = docker(&env, &["ps", "-aq", "--filter", &format!("label=persys.workload-id={}", created.id)]);
    for id in ids.lines() {
        docker(&env, &["rm", "-f", id]);
    }
}

/// Reads an exec stream to its end: the output and the exit code.
async fn exec_output(mut stream: tonic::Streaming<pb::ExecWorkloadResponse>) -> (String, Option<i32>) {
    let (mut output, mut exit) = (String::new(), None);
    while let Some(m) = stream.message().await.unwrap() {
        match m.payload {
            Some(pb::exec_workload_response::Payload::Output(chunk)) => {
                output.push_str(&String::from_utf8_lossy(&chunk.data))
            }
            Some(pb::exec_workload_response::Payload::Exit(e)) => exit = Some(e.exit_code),
            None => {}
        }
    }
    (output, exit)
}
