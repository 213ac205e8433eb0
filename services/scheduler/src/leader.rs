//! Leader election on the store: the leader holds a key attached to its lease. Losing the
//! lease (death, partition) deletes the key and another replica takes over within the TTL.
//!
//! What is published is the leader's term: the revision at which it wrote the key. Writes
//! only the leader may make carry it as a guard (the key still at that revision), so a
//! replica that was deposed while paused or cut off cannot land one (see
//! `Scheduler::leader_fence`).

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use tokio::sync::watch;

use crate::kv::{Cmp, Event, Kv, Op, Revision};

/// Campaigns forever as `replica` on `key`, publishing this replica's term while it leads.
pub async fn campaign<K: Kv>(
    kv: Arc<K>,
    key: String,
    replica: String,
    ttl: Duration,
    leader: watch::Sender<Option<Revision>>,
    shutdown: persys_kit::shutdown::Shutdown,
) {
    loop {
        if shutdown.is_triggered() {
            leader.send_replace(None);
            return;
        }
        match lead_once(&kv, &key, &replica, ttl, &leader, &shutdown).await {
            Ok(()) => {}
            Err(error) => tracing::warn!(%error, "leader election round failed"),
        }
        leader.send_replace(None);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}

async fn lead_once<K: Kv>(
    kv: &Arc<K>,
    key: &str,
    replica: &str,
    ttl: Duration,
    leader: &watch::Sender<Option<Revision>>,
    shutdown: &persys_kit::shutdown::Shutdown,
) -> Result<(), crate::kv::KvError> {
    let lease = kv.grant(ttl).await?;
    let won = kv
        .txn(
            vec![Cmp::ModRevision(key.to_owned(), 0)],
            vec![Op::Put { key: key.to_owned(), value: replica.as_bytes().to_vec(), lease: Some(lease) }],
        )
        .await?;
    if !won.succeeded {
        kv.revoke(lease).await?;
        // Wait for the current leader's key to go away, then run again.
        let current = kv.get(key).await?;
        let Some(current) = current else { return Ok(()) };
        let mut watch = kv.watch(key, current.mod_revision + 1).await?;
        tokio::select! {
            _ = async {
                while let Some(batch) = watch.next().await {
                    match batch {
                        Ok(events) if events.iter().any(|e| matches!(e, Event::Delete { .. })) => return,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            } => {}
            _ = shutdown.clone().wait() => {}
        }
        return Ok(());
    }
    tracing::info!(%replica, "elected leader");
    leader.send_replace(Some(won.revision));
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(error) = kv.keep_alive(lease).await {
                    tracing::warn!(%error, "lost the leader lease");
                    return Err(error);
                }
            }
            _ = shutdown.clone().wait() => {
                leader.send_replace(None);
                // Step down at once so another replica takes over without waiting for the TTL.
                let _ = kv.revoke(lease).await;
                return Ok(());
            }
        }
    }
}
