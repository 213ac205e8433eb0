//! Nodes: read by everyone, cordoned, drained and deleted by admins; and the shared helpers
//! for pages and resumable watches.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use persys_kit::{ApiError, UserClaims};
use persys_proto::{
    common::v1::{PageRequest, PageResponse, WatchEventType},
    scheduler::v1::{Node, NodeState, Workload, WorkloadPhase},
};
use tonic::Status;

use super::require_admin;
use crate::{
    kv::{Event, Kv, KvError, Revision},
    model::is_terminal,
    sched::Scheduler,
    store::Change,
};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Returns one page of `items` (sorted by `key`) after the request's token.
pub fn page<T>(
    mut items: Vec<T>,
    request: Option<&PageRequest>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<PageResponse>), ApiError> {
    items.sort_by_key(&key);
    let size = request.map_or(0, |p| p.page_size);
    if size < 0 {
        return Err(ApiError::invalid("page.page_size", "must not be negative"));
    }
    let size = if size == 0 { DEFAULT_PAGE } else { (size as usize).min(MAX_PAGE) };
    let total = items.len() as i64;
    let after = request.map(|p| p.page_token.as_str()).unwrap_or("");
    let mut rest: Vec<T> = items.into_iter().filter(|i| after.is_empty() || key(i).as_str() > after).collect();
    let next = if rest.len() > size {
        rest.truncate(size);
        rest.last().map(&key).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((rest, Some(PageResponse { next_page_token: next, total_size: Some(total) })))
}

/// A boxed stream of responses.
pub type Watch<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Streams a prefix: a snapshot (ADDED, then BOOKMARK) when `since` is 0, else the changes
/// after `since`. `decode` turns a put into an object, `gone` makes a stub for a deletion, and
/// `keep` filters (ownership, selectors): a deletion reaches only watchers whose `keep`
/// accepts the object's last value.
pub async fn watch_prefix<K: Kv, T: Clone + Send + 'static, R: Send + 'static>(
    kv: &std::sync::Arc<K>,
    prefix: String,
    since: Revision,
    decode: fn(&crate::kv::Entry) -> Option<T>,
    gone: fn(&str) -> T,
    keep: impl Fn(&T) -> bool + Send + Sync + 'static,
    respond: fn(WatchEventType, Option<T>, Revision) -> R,
) -> Result<Watch<R>, Status> {
    if since < 0 {
        return Err(ApiError::invalid("since_revision", "must not be negative").into());
    }
    let (snapshot, from) = if since == 0 {
        let (entries, rev) = kv.range(&prefix).await.map_err(ApiError::from)?;
        (Some((entries, rev)), rev + 1)
    } else {
        (None, since + 1)
    };
    let mut changes = kv.watch(&prefix, from).await.map_err(|e| match e {
        KvError::Compacted { .. } => {
            ApiError::FailedPrecondition(format!("{e}; list again and watch from its revision"))
        }
        other => other.into(),
    })?;
    let out = async_stream::stream! {
        if let Some((entries, rev)) = snapshot {
            for entry in &entries {
                if let Some(obj) = decode(entry)
                    && keep(&obj)
                {
                    yield Ok(respond(WatchEventType::Added, Some(obj), entry.mod_revision));
                }
            }
            yield Ok(respond(WatchEventType::Bookmark, None, rev));
        }
        while let Some(batch) = changes.next().await {
            match batch {
                Ok(events) => {
                    for event in events {
                        match event {
                            Event::Put(entry) => {
                                if let Some(obj) = decode(&entry)
                                    && keep(&obj)
                                {
                                    let kind = if entry.create_revision == entry.mod_revision {
                                        WatchEventType::Added
                                    } else {
                                        WatchEventType::Modified
                                    };
                                    yield Ok(respond(kind, Some(obj), entry.mod_revision));
                                }
                            }
                            Event::Delete { key, revision, prev } => {
                                // Only a watcher who could see the object learns that it went:
                                // judged on its last value (or, without one, on the bare stub,
                                // which only unfiltered watchers accept).
                                let obj = gone(crate::model::Keys::id_of(&key));
                                let last = prev.as_deref().and_then(decode);
                                if keep(last.as_ref().unwrap_or(&obj)) {
                                    yield Ok(respond(WatchEventType::Deleted, Some(obj), revision));
                                }
                            }
                        }
                    }
                }
                Err(KvError::Compacted { .. }) => {
                    yield Err(Status::out_of_range("the watch fell behind compaction; list again and watch from its revision"));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch interrupted");
                    yield Err(Status::unavailable("watch interrupted; resume from the last revision you saw"));
                    return;
                }
            }
        }
    };
    Ok(Box::pin(out))
}

impl<K: Kv> Scheduler<K> {
    /// Returns a node.
    pub async fn get_node(&self, id: &str) -> Result<Node, ApiError> {
        self.store.node(id).await?.ok_or_else(|| ApiError::NotFound(format!("node `{id}`")))
    }

    /// Cordons or uncordons a node.
    pub async fn set_cordon(&self, user: &UserClaims, id: &str, cordon: bool, reason: &str) -> Result<Node, ApiError> {
        require_admin(user)?;
        let node = self
            .store
            .update_node(id, |n| {
                n.cordoned = cordon;
                if cordon && n.state == NodeState::Ready as i32 {
                    n.state = NodeState::Cordoned as i32;
                } else if !cordon
                    && matches!(NodeState::try_from(n.state), Ok(NodeState::Cordoned | NodeState::Draining))
                {
                    n.state = NodeState::Ready as i32;
                }
                n.state_reason =
                    if cordon { format!("cordoned by {}: {reason}", user.name) } else { "uncordoned".into() };
                true
            })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node `{id}`")))?;
        tracing::info!(node = %id, cordon, by = %user.name, "node cordon changed");
        Ok(node)
    }

    /// Cordons a node and moves its workloads elsewhere: each live instance is removed there
    /// (whichever replica holds the node's connection) and, once its agent confirms, placed
    /// again (instances with restart policy Never are stopped for good).
    pub async fn drain(&self, user: &UserClaims, id: &str, reason: &str) -> Result<(Node, Vec<String>), ApiError> {
        require_admin(user)?;
        self.set_cordon(user, id, true, reason).await?;
        let node = self
            .store
            .update_node(id, |n| {
                n.state = NodeState::Draining as i32;
                n.state_reason = format!("draining ({}): {reason}", user.name);
                true
            })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("node `{id}`")))?;
        let (workloads, _) = self.store.workloads().await?;
        let mut moved = Vec::new();
        for w in workloads {
            let on_node: Vec<String> = w
                .status
                .iter()
                .flat_map(|s| &s.instances)
                .filter(|i| i.node_id == id && !is_terminal(i.phase))
                .map(|i| i.instance_id.clone())
                .collect();
            if on_node.is_empty() {
                continue;
            }
            // Marked, not dropped: the replica holding the node's connection sends the removal
            // (see `Scheduler::dispatch`), and each instance keeps its slot and reservation until
            // the agent confirms; its replacement is placed then.
            let updated = self
                .store
                .update_workload(&w.id, |w| {
                    let mut changed = false;
                    for i in w.status.iter_mut().flat_map(|s| s.instances.iter_mut()) {
                        if on_node.contains(&i.instance_id) && !i.removing {
                            i.removing = true;
                            i.reason = "Draining".into();
                            i.message = format!("node {id} is draining");
                            changed = true;
                        }
                    }
                    if !changed {
                        return Change::Keep;
                    }
                    crate::sched::record_event(
                        w,
                        persys_proto::common::v1::EventType::Normal,
                        "Drained",
                        format!("node {id} is draining; moving {}", on_node.join(", ")),
                    );
                    Change::Write(())
                })
                .await?;
            if let Some(fresh) = updated {
                self.dispatch(&fresh).await;
            }
            moved.push(w.id.clone());
        }
        self.kick.notify_one();
        Ok((node, moved))
    }

    /// Deletes a node record; refused while it still runs instances unless forced.
    pub async fn delete_node(&self, user: &UserClaims, id: &str, force: bool) -> Result<(), ApiError> {
        require_admin(user)?;
        let node = self.get_node(id).await?;
        if node.instance_count > 0 && !force {
            return Err(ApiError::FailedPrecondition(format!(
                "node `{id}` still runs {} instance(s): drain it first, or pass force",
                node.instance_count
            )));
        }
        if force {
            self.on_node_lost(id).await?;
        }
        self.store
            .kv()
            .txn(vec![], vec![crate::kv::Op::Delete(self.keys().node(id)), crate::kv::Op::Delete(self.keys().live(id))])
            .await?;
        let (workloads, _) = self.store.workloads().await?;
        self.forget_node_dns(id, &workloads).await;
        tracing::info!(node = %id, by = %user.name, "node deleted");
        Ok(())
    }
}

/// Returns whether a workload has a live instance on `node`.
pub fn runs_on(w: &Workload, node: &str) -> bool {
    w.status.iter().flat_map(|s| &s.instances).any(|i| i.node_id == node && i.phase != WorkloadPhase::Lost as i32)
}
