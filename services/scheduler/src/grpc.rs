//! The one place the scheduler's servers are assembled: the mTLS port (users through the
//! gateway, agents' streams, certificate renewal) and the bootstrap port (joins).

use std::sync::Arc;

use persys_kit::{
    identity::{AuthorizeLayer, Matcher, Policy},
    server::{Health, ServeError, base_routes},
};
use persys_proto::scheduler::v1::{
    agent_service_server::AgentServiceServer, bootstrap_service_server::BootstrapServiceServer,
    node_command_service_server::NodeCommandServiceServer, scheduler_service_server::SchedulerServiceServer,
};
use tonic::service::Routes;

use crate::{
    api::{
        admission::Admission, agent::AgentApi, bootstrap::BootstrapApi, node_commands::NodeCommandApi,
        service::SchedulerApi,
    },
    kv::Kv,
    sched::Scheduler,
};

/// Who may call what on the mTLS port.
pub fn policy() -> Policy {
    Policy::new()
        .allow("/persys.scheduler.v1.AgentService/", [Matcher::AnyAgent])
        .allow("/persys.scheduler.v1.BootstrapService/RenewCertificate", [Matcher::AnyAgent])
        .allow(
            "/persys.scheduler.v1.SchedulerService/",
            [Matcher::Service("gateway".into()), Matcher::Service("stack".into())],
        )
        // The metrics pipeline follows workloads (read-only) to record rollouts for DORA.
        .allow("/persys.scheduler.v1.SchedulerService/WatchWorkloads", [Matcher::Service("metrics".into())])
        // Host commands and container actions: only the pipeline, which checks who asks.
        .allow("/persys.scheduler.v1.NodeCommandService/", [Matcher::Service("metrics".into())])
}

/// Routes of the mTLS port.
pub fn routes<K: Kv>(
    sched: &Arc<Scheduler<K>>,
    admission: Admission,
    max_message: usize,
) -> Result<(Routes, Health, AuthorizeLayer), ServeError> {
    let (routes, health) = base_routes(&[])?;
    let routes = routes
        .add_service(
            SchedulerServiceServer::new(SchedulerApi::new(sched.clone()).with_admission(admission))
                .max_decoding_message_size(max_message),
        )
        .add_service(AgentServiceServer::new(AgentApi::new(sched.clone())).max_decoding_message_size(max_message))
        .add_service(
            NodeCommandServiceServer::new(NodeCommandApi::new(sched.clone())).max_decoding_message_size(max_message),
        )
        .add_service(
            BootstrapServiceServer::new(BootstrapApi::new(sched.clone())).max_decoding_message_size(max_message),
        );
    Ok((routes, health, AuthorizeLayer::new(policy())))
}

/// Routes of the bootstrap port: joining needs no client certificate.
pub fn bootstrap_routes<K: Kv>(sched: &Arc<Scheduler<K>>) -> Result<(Routes, Health), ServeError> {
    let (routes, health) = base_routes(&[])?;
    let routes = routes.add_service(
        BootstrapServiceServer::new(BootstrapApi::new(sched.clone())).max_decoding_message_size(64 * 1024),
    );
    Ok((routes, health))
}
