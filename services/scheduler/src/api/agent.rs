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

use super::agent_node;
use crate::{
    agents::Reply,
    kv::{Kv, KvError, LeaseId, Op},
    model::{add, now_ts},
    sched::Scheduler,
};

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
        let updated = sched
            .store
            .update_node(&node_id, |n| {
                let old_alloc = n.allocatable.unwrap_or_default();
                let reserved = add(&old_alloc, &n.available.unwrap_or_default(), -1);
                let alloc = hello.allocatable.or(hello.capacity).unwrap_or(old_alloc);
                n.available = Some(add(&alloc, &reserved, -1));
                n.allocatable = Some(alloc);
                n.capacity = hello.capacity.or(n.capacity);
                n.info = hello.info.clone().or(n.info.clone());
                if !hello.addresses.is_empty() {
                    n.addresses = hello.addresses.clone();
                }
                n.drivers = hello.drivers.clone();
                for (k, v) in &hello.labels {
                    // Labels set at join (from the token) win over the agent's own.
                    n.labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                n.state = if n.cordoned { NodeState::Cordoned } else { NodeState::Ready } as i32;
                n.state_reason = "connected".into();
                n.last_heartbeat = Some(now_ts());
                true
            })
            .await?;
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
                if let Err(error) = sched.reconcile_node(&node, instances).await {
                    tracing::warn!(%node, %error, "reconciling a reconnected node failed");
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
                        if revived || persisted.elapsed() >= persist_every {
                            persisted = tokio::time::Instant::now();
                            let updated = sched
                                .store
                                .update_node(&node_id, |n| {
                                    n.last_heartbeat = Some(now_ts());
                                    if n.state == NodeState::NotReady as i32 || n.state == NodeState::Down as i32 {
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
            tracing::info!(node = %node_id, "agent disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
