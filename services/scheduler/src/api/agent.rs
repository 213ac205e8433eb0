//! `persys.scheduler.v1.AgentService`: the one stream of each node.

use std::sync::Arc;

use persys_kit::ApiError;
use persys_proto::scheduler::v1::{
    ConnectRequest, ConnectResponse, NodeState, Welcome, agent_service_server::AgentService, connect_request,
    connect_response::Payload,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{agent_node, check_join};
use crate::{
    agents::Reply,
    kv::{Kv, KvError, LeaseId, Op},
    model::{add, at_most, now_ts},
    sched::Scheduler,
};

/// `state_reason` of a node back from Down until it has stopped what moved elsewhere.
const BACK_FROM_DOWN: &str = "back after being Down; stopping the instances that moved elsewhere";

/// How long a node back from Down has to confirm its removals before it stays NotReady.
const RECONCILE_CONFIRM: std::time::Duration = std::time::Duration::from_secs(60);

/// Serves agents' streams.
pub struct AgentApi<K> {
    sched: Arc<Scheduler<K>>,
}

impl<K> AgentApi<K> {
    /// Returns the service.
    pub fn new(sched: Arc<Scheduler<K>>) -> Self {
        Self { sched }
    }
}

async fn attach_liveness<K: Kv>(sched: &Scheduler<K>, node: &str) -> Result<LeaseId, KvError> {
    let lease = sched.store.kv().grant(sched.settings.lease_ttl).await?;
    sched
        .store
        .kv()
        .txn(vec![], vec![Op::Put { key: sched.keys().live(node), value: b"1".to_vec(), lease: Some(lease) }])
        .await?;
    Ok(lease)
}

#[tonic::async_trait]
impl<K: Kv> AgentService for AgentApi<K> {
    type ConnectStream = ReceiverStream<Result<ConnectResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn connect(
        &self,
        request: Request<Streaming<ConnectRequest>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let node_id = agent_node(&request)?;
        let presented_join = persys_kit::identity::peer_join_id(&request);
        let mut inbound = request.into_inner();
        let first =
            inbound.message().await?.ok_or_else(|| Status::invalid_argument("the stream ended before hello"))?;
        let Some(connect_request::Payload::Hello(hello)) = first.payload else {
            return Err(ApiError::invalid("payload", "the first message must be hello").into());
        };
        if hello.node_id != node_id {
            tracing::warn!(certificate = %node_id, claimed = %hello.node_id, "agent spoke for another node");
            return Err(ApiError::PermissionDenied(format!(
                "the certificate names node `{node_id}`; it cannot speak for node `{}`",
                hello.node_id
            ))
            .into());
        }
        let sched = self.sched.clone();
        let mut refused = None;
        let mut back_from_down = false;
        let updated = sched
            .store
            .update_node(&node_id, |n| {
                if let Err(e) = check_join(n, presented_join.as_deref()) {
                    refused = Some(e);
                    return false;
                }
                let old_alloc = n.allocatable.unwrap_or_default();
                let reserved = add(&old_alloc, &n.available.unwrap_or_default(), -1);
                // What the node had at join bounds what it may claim now.
                let ceiling = n.join_capacity.or(n.capacity);
                let capacity = hello.capacity.or(n.capacity).map(|c| at_most(&c, ceiling.as_ref()));
                let alloc = hello.allocatable.or(hello.capacity).map_or(old_alloc, |a| at_most(&a, ceiling.as_ref()));
                let clamped = hello.capacity.as_ref().is_some_and(|c| Some(c) != capacity.as_ref())
                    || hello.allocatable.or(hello.capacity).is_some_and(|a| a != alloc);
                n.available = Some(add(&alloc, &reserved, -1));
                n.allocatable = Some(alloc);
                n.capacity = capacity;
                n.info = hello.info.clone().or(n.info.clone());
                if !hello.addresses.is_empty() {
                    n.addresses = hello.addresses.clone();
                }
                n.drivers = hello.drivers.clone();
                // Labels are set at join (and by admins); an agent cannot add or change them.
                if hello.labels.iter().any(|(k, v)| n.labels.get(k) != Some(v)) {
                    tracing::warn!(node = %node_id, "labels in the agent's hello differ from the node's; ignored (join again to change them)");
                }
                // A node declared Down had its instances moved: it takes no work until it has
                // stopped them (see the reconcile below).
                back_from_down = n.state == NodeState::Down as i32;
                n.state = if back_from_down {
                    NodeState::NotReady
                } else if n.cordoned {
                    NodeState::Cordoned
                } else {
                    NodeState::Ready
                } as i32;
                n.state_reason = if back_from_down {
                    BACK_FROM_DOWN.into()
                } else if clamped {
                    tracing::warn!(node = %node_id, "the agent reported more resources than at join; clamped");
                    "connected; reported resources above those at join were clamped (join again if the machine grew)"
                        .into()
                } else {
                    "connected".into()
                };
                n.last_heartbeat = Some(now_ts());
                true
            })
            .await?;
        if let Some(e) = refused {
            return Err(e.into());
        }
        if updated.is_none() {
            return Err(
                ApiError::PermissionDenied(format!("node `{node_id}` was deleted; join the cluster again")).into()
            );
        }
        let mut lease = attach_liveness(&sched, &node_id).await.map_err(ApiError::from)?;
        if let (Some(zone), Some(node)) = (&sched.settings.dns_zone, &updated) {
            let key = crate::dns::node_key(zone, &node_id);
            crate::dns::set(sched.store.kv().as_ref(), key, node.addresses.first().map(String::as_str)).await;
        }
        let (tx, rx) = mpsc::channel(256);
        let session = sched.agents.register(&node_id, tx.clone());
        let welcome = ConnectResponse {
            command_id: String::new(),
            payload: Some(Payload::Welcome(Welcome {
                node_id: node_id.clone(),
                heartbeat_interval: prost_types::Duration::try_from(sched.settings.heartbeat).ok(),
                server_time: Some(now_ts()),
            })),
        };
        tx.send(Ok(welcome)).await.map_err(|_| Status::cancelled("agent went away"))?;
        tracing::info!(node = %node_id, instances = hello.instances.len(), "agent connected");
        {
            let sched = sched.clone();
            let node = node_id.clone();
            let instances = hello.instances.clone();
            tokio::spawn(async move {
                let confirm = back_from_down.then_some(RECONCILE_CONFIRM);
                match sched.reconcile_node(&node, instances, confirm).await {
                    Ok(0) if back_from_down => {
                        let ready = sched
                            .store
                            .update_node(&node, |n| {
                                if n.state != NodeState::NotReady as i32 || n.state_reason != BACK_FROM_DOWN {
                                    return false;
                                }
                                n.state = if n.cordoned { NodeState::Cordoned } else { NodeState::Ready } as i32;
                                n.state_reason = "connected; reconciled after being Down".into();
                                true
                            })
                            .await;
                        if let Err(error) = ready {
                            tracing::warn!(%node, %error, "marking a reconciled node Ready failed");
                        }
                        tracing::info!(%node, "node back from Down reconciled; Ready");
                    }
                    Ok(0) => {}
                    Ok(unconfirmed) => {
                        tracing::warn!(%node, unconfirmed, "node back from Down did not confirm every removal; it stays NotReady until it reconnects");
                    }
                    Err(error) => tracing::warn!(%node, %error, "reconciling a reconnected node failed"),
                }
            });
        }
        tokio::spawn(async move {
            // Heartbeats keep the lease alive on every beat, but touch the node record only now
            // and then: rewriting it each time would race placement's guarded writes for no gain.
            let persist_every = sched.settings.lease_ttl / 3;
            let mut persisted = tokio::time::Instant::now();
            loop {
                let message = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(node = %node_id, %status, "agent stream broke");
                        break;
                    }
                };
                match message.payload {
                    Some(connect_request::Payload::Heartbeat(_)) => {
                        let mut revived = false;
                        if let Err(KvError::LeaseNotFound(_)) = sched.store.kv().keep_alive(lease).await {
                            match attach_liveness(&sched, &node_id).await {
                                Ok(l) => {
                                    lease = l;
                                    revived = true;
                                }
                                Err(error) => tracing::warn!(node = %node_id, %error, "cannot renew liveness"),
                            }
                        }
                        if revived
                            && let Ok(Some(node)) = sched.store.node(&node_id).await
                            && node.state == NodeState::Down as i32
                        {
                            // Its instances were moved while it was away: have it reconnect and
                            // go through the reconcile of a node back from Down.
                            tracing::warn!(node = %node_id, "heartbeats resumed on a node declared Down; asking it to reconnect");
                            let _ = tx
                                .send(Err(Status::unavailable(
                                    "this node was declared Down while it was away; reconnect to reconcile",
                                )))
                                .await;
                            break;
                        }
                        if revived || persisted.elapsed() >= persist_every {
                            persisted = tokio::time::Instant::now();
                            let updated = sched
                                .store
                                .update_node(&node_id, |n| {
                                    n.last_heartbeat = Some(now_ts());
                                    if n.state == NodeState::NotReady as i32 && n.state_reason != BACK_FROM_DOWN {
                                        n.state =
                                            if n.cordoned { NodeState::Cordoned } else { NodeState::Ready } as i32;
                                        n.state_reason = "heartbeats resumed".into();
                                    }
                                    true
                                })
                                .await;
                            // A node declared lost had its record removed: back, it has one again.
                            if let (true, Some(zone), Ok(Some(node))) = (revived, &sched.settings.dns_zone, &updated) {
                                let key = crate::dns::node_key(zone, &node_id);
                                let address = node.addresses.first().map(String::as_str);
                                crate::dns::set(sched.store.kv().as_ref(), key, address).await;
                            }
                        }
                    }
                    Some(connect_request::Payload::WorkloadStatus(event)) => {
                        if let Err(error) = sched.on_status(&node_id, event).await {
                            tracing::warn!(node = %node_id, %error, "recording a status event failed");
                        }
                    }
                    Some(connect_request::Payload::CommandResult(result)) => {
                        let id = result.command_id.clone();
                        if !result.success {
                            tracing::info!(node = %node_id, command = %id, reason = %result.reason, message = %result.message, "command failed on the agent");
                        }
                        sched.agents.route(&node_id, &id, Reply::Done(result));
                    }
                    Some(connect_request::Payload::LogChunk(chunk)) => {
                        let id = chunk.command_id.clone();
                        sched.agents.route(&node_id, &id, Reply::Chunk(chunk));
                    }
                    Some(connect_request::Payload::ImagePullProgress(p)) => {
                        let id = p.command_id.clone();
                        if !sched.agents.route(&node_id, &id, Reply::Progress(p.clone())) {
                            // A pull for a run: show it on the instance, where `persys workload run
                            // --wait` and watches see it (agents send at most one a second).
                            if let Err(error) = sched.on_pull_progress(&node_id, &p).await {
                                tracing::debug!(%error, "recording pull progress failed");
                            }
                        }
                    }
                    Some(connect_request::Payload::Hello(_)) | None => {
                        tracing::warn!(node = %node_id, "unexpected message on an open stream ignored");
                    }
                }
            }
            sched.agents.unregister(&node_id, session);
            // The liveness lease runs out on its own (the node goes NotReady after its TTL
            // unless the agent reconnects); its keep-alive stream goes now.
            sched.store.kv().release(lease);
            tracing::info!(node = %node_id, "agent disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
