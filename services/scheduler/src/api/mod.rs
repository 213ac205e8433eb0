//! The scheduler's gRPC services.

pub mod admission;
pub mod agent;
pub mod bootstrap;
pub mod node_commands;
pub mod nodes;
pub mod service;
pub mod tokens;
pub mod workloads;

use persys_kit::{ApiError, Caller, Identity, UserClaims, identity::Role};
use tonic::Request;

/// Returns the user a call acts for (as vouched for by the gateway).
pub fn user<T>(request: &Request<T>) -> Result<UserClaims, ApiError> {
    let caller = Caller::of(request).ok_or_else(|| ApiError::Unauthenticated("no verified caller".into()))?;
    caller.user().cloned()
}

/// The user a call acts for, or, for the metrics pipeline's own certificate without a user
/// (it follows workloads to record rollouts), a reader of every workload. Only paths the
/// policy opens to `metrics` get this far with its identity.
pub fn user_or_pipeline<T>(request: &Request<T>) -> Result<UserClaims, ApiError> {
    let caller = Caller::of(request).ok_or_else(|| ApiError::Unauthenticated("no verified caller".into()))?;
    match (&caller.identity, &caller.user) {
        (Identity::Service(s), None) if s == "metrics" => {
            Ok(UserClaims { id: "service:metrics".into(), name: "metrics".into(), role: Role::Viewer })
        }
        _ => caller.user().cloned(),
    }
}

/// Requires the admin role.
pub fn require_admin(user: &UserClaims) -> Result<(), ApiError> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "`{}` is a {}; this call needs an admin",
            user.name,
            user.role.as_str()
        )))
    }
}

/// Requires a role that may change things (member or admin).
pub fn require_writer(user: &UserClaims) -> Result<(), ApiError> {
    if user.role == Role::Viewer {
        Err(ApiError::PermissionDenied(format!("`{}` is a viewer and can only read", user.name)))
    } else {
        Ok(())
    }
}

/// Returns the agent node a call comes from.
pub fn agent_node<T>(request: &Request<T>) -> Result<String, ApiError> {
    match Caller::of(request).map(|c| &c.identity) {
        Some(Identity::Agent(node)) => Ok(node.clone()),
        Some(other) => Err(ApiError::PermissionDenied(format!("{other} is not an agent"))),
        None => Err(ApiError::Unauthenticated("present the node certificate (mTLS)".into())),
    }
}

/// Refuses a node certificate that belongs to another join than the node's record: the
/// machine was deleted and the name joined again, or the key of a deleted node is being
/// reused. Records from before join ids existed accept any certificate of their node.
/// `presented` is the join the peer's certificate names ([`persys_kit::identity::peer_join_id`]).
pub fn check_join(node: &persys_proto::scheduler::v1::Node, presented: Option<&str>) -> Result<(), ApiError> {
    if node.join_id.is_empty() || presented == Some(node.join_id.as_str()) {
        return Ok(());
    }
    tracing::warn!(node = %node.id, "certificate of an earlier join refused");
    Err(ApiError::PermissionDenied(format!(
        "this certificate belongs to an earlier join of node `{}`, which was deleted; join the cluster again",
        node.id
    )))
}

/// Label prefix reserved for the scheduler (well-known labels) and join tokens.
pub const RESERVED_LABEL_PREFIX: &str = "persys.io/";

/// Converts a protobuf duration, or returns `default`.
pub fn duration_or(d: Option<&prost_types::Duration>, default: std::time::Duration) -> std::time::Duration {
    d.and_then(|d| std::time::Duration::try_from(*d).ok()).unwrap_or(default)
}
