//! The scheduler's gRPC services.

pub mod admission;
pub mod agent;
pub mod bootstrap;
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

/// Converts a protobuf duration, or returns `default`.
pub fn duration_or(d: Option<&prost_types::Duration>, default: std::time::Duration) -> std::time::Duration {
    d.and_then(|d| std::time::Duration::try_from(*d).ok()).unwrap_or(default)
}
