//! An HTTP client for services outside the mesh (Prometheus and registries for the reconciler,
//! notification webhooks and Alertmanager for the metrics pipeline): HTTP/1.1 over plain TCP or
//! rustls, every call bounded by a timeout.

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as HttpClient, rt::TokioExecutor};

/// A pooled client for `http` and `https` URLs.
pub type Client =
    HttpClient<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl From<rustls::Error> for ClientError {
    fn from(e: rustls::Error) -> Self {
        Self(e.to_string())
    }
}

/// A client for `what` (named in errors) trusting the PEM bundle `ca_file`, or the system's
/// roots without one.
pub fn client(ca_file: Option<&Path>, what: &str) -> Result<Client, ClientError> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| ClientError(format!("{what} CA file {}: {e}", path.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in crate::tls::parse_certs(&pem, path).map_err(|e| ClientError(format!("{what}: {e}")))? {
                roots.add(cert)?;
            }
            let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        None => match builder.with_provider_and_native_roots(crate::tls::provider()) {
            Ok(b) => b,
            // No system roots (a bare image): plain http still works, and https fails per call
            // with a certificate error that says so, instead of the reconciler not starting.
            Err(error) => {
                tracing::warn!(%error, "no system CA roots: {what} over https cannot be verified without a CA file");
                let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
            }
        },
    };
    Ok(HttpClient::builder(TokioExecutor::new()).build(builder.https_or_http().enable_http1().build()))
}

/// What came back.
#[derive(Debug)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Sends `request` and reads the whole answer within `timeout`; `Err` says why not.
pub async fn send(client: &Client, request: Request<Full<Bytes>>, timeout: Duration) -> Result<Response, String> {
    let call = async {
        let response = client.request(request).await.map_err(|e| connect_error(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Response { status: parts.status, headers: parts.headers, body })
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| format!("no answer in {timeout:?}"))?
}

/// The error and its causes, which hyper keeps apart ("client error (Connect)" alone says
/// nothing of the refused connection behind it).
fn connect_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
