//! Leader election on a real Lease of the test bench's kube-apiserver: one leader at a time,
//! hand-over on release, take-over after a vanished holder's Lease runs out.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use k8s_openapi::{api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use persys_kit::shutdown;
use persys_reconciler::leader::Elector;
use tokio::sync::watch;

async fn client() -> Option<Client> {
    let kubeconfig = persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")?;
    Some(persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap())
}

/// Work that records how many replicas run it at once, the most ever seen, and who runs it.
#[derive(Clone)]
struct Probe {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    who: watch::Sender<Option<String>>,
}

impl Probe {
    fn work(
        &self,
        me: &str,
    ) -> impl Fn(shutdown::Shutdown) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + use<> {
        let (probe, me) = (self.clone(), me.to_owned());
        move |stop| {
            let (probe, me) = (probe.clone(), me.clone());
            Box::pin(async move {
                let now = probe.running.fetch_add(1, Ordering::SeqCst) + 1;
                probe.most.fetch_max(now, Ordering::SeqCst);
                probe.who.send_replace(Some(me));
                stop.wait().await;
                probe.who.send_replace(None);
                probe.running.fetch_sub(1, Ordering::SeqCst);
            })
        }
    }
}

async fn leader_becomes(
    who: &mut watch::Receiver<Option<String>>,
    want: impl Fn(&Option<String>) -> bool,
) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(20), who.wait_for(|w| want(w))).await.expect("in time").unwrap().clone()
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_hand_over_on_release() {
    let Some(client) = client().await else { return };
    let lease = format!("election-{}", std::process::id());
    let (who_tx, mut who) = watch::channel(None);
    let probe = Probe { running: Arc::default(), most: Arc::default(), who: who_tx };
    let duration = Duration::from_secs(3);
    let a = Elector::new(client.clone(), "default", &lease, "replica-a", duration);
    let b = Elector::new(client.clone(), "default", &lease, "replica-b", duration);
    let (stop_a, a_stop) = shutdown::channel();
    let (stop_b, b_stop) = shutdown::channel();
    let run_a = tokio::spawn({
        let (a, work) = (a.clone(), probe.work("replica-a"));
        async move { a.run_while_leading(a_stop, work).await }
    });
    let run_b = tokio::spawn({
        let (b, work) = (b.clone(), probe.work("replica-b"));
        async move { b.run_while_leading(b_stop, work).await }
    });

    let first = leader_becomes(&mut who, Option::is_some).await.unwrap();
    // Several renewal rounds pass with the same single leader.
    let leases = Api::<Lease>::namespaced(client.clone(), "default");
    for _ in 0..3 {
        let before = leases.get(&lease).await.unwrap().spec.unwrap().renew_time;
        let mut renewed = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if leases.get(&lease).await.unwrap().spec.unwrap().renew_time != before {
                renewed = true;
                break;
            }
        }
        assert!(renewed, "the leader renews within a third of the duration");
        assert_eq!(who.borrow().as_deref(), Some(first.as_str()));
    }
    let spec = leases.get(&lease).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(first.as_str()));

    // The leader stops: it releases, and the other takes over without waiting for expiry.
    let (stop_leader, leader_run, other) =
        if first == "replica-a" { (stop_a, run_a, "replica-b") } else { (stop_b, run_b, "replica-a") };
    let released_at = std::time::Instant::now();
    stop_leader.trigger();
    leader_run.await.unwrap();
    let next = leader_becomes(&mut who, |w| w.as_deref() == Some(other)).await;
    assert_eq!(next.as_deref(), Some(other));
    assert!(released_at.elapsed() < duration, "hand-over took {:?}, not a wait for expiry", released_at.elapsed());
    assert_eq!(probe.most.load(Ordering::SeqCst), 1, "two replicas never ran the controllers at once");
    let spec = leases.get(&lease).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(other));
    assert_eq!(spec.lease_transitions, Some(1));
    leases.delete(&lease, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn a_vanished_holder_is_replaced_once_its_lease_runs_out() {
    let Some(client) = client().await else { return };
    let lease = format!("vanished-{}", std::process::id());
    let leases = Api::<Lease>::namespaced(client.clone(), "default");
    let ghost: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": lease},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": 2,
                 "renewTime": MicroTime(Timestamp::now()), "acquireTime": MicroTime(Timestamp::now())}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &ghost).await.unwrap();
    let a = Elector::new(client.clone(), "default", &lease, "replica-a", Duration::from_secs(2));
    assert!(!a.try_lead().await.unwrap(), "the ghost's Lease is still running");
    let started = std::time::Instant::now();
    let mut led = false;
    while started.elapsed() < Duration::from_secs(10) {
        if a.try_lead().await.unwrap() {
            led = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(led, "replica-a took over the expired Lease");
    assert!(started.elapsed() >= Duration::from_millis(1500), "not before the ghost's Lease ran out");
    let spec = leases.get(&lease).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.lease_transitions, Some(1));
    leases.delete(&lease, &DeleteParams::default()).await.unwrap();
}
