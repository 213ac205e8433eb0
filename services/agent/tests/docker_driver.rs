//! The Docker driver against a real engine: run, limits, labels, exit codes with the log
//! tail, stop, remove, logs, exec and pull policies. Status events come from the engine's
//! event stream (the watcher), never from polling.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::docker::{Cleanup, driver, driver_with, engine, node_id, phase, run_sh, wait_event};
use persys_agent::driver::Output;
use persys_kit::shutdown;
use persys_proto::{
    common::v1::{OutputStream, ResourceQuantities},
    scheduler::v1::{
        ConnectRequest, ExecInstance, FetchLogs, ImagePullPolicy, ResourceRequirements, WorkloadPhase,
        connect_request::Payload,
    },
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

fn sink() -> (Output, mpsc::Receiver<ConnectRequest>) {
    let (tx, rx) = mpsc::channel(1024);
    (Output::new("cmd-1".into(), tx), rx)
}

fn collect(rx: &mut mpsc::Receiver<ConnectRequest>) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    while let Ok(m) = rx.try_recv() {
        if let Some(Payload::LogChunk(c)) = m.payload {
            let chunk = c.chunk.unwrap();
            let text = String::from_utf8_lossy(&chunk.data).into_owned();
            if chunk.stream == OutputStream::Stderr as i32 { err.push_str(&text) } else { out.push_str(&text) }
        }
    }
    (out, err)
}

/// The log chunks received, with their times.
fn chunks(rx: &mut mpsc::Receiver<ConnectRequest>) -> Vec<(prost_types::Timestamp, String)> {
    let mut v = Vec::new();
    while let Ok(m) = rx.try_recv() {
        if let Some(Payload::LogChunk(c)) = m.payload {
            let chunk = c.chunk.unwrap();
            v.push((chunk.time.unwrap(), String::from_utf8_lossy(&chunk.data).into_owned()));
        }
    }
    v
}

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test]
async fn run_applies_limits_labels_and_network_and_reports_running_from_events() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("run");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));

    let mut run = run_sh(&node, "web", &image, "echo started; sleep 300");
    run.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
        requests: None,
        limits: Some(ResourceQuantities { cpu_millis: 250, memory_bytes: 32 << 20, disk_bytes: 0 }),
    });
    run.spec.as_mut().unwrap().env.push(persys_proto::scheduler::v1::EnvVar {
        name: "GREETING".into(),
        value: "hi".into(),
        sensitive: false,
    });
    let (out, _rx) = sink();
    driver.run(&run, &out).await.unwrap();
    let running = wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Running).await;
    let status = running.status.unwrap();
    assert_eq!(running.workload_id, "w-web");
    assert_eq!(status.node_id, node);
    assert!(!status.container_id.is_empty() && status.started_at.is_some());

    let c = driver.client().inspect_container(&run.instance_id, None).await.unwrap();
    let hc = c.host_config.unwrap();
    assert_eq!(hc.nano_cpus, Some(250_000_000));
    assert_eq!(hc.memory, Some(32 << 20));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.restart_policy.unwrap().name, Some(bollard::models::RestartPolicyNameEnum::NO));
    let config = c.config.unwrap();
    let labels = config.labels.unwrap();
    assert_eq!(labels["persys.workload-id"], "w-web");
    assert_eq!(labels["persys.instance-id"], run.instance_id);
    assert_eq!(labels["persys.workload-name"], "web");
    assert_eq!(labels["persys.node-id"], node);
    assert_eq!(labels["persys.managed"], "true");
    assert!(config.env.unwrap().contains(&"GREETING=hi".to_owned()));

    // Running again with the same instance id leaves the container alone.
    driver.run(&run, &out).await.unwrap();
    let again = driver.client().inspect_container(&run.instance_id, None).await.unwrap();
    assert_eq!(again.id, c.id);

    // Stop: SIGTERM is ignored by `sleep` under sh, so the grace period ends in a kill.
    driver.stop(&run.instance_id, Some(Duration::from_secs(1))).await.unwrap();
    let stopped = wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Stopped).await;
    assert!(stopped.status.unwrap().exit_code.is_some());

    driver.remove(&run.instance_id, None, true).await.unwrap();
    let removed = wait_event(&outbox, &run.instance_id, |e| e.removed).await;
    assert_eq!(removed.workload_id, "w-web");
    assert!(!driver.has(&run.instance_id).await);
    // Removing what is gone is not an error.
    driver.remove(&run.instance_id, None, false).await.unwrap();
    trigger.trigger();
}

#[tokio::test]
async fn an_exit_reports_the_code_and_the_log_tail() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("exit");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));

    // One stream only: Docker does not keep the order between stdout and stderr lines.
    let script = "for i in $(seq 1 40); do echo line-$i; done >&2; exit 3";
    let run = run_sh(&node, "fail", &image, script);
    let (out, _rx) = sink();
    driver.run(&run, &out).await.unwrap();
    let failed = wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    let status = failed.status.unwrap();
    assert_eq!(status.exit_code, Some(3));
    assert!(status.message.contains("line-21\n") && status.message.ends_with("line-40"), "{}", status.message);
    assert!(!status.message.contains("line-10\n"), "the tail is bounded: {}", status.message);
    assert!(status.finished_at.is_some());

    let ok = run_sh(&node, "ok", &image, "echo done");
    driver.run(&ok, &out).await.unwrap();
    let done = wait_event(&outbox, &ok.instance_id, |e| phase(e) == WorkloadPhase::Succeeded).await;
    assert_eq!(done.status.unwrap().exit_code, Some(0));

    // A kill from outside the agent is a failure with the signal's exit code.
    let victim = run_sh(&node, "victim", &image, "sleep 300");
    driver.run(&victim, &out).await.unwrap();
    wait_event(&outbox, &victim.instance_id, |e| phase(e) == WorkloadPhase::Running).await;
    driver
        .client()
        .kill_container(&victim.instance_id, None::<bollard::query_parameters::KillContainerOptions>)
        .await
        .unwrap();
    let killed = wait_event(&outbox, &victim.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    assert_eq!(killed.status.unwrap().exit_code, Some(137));
    trigger.trigger();
}

#[tokio::test]
async fn logs_and_exec_stream_output_and_exit_codes() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("logs");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));

    let run = run_sh(&node, "chatty", &image, "echo one; sleep 0.2; echo two; sleep 0.2; echo err >&2; sleep 300");
    let (out, _rx) = sink();
    driver.run(&run, &out).await.unwrap();
    wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Running).await;

    // Exec: output, exit code, stdin.
    let (out, mut rx) = sink();
    let cancel = CancellationToken::new();
    let exec = ExecInstance {
        instance_id: run.instance_id.clone(),
        command: vec!["sh".into(), "-c".into(), "cat; echo to-err >&2; exit 7".into()],
        stdin: b"from-stdin\n".to_vec(),
        ..Default::default()
    };
    let exit = driver.exec(&exec, &out, &cancel).await.unwrap();
    assert_eq!((exit.exit_code, exit.timed_out), (7, false));
    let (stdout, stderr) = collect(&mut rx);
    assert_eq!(stdout, "from-stdin\n");
    assert_eq!(stderr, "to-err\n");

    // Exec timeout.
    let slow = ExecInstance {
        instance_id: run.instance_id.clone(),
        command: vec!["sleep".into(), "30".into()],
        timeout: Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 }),
        ..Default::default()
    };
    let exit = driver.exec(&slow, &out, &cancel).await.unwrap();
    assert!(exit.timed_out && exit.exit_code == -1);

    // Stdout and stderr reach Docker's log through separate copiers, so the script spaces its
    // lines 200 ms apart; wait until the last one (`echo err`) is in the log.
    let all = FetchLogs { instance_id: run.instance_id.clone(), ..Default::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (out, mut rx) = sink();
        driver.logs(&all, &out, &cancel).await.unwrap();
        if collect(&mut rx).1.contains("err") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "`echo err` never reached the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (out, mut rx) = sink();
    let logs = FetchLogs { instance_id: run.instance_id.clone(), tail_lines: Some(1), ..Default::default() };
    driver.logs(&logs, &out, &cancel).await.unwrap();
    let (stdout, stderr) = collect(&mut rx);
    assert_eq!(format!("{stdout}{stderr}").lines().count(), 1);
    driver.logs(&all, &out, &cancel).await.unwrap();
    let (stdout, stderr) = collect(&mut rx);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("one\ntwo\n", "err\n"));

    // Each line is a chunk stamped with the time Docker logged it, the same on every read; from
    // a line's time (to the millisecond, within Docker's whole second) come that line and after.
    let (out, mut rx) = sink();
    driver.logs(&all, &out, &cancel).await.unwrap();
    let timed = chunks(&mut rx);
    assert_eq!(timed.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["one\n", "two\n", "err\n"]);
    let two = timed[1].0;
    assert!(ms(&timed[0].0) < ms(&two), "{timed:?}");
    let from_two = FetchLogs { instance_id: run.instance_id.clone(), since: Some(two), ..Default::default() };
    driver.logs(&from_two, &out, &cancel).await.unwrap();
    let again = chunks(&mut rx);
    assert_eq!(again.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["two\n", "err\n"]);
    assert_eq!(again[0].0, two, "the same line has the same time on every read");

    // Follow runs until canceled.
    let follow = FetchLogs { instance_id: run.instance_id.clone(), follow: true, ..Default::default() };
    let cancel_follow = CancellationToken::new();
    let (out, mut rx) = sink();
    let task = {
        let (driver, cancel) = (driver.clone(), cancel_follow.clone());
        tokio::spawn(async move { driver.logs(&follow, &out, &cancel).await })
    };
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
    assert!(first.is_some());
    assert!(!task.is_finished());
    cancel_follow.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert_eq!(ended.unwrap_err().reason, "Canceled");

    let missing = FetchLogs { instance_id: format!("{node}-nope"), ..Default::default() };
    assert_eq!(driver.logs(&missing, &sink().0, &cancel).await.unwrap_err().reason, "ContainerNotFound");
    trigger.trigger();
}

#[tokio::test]
async fn pull_policies_use_local_images_and_fail_cleanly() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("pull");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (out, mut rx) = sink();

    let mut never = run_sh(&node, "never", &image, "true");
    never.spec.as_mut().unwrap().image_pull_policy = ImagePullPolicy::Never as i32;
    driver.run(&never, &out).await.unwrap();

    let mut absent = run_sh(&node, "absent", "persys-test/does-not-exist:1", "true");
    absent.spec.as_mut().unwrap().image_pull_policy = ImagePullPolicy::Never as i32;
    let e = driver.run(&absent, &out).await.unwrap_err();
    assert_eq!(e.reason, "ImageNotPresent");
    let failed = wait_event(&outbox, &absent.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    assert_eq!(failed.status.unwrap().reason, "ImageNotPresent");

    // No registry is reachable here: the pull fails, with a clear reason, and no container.
    let mut pull = run_sh(&node, "pull", "127.0.0.1:9/persys-test/nothing:1", "true");
    pull.spec.as_mut().unwrap().image_pull_policy = ImagePullPolicy::IfNotPresent as i32;
    let e = driver.run(&pull, &out).await.unwrap_err();
    assert_eq!(e.reason, "ImagePullFailed", "{e}");
    let pulling = wait_event(&outbox, &pull.instance_id, |e| e.status.as_ref().unwrap().reason == "PullingImage").await;
    assert_eq!(phase(&pulling), WorkloadPhase::Starting);
    wait_event(&outbox, &pull.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    assert!(!driver.has(&pull.instance_id).await);
    let _ = rx.try_recv();
}

/// A registry on loopback that accepts connections and never answers: a pull from it hangs.
/// Returns its address, how many connections it accepted, and a signal of each.
async fn silent_registry() -> (String, Arc<AtomicUsize>, Arc<Notify>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (accepted, connected) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let (count, signal) = (accepted.clone(), connected.clone());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            signal.notify_one();
            held.push(socket);
        }
    });
    (address, accepted, connected)
}

#[tokio::test]
async fn a_pull_that_hangs_is_abandoned_at_its_deadline_and_retried() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("pull-deadline");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver_with(&host, &node, |d| {
        d.pull_timeout = Duration::from_secs(1);
        d.pull_attempts = 3;
    })
    .await;
    let (registry, accepted, _) = silent_registry().await;
    let mut run = run_sh(&node, "hangs", &format!("{registry}/persys-test/hangs:1"), "true");
    run.spec.as_mut().unwrap().image_pull_policy = ImagePullPolicy::IfNotPresent as i32;
    let e = driver.run(&run, &sink().0).await.unwrap_err();
    assert_eq!(e.reason, "ImagePullFailed", "{e}");
    assert!(e.message.contains("not done after 1s") && e.message.contains("attempt 3 of 3"), "{e}");
    assert!(accepted.load(Ordering::SeqCst) >= 1, "the pull never reached the registry");
    let failed = wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    assert_eq!(failed.status.unwrap().reason, "ImagePullFailed");
    assert!(!driver.has(&run.instance_id).await);
    let _ = image;
}

#[tokio::test]
async fn a_removal_during_an_image_pull_cancels_it_and_no_container_appears() {
    let Some((host, _)) = engine() else { return };
    let node = node_id("pull-removed");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (registry, _, connected) = silent_registry().await;
    let mut run = run_sh(&node, "removed", &format!("{registry}/persys-test/removed:1"), "sleep 300");
    run.spec.as_mut().unwrap().image_pull_policy = ImagePullPolicy::Always as i32;
    let starting = {
        let (driver, run) = (driver.clone(), run.clone());
        tokio::spawn(async move { driver.run(&run, &sink().0).await })
    };
    wait_event(&outbox, &run.instance_id, |e| e.status.as_ref().unwrap().reason == "PullingImage").await;
    // The engine is talking to the registry: the pull is under way.
    tokio::time::timeout(Duration::from_secs(30), connected.notified())
        .await
        .expect("the pull never reached the registry");

    // The removal returns only once the run has ended, cancelled, without a container.
    driver.remove(&run.instance_id, None, true).await.unwrap();
    assert!(starting.is_finished(), "the removal returned while the run was still going");
    let e = starting.await.unwrap().unwrap_err();
    assert_eq!(e.reason, "Cancelled", "{e}");
    let inspect = driver.client().inspect_container(&run.instance_id, None).await;
    assert!(
        matches!(inspect, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })),
        "a container appeared: {inspect:?}"
    );
    // A cancelled start is no failure of the workload.
    assert!(
        !outbox.drain().into_iter().any(|p| p.event.status.is_some_and(|s| s.phase == WorkloadPhase::Failed as i32)),
        "the cancelled run was reported Failed"
    );
}

#[tokio::test]
async fn members_containers_stay_off_the_hosts_network_and_unprivileged() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("confined");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));
    let (out, _rx) = sink();

    // A member's workload asking for the host's network is refused before anything is created.
    let mut escape = run_sh(&node, "escape", &image, "sleep 300");
    escape.spec.as_mut().unwrap().network = "host".into();
    let err = driver.run(&escape, &out).await.unwrap_err();
    assert_eq!(err.reason, "NotAllowed", "{}", err.message);
    assert!(driver.client().inspect_container(&escape.instance_id, None).await.is_err(), "no container was created");
    // And the instance is Failed with the reason, not left waiting to start.
    let refused = wait_event(&outbox, &escape.instance_id, |e| phase(e) == WorkloadPhase::Failed).await;
    assert_eq!(refused.status.unwrap().reason, "NotAllowed");

    // The same spec owned by an admin runs there.
    let mut admin = run_sh(&node, "admin", &image, "sleep 300");
    admin.spec.as_mut().unwrap().network = "host".into();
    admin.owner_role = persys_proto::common::v1::Role::Admin as i32;
    driver.run(&admin, &out).await.unwrap();
    let hc = driver.client().inspect_container(&admin.instance_id, None).await.unwrap().host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("host"));

    // Whoever owns it, the engine holds no privilege beyond its defaults.
    let plain = run_sh(&node, "plain", &image, "sleep 300");
    driver.run(&plain, &out).await.unwrap();
    wait_event(&outbox, &plain.instance_id, |e| phase(e) == WorkloadPhase::Running).await;
    for id in [&plain.instance_id, &admin.instance_id] {
        let hc = driver.client().inspect_container(id, None).await.unwrap().host_config.unwrap();
        assert_eq!(hc.privileged, Some(false), "{id}");
        assert!(hc.cap_add.unwrap_or_default().is_empty(), "{id}");
        assert!(hc.devices.unwrap_or_default().is_empty(), "{id}");
        assert_eq!(hc.ipc_mode.as_deref(), Some("private"), "{id}");
        assert_ne!(hc.pid_mode.as_deref(), Some("host"), "{id}");
    }
    assert_eq!(
        driver
            .client()
            .inspect_container(&plain.instance_id, None)
            .await
            .unwrap()
            .host_config
            .unwrap()
            .network_mode
            .as_deref(),
        Some("none")
    );
    trigger.trigger();
}

#[tokio::test]
async fn named_volumes_are_the_owners_own_on_the_engine() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("volumes");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));
    let (out, _rx) = sink();
    let docker = driver.client();
    let with_data = |name: &str, owner: &str, script: &str| {
        let mut run = run_sh(&node, name, &image, script);
        run.owner_id = format!("{owner}-{node}");
        run.spec.as_mut().unwrap().volumes = vec![persys_proto::scheduler::v1::VolumeMount {
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
        }];
        run
    };

    // Alice writes into her `data`; Bob's `data` is another volume, empty.
    let alice = with_data("alice", "alice", "echo secret > /data/f");
    driver.run(&alice, &out).await.unwrap();
    wait_event(&outbox, &alice.instance_id, |e| phase(e) == WorkloadPhase::Succeeded).await;
    let bob = with_data("bob", "bob", "test ! -e /data/f");
    driver.run(&bob, &out).await.unwrap();
    let done = wait_event(&outbox, &bob.instance_id, |e| {
        [WorkloadPhase::Succeeded, WorkloadPhase::Failed].iter().any(|p| phase(e) == *p)
    })
    .await;
    assert_eq!(phase(&done), WorkloadPhase::Succeeded, "bob saw alice's file");
    for (run, owner) in [(&alice, "alice"), (&bob, "bob")] {
        let name = format!("persys-{owner}-{node}.data");
        let volume = docker.inspect_volume(&name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(volume.labels.get("persys.owner"), Some(&run.owner_id), "{name}");
        let mounts = docker.inspect_container(&run.instance_id, None).await.unwrap().mounts.unwrap_or_default();
        assert_eq!(mounts.iter().filter_map(|m| m.name.clone()).collect::<Vec<_>>(), [name]);
    }

    // A volume of Carol's name made outside the agent (no owner label) is not mounted.
    let carol = with_data("carol", "carol", "true");
    let planted = format!("persys-carol-{node}.data");
    docker
        .create_volume(bollard::models::VolumeCreateRequest { name: Some(planted.clone()), ..Default::default() })
        .await
        .unwrap();
    let err = driver.run(&carol, &out).await.unwrap_err();
    assert_eq!(err.reason, "NotAllowed", "{}", err.message);
    assert!(docker.inspect_container(&carol.instance_id, None).await.is_err(), "no container was created");

    trigger.trigger();
    for id in [&alice.instance_id, &bob.instance_id] {
        driver.remove(id, None, true).await.unwrap();
    }
    for owner in ["alice", "bob", "carol"] {
        let _ = docker
            .remove_volume(
                &format!("persys-{owner}-{node}.data"),
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await;
    }
}

#[tokio::test]
async fn container_metrics_report_each_running_container_with_its_workload_and_limit() {
    let Some((host, image)) = engine() else { return };
    let node = node_id("stats");
    let _cleanup = Cleanup::new(&host, &node);
    let (driver, outbox) = driver(&host, &node).await;
    let (_trigger, handle) = shutdown::channel();
    tokio::spawn(driver.clone().watch(handle));
    assert!(driver.container_metrics().await.is_empty(), "nothing running yet");

    let mut run = run_sh(&node, "busy", &image, "while :; do :; done");
    run.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
        requests: None,
        limits: Some(ResourceQuantities { cpu_millis: 500, memory_bytes: 48 << 20, disk_bytes: 0 }),
    });
    let (out, _rx) = sink();
    driver.run(&run, &out).await.unwrap();
    wait_event(&outbox, &run.instance_id, |e| phase(e) == WorkloadPhase::Running).await;

    let metrics = driver.container_metrics().await;
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let m = &metrics[0];
    assert_eq!(
        (m.instance_id.as_str(), m.workload_id.as_str(), m.state.as_str()),
        (run.instance_id.as_str(), "w-busy", "running")
    );
    assert_eq!(m.memory_limit_bytes, 48 << 20);
    assert!(m.memory_usage_bytes > 0 && m.memory_usage_bytes < 48 << 20, "{m:?}");
    // A busy loop capped at half a core: busy (however loaded the machine), never far above the cap.
    assert!(m.cpu_percent > 0.0 && m.cpu_percent < 80.0, "cpu {}", m.cpu_percent);
    assert!(!m.container_id.is_empty() && m.created_at.is_some());
}
