//! The agent against a fake scheduler over real mTLS and a real Docker engine: join, hello
//! inventory across agent restarts, commands, status events from the engine's event stream,
//! exit codes, and reconnecting after the scheduler went away.

mod common;

use std::{os::unix::fs::PermissionsExt, time::Duration};

use common::{
    agent_cli,
    docker::{self, Cleanup, engine},
    scheduler::{FakeScheduler, Received},
    start_agent,
};
use persys_proto::scheduler::v1::{
    AgentHello, CommandResult, ExecInstance, RunInstance, WorkloadPhase, WorkloadStatusEvent, connect_request::Payload,
    connect_response,
};

fn hello(r: &Received) -> Option<AgentHello> {
    match &r.message {
        Payload::Hello(h) => Some(h.clone()),
        _ => None,
    }
}

fn status(instance: &str, phase: WorkloadPhase) -> impl FnMut(&Received) -> Option<WorkloadStatusEvent> {
    let instance = instance.to_owned();
    move |r| match &r.message {
        Payload::WorkloadStatus(e)
            if e.status.as_ref().is_some_and(|s| s.instance_id == instance && s.phase == phase as i32) =>
        {
            Some(e.clone())
        }
        _ => None,
    }
}

fn result(command_id: &str) -> impl FnMut(&Received) -> Option<CommandResult> {
    let id = command_id.to_owned();
    move |r| match &r.message {
        Payload::CommandResult(c) if c.command_id == id => Some(c.clone()),
        _ => None,
    }
}

fn run(node: &str, name: &str, image: &str, script: &str) -> RunInstance {
    let mut run = docker::run_sh(node, name, image, script);
    run.instance_id = format!("{node}-{name}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_runs_reports_and_resyncs_after_restarts_and_disconnects() {
    let Some((host, image)) = engine() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = FakeScheduler::start(tmp.path(), Duration::from_secs(3600)).await;
    let state = tmp.path().join("agent");
    let agent = start_agent(agent_cli(&fake, &state, &host, &[]));

    // Join: node id and an owner-only key in the state dir; hello with no instances.
    let first = fake.expect("hello", hello).await;
    let node = first.node_id.clone();
    let _cleanup = Cleanup::new(&host, &node);
    assert_eq!(std::fs::read_to_string(state.join("node-id")).unwrap().trim(), node);
    assert_eq!(std::fs::metadata(state.join("key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fake.joins(), 1);
    assert!(first.instances.is_empty());
    assert!(first.drivers.contains(&"docker".to_owned()));
    assert_eq!(first.labels.get("zone").map(String::as_str), Some("test"));
    assert!(first.capacity.unwrap().cpu_millis > 0);
    fake.expect("heartbeat", |r| matches!(r.message, Payload::Heartbeat(_)).then_some(())).await;

    // Run: the command succeeds and RUNNING arrives as an event, in either order (the
    // container may report running before the command's result is sent).
    let web = run(&node, "web", &image, "sleep 300");
    fake.send("c-run", connect_response::Payload::Run(web.clone())).await;
    let (mut done, mut running) = (None, None);
    let (mut is_result, mut is_running) = (result("c-run"), status(&web.instance_id, WorkloadPhase::Running));
    fake.expect("run result and RUNNING", |r| {
        done = done.take().or_else(|| is_result(r));
        running = running.take().or_else(|| is_running(r));
        (done.is_some() && running.is_some()).then_some(())
    })
    .await;
    let (done, running) = (done.unwrap(), running.unwrap());
    assert!(done.success, "{done:?}");
    assert_eq!(running.workload_id, web.workload_id);
    let container_id = running.status.unwrap().container_id;

    // Exec through the stream.
    let exec = ExecInstance {
        instance_id: web.instance_id.clone(),
        command: vec!["sh".into(), "-c".into(), "echo hi; exit 4".into()],
        ..Default::default()
    };
    fake.send("c-exec", connect_response::Payload::Exec(exec)).await;
    let chunk = fake
        .expect("exec output", |r| match &r.message {
            Payload::LogChunk(c) if c.command_id == "c-exec" => Some(c.chunk.clone().unwrap().data),
            _ => None,
        })
        .await;
    assert_eq!(chunk, b"hi\n");
    let exec_done = fake.expect("exec result", result("c-exec")).await;
    assert_eq!(exec_done.exit.unwrap().exit_code, 4);

    // A container killed behind the agent's back reports its exit code at once.
    let victim = run(&node, "victim", &image, "sleep 300");
    fake.send("c-run2", connect_response::Payload::Run(victim.clone())).await;
    fake.expect("victim running", status(&victim.instance_id, WorkloadPhase::Running)).await;
    let client = docker::client(&host).await;
    client.kill_container(&victim.instance_id, None::<bollard::query_parameters::KillContainerOptions>).await.unwrap();
    let failed = fake.expect("victim failed", status(&victim.instance_id, WorkloadPhase::Failed)).await;
    assert_eq!(failed.status.unwrap().exit_code, Some(137));

    // Restart the agent: no second join, and the hello lists what runs.
    agent.stop().await;
    let agent = start_agent(agent_cli(&fake, &state, &host, &[]));
    let again = fake.expect("hello after restart", hello).await;
    assert_eq!(again.node_id, node);
    assert_eq!(fake.joins(), 1);
    let listed =
        |h: &AgentHello, id: &str| h.instances.iter().find(|e| e.status.as_ref().unwrap().instance_id == id).cloned();
    let web_listed = listed(&again, &web.instance_id).expect("web in the inventory");
    assert_eq!(web_listed.status.unwrap().phase, WorkloadPhase::Running as i32);
    let victim_listed = listed(&again, &victim.instance_id).expect("victim in the inventory");
    assert_eq!(victim_listed.status.unwrap().exit_code, Some(137));

    // The scheduler goes away: containers keep running, a change made meanwhile is buffered,
    // and the agent reconnects with a fresh hello by itself.
    fake.stop_mtls().await;
    client
        .remove_container(
            &victim.instance_id,
            Some(bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() }),
        )
        .await
        .unwrap();
    fake.restart_mtls().await;
    let resync = fake.expect("hello after reconnect", hello).await;
    assert_eq!(resync.node_id, node);
    let web_again = listed(&resync, &web.instance_id).expect("web still listed");
    assert_eq!(web_again.status.unwrap().container_id, container_id);
    assert!(listed(&resync, &victim.instance_id).is_none());
    let inspect = client.inspect_container(&web.instance_id, None).await.unwrap();
    assert_eq!(inspect.state.unwrap().running, Some(true));

    // Commands work on the new stream: remove reports the removal.
    let remove = persys_proto::scheduler::v1::RemoveInstance {
        instance_id: web.instance_id.clone(),
        grace_period: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        remove_volumes: true,
    };
    fake.send("c-rm", connect_response::Payload::Remove(remove)).await;
    let (mut removed, mut answered) = (false, false);
    fake.expect("removal event and result", |r| {
        match &r.message {
            Payload::WorkloadStatus(e) if e.removed && e.status.as_ref().unwrap().instance_id == web.instance_id => {
                removed = true
            }
            Payload::CommandResult(c) if c.command_id == "c-rm" => answered = c.success,
            _ => {}
        }
        (removed && answered).then_some(())
    })
    .await;
    agent.stop().await;
}

#[tokio::test]
async fn a_wrong_join_token_is_refused_and_nothing_is_stored() {
    let Some((host, _)) = engine() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeScheduler::start(tmp.path(), Duration::from_secs(3600)).await;
    let state = tmp.path().join("agent");
    let mut cli = agent_cli(&fake, &state, &host, &[]);
    cli.join_token = Some("abcdef.wrongwrongwrong0".into());
    let err = persys_agent::run(cli, persys_kit::shutdown::Shutdown::never()).await.unwrap_err();
    assert!(err.to_string().contains("Unauthenticated") || err.to_string().contains("invalid join token"), "{err}");
    assert!(!state.join("node-id").exists() && !state.join("key.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_renewed_before_expiry_without_dropping_the_stream() {
    let Some((host, _)) = engine() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // Certificates of 9 s, back-dated 5 minutes by the CA: two thirds of that lifetime have
    // passed at issue, so the first renewal is due at once.
    let mut fake = FakeScheduler::start(tmp.path(), Duration::from_secs(9)).await;
    let state = tmp.path().join("agent");
    let agent = start_agent(agent_cli(&fake, &state, &host, &[]));
    fake.expect("hello", hello).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while fake.renewals() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no renewal");
        fake.expect("heartbeat", |r| matches!(r.message, Payload::Heartbeat(_)).then_some(())).await;
    }
    // The stream stays up through the rotation: heartbeats keep arriving without a new hello.
    for _ in 0..3 {
        fake.expect("heartbeat", |r| match r.message {
            Payload::Heartbeat(_) => Some(()),
            Payload::Hello(_) => panic!("the stream was re-established"),
            _ => None,
        })
        .await;
    }
    let after = std::fs::read_to_string(state.join("cert.pem")).unwrap();
    assert_ne!(fake.joined_cert(), after);
    assert_eq!(std::fs::metadata(state.join("key.pem")).unwrap().permissions().mode() & 0o777, 0o600);
    agent.stop().await;
}
