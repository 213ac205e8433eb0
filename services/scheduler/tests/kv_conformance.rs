//! One suite for both stores: every case runs on the embedded store and on a real etcd
//! (`PERSYS_TEST_ETCD_ENDPOINTS`, started by scripts/test), each under its own key prefix.

use std::time::Duration;

use futures::StreamExt;
use persys_scheduler::kv::{Cmp, Event, Kv, KvError, MAX_TXN_OPS, Op, etcd::EtcdKv, mem::MemKv};

fn prefix() -> String {
    format!("/t/{}/", uuid::Uuid::new_v4().simple())
}

async fn put_get_and_range_stay_inside_their_prefix<K: Kv>(kv: &K) {
    let p = prefix();
    let other = prefix();
    kv.txn(vec![], vec![Op::put(format!("{p}b"), b"2".to_vec()), Op::put(format!("{p}a"), b"1".to_vec())])
        .await
        .unwrap();
    kv.txn(vec![], vec![Op::put(format!("{other}a"), b"x".to_vec())]).await.unwrap();
    let got = kv.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(got.value, b"1");
    let (entries, revision) = kv.range(&p).await.unwrap();
    let keys: Vec<_> = entries.iter().map(|e| e.key.strip_prefix(&p).unwrap().to_owned()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert!(revision >= got.mod_revision);
    assert!(kv.get(&format!("{p}missing")).await.unwrap().is_none());
    // A rewrite keeps the creation revision, so watchers can tell ADDED from MODIFIED.
    assert_eq!(got.create_revision, got.mod_revision);
    kv.txn(vec![], vec![Op::put(format!("{p}a"), b"1b".to_vec())]).await.unwrap();
    let again = kv.get(&format!("{p}a")).await.unwrap().unwrap();
    assert_eq!(again.create_revision, got.create_revision);
    assert!(again.mod_revision > got.mod_revision);
}

async fn guarded_transactions_apply_only_when_revisions_match<K: Kv>(kv: &K) {
    let p = prefix();
    let key = format!("{p}k");
    // Revision 0 means "absent": create-if-missing.
    let created = kv.txn(vec![Cmp::ModRevision(key.clone(), 0)], vec![Op::put(&key, b"v1".to_vec())]).await.unwrap();
    assert!(created.succeeded);
    let again = kv.txn(vec![Cmp::ModRevision(key.clone(), 0)], vec![Op::put(&key, b"v2".to_vec())]).await.unwrap();
    assert!(!again.succeeded);
    let current = kv.get(&key).await.unwrap().unwrap();
    assert_eq!(current.value, b"v1");
    let stale = current.mod_revision - 1;
    assert!(
        !kv.txn(vec![Cmp::ModRevision(key.clone(), stale)], vec![Op::Delete(key.clone())]).await.unwrap().succeeded
    );
    let ok =
        kv.txn(vec![Cmp::ModRevision(key.clone(), current.mod_revision)], vec![Op::Delete(key.clone())]).await.unwrap();
    assert!(ok.succeeded);
    assert!(kv.get(&key).await.unwrap().is_none());
}

async fn concurrent_compare_and_set_loses_no_update<K: Kv + Clone>(kv: &K) {
    let p = prefix();
    let key = format!("{p}counter");
    kv.txn(vec![], vec![Op::put(&key, b"0".to_vec())]).await.unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let kv = kv.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut wins = 0;
                while wins < 10 {
                    let cur = kv.get(&key).await.unwrap().unwrap();
                    let n: u32 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                    let next = (n + 1).to_string().into_bytes();
                    if kv
                        .txn(vec![Cmp::ModRevision(key.clone(), cur.mod_revision)], vec![Op::put(&key, next)])
                        .await
                        .unwrap()
                        .succeeded
                    {
                        wins += 1;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(kv.get(&key).await.unwrap().unwrap().value, b"40");
}

async fn leases_expire_and_take_their_keys<K: Kv>(kv: &K) {
    let p = prefix();
    let key = format!("{p}alive");
    let lease = kv.grant(Duration::from_secs(1)).await.unwrap();
    let (_, start) = kv.range(&p).await.unwrap();
    kv.txn(vec![], vec![Op::Put { key: key.clone(), value: b"1".to_vec(), lease: Some(lease) }]).await.unwrap();
    assert_eq!(kv.get(&key).await.unwrap().unwrap().lease, lease);
    let mut watch = kv.watch(&p, start + 1).await.unwrap();
    let deleted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(batch) = watch.next().await {
            if batch.unwrap().iter().any(|e| matches!(e, Event::Delete { key: k, .. } if *k == key)) {
                return true;
            }
        }
        false
    })
    .await
    .expect("lease expired within 30 s");
    assert!(deleted);
    assert!(kv.get(&key).await.unwrap().is_none());
    let renewed = kv.keep_alive(lease).await;
    assert!(matches!(renewed, Err(KvError::LeaseNotFound(_))), "{renewed:?}");
}

async fn revoking_a_lease_deletes_its_keys<K: Kv>(kv: &K) {
    let p = prefix();
    let lease = kv.grant(Duration::from_secs(60)).await.unwrap();
    kv.keep_alive(lease).await.unwrap();
    for k in ["x", "y"] {
        kv.txn(vec![], vec![Op::Put { key: format!("{p}{k}"), value: vec![1], lease: Some(lease) }]).await.unwrap();
    }
    kv.revoke(lease).await.unwrap();
    assert!(kv.range(&p).await.unwrap().0.is_empty());
}

async fn watches_replay_from_a_revision_then_follow<K: Kv>(kv: &K) {
    let p = prefix();
    let first = kv.txn(vec![], vec![Op::put(format!("{p}1"), b"a".to_vec())]).await.unwrap().revision;
    kv.txn(vec![], vec![Op::put(format!("{p}2"), b"b".to_vec())]).await.unwrap();
    kv.txn(vec![], vec![Op::Delete(format!("{p}1"))]).await.unwrap();
    let mut watch = kv.watch(&p, first).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        if seen.len() == 3 {
            kv.txn(vec![], vec![Op::put(format!("{p}3"), b"c".to_vec())]).await.unwrap();
        }
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("event").unwrap().unwrap();
        for e in batch {
            seen.push(match e {
                Event::Put(en) => format!("put {}", en.key.strip_prefix(&p).unwrap()),
                Event::Delete { key, .. } => format!("delete {}", key.strip_prefix(&p).unwrap()),
            });
        }
    }
    assert_eq!(seen, ["put 1", "put 2", "delete 1", "put 3"]);
}

/// Watches started while another task writes (from the revision a range just read) see every
/// later change once, in order, and nothing from before their start revision.
async fn watches_started_while_writing_see_each_change_once<K: Kv + Clone + 'static>(kv: &K) {
    const N: usize = 300;
    let p = prefix();
    let writer = {
        let (kv, p) = (kv.clone(), p.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..N {
                last = kv.txn(vec![], vec![Op::put(format!("{p}{i:04}"), vec![1])]).await.unwrap().revision;
                tokio::task::yield_now().await;
            }
            last
        })
    };
    let mut watches = Vec::new();
    while !writer.is_finished() && watches.len() < 100 {
        let (_, revision) = kv.range(&p).await.unwrap();
        watches.push((revision + 1, kv.watch(&p, revision + 1).await.unwrap()));
        tokio::task::yield_now().await;
    }
    let last = writer.await.unwrap();
    assert!(watches.len() > 1, "the writer was too quick to watch it");
    for (from, mut watch) in watches.into_iter().filter(|(from, _)| *from <= last) {
        let mut seen: Vec<usize> = Vec::new();
        while seen.last() != Some(&(N - 1)) {
            let batch = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .unwrap_or_else(|_| panic!("watch from {from} stalled after {seen:?}"))
                .expect("watch open")
                .expect("no watch error");
            for e in batch {
                assert!(e.revision() >= from, "watch from {from} got revision {}", e.revision());
                seen.push(e.key().strip_prefix(&p).unwrap().parse().unwrap());
            }
        }
        let first = seen[0];
        assert_eq!(seen, (first..N).collect::<Vec<_>>(), "watch from {from}: each change once, in order");
    }
}

async fn a_transaction_may_not_write_a_key_twice<K: Kv>(kv: &K) {
    let p = prefix();
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let twice = kv.txn(vec![], vec![Op::put(&a, b"1".to_vec()), Op::put(&b, vec![]), Op::put(&a, b"2".to_vec())]).await;
    assert!(matches!(twice, Err(KvError::Refused(ref m)) if m.contains("duplicate key")), "{twice:?}");
    let put_and_delete = kv.txn(vec![], vec![Op::put(&a, b"1".to_vec()), Op::Delete(a.clone())]).await;
    assert!(matches!(put_and_delete, Err(KvError::Refused(_))), "{put_and_delete:?}");
    // Nothing of a refused transaction is applied.
    assert!(kv.range(&p).await.unwrap().0.is_empty());
    // Deleting the same key twice is allowed (etcd only refuses a put overlapping another write).
    kv.txn(vec![], vec![Op::put(&a, b"1".to_vec())]).await.unwrap();
    let deletes = kv.txn(vec![], vec![Op::Delete(a.clone()), Op::Delete(a.clone())]).await.unwrap();
    assert!(deletes.succeeded);
    assert!(kv.get(&a).await.unwrap().is_none());
}

async fn a_transaction_carries_at_most_128_operations<K: Kv>(kv: &K) {
    let p = prefix();
    let puts = |n: usize| (0..n).map(|i| Op::put(format!("{p}{i:03}"), vec![1])).collect::<Vec<_>>();
    let over = kv.txn(vec![], puts(MAX_TXN_OPS + 1)).await;
    assert!(matches!(over, Err(KvError::Refused(ref m)) if m.contains("too many operations")), "{over:?}");
    assert!(kv.range(&p).await.unwrap().0.is_empty());
    let guards = (0..=MAX_TXN_OPS).map(|i| Cmp::ModRevision(format!("{p}{i:03}"), 0)).collect::<Vec<_>>();
    let over = kv.txn(guards, puts(1)).await;
    assert!(matches!(over, Err(KvError::Refused(_))), "{over:?}");
    let guards = (0..MAX_TXN_OPS).map(|i| Cmp::ModRevision(format!("{p}{i:03}"), 0)).collect::<Vec<_>>();
    assert!(kv.txn(guards, puts(MAX_TXN_OPS)).await.unwrap().succeeded);
    assert_eq!(kv.range(&p).await.unwrap().0.len(), MAX_TXN_OPS);
}

async fn a_transaction_that_changes_nothing_keeps_the_revision<K: Kv>(kv: &K) {
    let p = prefix();
    let key = format!("{p}k");
    kv.txn(vec![], vec![Op::put(&key, b"v".to_vec())]).await.unwrap();
    let noops: [(Vec<Cmp>, Vec<Op>); 3] = [
        (vec![], vec![Op::Delete(format!("{p}absent"))]),
        // A guard that fails (the key exists).
        (vec![Cmp::ModRevision(key.clone(), 0)], vec![Op::Delete(key.clone())]),
        (vec![], vec![]),
    ];
    for (cmps, ops) in noops {
        // etcd's revision is shared with every other test: retry until no one else wrote
        // between the two reads around the transaction.
        let mut quiet = false;
        for _ in 0..50 {
            let (_, before) = kv.range(&p).await.unwrap();
            let outcome = kv.txn(cmps.clone(), ops.clone()).await.unwrap();
            let (_, after) = kv.range(&p).await.unwrap();
            if after == before {
                assert_eq!(outcome.revision, before);
                quiet = true;
                break;
            }
        }
        assert!(quiet, "the revision moved around every attempt of {ops:?}");
    }
    assert_eq!(kv.get(&key).await.unwrap().unwrap().value, b"v");
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&MemKv::new()).await;
                }
            )*
        }
        mod durable {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case(&MemKv::open(&dir.path().join("state.redb")).unwrap()).await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(endpoints) = persys_kit::testing::require_env("PERSYS_TEST_ETCD_ENDPOINTS", "an etcd server") else {
                        return;
                    };
                    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
                    super::$case(&EtcdKv::connect(&endpoints).await.expect("etcd")).await;
                }
            )*
        }
    };
}

conformance!(
    put_get_and_range_stay_inside_their_prefix,
    guarded_transactions_apply_only_when_revisions_match,
    concurrent_compare_and_set_loses_no_update,
    leases_expire_and_take_their_keys,
    revoking_a_lease_deletes_its_keys,
    watches_replay_from_a_revision_then_follow,
    watches_started_while_writing_see_each_change_once,
    a_transaction_may_not_write_a_key_twice,
    a_transaction_carries_at_most_128_operations,
    a_transaction_that_changes_nothing_keeps_the_revision,
);

/// The durable store after a restart: every key with its revisions and lease, the revision
/// counter and the lease ids go on where they were; leases come back with their full TTL and
/// still take their keys when they lapse; history before the restart is compacted.
#[tokio::test]
async fn the_durable_store_comes_back_as_it_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let (before, lease, revision) = {
        let kv = MemKv::open(&path).unwrap();
        kv.txn(vec![], vec![Op::put("/w/a", b"1".to_vec()), Op::put("/w/b", b"2".to_vec())]).await.unwrap();
        kv.txn(vec![], vec![Op::put("/w/a", b"1b".to_vec()), Op::Delete("/w/b".into())]).await.unwrap();
        let lease = kv.grant(Duration::from_secs(2)).await.unwrap();
        let out = kv
            .txn(vec![], vec![Op::Put { key: "/n/node-1".into(), value: b"up".to_vec(), lease: Some(lease) }])
            .await
            .unwrap();
        let (before, _) = kv.range("/").await.unwrap();
        (before, lease, out.revision)
    };
    // Reopened (the first store is dropped: its file is closed).
    let kv = MemKv::open(&path).unwrap();
    let (after, now) = kv.range("/").await.unwrap();
    assert_eq!(after, before, "the same entries, revisions and lease");
    assert_eq!(now, revision);
    assert!(after.iter().all(|e| e.key != "/w/b"), "a deletion is durable too");
    // History before the restart is gone: a watch from it lists again.
    match kv.watch("/w/", revision - 1).await {
        Err(KvError::Compacted { oldest, .. }) => assert_eq!(oldest, revision + 1),
        other => panic!("expected Compacted, got {:?}", other.map(|_| ())),
    }
    // New writes go on from there; a new lease gets a new id.
    let next = kv.txn(vec![], vec![Op::put("/w/c", b"3".to_vec())]).await.unwrap();
    assert_eq!(next.revision, revision + 1);
    assert!(kv.grant(Duration::from_secs(60)).await.unwrap() > lease);
    // The old lease lives on with its full TTL, kept alive by its holder, and then lapses.
    kv.keep_alive(lease).await.unwrap();
    let mut watch = kv.watch("/n/", 0).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(&gone[0], Event::Delete { key, .. } if key == "/n/node-1"), "{gone:?}");
    drop(kv);
    let kv = MemKv::open(&path).unwrap();
    assert!(kv.get("/n/node-1").await.unwrap().is_none(), "the lapse was committed");
    assert_eq!(kv.get("/w/c").await.unwrap().unwrap().value, b"3");
}
