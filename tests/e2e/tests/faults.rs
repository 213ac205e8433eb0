//! Fault injection on the real binaries (schedulers on a real etcd, agents on a real Docker
//! engine): a paused leader, a replica cut off from etcd, a node declared Down that comes
//! back, a log reader that stops reading, a scheduler restarted while a restart waits out its
//! backoff, and the Docker engine restarted under an agent. After each, the cluster invariants
//! hold over etcd and Docker ([`persys_e2e::invariants`]): one running container per wanted
//! replica, none for what is not live, reservations adding up.
//!
//! Timing is the harness's ([`persys_e2e::replicas`]): leases of 2 s, Down 5 s later.

use std::{collections::BTreeSet, time::Duration};

use persys_e2e::{
    cluster::AgentUrls,
    dockerd::Dockerd,
    proxy::TcpProxy,
    replicas::{self, DOWN_GRACE, EtcdCluster, LEASE_TTL, create, placement, ready, running, sh_spec},
};
use persys_kit::testing::require_env;
use persys_proto::scheduler::v1::{self as pb, NodeState};
use persys_scheduler::kv::{Event, Kv};

/// How long a cluster may take to settle after a fault.
const SETTLE: Duration = Duration::from_secs(40);
/// A long-running container.
const SLEEP: &str = "exec sleep 600";

struct Env {
    etcd: String,
    docker_host: String,
    image: String,
}

fn env() -> Option<Env> {
    Some(Env {
        etcd: require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server")?,
        docker_host: require_env("DOCKER_HOST", "a Docker engine")?,
        image: require_env("PERSYS_TEST_IMAGE", "a local test image")?,
    })
}

/// Returns the nodes `w`'s live instances are on, sorted, once each.
fn on_nodes(w: &pb::Workload) -> Vec<String> {
    let nodes: BTreeSet<String> = placement(w).into_iter().map(|(_, _, n)| n).collect();
    nodes.into_iter().collect()
}

/// Returns the node events among `events` that record `state`.
fn node_states(events: &[Event], prefix: &str, state: NodeState) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Put(entry) if entry.key.starts_with(&format!("{prefix}/nodes/")) => {
                persys_scheduler::model::decode_node(entry).filter(|n| n.state() == state).map(|n| n.id)
            }
            _ => None,
        })
        .collect()
}

/// Returns the reasons of the workload events recorded at or after `since` that `events` (etcd
/// watch events) carry (`Rescheduling`, `Lost`, ...).
fn workload_event_reasons(events: &[Event], prefix: &str, since: std::time::SystemTime) -> Vec<String> {
    let since = persys_scheduler::model::ms_of(since);
    let mut out = Vec::new();
    for e in events {
        if let Event::Put(entry) = e
            && entry.key.starts_with(&format!("{prefix}/workloads/"))
            && let Some(w) = persys_scheduler::model::decode_workload(entry)
        {
            let recent = w
                .events
                .into_iter()
                .filter(|ev| ev.time.as_ref().is_some_and(|t| persys_scheduler::model::ts_ms(t) >= since));
            for ev in recent {
                if !out.contains(&ev.reason) {
                    out.push(ev.reason);
                }
            }
        }
    }
    out
}

/// SIGSTOP the leader for longer than its lease: the other replica takes over; the node whose
/// stream the paused replica holds goes NotReady. SIGCONT it before that node's grace is over:
/// the old leader does not win the key back or write a liveness decision, nothing is
/// rescheduled, and no replica ever runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_is_deposed_and_lands_no_write() {
    let Some(env) = env() else { return };
    let c = EtcdCluster::new(&env.etcd, &env.docker_host, "fstop").unwrap();
    let kv = c.kv().await.unwrap();
    let store = c.store().await.unwrap();
    let one = c.start_scheduler("one").await.unwrap();
    c.wait_leader(&kv, "one", Duration::from_secs(15)).await;
    let two = c.start_scheduler("two").await.unwrap();
    let (a, b) = (c.node("a"), c.node("b"));
    let _agent_a = c.start_agent(&two, &a).await.unwrap();
    let _agent_b = c.start_agent(&one, &b).await.unwrap();
    for n in [&a, &b] {
        c.wait_node(&store, n, Duration::from_secs(20), ready).await;
    }
    let api = c.api(&two).unwrap();
    let spread = create(&api, "spread", sh_spec(&env.image, SLEEP, 2, 1)).await.unwrap();
    let packed = create(&api, "packed", sh_spec(&env.image, SLEEP, 2, 0)).await.unwrap();
    let invariants = c.invariants().await.unwrap();
    for w in [&spread, &packed] {
        c.wait_workload(&store, &w.id, SETTLE, running).await;
    }
    invariants.wait_ok(SETTLE).await;
    let before = [
        placement(&store.workload(&spread.id).await.unwrap().unwrap()),
        placement(&store.workload(&packed.id).await.unwrap().unwrap()),
    ];
    assert_eq!(before[0].iter().filter(|(_, _, n)| *n == a).count(), 1, "one replica per node: {before:?}");

    let (_, revision) = kv.range(&format!("{}/leader", c.prefix)).await.unwrap();
    let recorder = replicas::record(&kv, &format!("{}/", c.prefix), revision).await.unwrap();
    let duplicates = invariants.watch_duplicates().await.unwrap();
    let paused = std::time::SystemTime::now();
    one.signal("STOP").unwrap();
    let term = c.wait_leader(&kv, "two", Duration::from_secs(15)).await;
    // The paused replica renews node b's lease no more: b is NotReady under the new leader.
    c.wait_node(&store, &b, Duration::from_secs(10), |n| n.state() == NodeState::NotReady).await;
    one.signal("CONT").unwrap();

    // b comes back through the replica that paused, before its Down grace is over.
    c.wait_node(&store, &b, LEASE_TTL + DOWN_GRACE, ready).await;
    // The old leader notices its lease is gone (it cannot renew an expired lease).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !one.log().contains("lost the leader lease") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(one.log().contains("lost the leader lease"), "replica one never stepped down:\n{}", one.log());
    invariants.wait_ok(SETTLE).await;
    duplicates.assert_none().await;
    let events = recorder.finish().await;

    let leader = kv.get(&format!("{}/leader", c.prefix)).await.unwrap().expect("a leader");
    assert_eq!(
        (leader.value.as_slice(), leader.mod_revision),
        (b"two".as_slice(), term),
        "the old leader took the key back"
    );
    assert_eq!(node_states(&events, &c.prefix, NodeState::Down), Vec::<String>::new(), "no node may be declared Down");
    let reasons = workload_event_reasons(&events, &c.prefix, paused);
    assert!(!reasons.iter().any(|r| r == "Rescheduling" || r == "Lost"), "nothing may be rescheduled: {reasons:?}");
    let after = [
        placement(&store.workload(&spread.id).await.unwrap().unwrap()),
        placement(&store.workload(&packed.id).await.unwrap().unwrap()),
    ];
    assert_eq!(after, before, "the instances stay where they were");

    // Deleted through `two`, they leave no container on b either, whose agent `one` holds.
    for w in [&spread, &packed] {
        api.clone()
            .delete_workload(pb::DeleteWorkloadRequest { id: w.id.clone(), ..Default::default() })
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !store.workloads().await.unwrap().0.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    invariants.wait_ok(SETTLE).await;
    assert_eq!(invariants.containers().await.unwrap(), Vec::new(), "every container is removed");
}

/// How replica `one` is separated from the cluster and brought back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Separation {
    /// Its etcd connections go through a proxy, cut and then healed.
    CutEtcd,
    /// It is stopped with SIGSTOP, then continued with SIGCONT.
    Pause,
}

/// Two replicas, `one` leading; node b streams to `one`, node a to `two`. `packed` (2 replicas)
/// runs on b, `spread` (2, one per node) on both. Then `one` is separated from the cluster
/// until b is Down and `packed` runs on a, and brought back while b's agent stays connected to
/// it: b comes back, stops what moved away, takes `spread`'s waiting replica again, and every
/// workload runs exactly once.
async fn lose_and_restore_a_replica(name: &str, separation: Separation) {
    let Some(env) = env() else { return };
    let c = EtcdCluster::new(&env.etcd, &env.docker_host, name).unwrap();
    let kv = c.kv().await.unwrap();
    let store = c.store().await.unwrap();
    let upstream = env.etcd.split(',').next().unwrap().trim_start_matches("http://").parse().unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let one = match separation {
        Separation::CutEtcd => c.start_scheduler_via("one", &proxy.url()).await.unwrap(),
        Separation::Pause => c.start_scheduler("one").await.unwrap(),
    };
    // The replica that is separated leads, so the separation deposes it too.
    c.wait_leader(&kv, "one", Duration::from_secs(15)).await;
    let two = c.start_scheduler("two").await.unwrap();
    let (a, b) = (c.node("a"), c.node("b"));
    let agent_b = c.start_agent(&one, &b).await.unwrap();
    c.wait_node(&store, &b, Duration::from_secs(20), ready).await;
    // Everything starts on b; a joins afterwards, so only `spread`'s second replica is on a.
    let api = c.api(&two).unwrap();
    let spread = create(&api, "spread", sh_spec(&env.image, SLEEP, 2, 1)).await.unwrap();
    let packed = create(&api, "packed", sh_spec(&env.image, SLEEP, 2, 0)).await.unwrap();
    c.wait_workload(&store, &packed.id, SETTLE, running).await;
    let _agent_a = c.start_agent(&two, &a).await.unwrap();
    c.wait_workload(&store, &spread.id, SETTLE, running).await;
    let invariants = c.invariants().await.unwrap();
    invariants.wait_ok(SETTLE).await;
    let old_on_b: Vec<String> = invariants
        .containers()
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.node_id == b && x.running)
        .map(|x| x.id)
        .collect();
    assert_eq!(old_on_b.len(), 3, "packed ×2 and spread ×1 on b");

    match separation {
        Separation::CutEtcd => proxy.cut(),
        Separation::Pause => one.signal("STOP").unwrap(),
    }
    let term = c.wait_leader(&kv, "two", Duration::from_secs(15)).await;
    c.wait_node(&store, &b, Duration::from_secs(20), |n| n.state() == NodeState::Down).await;
    // packed moves to a; spread's replica on b waits (one per node).
    let moved = c
        .wait_workload(&store, &packed.id, SETTLE, |w| running(w) && placement(w).iter().all(|(_, _, n)| *n == a))
        .await;
    assert_eq!(placement(&moved).len(), 2);
    assert!(agent_b.pid().is_some(), "b's agent still runs, connected to the separated replica");
    match separation {
        Separation::CutEtcd => proxy.heal(),
        Separation::Pause => one.signal("CONT").unwrap(),
    }

    c.wait_node(&store, &b, SETTLE, ready).await;
    // spread's waiting replica goes back to b, the only node without one.
    c.wait_workload(&store, &spread.id, SETTLE, |w| running(w) && on_nodes(w) == [a.clone(), b.clone()]).await;
    invariants.wait_ok(SETTLE).await;
    let containers = invariants.containers().await.unwrap();
    for id in &old_on_b {
        assert!(!containers.iter().any(|x| x.id == *id && x.running), "b's old container {id} still runs");
    }
    let leader = kv.get(&format!("{}/leader", c.prefix)).await.unwrap().expect("a leader");
    assert_eq!((leader.value.as_slice(), leader.mod_revision), (b"two".as_slice(), term), "leadership went back");
}

/// Cut one replica's connection to etcd (through a proxy) while its agent stays connected to
/// it, until its node is Down and its instances moved; heal: see [`lose_and_restore_a_replica`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_etcd_loses_its_node_which_comes_back_clean() {
    lose_and_restore_a_replica("fcut", Separation::CutEtcd).await;
}

/// SIGSTOP the leader past its node's Down grace (its agent's stream stalls with it), SIGCONT
/// it: see [`lose_and_restore_a_replica`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_the_down_grace_gets_its_node_back_clean() {
    lose_and_restore_a_replica("fpause", Separation::Pause).await;
}

/// Kill a node's agent and wait until the node is Down: its instances run elsewhere. Restart
/// the agent with the same identity: its old containers are stopped, and every workload runs
/// once, each replica on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_declared_down_stops_its_old_containers_when_it_returns() {
    let Some(env) = env() else { return };
    let c = EtcdCluster::new(&env.etcd, &env.docker_host, "fdown").unwrap();
    let store = c.store().await.unwrap();
    let scheduler = c.start_scheduler("one").await.unwrap();
    let (a, b) = (c.node("a"), c.node("b"));
    let agent_b = c.start_agent(&scheduler, &b).await.unwrap();
    c.wait_node(&store, &b, Duration::from_secs(20), ready).await;
    let api = c.api(&scheduler).unwrap();
    let single = create(&api, "single", sh_spec(&env.image, SLEEP, 1, 0)).await.unwrap();
    let packed = create(&api, "packed", sh_spec(&env.image, SLEEP, 3, 0)).await.unwrap();
    let spread = create(&api, "spread", sh_spec(&env.image, SLEEP, 2, 1)).await.unwrap();
    for w in [&single, &packed] {
        c.wait_workload(&store, &w.id, SETTLE, running).await;
    }
    let _agent_a = c.start_agent(&scheduler, &a).await.unwrap();
    c.wait_workload(&store, &spread.id, SETTLE, running).await;
    let invariants = c.invariants().await.unwrap();
    invariants.wait_ok(SETTLE).await;
    let old_on_b: Vec<String> = invariants
        .containers()
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.node_id == b && x.running)
        .map(|x| x.id)
        .collect();
    assert_eq!(old_on_b.len(), 5, "single, packed ×3 and spread ×1 on b");

    agent_b.kill().await.unwrap();
    c.wait_node(&store, &b, Duration::from_secs(20), |n| n.state() == NodeState::Down).await;
    for w in [&single, &packed] {
        c.wait_workload(&store, &w.id, SETTLE, |w| running(w) && placement(w).iter().all(|(_, _, n)| *n == a)).await;
    }
    // b's containers still run (no agent stops them), so the checker must see them twice.
    let report = invariants.check().await.unwrap();
    let twice = format!("workload {}: replica 0 runs in 2 containers", single.id);
    assert!(report.violations.iter().any(|v| v.starts_with(&twice)), "{:?}", report.violations);
    let _agent_b = c.start_agent(&scheduler, &b).await.unwrap();
    c.wait_node(&store, &b, SETTLE, ready).await;
    c.wait_workload(&store, &spread.id, SETTLE, |w| running(w) && on_nodes(w) == [a.clone(), b.clone()]).await;
    invariants.wait_ok(SETTLE).await;

    let containers = invariants.containers().await.unwrap();
    for id in &old_on_b {
        assert!(!containers.iter().any(|x| x.id == *id && x.running), "b's old container {id} still runs");
    }
    let running_of = |w: &pb::Workload| containers.iter().filter(|x| x.workload_id == w.id && x.running).count();
    assert_eq!((running_of(&single), running_of(&packed), running_of(&spread)), (1, 3, 2));
    assert!(containers.iter().any(|x| x.workload_id == single.id && x.running && x.node_id == a), "single on a");

    // A deleted workload leaves no container behind.
    api.clone()
        .delete_workload(pb::DeleteWorkloadRequest { id: packed.id.clone(), ..Default::default() })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while store.workload(&packed.id).await.unwrap().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.workload(&packed.id).await.unwrap().is_none(), "packed is deleted");
    invariants.wait_ok(SETTLE).await;
    assert!(!invariants.containers().await.unwrap().iter().any(|x| x.workload_id == packed.id));
}

/// A `logs -f` reader that stops reading for three lease TTLs while a chatty container writes
/// megabytes: the node stays Ready (its heartbeats go on), and its workload is not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_follower_does_not_stop_the_nodes_heartbeats() {
    let Some(env) = env() else { return };
    let c = EtcdCluster::new(&env.etcd, &env.docker_host, "flogs").unwrap();
    let kv = c.kv().await.unwrap();
    let store = c.store().await.unwrap();
    let scheduler = c.start_scheduler("one").await.unwrap();
    let a = c.node("a");
    let _agent = c.start_agent(&scheduler, &a).await.unwrap();
    c.wait_node(&store, &a, Duration::from_secs(20), ready).await;
    let api = c.api(&scheduler).unwrap();
    let line = "x".repeat(200);
    let chatty = format!("while :; do yes {line} | head -n 1000; sleep 0.1; done");
    let w = create(&api, "chatty", sh_spec(&env.image, &chatty, 2, 0)).await.unwrap();
    c.wait_workload(&store, &w.id, SETTLE, running).await;
    let invariants = c.invariants().await.unwrap();
    invariants.wait_ok(SETTLE).await;
    let before = placement(&store.workload(&w.id).await.unwrap().unwrap());

    let (_, revision) = kv.range(&format!("{}/leader", c.prefix)).await.unwrap();
    let recorder = replicas::record(&kv, &format!("{}/", c.prefix), revision).await.unwrap();
    let request = pb::StreamLogsRequest { workload_id: w.id.clone(), follow: true, ..Default::default() };
    let mut logs = api.clone().stream_logs(request).await.unwrap().into_inner();
    let first = logs.message().await.unwrap().expect("the logs flow");
    assert!(!first.chunk.unwrap_or_default().data.is_empty());
    // Stop reading for three lease TTLs; the node's record must stay Ready all along.
    let live_key = format!("{}/live/{a}", c.prefix);
    let stalled = tokio::time::Instant::now();
    let mut last_heartbeat = None;
    while stalled.elapsed() < 3 * LEASE_TTL {
        let node = store.node(&a).await.unwrap().unwrap();
        assert_eq!(node.state(), NodeState::Ready, "the node left Ready while a log reader stalled: {node:#?}");
        // Its liveness lease (renewed by heartbeats) never lapses.
        assert!(
            kv.get(&live_key).await.unwrap().is_some(),
            "the node's liveness key expired after {:?}",
            stalled.elapsed()
        );
        last_heartbeat = node.last_heartbeat;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The slow call is cut (not the node): read on, and the stream ends with an error.
    let cut = tokio::time::timeout(SETTLE, async {
        loop {
            match logs.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stalled call ends");
    assert!(cut.is_some(), "the stalled call is cut with an error, not ended as if complete");
    let events = recorder.finish().await;
    assert_eq!(node_states(&events, &c.prefix, NodeState::NotReady), Vec::<String>::new());
    let heartbeats = events
        .iter()
        .filter(|e| matches!(e, Event::Put(x) if x.key == live_key || x.key == format!("{}/nodes/{a}", c.prefix)))
        .count();
    assert!(heartbeats > 0, "no heartbeat landed while the reader stalled (last {last_heartbeat:?})");
    invariants.wait_ok(SETTLE).await;
    assert_eq!(placement(&store.workload(&w.id).await.unwrap().unwrap()), before, "nothing moved");
    // A new reader still gets the logs: the node's stream is fine.
    let request =
        pb::StreamLogsRequest { workload_id: w.id.clone(), follow: false, tail_lines: Some(1), ..Default::default() };
    let mut logs = api.clone().stream_logs(request).await.unwrap().into_inner();
    assert!(logs.message().await.unwrap().is_some(), "logs work again");
    api.clone()
        .delete_workload(pb::DeleteWorkloadRequest { id: w.id, force: true, ..Default::default() })
        .await
        .unwrap();
}

/// What happens to the replica holding the agent while a restart waits out its backoff.
enum Interruption {
    /// It is SIGKILLed and started again on the same ports.
    Restart,
    /// It keeps running, but the agent's connection is moved to the other replica.
    MoveAgent,
}

/// Two replicas of a container that exits four times under policy Always wait 8 s before
/// their fourth restart; the replica holding their agent is interrupted then: the restarts
/// still happen, each exactly once (each container counts its runs in its own file system,
/// kept across restarts of the container; the fifth run stays up).
async fn pending_restarts_happen_once_after(name: &str, interruption: Interruption) {
    let Some(env) = env() else { return };
    let c = EtcdCluster::new(&env.etcd, &env.docker_host, name).unwrap();
    let store = c.store().await.unwrap();
    let one = c.start_scheduler("one").await.unwrap();
    let two = c.start_scheduler("two").await.unwrap();
    // The agent reaches `one` through a proxy, which can move it to `two`.
    let proxy = TcpProxy::start(one.addr("grpc")).await.unwrap();
    let urls = AgentUrls {
        scheduler: format!("https://localhost:{}", proxy.addr().port()),
        bootstrap: format!("https://localhost:{}", one.addr("bootstrap").port()),
    };
    let a = c.node("a");
    let _agent = c.start_agent_via(&one, &urls, &a, &env.docker_host).await.unwrap();
    c.wait_node(&store, &a, Duration::from_secs(20), ready).await;
    let api = c.api(&two).unwrap();
    let script = "n=$(cat /tmp/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/runs; \
                  [ $n -ge 5 ] && exec sleep 600; exit 1";
    let w = create(&api, "flaky", sh_spec(&env.image, script, 2, 0)).await.unwrap();
    let pending = |w: &pb::Workload| {
        let instances = w.status.as_ref().map_or(&[][..], |s| &s.instances[..]);
        instances.len() == 2
            && instances.iter().all(|i| {
                i.restart_count == 3 && i.restart_at.is_some() && persys_scheduler::model::is_terminal(i.phase)
            })
    };
    let waiting = c.wait_workload(&store, &w.id, Duration::from_secs(60), pending).await;
    let _one = match interruption {
        Interruption::Restart => c.restart_scheduler("one", one, &env.etcd).await.unwrap(),
        Interruption::MoveAgent => {
            proxy.redirect(two.addr("grpc"));
            one
        }
    };
    // The same instances run again (restarted in place, not replaced).
    let instances: BTreeSet<String> =
        waiting.status.iter().flat_map(|s| &s.instances).map(|i| i.instance_id.clone()).collect();

    let done = c
        .wait_workload(&store, &w.id, SETTLE, |w| {
            running(w) && placement(w).into_iter().map(|(_, i, _)| i).collect::<BTreeSet<_>>() == instances
        })
        .await;
    let counts: Vec<i32> = done.status.iter().flat_map(|s| &s.instances).map(|i| i.restart_count).collect();
    assert_eq!(counts, [4, 4], "one restart each after the interruption: {done:#?}");
    let invariants = c.invariants().await.unwrap();
    invariants.wait_ok(SETTLE).await;
    let containers = invariants.containers().await.unwrap();
    assert_eq!(containers.len(), 2, "{containers:?}");
    for container in &containers {
        let runs = std::process::Command::new("docker")
            .env("DOCKER_HOST", &env.docker_host)
            .args(["exec", &container.id, "cat", "/tmp/runs"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&runs.stdout).trim(), "5", "{} ran once per restart", container.id);
    }
    api.clone()
        .delete_workload(pb::DeleteWorkloadRequest { id: w.id, force: true, ..Default::default() })
        .await
        .unwrap();
}

/// SIGKILL the scheduler replica holding the agent while restarts wait out their backoff, and
/// start it again: see [`pending_restarts_happen_once_after`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_restart_survives_a_scheduler_restart_and_happens_once() {
    pending_restarts_happen_once_after("fbackoff", Interruption::Restart).await;
}

/// Move the agent to the other replica while restarts wait out their backoff (the first
/// replica, with its timers, keeps running): see [`pending_restarts_happen_once_after`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_restart_follows_its_agent_to_another_replica_and_happens_once() {
    pending_restarts_happen_once_after("fmove", Interruption::MoveAgent).await;
}

/// Restart the Docker engine (a private one) under a running agent: every container stops
/// with it; afterwards each replica runs again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_docker_engine_under_an_agent_leaves_each_replica_running_once() {
    let Some(env) = env() else { return };
    if let Some(why) = Dockerd::unavailable() {
        // Like a missing service (`require_env`): fatal under CI, skipped elsewhere.
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "this test needs a private Docker engine: {why}");
        eprintln!("SKIPPED: this test needs a private Docker engine: {why}");
        return;
    }
    let mut engine = Dockerd::start(&env.image).await.unwrap();
    let c = EtcdCluster::new(&env.etcd, &engine.host(), "fengine").unwrap();
    let store = c.store().await.unwrap();
    let scheduler = c.start_scheduler("one").await.unwrap();
    let a = c.node("a");
    let _agent = c.start_agent(&scheduler, &a).await.unwrap();
    c.wait_node(&store, &a, Duration::from_secs(20), ready).await;
    let api = c.api(&scheduler).unwrap();
    let packed = create(&api, "packed", sh_spec(&env.image, SLEEP, 2, 0)).await.unwrap();
    let single = create(&api, "single", sh_spec(&env.image, SLEEP, 1, 0)).await.unwrap();
    for w in [&packed, &single] {
        c.wait_workload(&store, &w.id, SETTLE, running).await;
    }
    let invariants = c.invariants().await.unwrap();
    invariants.wait_ok(SETTLE).await;
    let before: Vec<String> = invariants.containers().await.unwrap().into_iter().map(|x| x.id).collect();

    engine.restart().await.unwrap();
    // The agent sees its containers exit and the scheduler restarts them (policy Always).
    for w in [&packed, &single] {
        c.wait_workload(&store, &w.id, SETTLE, |w| {
            running(w) && w.status.iter().flat_map(|s| &s.instances).all(|i| i.restart_count >= 1)
        })
        .await;
    }
    invariants.wait_ok(SETTLE).await;
    for w in [&packed, &single] {
        let w = store.workload(&w.id).await.unwrap().unwrap();
        let counts: Vec<i32> = w.status.iter().flat_map(|s| &s.instances).map(|i| i.restart_count).collect();
        assert!(counts.iter().all(|n| *n == 1), "one restart per instance: {w:#?}");
    }
    let after = invariants.containers().await.unwrap();
    assert_eq!(after.iter().filter(|x| x.running).count(), 3, "{after:?}");
    assert!(after.iter().all(|x| before.contains(&x.id)), "restarted in place: {before:?} → {after:?}");
    let node = store.node(&a).await.unwrap().unwrap();
    assert_eq!(node.state(), NodeState::Ready);
}
