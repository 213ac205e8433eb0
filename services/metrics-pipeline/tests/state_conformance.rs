//! Conformance of the pipeline's other state on both backends ([`common::backends`]): rules,
//! alerts and silences, the notification outbox, DORA deployments (insert, previous, list,
//! the worker's claim and finish, DevLake id claims, the four keys on a fixed history) and the
//! command history.

mod common;

use std::sync::Arc;

use persys_metrics_pipeline::{
    clock::timestamp,
    dora::{
        keys::{self, Scope},
        store::{Deployments, Filter},
    },
    notify::{self, Queued, Settled},
    store::{HOUR_MS, Store},
};
use persys_proto::metrics::v1::{
    Alert, AlertRule, AlertSeverity, AlertState, CommandRecord, Deployment, DeploymentCommit, DeploymentEnvironment,
    DeploymentStatus, DevlakePush, DevlakePushState, NotificationChannel, NotificationChannelType, Silence,
};

/// Monday 2026-11-02 00:00 UTC.
const T: i64 = 1_793_577_600_000;
const DAY: i64 = 24 * HOUR_MS;

fn alert(id: &str, node: &str, state: AlertState, severity: AlertSeverity) -> Alert {
    Alert {
        id: id.into(),
        rule_id: "r1".into(),
        node_id: node.into(),
        state: state as i32,
        severity: severity as i32,
        message: format!("{id} on {node}"),
        ..Alert::default()
    }
}

fn webhook() -> NotificationChannel {
    NotificationChannel {
        r#type: NotificationChannelType::Webhook as i32,
        target: "http://127.0.0.1:9/hook".into(),
        ..NotificationChannel::default()
    }
}

fn firing() -> Vec<Queued> {
    vec![Queued { transition: "firing".into(), channel: 0, spec: webhook() }]
}

async fn rules_alerts_and_silences_round_trip(store: Arc<Store>) {
    let r1 = AlertRule { id: "r1".into(), name: "cpu".into(), threshold: 90.0, ..AlertRule::default() };
    let r2 = AlertRule { id: "r2".into(), name: "disk".into(), ..AlertRule::default() };
    store.put_rule(&r1, T).await.unwrap();
    store.put_rule(&r2, T + 1).await.unwrap();
    let r1b = AlertRule { threshold: 95.0, ..r1.clone() };
    store.put_rule(&r1b, T + 2).await.unwrap();
    assert_eq!(store.rules().await.unwrap(), vec![r1b, r2.clone()], "replaced in place, oldest first");
    assert!(store.delete_rule("r2").await.unwrap());
    assert!(!store.delete_rule("r2").await.unwrap());

    let a1 = alert("a1", "node-a", AlertState::Firing, AlertSeverity::Critical);
    let a2 = alert("a2", "node-b", AlertState::Pending, AlertSeverity::Warning);
    let a3 = alert("a3", "node-a", AlertState::Resolved, AlertSeverity::Critical);
    store.put_alert(&a1, "node-a", true, T + 10, &firing()).await.unwrap();
    store.put_alert(&a2, "node-b", true, T + 20, &[]).await.unwrap();
    store.put_alert(&a3, "node-a/old", false, T + 30, &[]).await.unwrap();
    // One open alert per rule and subject.
    let twin = alert("a4", "node-a", AlertState::Pending, AlertSeverity::Info);
    assert!(store.put_alert(&twin, "node-a", true, T + 40, &[]).await.is_err());
    assert_eq!(store.alert("a4").await.unwrap(), None, "the refused alert left nothing");

    let ids = |v: Vec<Alert>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(store.alerts(false, "", "", &[], 0, 0, 10).await.unwrap()), ["a3", "a2", "a1"]);
    assert_eq!(ids(store.alerts(true, "", "", &[], 0, 0, 10).await.unwrap()), ["a2", "a1"]);
    assert_eq!(ids(store.alerts(false, "node-a", "", &[], 0, 0, 10).await.unwrap()), ["a3", "a1"]);
    assert_eq!(ids(store.alerts(false, "", "r9", &[], 0, 0, 10).await.unwrap()), Vec::<String>::new());
    let open = [AlertState::Firing as i16, AlertState::Pending as i16];
    assert_eq!(ids(store.alerts(false, "", "", &open, 0, 0, 10).await.unwrap()), ["a2", "a1"]);
    let critical = AlertSeverity::Critical as i16;
    assert_eq!(ids(store.alerts(false, "", "", &[], critical, 0, 10).await.unwrap()), ["a3", "a1"]);
    assert_eq!(ids(store.alerts(false, "", "", &[], 0, 1, 1).await.unwrap()), ["a2"], "offset 1, limit 1");
    assert_eq!(store.alert("a1").await.unwrap(), Some(a1.clone()));
    store.delete_alert("a2").await.unwrap();
    assert_eq!(store.alert("a2").await.unwrap(), None);

    let silence =
        |id: &str, created: i64| Silence { id: id.into(), comment: format!("{id} at {created}"), ..Silence::default() };
    let (s1, s2) = (silence("s1", T), silence("s2", T + 1));
    store.put_silence(&s1, T, T + HOUR_MS, T).await.unwrap();
    store.put_silence(&s2, T, T + 2 * HOUR_MS, T + 1).await.unwrap();
    let ids = |v: Vec<Silence>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.silences(false, T + HOUR_MS).await.unwrap()), ["s2"], "s1 ended");
    assert_eq!(ids(store.silences(true, T + HOUR_MS).await.unwrap()), ["s2", "s1"], "newest first");
    // Extended: in force again.
    let s1b = Silence { comment: "extended".into(), ..s1 };
    store.put_silence(&s1b, T, T + 3 * HOUR_MS, T).await.unwrap();
    assert_eq!(ids(store.silences(false, T + HOUR_MS).await.unwrap()), ["s2", "s1"]);
    assert_eq!(store.silence("s1").await.unwrap(), Some(s1b));
    assert_eq!(store.silence("s9").await.unwrap(), None);
}

async fn the_outbox_is_queued_once_claimed_with_a_lease_and_settled(store: Arc<Store>) {
    let db = store.db();
    let a1 = alert("a1", "node-a", AlertState::Firing, AlertSeverity::Critical);
    store.put_alert(&a1, "node-a", true, T, &firing()).await.unwrap();
    assert!(notify::firing_queued(db, "a1").await.unwrap());
    assert!(!notify::firing_queued(db, "a2").await.unwrap());
    // Storing the same transition again queues nothing new.
    store.put_alert(&a1, "node-a", true, T + 1, &firing()).await.unwrap();
    assert_eq!(notify::next_due(db).await.unwrap(), Some(T));

    assert!(notify::claim_due(db, T - 1, T + 1_000, 10).await.unwrap().is_empty(), "not due yet");
    let claimed = notify::claim_due(db, T, T + 30_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "queued once");
    let c = &claimed[0];
    assert_eq!((c.alert_id.as_str(), c.transition.as_str(), c.attempts), ("a1", "firing", 1));
    assert_eq!((c.spec.clone(), c.alert.clone(), c.created_ms), (webhook(), a1.clone(), T));
    // Leased: nobody else takes it until the lease runs out (a crash mid-delivery).
    assert!(notify::claim_due(db, T + 29_999, T + 60_000, 10).await.unwrap().is_empty());
    let again = notify::claim_due(db, T + 30_000, T + 60_000, 10).await.unwrap();
    assert_eq!(again[0].attempts, 2);
    notify::settle(db, c.id, T + 30_001, Settled::Retry { due_ms: T + 90_000, error: "503".into() }).await.unwrap();
    assert_eq!(notify::next_due(db).await.unwrap(), Some(T + 90_000));
    assert!(notify::claim_due(db, T + 89_999, T + 120_000, 10).await.unwrap().is_empty());
    let third = notify::claim_due(db, T + 90_000, T + 120_000, 10).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    notify::settle(db, c.id, T + 90_001, Settled::Delivered).await.unwrap();
    assert_eq!(notify::next_due(db).await.unwrap(), None);
    assert!(notify::claim_due(db, T + DAY, T + DAY + 1, 10).await.unwrap().is_empty(), "delivered for good");

    // A resolution on two channels; one given up.
    let resolved = Alert { state: AlertState::Resolved as i32, ..a1 };
    let two = vec![
        Queued { transition: "resolved".into(), channel: 0, spec: webhook() },
        Queued { transition: "resolved".into(), channel: 1, spec: webhook() },
    ];
    store.put_alert(&resolved, "node-a", false, T + 100_000, &two).await.unwrap();
    let claimed = notify::claim_due(db, T + 100_000, T + 130_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "at most the limit");
    notify::settle(db, claimed[0].id, T + 100_001, Settled::Failed("410 Gone".into())).await.unwrap();
    let rest = notify::claim_due(db, T + 100_000, T + 130_000, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].id, claimed[0].id);
    notify::settle(db, rest[0].id, T + 100_002, Settled::Delivered).await.unwrap();
    assert_eq!(notify::next_due(db).await.unwrap(), None, "given up is settled too");
}

fn commit(sha: &str, authored_ms: i64) -> DeploymentCommit {
    DeploymentCommit {
        repo_url: "https://github.com/acme/ui".into(),
        sha: sha.into(),
        authored_at: Some(timestamp(authored_ms)),
        ..DeploymentCommit::default()
    }
}

fn deployment(id: &str, component: &str, env: DeploymentEnvironment, status: DeploymentStatus, at: i64) -> Deployment {
    Deployment {
        id: id.into(),
        devlake_id: format!("{component}:{id}"),
        application: format!("{component}-c1"),
        component: component.into(),
        cluster: "c1".into(),
        environment: env as i32,
        status: status as i32,
        revision: format!("{id}0000"),
        deployed_at: Some(timestamp(at)),
        ..Deployment::default()
    }
}

/// The history of `tests/dora.rs`'s hand-computed case, at the store: shop in production on
/// c1, with the commits each deployment delivered; plus a staging and another component's
/// deployment that must not count.
fn shop_history() -> Vec<(Deployment, Vec<DeploymentCommit>)> {
    use DeploymentEnvironment::{Production, Staging};
    use DeploymentStatus::{Failed, Success};
    let c = |s: &str| match s {
        "s1" => commit(s, T + DAY - 2 * HOUR_MS),
        "s2" => commit(s, T + 2 * DAY - 10 * HOUR_MS),
        "s3" => commit(s, T + 2 * DAY - 4 * HOUR_MS),
        "s4" => commit(s, T + 3 * DAY - HOUR_MS),
        "s5" => commit(s, T + 9 * DAY - 30 * HOUR_MS),
        _ => commit(s, T + 10 * DAY - HOUR_MS),
    };
    vec![
        (deployment("d1", "shop", Production, Success, T + DAY), vec![c("s1")]),
        (deployment("d2", "shop", Production, Success, T + 2 * DAY), vec![c("s2"), c("s3")]),
        (deployment("d3", "shop", Production, Failed, T + 3 * DAY), vec![c("s4")]),
        (deployment("d4", "shop", Production, Failed, T + 3 * DAY + 3 * HOUR_MS), vec![c("s4")]),
        (deployment("d5", "shop", Production, Success, T + 3 * DAY + 5 * HOUR_MS), vec![c("s4")]),
        (deployment("d6", "shop", Production, Success, T + 9 * DAY), vec![c("s5")]),
        (deployment("d7", "shop", Production, Failed, T + 10 * DAY), vec![c("s6")]),
        (deployment("st1", "shop", Staging, Failed, T + 4 * DAY), vec![c("s2")]),
        (deployment("ca1", "cart", Production, Failed, T + 4 * DAY), vec![c("s2")]),
    ]
}

async fn dora_deployments_claims_and_the_four_keys_on_a_fixed_history(store: Arc<Store>) {
    let deployments = Deployments::new(&store);
    for (d, _) in shop_history() {
        let (stored, new) = deployments.insert(&d, T).await.unwrap();
        assert!(new);
        assert_eq!(stored, d);
    }
    // Recorded again (another replica, a retried call): the stored one comes back, not new.
    let (d1, _) = &shop_history()[0];
    let changed = Deployment { revision: "other".into(), ..d1.clone() };
    assert_eq!(deployments.insert(&changed, T + 1).await.unwrap(), (d1.clone(), false));

    // The previous success of the same component, environment and cluster.
    let (d5, _) = &shop_history()[4];
    let prev = deployments.previous(d5, T + 3 * DAY + 5 * HOUR_MS, DeploymentStatus::Success as i32).await.unwrap();
    assert_eq!(prev.unwrap().id, "d2");
    assert_eq!(deployments.previous(d1, T + DAY, DeploymentStatus::Success as i32).await.unwrap(), None);

    // Lists: newest first, filtered, paged, with the total.
    let f =
        Filter { component: "shop".into(), environment: DeploymentEnvironment::Production as i32, ..Filter::default() };
    let (page, total) = deployments.list(&f, 1, 2).await.unwrap();
    assert_eq!(total, 7);
    assert_eq!(page.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["d6", "d5"]);
    let mine = Deployment {
        id: "mine".into(),
        owner_id: "u1".into(),
        ..deployment("x", "x", DeploymentEnvironment::Production, DeploymentStatus::Success, T)
    };
    deployments.insert(&mine, T).await.unwrap();
    let component = |c: &str, who: Option<&str>| Filter {
        component: c.into(),
        visible_to: who.map(String::from),
        ..Filter::default()
    };
    assert_eq!(deployments.list(&component("x", Some("u2")), 0, 10).await.unwrap().1, 0, "another member's rollout");
    assert_eq!(deployments.list(&component("x", Some("u1")), 0, 10).await.unwrap().1, 1);
    assert_eq!(deployments.list(&component("shop", Some("u2")), 0, 10).await.unwrap().1, 8, "no owner: visible");
    assert_eq!(deployments.list(&component("x", None), 0, 10).await.unwrap().1, 1);

    // The worker: every deployment is PENDING and due; a claim holds them for the lease.
    let claimed = deployments.claim(T, T + 60_000, 4).await.unwrap();
    assert_eq!(claimed.len(), 4);
    assert!(claimed.iter().all(|c| c.attempts == 1 && c.accepted.is_empty() && !c.resolved));
    let rest = deployments.claim(T, T + 60_000, 100).await.unwrap();
    assert_eq!(rest.len(), 6, "the others, not the leased ones");
    assert!(deployments.claim(T + 59_999, T + 120_000, 100).await.unwrap().is_empty());
    // Each resolved, with its commits; d1 sent.
    for (d, commits) in shop_history() {
        let push = DevlakePush { state: DevlakePushState::Sent as i32, ..DevlakePush::default() };
        let done = Deployment { commits, devlake: Some(push), ..d };
        let accepted = vec!["conn-1".to_owned(), "conn-2".to_owned()];
        deployments.finish(&done, T + DAY * 30, &accepted, true, done.id == "d1").await.unwrap();
    }
    let still = deployments.claim(T + 60_000, T + 120_000, 100).await.unwrap();
    assert_eq!(still.iter().map(|c| c.deployment.id.as_str()).collect::<Vec<_>>(), ["mine"], "the rest are sent");
    // A pending one keeps what DevLake accepted and its resolution across passes.
    let pending = DevlakePush { state: DevlakePushState::Pending as i32, ..DevlakePush::default() };
    let again = Deployment { devlake: Some(pending), ..shop_history()[6].0.clone() };
    deployments.finish(&again, T, &["conn-1".to_owned()], false, false).await.unwrap();
    let back = deployments.claim(T + 120_000, T + 180_000, 100).await.unwrap();
    let d7 = back.iter().find(|c| c.deployment.id == "d7").expect("d7 pending again");
    assert_eq!((d7.accepted.clone(), d7.resolved, d7.attempts), (vec!["conn-1".to_owned()], true, 2));

    // DevLake id claims: the first deployment holds the id; once sent the others skip it.
    assert_eq!(deployments.claim_devlake_id("shop:x", "d2").await.unwrap(), None);
    assert_eq!(deployments.claim_devlake_id("shop:x", "d2").await.unwrap(), None, "its own claim");
    assert_eq!(deployments.claim_devlake_id("shop:x", "d3").await.unwrap(), Some(("d2".into(), false)));
    deployments.devlake_id_sent("shop:x", "d2").await.unwrap();
    assert_eq!(deployments.claim_devlake_id("shop:x", "d3").await.unwrap(), Some(("d2".into(), true)));
    // A claim whose push failed for good is taken over.
    assert_eq!(deployments.claim_devlake_id("shop:y", "d4").await.unwrap(), None);
    let failed = Deployment {
        devlake: Some(DevlakePush { state: DevlakePushState::Failed as i32, ..DevlakePush::default() }),
        ..shop_history()[3].0.clone()
    };
    deployments.finish(&failed, T, &[], false, false).await.unwrap();
    assert_eq!(deployments.claim_devlake_id("shop:y", "d5").await.unwrap(), None, "taken over");
    // An admin retries the failed push.
    let (retried, changed) = deployments.retry("d4", T).await.unwrap().unwrap();
    assert!(changed);
    assert_eq!(retried.devlake.unwrap().state, DevlakePushState::Pending as i32);
    assert!(!deployments.retry("d4", T).await.unwrap().unwrap().1, "not failed any more");
    let mut revisions = deployments.revisions_in("c1").await.unwrap();
    revisions.sort();
    assert_eq!(revisions.len(), 10);

    // The four keys over two weeks.
    let scope = Scope {
        component: "shop",
        cluster: "",
        environment: DeploymentEnvironment::Production as i32,
        from_ms: T,
        to_ms: T + 14 * DAY,
        visible_to: None,
    };
    let m = keys::compute(store.db(), &scope, T + 14 * DAY).await.unwrap();
    common::assert_shop_keys(&m);
    let hidden = Scope { visible_to: Some("u2"), component: "x", ..scope };
    assert_eq!(keys::compute(store.db(), &hidden, T + 14 * DAY).await.unwrap().deployments_total, 0);
}

async fn the_command_history_pages_newest_first(store: Arc<Store>) {
    let history = persys_metrics_pipeline::commands::History::new(&store);
    let record = |id: &str, node: &str, user: &str, at: i64| CommandRecord {
        id: id.into(),
        node_id: node.into(),
        user_id: user.into(),
        command: format!("uptime #{id}"),
        started_at: Some(timestamp(at)),
        ..CommandRecord::default()
    };
    for (id, node, user, at) in
        [("c1", "n1", "u1", T), ("c2", "n2", "u1", T + 1), ("c3", "n1", "u2", T + 1), ("c4", "n1", "u1", T + 2)]
    {
        history.put(&record(id, node, user, at)).await.unwrap();
    }
    let done = CommandRecord { output_tail: "up 3 days".into(), ..record("c1", "n1", "u1", T) };
    history.put(&done).await.unwrap();
    assert_eq!(history.get("c1").await.unwrap(), Some(done));
    assert_eq!(history.get("c9").await.unwrap(), None);
    let ids = |v: Vec<CommandRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(history.list("", "", None, 10).await.unwrap()), ["c4", "c3", "c2", "c1"]);
    assert_eq!(ids(history.list("n1", "", None, 10).await.unwrap()), ["c4", "c3", "c1"]);
    assert_eq!(ids(history.list("", "u1", None, 10).await.unwrap()), ["c4", "c2", "c1"]);
    let first = history.list("", "", None, 2).await.unwrap();
    assert_eq!(ids(first), ["c4", "c3"]);
    assert_eq!(ids(history.list("", "", Some((T + 1, "c3".into())), 2).await.unwrap()), ["c2", "c1"]);
}

conformance!(
    rules_alerts_and_silences_round_trip,
    the_outbox_is_queued_once_claimed_with_a_lease_and_settled,
    dora_deployments_claims_and_the_four_keys_on_a_fixed_history,
    the_command_history_pages_newest_first,
);
