//! The local admin API (`persys.agent.v1.AgentAdminService`), plaintext on a loopback address
//! only: who the agent is, how its stream and certificate are, and what runs here.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use persys_kit::{
    server::{ServerOptions, base_routes, serve},
    shutdown::Shutdown,
};
use persys_proto::{
    agent::v1::{
        Connection as PbConnection, ConnectionState, GetStatusRequest, GetStatusResponse, ListLocalWorkloadsRequest,
        ListLocalWorkloadsResponse, LocalInstance,
        agent_admin_service_server::{AgentAdminService, AgentAdminServiceServer},
    },
    common::v1::PageResponse,
};
use tonic::{Request, Response, Status};

use crate::{
    commands::Drivers,
    error::AgentError,
    session::{Connection, Session},
    state::StateDir,
};

/// The admin service's view of the agent.
pub struct Admin {
    node_id: String,
    scheduler: String,
    state: StateDir,
    started: Instant,
    connection: Arc<Mutex<Connection>>,
    drivers: Arc<Drivers>,
    allocatable: Option<persys_proto::common::v1::ResourceQuantities>,
}

impl Admin {
    /// Returns the service for a running agent.
    pub fn new(node_id: &str, scheduler: &str, state: &StateDir, session: &Session, drivers: &Arc<Drivers>) -> Self {
        Self {
            node_id: node_id.to_owned(),
            scheduler: scheduler.to_owned(),
            state: state.clone(),
            started: Instant::now(),
            connection: session.connection(),
            drivers: drivers.clone(),
            allocatable: None,
        }
    }
}

#[tonic::async_trait]
impl AgentAdminService for Admin {
    async fn get_status(&self, _: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let c = self.connection.lock().expect("connection lock").clone();
        let state = if c.connected {
            ConnectionState::Connected
        } else if c.attempts > 0 {
            ConnectionState::BackingOff
        } else {
            ConnectionState::Connecting
        };
        let validity = self.state.validity().ok();
        let (drivers, drivers_message) = self.drivers.available().await;
        Ok(Response::new(GetStatusResponse {
            node_id: self.node_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            uptime: prost_types::Duration::try_from(self.started.elapsed()).ok(),
            scheduler: Some(PbConnection {
                endpoint: self.scheduler.clone(),
                state: state as i32,
                connected_since: c.connected_since.map(Into::into),
                last_error: c.last_error,
                attempts: c.attempts as i32,
            }),
            metrics_pipeline: Some(PbConnection { state: ConnectionState::Disabled as i32, ..Default::default() }),
            last_heartbeat_sent: c.last_heartbeat.map(Into::into),
            certificate_expires_at: validity.map(|v| v.not_after.into()),
            certificate_renew_after: validity.map(|v| v.renew_after().into()),
            drivers,
            drivers_message,
            container_runtime_version: self.drivers.docker.as_ref().map(|d| d.version()).unwrap_or_default(),
            state_dir: self.state.path().display().to_string(),
            allocatable: self.allocatable,
        }))
    }

    async fn list_local_workloads(
        &self,
        request: Request<ListLocalWorkloadsRequest>,
    ) -> Result<Response<ListLocalWorkloadsResponse>, Status> {
        let page = request.into_inner().page.unwrap_or_default();
        let size = if page.page_size <= 0 { 100 } else { page.page_size.min(1000) } as usize;
        let mut all: Vec<LocalInstance> = self
            .drivers
            .inventory()
            .await
            .into_iter()
            .filter_map(|e| {
                let status = e.status?;
                Some(LocalInstance {
                    workload_id: e.workload_id,
                    workload_name: String::new(),
                    image: String::new(),
                    status: Some(status),
                    pending_removal: false,
                })
            })
            .collect();
        all.sort_by(|a, b| id(a).cmp(id(b)));
        let total = all.len() as i64;
        let rest: Vec<_> = all.into_iter().filter(|i| id(i) > page.page_token.as_str()).collect();
        let next = if rest.len() > size { rest.get(size - 1).map(|i| id(i).to_owned()) } else { None };
        let instances: Vec<_> = rest.into_iter().take(size).collect();
        Ok(Response::new(ListLocalWorkloadsResponse {
            instances,
            page: Some(PageResponse { next_page_token: next.unwrap_or_default(), total_size: Some(total) }),
        }))
    }
}

fn id(i: &LocalInstance) -> &str {
    i.status.as_ref().map(|s| s.instance_id.as_str()).unwrap_or_default()
}

/// Serves the admin API on `addr` (loopback) until shutdown; returns the bound address.
pub async fn spawn(addr: SocketAddr, admin: Admin, shutdown: Shutdown) -> Result<SocketAddr, AgentError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AgentError::StateDir { path: addr.to_string().into(), source })?;
    let bound =
        listener.local_addr().map_err(|source| AgentError::StateDir { path: addr.to_string().into(), source })?;
    let (routes, health) = base_routes(&[])?;
    health.serving::<AgentAdminServiceServer<Admin>>().await;
    let routes = routes.add_service(AgentAdminServiceServer::new(admin));
    tokio::spawn(async move {
        if let Err(error) = serve(listener, routes, ServerOptions::default(), Some(health), shutdown).await {
            tracing::error!(%error, "admin api stopped");
        }
    });
    Ok(bound)
}
