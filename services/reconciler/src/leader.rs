//! Leader election: only the replica holding the Lease runs the controllers; every replica
//! serves the webhook. The decision is [`crate::decide::lease::decide`]; this module reads and
//! writes the Lease with optimistic concurrency and starts and stops the work.
//!
//! Clocks: a follower takes over when the holder's last renewal is older than the lease
//! duration by its own clock, so replicas' clocks must agree to well within that duration
//! (NTP does this). A leader that fails a renewal steps down at once, before its Lease could
//! run out, and releases the Lease on shutdown so a successor need not wait.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use persys_kit::shutdown::{self, Shutdown};

use crate::decide::lease::{Decision, LeaseView, decide};

/// One replica's side of the election.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
    duration: Duration,
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity.unwrap_or_default(),
        renewed: spec.renew_time.map(|t| t.0),
        duration_seconds: spec.lease_duration_seconds.unwrap_or(15),
    }
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    /// The elector of `me` for the Lease `namespace/name`, held for `duration` per renewal.
    pub fn new(client: Client, namespace: &str, name: &str, me: &str, duration: Duration) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.into(), me: me.into(), duration }
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.me
    }

    /// Reads the Lease and acquires or renews it when the decision says so; returns whether
    /// this replica holds it afterwards. Losing a race (409) is `Ok(false)`.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref().map(view).as_ref(), &self.me, now);
        if let Decision::Follow { .. } = decision {
            return Ok(false);
        }
        let previous = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let acquiring = decision == Decision::Acquire;
        let spec = LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: if acquiring { Some(MicroTime(now)) } else { previous.acquire_time.clone() },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0) + i32::from(acquiring && current.is_some()),
            ),
            ..LeaseSpec::default()
        };
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // The read's resourceVersion rides along: a concurrent write makes this a 409.
                lease.spec = Some(spec);
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if this replica holds it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.me.as_str()) {
            return Ok(());
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = None;
        }
        match self.api.replace(&lease.name_any(), &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` whenever this replica leads, until `stop`: tries to acquire every
    /// `duration / 3`; once leading, starts `work` with a shutdown of its own and renews at the
    /// same pace; a failed or lost renewal stops the work and goes back to trying. At `stop`,
    /// stops the work, waits for it and releases the Lease.
    pub async fn run_while_leading<F, Fut>(&self, stop: Shutdown, work: F)
    where
        F: Fn(Shutdown) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let pace = (self.duration / 3).max(Duration::from_millis(100));
        loop {
            // Follow until the Lease is ours.
            loop {
                if stop.is_triggered() {
                    return;
                }
                match self.try_lead().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "leader election: reading the Lease failed"),
                }
                tokio::select! {
                    _ = stop.clone().wait() => return,
                    _ = tokio::time::sleep(pace) => {}
                }
            }
            tracing::info!(identity = %self.me, lease = %self.name, "leading: controllers start");
            let (trigger, work_stop) = shutdown::channel();
            let task = tokio::spawn(work(work_stop));
            let stopping = loop {
                tokio::select! {
                    _ = stop.clone().wait() => break true,
                    _ = tokio::time::sleep(pace) => {}
                }
                match self.try_lead().await {
                    Ok(true) => continue,
                    Ok(false) => tracing::warn!(identity = %self.me, "leadership lost: controllers stop"),
                    Err(error) => tracing::warn!(%error, "renewing the Lease failed: stepping down"),
                }
                break false;
            };
            trigger.trigger();
            let _ = task.await;
            if stopping {
                if let Err(error) = self.release().await {
                    tracing::warn!(%error, "releasing the Lease failed; a successor waits for it to expire");
                }
                return;
            }
        }
    }
}
