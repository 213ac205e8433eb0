//! `persys.scheduler.v1.NodeCommandService`: host commands and container actions (ChatOps)
//! relayed down a node's agent stream. Only the metrics pipeline may call it (see
//! [`crate::grpc::policy`]): it serves them to users, decides who may, and keeps the history.
//! The agent applies its own policy (allow-list, shell, timeout) whatever the caller allowed.
//!
//! Like logs and exec, a relay never holds up the agent's stream: a reader that falls behind
//! is cut (see [`crate::agents`]).

use std::sync::Arc;

use persys_kit::ApiError;
use persys_proto::scheduler::v1::{
    self as pb, CommandResult, connect_response::Payload, node_command_service_server::NodeCommandService,
    run_container_action_response, run_host_command_response,
};
use tonic::{Request, Response, Status};

use super::nodes::Watch;
use crate::{
    agents::{Call, Reply},
    kv::Kv,
    sched::Scheduler,
};

/// Serves the node command relay.
pub struct NodeCommandApi<K> {
    sched: Arc<Scheduler<K>>,
}

impl<K> NodeCommandApi<K> {
    /// Returns the service.
    pub fn new(sched: Arc<Scheduler<K>>) -> Self {
        Self { sched }
    }
}

impl<K: Kv> NodeCommandApi<K> {
    /// Sends `payload` to `node`'s agent: NOT_FOUND for a node that does not exist,
    /// UNAVAILABLE when it has no stream on this replica.
    async fn call(&self, node: &str, payload: Payload) -> Result<Call, ApiError> {
        if node.is_empty() {
            return Err(ApiError::invalid("node_id", "required"));
        }
        self.sched.get_node(node).await?;
        if !self.sched.agents.connected(node) {
            return Err(ApiError::Unavailable(format!(
                "node `{node}` is not connected to this scheduler replica (down, or connected to another); retry"
            )));
        }
        self.sched.agents.call(node, payload).await.map_err(|e| ApiError::Unavailable(e.to_string()))
    }
}

/// The status a failed command ends its relay with, by the agent's reason: the code says what
/// the reason said, so the message is the agent's own sentence; a reason without a code of its
/// own stays in front of the message.
pub fn status_of(result: &CommandResult) -> Status {
    let message = result.message.clone();
    match result.reason.as_str() {
        "NotAllowed" => Status::permission_denied(message),
        "ManagedByPersys" | "DriverUnavailable" | "StartFailed" => Status::failed_precondition(message),
        "ContainerNotFound" => Status::not_found(message),
        "InvalidArgument" => Status::invalid_argument(message),
        "Canceled" => Status::cancelled(message),
        _ => Status::unavailable(format!("{}: {}", result.reason, result.message)),
    }
}

#[tonic::async_trait]
impl<K: Kv> NodeCommandService for NodeCommandApi<K> {
    type RunHostCommandStream = Watch<pb::RunHostCommandResponse>;

    async fn run_host_command(
        &self,
        request: Request<pb::RunHostCommandRequest>,
    ) -> Result<Response<Self::RunHostCommandStream>, Status> {
        let r = request.into_inner();
        let command = r.command.ok_or_else(|| ApiError::invalid("command", "required"))?;
        let mut call = self.call(&r.node_id, Payload::HostCommand(command)).await?;
        let node = r.node_id;
        let out = async_stream::stream! {
            use run_host_command_response::Payload as Out;
            while let Some(reply) = call.next().await {
                match reply {
                    Reply::Chunk(chunk) => yield Ok(pb::RunHostCommandResponse { payload: chunk.chunk.map(Out::Output) }),
                    Reply::Done(result) => {
                        match result {
                            CommandResult { success: true, exit: Some(exit), .. } => yield Ok(pb::RunHostCommandResponse { payload: Some(Out::Exit(exit)) }),
                            result => yield Err(status_of(&result)),
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
            yield Err(Status::unavailable(format!("node `{node}` disconnected while the command ran")));
        };
        Ok(Response::new(Box::pin(out)))
    }

    type RunContainerActionStream = Watch<pb::RunContainerActionResponse>;

    async fn run_container_action(
        &self,
        request: Request<pb::RunContainerActionRequest>,
    ) -> Result<Response<Self::RunContainerActionStream>, Status> {
        let r = request.into_inner();
        let action = r.action.ok_or_else(|| ApiError::invalid("action", "required"))?;
        let mut call = self.call(&r.node_id, Payload::ContainerAction(action)).await?;
        let node = r.node_id;
        let out = async_stream::stream! {
            use run_container_action_response::Payload as Out;
            while let Some(reply) = call.next().await {
                match reply {
                    Reply::Chunk(chunk) => yield Ok(pb::RunContainerActionResponse { payload: chunk.chunk.map(Out::Output) }),
                    Reply::Done(result) => {
                        match result {
                            CommandResult { success: true, container: Some(c), .. } => yield Ok(pb::RunContainerActionResponse { payload: Some(Out::Result(c)) }),
                            result => yield Err(status_of(&result)),
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
            yield Err(Status::unavailable(format!("node `{node}` disconnected during the container action")));
        };
        Ok(Response::new(Box::pin(out)))
    }
}
