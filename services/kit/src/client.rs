//! Client assembly: mTLS channels to other Persys services, with connect and request timeouts,
//! trace context on every call, and reconnect backoff.
//!
//! Channels connect lazily. After a failed connect the next attempts wait out an exponential
//! backoff (with jitter) and fail fast with `UNAVAILABLE` meanwhile, as gRPC's own clients do in
//! TRANSIENT_FAILURE.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::{Layer, Service};

use crate::{
    identity::Identity,
    metrics::Metrics,
    tls::Tls,
    trace::{Trace, TraceLayer},
};

/// A channel to a Persys service with trace propagation.
pub type TracedChannel = Trace<Channel>;

/// Errors building a channel.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI.
    #[error("invalid address `{0}`: use https://HOST:PORT (or http://HOST:PORT for plaintext on loopback)")]
    Address(String),
    /// An `https://` address given where no TLS is configured.
    #[error("`{0}` is an https:// address, but no TLS is configured for it")]
    NeedsTls(String),
}

/// Returns the address a TLS channel's endpoint connects to: `https://HOST[:PORT]` becomes
/// `http://HOST:PORT` (port 443 by default), because the TLS is done by this module's connector
/// and tonic would otherwise insist on doing it itself. `http://` addresses pass unchanged
/// (the TLS comes from the function used, not from the scheme).
fn tls_endpoint_address(address: &str) -> Result<String, ClientError> {
    let bad = || ClientError::Address(address.to_owned());
    let uri: Uri = address.parse().map_err(|_| bad())?;
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad());
    }
    match uri.scheme_str() {
        Some("https") => Ok(format!("http://{host}:{}", uri.port_u16().unwrap_or(443))),
        Some("http") => Ok(address.to_owned()),
        _ => Err(bad()),
    }
}

/// How a channel behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time allowed to establish TCP and TLS.
    pub connect_timeout: Duration,
    /// Default deadline of a call (streams are exempt when `None`).
    pub request_timeout: Option<Duration>,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// RPC metrics to record.
    pub metrics: Option<Metrics>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: None,
            max_backoff: Duration::from_secs(10),
            metrics: None,
        }
    }
}

/// Returns a lazily connecting mTLS channel to `address` (`https://host:port`; the host is also
/// the name checked against the server certificate). Any server certificate from the CA is
/// accepted; services talking to one another use [`mtls_channel_to`].
pub fn mtls_channel(address: &str, tls: &Arc<Tls>, options: &ClientOptions) -> Result<TracedChannel, ClientError> {
    tls_channel(address, tls.client_config(), options)
}

/// Returns a lazily connecting mTLS channel to `address` that connects only to a server whose
/// certificate names `expected` (e.g. `spiffe://persys/scheduler`); another identity from the
/// same CA fails the handshake, and so every call, with `UNAVAILABLE`.
pub fn mtls_channel_to(
    address: &str,
    tls: &Arc<Tls>,
    expected: Identity,
    options: &ClientOptions,
) -> Result<TracedChannel, ClientError> {
    tls_channel(address, tls.client_config_for(expected), options)
}

/// Returns a lazily connecting TLS channel with a given rustls config (which must offer ALPN
/// `h2`), e.g. for a public endpoint verified against a CA without a client certificate.
pub fn tls_channel(
    address: &str,
    config: Arc<rustls::ClientConfig>,
    options: &ClientOptions,
) -> Result<TracedChannel, ClientError> {
    let mut endpoint = Endpoint::from_shared(tls_endpoint_address(address)?)
        .map_err(|_| ClientError::Address(address.to_owned()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(t) = options.request_timeout {
        endpoint = endpoint.timeout(t);
    }
    let connector = TlsConnectorService {
        connector: TlsConnector::from(config),
        connect_timeout: options.connect_timeout,
        backoff: Arc::new(Mutex::new(Backoff::new(options.max_backoff))),
    };
    let channel = endpoint.connect_with_connector_lazy(connector);
    Ok(TraceLayer::client(options.metrics.clone()).layer(channel))
}

/// Returns a lazily connecting plaintext channel (loopback development and tests only).
pub fn plain_channel(address: &str, options: &ClientOptions) -> Result<TracedChannel, ClientError> {
    if address.starts_with("https://") {
        return Err(ClientError::NeedsTls(address.to_owned()));
    }
    let mut endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|_| ClientError::Address(address.to_owned()))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true);
    if let Some(t) = options.request_timeout {
        endpoint = endpoint.timeout(t);
    }
    Ok(TraceLayer::client(options.metrics.clone()).layer(endpoint.connect_lazy()))
}

#[derive(Debug)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { failures: 0, next_attempt: None, max }
    }

    /// Returns how long the caller must still wait, if any.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.next_attempt.and_then(|t| t.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let base = Duration::from_millis(100).saturating_mul(1u32 << self.failures.min(16)).min(self.max);
        // Up to 20% jitter so that many clients do not reconnect in lockstep.
        let jitter = base.mul_f64(rand_fraction() * 0.2);
        self.next_attempt = Some(now + base - jitter);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }
}

fn rand_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 10_000) as f64 / 10_000.0
}

#[derive(Clone)]
struct TlsConnectorService {
    connector: TlsConnector,
    connect_timeout: Duration,
    backoff: Arc<Mutex<Backoff>>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error>> + Send>>;

impl Service<Uri> for TlsConnectorService {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        let timeout = self.connect_timeout;
        let backoff = self.backoff.clone();
        Box::pin(async move {
            let wait = backoff.lock().expect("backoff lock").remaining(Instant::now());
            if let Some(wait) = wait {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("{uri}: reconnecting in {} ms after earlier failures", wait.as_millis()),
                ));
            }
            let result = tokio::time::timeout(timeout, connect(connector, &uri)).await.unwrap_or_else(|_| {
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{uri}: connect timed out")))
            });
            let mut b = backoff.lock().expect("backoff lock");
            match &result {
                Ok(_) => b.succeeded(),
                Err(_) => b.failed(Instant::now()),
            }
            result
        })
    }
}

async fn connect(
    connector: TlsConnector,
    uri: &Uri,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error> {
    let host =
        uri.host().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: no host")))?;
    let port = uri.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.trim_matches(|c| c == '[' || c == ']'), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let tls = connector.connect(name, tcp).await?;
    Ok(TokioIo::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_addresses_connect_through_the_tls_connector() {
        assert_eq!(tls_endpoint_address("https://gw.example.com").unwrap(), "http://gw.example.com:443");
        assert_eq!(tls_endpoint_address("https://localhost:8443/").unwrap(), "http://localhost:8443");
        assert_eq!(tls_endpoint_address("https://[::1]:7443").unwrap(), "http://[::1]:7443");
        assert_eq!(tls_endpoint_address("http://scheduler:7443").unwrap(), "http://scheduler:7443");
        for bad in ["gw:8080", "ftp://gw", "https://", "https://gw:8080/api", "https://gw?x=1"] {
            assert!(matches!(tls_endpoint_address(bad), Err(ClientError::Address(_))), "{bad}");
        }
        assert!(matches!(plain_channel("https://gw:8080", &ClientOptions::default()), Err(ClientError::NeedsTls(_))));
    }

    #[test]
    fn backoff_grows_and_resets() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(2));
        assert_eq!(b.remaining(now), None);
        b.failed(now);
        let first = b.remaining(now).expect("waiting after a failure");
        assert!(first <= Duration::from_millis(200) && first >= Duration::from_millis(160), "{first:?}");
        for _ in 0..10 {
            b.failed(now);
        }
        let capped = b.remaining(now).unwrap();
        assert!(capped <= Duration::from_secs(2) && capped >= Duration::from_millis(1600), "{capped:?}");
        b.succeeded();
        assert_eq!(b.remaining(now), None);
    }
}
