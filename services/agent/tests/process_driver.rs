//! The process driver on this machine: exit codes with the output tail, logs, and a stop that
//! escalates from SIGTERM to SIGKILL.

use std::{sync::Arc, time::Duration};

use persys_agent::{
    driver::{Output, process::ProcessDriver},
    outbox::Outbox,
};
use persys_proto::{
    common::v1::Role,
    scheduler::v1::{
        ConnectRequest, FetchLogs, RunInstance, WorkloadPhase, WorkloadSpec, WorkloadStatusEvent,
        connect_request::Payload,
    },
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn run(name: &str, script: &str) -> RunInstance {
    RunInstance {
        workload_id: format!("w-{name}"),
        instance_id: format!("p-{name}"),
        replica_index: 0,
        workload_name: name.into(),
        spec: Some(WorkloadSpec {
            image: "process:///bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            ..Default::default()
        }),
        owner_role: Role::Admin as i32,
        ..Default::default()
    }
}

/// A driver directory that a process switched to another user (when the test runs as root)
/// can still reach: tempdirs are 0700.
fn driver_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp
}

async fn wait(outbox: &Outbox, instance: &str, phase: WorkloadPhase) -> WorkloadStatusEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for p in outbox.drain() {
            if p.event.status.as_ref().is_some_and(|s| s.instance_id == instance && s.phase == phase as i32) {
                return p.event;
            }
        }
        tokio::time::timeout_at(deadline, outbox.notified()).await.expect("no event in time");
    }
}

#[tokio::test]
async fn processes_run_exit_log_and_stop() {
    let tmp = driver_dir();
    let outbox = Arc::new(Outbox::new(100));
    let driver = Arc::new(ProcessDriver::new(tmp.path().to_owned(), "node-p".into(), outbox.clone()));

    driver.run(&run("fail", "echo out; echo bad >&2; exit 5")).await.unwrap();
    let failed = wait(&outbox, "p-fail", WorkloadPhase::Failed).await;
    let status = failed.status.unwrap();
    assert_eq!((status.exit_code, status.message.as_str()), (Some(5), "bad"));

    let (tx, mut rx) = mpsc::channel::<ConnectRequest>(16);
    let logs = FetchLogs { instance_id: "p-fail".into(), ..Default::default() };
    driver.logs(&logs, &Output::new("c".into(), tx), &CancellationToken::new()).await.unwrap();
    let mut text = String::new();
    while let Ok(ConnectRequest { payload: Some(Payload::LogChunk(c)) }) = rx.try_recv() {
        text.push_str(&String::from_utf8_lossy(&c.chunk.unwrap().data));
    }
    assert_eq!(text, "out\nbad\n");

    // A process that ignores SIGTERM is killed after the grace period; the exit is STOPPED.
    driver.run(&run("stubborn", "trap '' TERM; echo ready; while :; do sleep 1; done")).await.unwrap();
    wait(&outbox, "p-stubborn", WorkloadPhase::Running).await;
    // Readiness: the trap is installed once `ready` shows up in the followed output.
    let (tx, mut rx) = mpsc::channel::<ConnectRequest>(16);
    let follow = FetchLogs { instance_id: "p-stubborn".into(), follow: true, ..Default::default() };
    let cancel = CancellationToken::new();
    let task = {
        let (driver, cancel) = (driver.clone(), cancel.clone());
        tokio::spawn(async move { driver.logs(&follow, &Output::new("f".into(), tx), &cancel).await })
    };
    let ready = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert!(matches!(ready.payload, Some(Payload::LogChunk(c)) if c.chunk.as_ref().unwrap().data == b"ready\n"));
    cancel.cancel();
    assert_eq!(task.await.unwrap().unwrap_err().reason, "Canceled");
    let started = std::time::Instant::now();
    driver.stop("p-stubborn", Some(Duration::from_millis(300))).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let stopped = wait(&outbox, "p-stubborn", WorkloadPhase::Stopped).await;
    assert_eq!(stopped.status.unwrap().exit_code, Some(128 + 9));

    driver.remove("p-stubborn", None).await.unwrap();
    assert!(!driver.has("p-stubborn") && !tmp.path().join("p-stubborn").exists());
    assert_eq!(driver.inventory().len(), 1);
}

async fn output_of(driver: &Arc<ProcessDriver>, instance: &str) -> String {
    let (tx, mut rx) = mpsc::channel::<ConnectRequest>(16);
    let logs = FetchLogs { instance_id: instance.into(), ..Default::default() };
    driver.logs(&logs, &Output::new("c".into(), tx), &CancellationToken::new()).await.unwrap();
    let mut text = String::new();
    while let Ok(ConnectRequest { payload: Some(Payload::LogChunk(c)) }) = rx.try_recv() {
        text.push_str(&String::from_utf8_lossy(&c.chunk.unwrap().data));
    }
    text
}

#[tokio::test]
async fn only_admins_start_host_processes_and_never_as_root_unless_asked() {
    let tmp = driver_dir();
    let outbox = Arc::new(Outbox::new(100));
    let driver = Arc::new(ProcessDriver::new(tmp.path().to_owned(), "node-p".into(), outbox.clone()));

    for role in [Role::Member, Role::Viewer, Role::Unspecified] {
        let mut r = run(&format!("by-{}", role.as_str_name().to_lowercase().replace('_', "-")), "touch /tmp/x");
        r.owner_role = role as i32;
        assert_eq!(driver.run(&r).await.unwrap_err().reason, "NotAllowed", "{role:?}");
        assert!(!driver.has(&r.instance_id));
        // Reported, so the scheduler does not wait for it to start.
        let refused = wait(&outbox, &r.instance_id, WorkloadPhase::Failed).await;
        assert_eq!(refused.status.unwrap().reason, "NotAllowed");
    }

    // The process's user: `nobody` when the agent is root, the agent's own user otherwise.
    driver.run(&run("whoami", "id -u")).await.unwrap();
    wait(&outbox, "p-whoami", WorkloadPhase::Succeeded).await;
    let agent_uid = rustix::process::geteuid().as_raw();
    let expected =
        if agent_uid == 0 { persys_agent::driver::process::lookup_user("nobody").unwrap().0 } else { agent_uid };
    assert_eq!(output_of(&driver, "p-whoami").await.trim(), expected.to_string());

    // The state directory (the node's key) stays out of reach of a switched user: a file the
    // agent keeps 0600, as it keeps its key, cannot be read.
    if agent_uid == 0 {
        use std::os::unix::fs::PermissionsExt;
        let key = tmp.path().join("node.key");
        std::fs::write(&key, "secret").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let script = format!("cat {} || echo refused", key.display());
        driver.run(&run("key", &script)).await.unwrap();
        wait(&outbox, "p-key", WorkloadPhase::Succeeded).await;
        assert!(output_of(&driver, "p-key").await.contains("refused"));
    }
}

/// The log chunks received, with their times.
fn timed_chunks(rx: &mut mpsc::Receiver<ConnectRequest>) -> Vec<(prost_types::Timestamp, String)> {
    let mut v = Vec::new();
    while let Ok(ConnectRequest { payload: Some(Payload::LogChunk(c)) }) = rx.try_recv() {
        let chunk = c.chunk.unwrap();
        v.push((chunk.time.unwrap(), String::from_utf8_lossy(&chunk.data).into_owned()));
    }
    v
}

#[tokio::test]
async fn output_keeps_the_time_it_was_written_and_since_resumes_after_it() {
    let tmp = driver_dir();
    let outbox = Arc::new(Outbox::new(100));
    let driver = Arc::new(ProcessDriver::new(tmp.path().to_owned(), "node-p".into(), outbox.clone()));
    driver.run(&run("timed", "echo one; sleep 1; echo two; sleep 1; echo three")).await.unwrap();
    wait(&outbox, "p-timed", WorkloadPhase::Succeeded).await;

    let read = |since: Option<prost_types::Timestamp>| {
        let driver = driver.clone();
        async move {
            let (tx, mut rx) = mpsc::channel::<ConnectRequest>(64);
            let logs = FetchLogs { instance_id: "p-timed".into(), since, ..Default::default() };
            driver.logs(&logs, &Output::new("c".into(), tx), &CancellationToken::new()).await.unwrap();
            timed_chunks(&mut rx)
        }
    };
    // Written a second apart, the lines were marked apart, each with the time it was seen.
    let all = read(None).await;
    assert_eq!(all.iter().map(|(_, t)| t.as_str()).collect::<String>(), "one\ntwo\nthree\n");
    let two = all.iter().find(|(_, t)| t.contains("two")).expect("a chunk with two").clone();
    let ms = |t: &prost_types::Timestamp| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000;
    assert!(!two.1.contains("one") && ms(&all[0].0) < ms(&two.0), "{all:?}");
    // The same on every read, and `since` (inclusive) resumes from a chunk's time.
    assert_eq!(read(None).await, all);
    let from_two = read(Some(two.0)).await;
    assert_eq!(from_two.iter().map(|(_, t)| t.as_str()).collect::<String>(), "two\nthree\n");
    assert_eq!(from_two[0], two);
    // A time after everything: nothing.
    let later = prost_types::Timestamp { seconds: two.0.seconds + 3600, nanos: 0 };
    assert!(read(Some(later)).await.is_empty());
}
