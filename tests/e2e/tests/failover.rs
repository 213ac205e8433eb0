//! Two real scheduler processes on one real etcd: SIGKILL the leader and the other takes over
//! within the lease TTL, and placement goes on (a real agent's workload runs).

use std::time::{Duration, Instant};

use futures::StreamExt;
use persys_client::testing::expect_workload;
use persys_e2e::replicas::{EtcdCluster, create, running, sh_spec};
use persys_kit::testing::require_env;
use persys_scheduler::kv::{Event, Kv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_hands_over_within_the_lease_ttl() {
    let Some(etcd) = require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server") else { return };
    let Some(docker_host) = require_env("DOCKER_HOST", "a Docker engine") else { return };
    let Some(image) = require_env("PERSYS_TEST_IMAGE", "a local test image") else { return };
    let c = EtcdCluster::new(&etcd, &docker_host, "failover").unwrap();
    let kv = c.kv().await.unwrap();
    let leader_key = format!("{}/leader", c.prefix);
    let (_, start_rev) = kv.range(&leader_key).await.unwrap();
    let mut leader_changes = kv.watch(&leader_key, start_rev + 1).await.unwrap();

    let one = c.start_scheduler("one").await.unwrap();
    // "one" campaigns first and wins.
    let first = tokio::time::timeout(Duration::from_secs(10), leader_changes.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&first[0], Event::Put(e) if e.value == b"one"), "{first:?}");
    let two = c.start_scheduler("two").await.unwrap();

    // A real agent streams to the replica that will survive.
    let api = c.api(&two).unwrap();
    let _agent = c.start_agent(&two, &c.node("a")).await.unwrap();

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
    let w = create(&api, "after-failover", sh_spec(&image, "exec sleep 600", 1, 0)).await.unwrap();
    expect_workload(&api, &w.id, Duration::from_secs(60), running).await;
    c.invariants().await.unwrap().wait_ok(Duration::from_secs(30)).await;
}
