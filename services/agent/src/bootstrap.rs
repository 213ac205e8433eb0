//! Joining the cluster and keeping the node certificate fresh.
//!
//! On first start the agent generates an ECDSA P-256 key, sends a CSR with the join token to
//! `BootstrapService.Join` over server-authenticated TLS (verifying the scheduler against
//! `--ca-file` and its `spiffe://persys/scheduler` identity) and stores what it gets in the state directory. After two thirds of the
//! certificate's lifetime it generates a new key and calls `RenewCertificate` over its mTLS
//! channel, stores the result and reloads the TLS material: new connections use it, the open
//! stream is untouched.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use persys_kit::{
    client::{ClientOptions, TracedChannel, tls_channel},
    shutdown::Shutdown,
    tls::{ServerIdentityVerifier, Tls},
};
use persys_proto::scheduler::v1::{
    JoinRequest, RenewCertificateRequest, bootstrap_service_client::BootstrapServiceClient,
};
use rcgen::{CertificateParams, KeyPair};

use crate::{
    error::AgentError,
    host::Host,
    state::{Credentials, StateDir},
};

/// A fresh key pair and a CSR for it, both PEM.
pub struct KeyAndCsr {
    /// PKCS#8 private key.
    pub key_pem: String,
    /// PKCS#10 request; its subject is ignored by the scheduler.
    pub csr_pem: String,
}

/// Generates an ECDSA P-256 key and a CSR for it.
pub fn key_and_csr() -> Result<KeyAndCsr, AgentError> {
    let err = |e: rcgen::Error| AgentError::Certificate(e.to_string());
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let csr = CertificateParams::new(Vec::<String>::new()).map_err(err)?.serialize_request(&key).map_err(err)?;
    Ok(KeyAndCsr { key_pem: key.serialize_pem(), csr_pem: csr.pem().map_err(err)? })
}

/// What a join needs.
pub struct JoinParams<'a> {
    /// Bootstrap address, `http://HOST:PORT` (TLS comes from `ca_pem`).
    pub bootstrap_url: &'a str,
    /// CA the scheduler's certificate must chain to.
    pub ca_pem: &'a [u8],
    /// The join token.
    pub token: &'a str,
    /// Node labels.
    pub labels: std::collections::HashMap<String, String>,
    /// Addresses to advertise.
    pub addresses: Vec<String>,
}

fn bootstrap_tls(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = persys_kit::tls::parse_certs(ca_pem, std::path::Path::new("--ca-file"))?;
    for cert in certs {
        roots.add(cert).map_err(|e| AgentError::Certificate(format!("--ca-file: {e}")))?;
    }
    let verifier = ServerIdentityVerifier::with_roots(Arc::new(roots), crate::scheduler_identity())
        .map_err(|e| AgentError::Certificate(format!("--ca-file: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(persys_kit::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Certificate(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Joins the cluster and stores the node id and credentials; returns the node id.
pub async fn join(params: JoinParams<'_>, host: &Host, state: &StateDir) -> Result<String, AgentError> {
    let fresh = key_and_csr()?;
    let options = ClientOptions { request_timeout: Some(Duration::from_secs(30)), ..ClientOptions::default() };
    let channel = tls_channel(params.bootstrap_url, bootstrap_tls(params.ca_pem)?, &options)?;
    let request = JoinRequest {
        token: params.token.to_owned(),
        csr_pem: fresh.csr_pem,
        hostname: host.hostname.clone(),
        addresses: params.addresses,
        labels: params.labels,
        info: Some(host.info.clone()),
        capacity: Some(host.capacity),
    };
    let response = BootstrapServiceClient::new(channel)
        .join(request)
        .await
        .map_err(|s| AgentError::Join(format!("{}: {}", s.code(), s.message())))?
        .into_inner();
    if response.node_id.is_empty() || response.certificate_pem.is_empty() || response.ca_pem.is_empty() {
        return Err(AgentError::Join("the scheduler's answer lacks the node id, certificate or CA".into()));
    }
    state.store_join(
        &response.node_id,
        &Credentials { key_pem: fresh.key_pem, cert_pem: response.certificate_pem, ca_pem: response.ca_pem },
    )?;
    tracing::info!(node_id = %response.node_id, "joined the cluster");
    Ok(response.node_id)
}

/// Renews the certificate once: new key, RenewCertificate, store, reload.
pub async fn renew(channel: TracedChannel, tls: &Tls, state: &StateDir) -> Result<(), AgentError> {
    let fresh = key_and_csr()?;
    let response = BootstrapServiceClient::new(channel)
        .renew_certificate(RenewCertificateRequest { csr_pem: fresh.csr_pem })
        .await
        .map_err(|s| AgentError::Certificate(format!("renewal refused: {}: {}", s.code(), s.message())))?
        .into_inner();
    let ca_pem = if response.ca_pem.is_empty() {
        std::fs::read_to_string(state.tls_paths().ca).unwrap_or_default()
    } else {
        response.ca_pem
    };
    state.store_credentials(&Credentials { key_pem: fresh.key_pem, cert_pem: response.certificate_pem, ca_pem })?;
    tls.reload()?;
    Ok(())
}

/// Shortest time between two renewals, so a certificate that is due at issue (e.g. short-lived
/// and back-dated) does not make the agent renew in a tight loop.
const MIN_RENEW_GAP: Duration = Duration::from_secs(5);

/// Renews the certificate whenever it is due, until shutdown; failures are retried every
/// 30 s (and logged) while the current certificate is still valid.
pub async fn keep_renewed(channel: TracedChannel, tls: Arc<Tls>, state: StateDir, shutdown: Shutdown) {
    let mut first = true;
    loop {
        let due = match state.validity() {
            Ok(v) => v.renew_after(),
            Err(error) => {
                tracing::error!(%error, "cannot read the node certificate; renewal stopped");
                return;
            }
        };
        let mut wait = due.duration_since(SystemTime::now()).unwrap_or_default();
        if !first {
            wait = wait.max(MIN_RENEW_GAP);
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.clone().wait() => return,
        }
        match renew(channel.clone(), &tls, &state).await {
            Ok(()) => {
                let expires = state.validity().map(|v| v.not_after).ok();
                tracing::info!(?expires, "node certificate renewed");
            }
            Err(error) => {
                tracing::warn!(%error, "certificate renewal failed; retrying in 30s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                    _ = shutdown.clone().wait() => return,
                }
            }
        }
    }
}
