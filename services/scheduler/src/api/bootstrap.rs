//! `persys.scheduler.v1.BootstrapService`: machines join with a token and a CSR, kubelet style,
//! and get a short-lived certificate that names their node and nothing else.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use persys_kit::{ApiError, Identity, pki::LeafRequest};
use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{
        JoinRequest, JoinResponse, Node, NodeState, RenewCertificateRequest, RenewCertificateResponse,
        bootstrap_service_server::BootstrapService,
    },
};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use super::{RESERVED_LABEL_PREFIX, agent_node, check_join};
use crate::{
    kv::{Cmp, Kv, Op},
    model::{StoredToken, now_ms, now_ts},
    sched::Scheduler,
};

const BAD_TOKEN: &str = "invalid join token: ask an admin for a new one (persys token create)";

/// Serves joins and certificate renewals.
pub struct BootstrapApi<K> {
    sched: Arc<Scheduler<K>>,
    /// Joins through this replica take turns on the token record, so a fleet joining with one
    /// token does not spin on compare-and-set; the guarded write still orders replicas.
    consuming: tokio::sync::Mutex<()>,
}

impl<K> BootstrapApi<K> {
    /// Returns the service.
    pub fn new(sched: Arc<Scheduler<K>>) -> Self {
        Self { sched, consuming: tokio::sync::Mutex::new(()) }
    }
}

fn sanitize(hostname: &str) -> String {
    let s: String = hostname
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(40)
        .collect();
    if s.is_empty() { "node".into() } else { s }
}

fn ts_after(d: Duration) -> prost_types::Timestamp {
    let t = std::time::SystemTime::now() + d;
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

impl<K: Kv> BootstrapApi<K> {
    /// Consumes one use of the token; the same error for every kind of bad token.
    async fn consume(&self, token: &str) -> Result<StoredToken, ApiError> {
        let (id, secret) = token.trim().split_once('.').ok_or_else(|| ApiError::Unauthenticated(BAD_TOKEN.into()))?;
        let key = self.sched.keys().token(id);
        let _turn = self.consuming.lock().await;
        for _ in 0..16 {
            let entry =
                self.sched.store.kv().get(&key).await?.ok_or_else(|| ApiError::Unauthenticated(BAD_TOKEN.into()))?;
            let mut stored: StoredToken = serde_json::from_slice(&entry.value).map_err(ApiError::internal)?;
            let hash = hex::encode(Sha256::digest(secret.as_bytes()));
            let equal = hash.len() == stored.secret_hash.len()
                && hash.bytes().zip(stored.secret_hash.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
            let now = now_ms();
            if !equal
                || stored.revoked_at != 0
                || (stored.expires_at != 0 && stored.expires_at <= now)
                || (stored.max_uses > 0 && stored.use_count >= stored.max_uses)
            {
                return Err(ApiError::Unauthenticated(BAD_TOKEN.into()));
            }
            stored.use_count += 1;
            let value = serde_json::to_vec(&stored).map_err(ApiError::internal)?;
            let outcome = self
                .sched
                .store
                .kv()
                .txn(vec![Cmp::ModRevision(key.clone(), entry.mod_revision)], vec![Op::put(&key, value)])
                .await?;
            if outcome.succeeded {
                return Ok(stored);
            }
        }
        Err(ApiError::Unavailable("join token busy; retry".into()))
    }

    fn sign(
        &self,
        node_id: &str,
        join_id: &str,
        csr_pem: &str,
    ) -> Result<(String, prost_types::Timestamp, prost_types::Timestamp), ApiError> {
        let ttl = self.sched.settings.node_cert_ttl;
        let cert = self
            .sched
            .ca
            .sign_node_csr(
                csr_pem,
                &LeafRequest {
                    identity: Identity::Agent(node_id.to_owned()),
                    dns_names: vec![],
                    ips: vec![],
                    validity: ttl,
                },
                (!join_id.is_empty()).then_some(join_id),
            )
            .map_err(|e| {
                ApiError::invalid("csr_pem", format!("not a usable PKCS#10 request (ECDSA P-256 or Ed25519): {e}"))
            })?;
        Ok((cert, ts_after(ttl), ts_after(ttl * 2 / 3)))
    }
}

#[tonic::async_trait]
impl<K: Kv> BootstrapService for BootstrapApi<K> {
    #[tracing::instrument(skip_all, fields(hostname = %request.get_ref().hostname))]
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let r = request.into_inner();
        if r.csr_pem.trim().is_empty() {
            return Err(ApiError::invalid("csr_pem", "required: a PEM certificate signing request").into());
        }
        // Check the CSR before spending a token use on it.
        rcgen_check(&r.csr_pem)?;
        let token = self.consume(&r.token).await?;
        let base = sanitize(&r.hostname);
        let capacity: ResourceQuantities = r.capacity.unwrap_or_default();
        let labels = join_labels(&r, &token.node_labels);
        for attempt in 0..8 {
            let node_id = if attempt == 0 {
                base.clone()
            } else {
                format!("{base}-{}", &uuid::Uuid::new_v4().simple().to_string()[..4])
            };
            let join_id = uuid::Uuid::new_v4().simple().to_string();
            let node = Node {
                id: node_id.clone(),
                hostname: r.hostname.clone(),
                addresses: r.addresses.clone(),
                labels: labels.clone(),
                capacity: Some(capacity),
                allocatable: Some(capacity),
                available: Some(capacity),
                join_capacity: Some(capacity),
                join_id: join_id.clone(),
                state: NodeState::NotReady as i32,
                state_reason: "joined; waiting for the agent's stream".into(),
                info: r.info.clone(),
                joined_at: Some(now_ts()),
                // Counts as a heartbeat: the Down timer of a node whose agent never connects
                // starts at its join, not at the epoch.
                last_heartbeat: Some(now_ts()),
                dns_name: format!("{node_id}.nodes.persys"),
                ..Default::default()
            };
            let key = self.sched.keys().node(&node_id);
            let outcome = self
                .sched
                .store
                .kv()
                .txn(vec![Cmp::ModRevision(key.clone(), 0)], vec![Op::put(&key, node.encode_to_vec())])
                .await
                .map_err(ApiError::from)?;
            if !outcome.succeeded {
                continue;
            }
            let (certificate_pem, expires_at, renew_after) = self.sign(&node_id, &join_id, &r.csr_pem)?;
            tracing::info!(node = %node_id, token = %token.id, "node joined");
            return Ok(Response::new(JoinResponse {
                node_id,
                certificate_pem,
                ca_pem: self.sched.ca.cert_pem().to_owned(),
                expires_at: Some(expires_at),
                renew_after: Some(renew_after),
            }));
        }
        Err(ApiError::Unavailable("could not allocate a node id; retry".into()).into())
    }

    #[tracing::instrument(skip_all)]
    async fn renew_certificate(
        &self,
        request: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let node_id = agent_node(&request)?;
        let Some(node) = self.sched.store.node(&node_id).await.map_err(ApiError::from)? else {
            return Err(
                ApiError::PermissionDenied(format!("node `{node_id}` was deleted; join the cluster again")).into()
            );
        };
        check_join(&node, persys_kit::identity::peer_join_id(&request).as_deref())?;
        let (certificate_pem, expires_at, renew_after) =
            self.sign(&node_id, &node.join_id, &request.get_ref().csr_pem)?;
        Ok(Response::new(RenewCertificateResponse {
            certificate_pem,
            ca_pem: self.sched.ca.cert_pem().to_owned(),
            expires_at: Some(expires_at),
            renew_after: Some(renew_after),
        }))
    }
}

/// Returns a joining node's labels: the agent's own outside the reserved prefix, then the
/// token's (which win and may use it), then the well-known ones from what the agent reported.
fn join_labels(r: &JoinRequest, token_labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = r
        .labels
        .iter()
        .filter(|(k, _)| {
            let reserved = k.starts_with(RESERVED_LABEL_PREFIX);
            if reserved {
                tracing::warn!(label = %k, hostname = %r.hostname, "agent label under the reserved prefix dropped");
            }
            !reserved
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(token_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let info = r.info.clone().unwrap_or_default();
    for (name, value) in [("hostname", &r.hostname), ("os", &info.os), ("arch", &info.arch)] {
        if !value.is_empty() {
            labels.insert(format!("{RESERVED_LABEL_PREFIX}{name}"), value.clone());
        }
    }
    labels
}

fn rcgen_check(csr_pem: &str) -> Result<(), ApiError> {
    persys_kit::pki::check_csr(csr_pem).map_err(|e| {
        ApiError::invalid("csr_pem", format!("not a usable PKCS#10 request (ECDSA P-256 or Ed25519): {e}"))
    })
}
