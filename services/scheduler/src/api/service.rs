//! `persys.scheduler.v1.SchedulerService`: the user-facing API, reached through the gateway.

use std::sync::Arc;

use persys_kit::{ApiError, identity::Role};
use persys_proto::{
    common::v1::WatchEventType,
    scheduler::v1::{self as pb, connect_response::Payload, scheduler_service_server::SchedulerService},
};
use tonic::{Request, Response, Status};

use super::{
    admission::Admission,
    nodes::{Watch, watch_prefix},
    require_writer, user,
    workloads::{redact, visible},
};
use crate::{agents::Reply, kv::Kv, model, sched::Scheduler};

/// Serves the scheduler API.
pub struct SchedulerApi<K> {
    sched: Arc<Scheduler<K>>,
    admission: Admission,
}

impl<K> SchedulerApi<K> {
    /// Returns the service, with the strictest admission policy (no named networks).
    pub fn new(sched: Arc<Scheduler<K>>) -> Self {
        Self { sched, admission: Admission::default() }
    }

    /// Sets what workload specs may ask of nodes.
    pub fn with_admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }
}

fn node_stub(id: &str) -> pb::Node {
    pb::Node { id: id.to_owned(), ..Default::default() }
}

fn workload_stub(id: &str) -> pb::Workload {
    pb::Workload { id: id.to_owned(), ..Default::default() }
}

impl<K: Kv> SchedulerApi<K> {
    /// Returns the instance of a workload's replica and checks its node is reachable here.
    async fn instance(
        &self,
        user: &persys_kit::UserClaims,
        id: &str,
        replica: i32,
    ) -> Result<pb::InstanceStatus, ApiError> {
        let w = self.sched.get_workload(user, id).await?;
        let inst =
            w.status.iter().flat_map(|s| &s.instances).find(|i| i.replica_index == replica).cloned().ok_or_else(
                || ApiError::NotFound(format!("replica {replica} of workload `{id}` (is it placed yet?)")),
            )?;
        if !self.sched.agents.connected(&inst.node_id) {
            return Err(ApiError::Unavailable(format!(
                "node `{}` of replica {replica} is not connected to this scheduler replica; retry",
                inst.node_id
            )));
        }
        Ok(inst)
    }
}

#[tonic::async_trait]
impl<K: Kv> SchedulerService for SchedulerApi<K> {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_workload(
        &self,
        request: Request<pb::CreateWorkloadRequest>,
    ) -> Result<Response<pb::CreateWorkloadResponse>, Status> {
        let user = user(&request)?;
        let workload = self.sched.create_workload(&user, request.into_inner(), &self.admission).await?;
        Ok(Response::new(pb::CreateWorkloadResponse { workload: Some(workload) }))
    }

    async fn get_workload(
        &self,
        request: Request<pb::GetWorkloadRequest>,
    ) -> Result<Response<pb::GetWorkloadResponse>, Status> {
        let user = user(&request)?;
        let w = self.sched.get_workload(&user, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetWorkloadResponse { workload: Some(redact(w)) }))
    }

    async fn list_workloads(
        &self,
        request: Request<pb::ListWorkloadsRequest>,
    ) -> Result<Response<pb::ListWorkloadsResponse>, Status> {
        let user = user(&request)?;
        Ok(Response::new(self.sched.list_workloads(&user, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn stop_workload(
        &self,
        request: Request<pb::StopWorkloadRequest>,
    ) -> Result<Response<pb::StopWorkloadResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        let w = self.sched.stop_workload(&user, &r.id, r.expected_revision).await?;
        Ok(Response::new(pb::StopWorkloadResponse { workload: Some(w) }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn start_workload(
        &self,
        request: Request<pb::StartWorkloadRequest>,
    ) -> Result<Response<pb::StartWorkloadResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        let w = self.sched.start_workload(&user, &r.id, r.expected_revision).await?;
        Ok(Response::new(pb::StartWorkloadResponse { workload: Some(w) }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn restart_workload(
        &self,
        request: Request<pb::RestartWorkloadRequest>,
    ) -> Result<Response<pb::RestartWorkloadResponse>, Status> {
        let user = user(&request)?;
        super::require_writer(&user)?;
        let r = request.into_inner();
        let w = self.sched.restart_workload(&user, &r.id, r.expected_revision, r.grace_period).await?;
        Ok(Response::new(pb::RestartWorkloadResponse { workload: Some(w) }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn delete_workload(
        &self,
        request: Request<pb::DeleteWorkloadRequest>,
    ) -> Result<Response<pb::DeleteWorkloadResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        self.sched.delete_workload(&user, &r.id, r.force, r.expected_revision).await?;
        Ok(Response::new(pb::DeleteWorkloadResponse {}))
    }

    type WatchWorkloadsStream = Watch<pb::WatchWorkloadsResponse>;

    async fn watch_workloads(
        &self,
        request: Request<pb::WatchWorkloadsRequest>,
    ) -> Result<Response<Self::WatchWorkloadsStream>, Status> {
        let user = super::user_or_pipeline(&request)?;
        let r = request.into_inner();
        if !r.owner_id.is_empty() && user.role == Role::Member && r.owner_id != user.id {
            return Err(ApiError::PermissionDenied("members can watch only their own workloads".into()).into());
        }
        let keep = move |w: &pb::Workload| {
            visible(&user, w)
                && (r.workload_id.is_empty() || w.id == r.workload_id)
                && (r.owner_id.is_empty() || w.owner_id == r.owner_id)
                && (r.node_id.is_empty() || super::nodes::runs_on(w, &r.node_id))
        };
        let stream = watch_prefix(
            self.sched.store.kv(),
            self.sched.keys().workloads(),
            r.since_revision,
            |e| model::decode_workload(e).map(redact),
            workload_stub,
            keep,
            |t: WatchEventType, w, revision| pb::WatchWorkloadsResponse { r#type: t as i32, workload: w, revision },
        )
        .await?;
        Ok(Response::new(stream))
    }

    type StreamLogsStream = Watch<pb::StreamLogsResponse>;

    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        let inst = self.instance(&user, &r.workload_id, r.replica_index).await?;
        let fetch = Payload::Logs(pb::FetchLogs {
            instance_id: inst.instance_id.clone(),
            tail_lines: r.tail_lines,
            since: r.since,
            follow: r.follow,
        });
        let mut call =
            self.sched.agents.call(&inst.node_id, fetch).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let instance_id = inst.instance_id;
        let out = async_stream::stream! {
            while let Some(reply) = call.next().await {
                match reply {
                    Reply::Chunk(chunk) => yield Ok(pb::StreamLogsResponse { chunk: chunk.chunk, instance_id: instance_id.clone() }),
                    Reply::Done(result) if result.success => return,
                    Reply::Done(result) => {
                        yield Err(Status::unavailable(format!("logs failed on the node: {} {}", result.reason, result.message)));
                        return;
                    }
                    Reply::Progress(_) => {}
                    Reply::Cut(status) => {
                        yield Err(status);
                        return;
                    }
                }
            }
            yield Err(Status::unavailable("the node disconnected while sending logs"));
        };
        Ok(Response::new(Box::pin(out)))
    }

    type ExecWorkloadStream = Watch<pb::ExecWorkloadResponse>;

    async fn exec_workload(
        &self,
        request: Request<pb::ExecWorkloadRequest>,
    ) -> Result<Response<Self::ExecWorkloadStream>, Status> {
        let user = user(&request)?;
        // Members run commands in their own workloads only: `instance` answers NOT_FOUND for
        // the workloads of others, as every other call does.
        require_writer(&user)?;
        let r = request.into_inner();
        if r.command.is_empty() {
            return Err(ApiError::invalid("command", "required, e.g. [\"sh\", \"-c\", \"id\"]").into());
        }
        let inst = self.instance(&user, &r.workload_id, r.replica_index).await?;
        tracing::info!(audit = true, user = %user.name, workload = %r.workload_id, instance = %inst.instance_id, command = ?r.command, "exec");
        let exec = Payload::Exec(pb::ExecInstance {
            instance_id: inst.instance_id.clone(),
            command: r.command,
            timeout: r.timeout.or(prost_types::Duration::try_from(std::time::Duration::from_secs(60)).ok()),
            env: r.env,
            working_dir: r.working_dir,
            stdin: r.stdin,
        });
        let mut call =
            self.sched.agents.call(&inst.node_id, exec).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
        let out = async_stream::stream! {
            while let Some(reply) = call.next().await {
                match reply {
                    Reply::Chunk(chunk) => yield Ok(pb::ExecWorkloadResponse { payload: chunk.chunk.map(pb::exec_workload_response::Payload::Output) }),
                    Reply::Done(result) => {
                        match result.exit {
                            Some(exit) => yield Ok(pb::ExecWorkloadResponse { payload: Some(pb::exec_workload_response::Payload::Exit(exit)) }),
                            None => yield Err(Status::unavailable(format!("exec failed on the node: {} {}", result.reason, result.message))),
                        }
                        return;
                    }
                    Reply::Progress(_) => {}
                    Reply::Cut(status) => {
                        yield Err(status);
                        return;
                    }
                }
            }
            yield Err(Status::unavailable("the node disconnected during exec"));
        };
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_node(&self, request: Request<pb::GetNodeRequest>) -> Result<Response<pb::GetNodeResponse>, Status> {
        user(&request)?;
        let node = self.sched.get_node(&request.get_ref().id).await?;
        Ok(Response::new(pb::GetNodeResponse { node: Some(node) }))
    }

    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        user(&request)?;
        let r = request.into_inner();
        let (nodes, revision) = self.sched.store.nodes().await.map_err(ApiError::from)?;
        let selector = r.label_selector.unwrap_or_default();
        let nodes: Vec<pb::Node> = nodes
            .into_iter()
            .filter(|n| r.states.is_empty() || r.states.contains(&n.state))
            .filter(|n| r.owner_id.is_empty() || n.owner_id == r.owner_id)
            .filter(|n| selector.match_labels.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
            .collect();
        let (nodes, page) = super::nodes::page(nodes, r.page.as_ref(), |n| n.id.clone())?;
        Ok(Response::new(pb::ListNodesResponse { nodes, page, revision }))
    }

    type WatchNodesStream = Watch<pb::WatchNodesResponse>;

    async fn watch_nodes(
        &self,
        request: Request<pb::WatchNodesRequest>,
    ) -> Result<Response<Self::WatchNodesStream>, Status> {
        user(&request)?;
        let stream = watch_prefix(
            self.sched.store.kv(),
            self.sched.keys().nodes(),
            request.get_ref().since_revision,
            model::decode_node,
            node_stub,
            |_| true,
            |t: WatchEventType, node, revision| pb::WatchNodesResponse { r#type: t as i32, node, revision },
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn cordon_node(
        &self,
        request: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::CordonNodeResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        let node = self.sched.set_cordon(&user, &r.id, true, &r.reason).await?;
        Ok(Response::new(pb::CordonNodeResponse { node: Some(node) }))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        let (node, workload_ids) = self.sched.drain(&user, &r.id, &r.reason).await?;
        Ok(Response::new(pb::DrainNodeResponse { node: Some(node), workload_ids }))
    }

    async fn uncordon_node(
        &self,
        request: Request<pb::UncordonNodeRequest>,
    ) -> Result<Response<pb::UncordonNodeResponse>, Status> {
        let user = user(&request)?;
        let node = self.sched.set_cordon(&user, &request.get_ref().id, false, "").await?;
        self.sched.kick.notify_one();
        Ok(Response::new(pb::UncordonNodeResponse { node: Some(node) }))
    }

    async fn delete_node(
        &self,
        request: Request<pb::DeleteNodeRequest>,
    ) -> Result<Response<pb::DeleteNodeResponse>, Status> {
        let user = user(&request)?;
        let r = request.into_inner();
        self.sched.delete_node(&user, &r.id, r.force).await?;
        Ok(Response::new(pb::DeleteNodeResponse {}))
    }

    async fn create_join_token(
        &self,
        request: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::CreateJoinTokenResponse>, Status> {
        let user = user(&request)?;
        Ok(Response::new(self.sched.create_token(&user, request.into_inner()).await?))
    }

    async fn list_join_tokens(
        &self,
        request: Request<pb::ListJoinTokensRequest>,
    ) -> Result<Response<pb::ListJoinTokensResponse>, Status> {
        let user = user(&request)?;
        Ok(Response::new(self.sched.list_tokens(&user, request.into_inner()).await?))
    }

    async fn revoke_join_token(
        &self,
        request: Request<pb::RevokeJoinTokenRequest>,
    ) -> Result<Response<pb::RevokeJoinTokenResponse>, Status> {
        let user = user(&request)?;
        self.sched.revoke_token(&user, request.into_inner()).await?;
        Ok(Response::new(pb::RevokeJoinTokenResponse {}))
    }
}
