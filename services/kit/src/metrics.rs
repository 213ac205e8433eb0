//! Prometheus metrics: per-RPC request counts and latency histograms, served as text on an
//! admin HTTP port next to a liveness endpoint.

#[cfg(feature = "server")]
use std::net::SocketAddr;
use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
#[cfg(feature = "server")]
use tokio::net::TcpListener;

#[cfg(feature = "server")]
use crate::shutdown::Shutdown;

/// Labels of one RPC outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `server` or `client`.
    pub side: &'static str,
    /// Fully qualified gRPC service, e.g. `persys.gateway.v1.AuthService`.
    pub service: String,
    /// Method name.
    pub method: String,
    /// gRPC status code name, e.g. `OK`, `Unauthenticated`.
    pub code: String,
}

/// Labels of one RPC latency series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `server` or `client`.
    pub side: &'static str,
    /// Fully qualified gRPC service.
    pub service: String,
    /// Method name.
    pub method: String,
}

/// The metrics of one process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<std::sync::Mutex<Registry>>,
    requests: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~13 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.00005, 2.0, 19))
}

impl Metrics {
    /// Returns a registry with the RPC metrics registered under the `persys` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("persys");
        let requests = Family::<RpcLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register("grpc_requests", "gRPC calls by service, method and status code", requests.clone());
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency until response headers, by service and method",
            latency.clone(),
        );
        Self { registry: Arc::new(std::sync::Mutex::new(registry)), requests, latency }
    }

    /// Records one finished call.
    pub fn observe(&self, side: &'static str, path: &str, code: tonic::Code, elapsed: Duration) {
        let (service, method) = split_path(path);
        self.requests
            .get_or_create(&RpcLabels {
                side,
                service: service.to_owned(),
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels { side, service: service.to_owned(), method: method.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// Lets a service register metrics of its own.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock().expect("metrics lock poisoned"))
    }

    /// Returns the metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics lock poisoned");
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a string cannot fail");
        out
    }

    /// Serves `/metrics` and `/healthz` on `listener` until shutdown.
    #[cfg(feature = "server")]
    pub async fn serve_admin(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<()> {
        use axum::{Router, routing::get};
        let metrics = self.clone();
        let app =
            Router::new()
                .route(
                    "/metrics",
                    get(move || {
                        let m = metrics.clone();
                        async move {
                            ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.encode())
                        }
                    }),
                )
                .route("/healthz", get(|| async { "ok" }));
        axum::serve(listener, app).with_graceful_shutdown(shutdown.wait()).await
    }

    /// Binds `addr` and serves the admin endpoints in the background; returns the bound address.
    #[cfg(feature = "server")]
    pub async fn spawn_admin(&self, addr: SocketAddr, shutdown: Shutdown) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let metrics = self.clone();
        tokio::spawn(async move {
            if let Err(error) = metrics.serve_admin(listener, shutdown).await {
                tracing::error!(%error, "admin server failed");
            }
        });
        Ok(bound)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits `/pkg.Service/Method` into `("pkg.Service", "Method")`.
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_histograms_appear_in_the_text_format() {
        let m = Metrics::new();
        m.observe("server", "/persys.gateway.v1.AuthService/Login", tonic::Code::Ok, Duration::from_micros(300));
        m.observe(
            "server",
            "/persys.gateway.v1.AuthService/Login",
            tonic::Code::Unauthenticated,
            Duration::from_millis(2),
        );
        let text = m.encode();
        assert!(text.contains(
            r#"persys_grpc_requests_total{side="server",service="persys.gateway.v1.AuthService",method="Login",code="Unauthenticated"} 1"#
        ), "{text}");
        assert!(text.contains(r#"persys_grpc_request_duration_seconds_count{side="server",service="persys.gateway.v1.AuthService",method="Login"} 2"#), "{text}");
    }

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(split_path("/a.B/C"), ("a.B", "C"));
        assert_eq!(split_path("/odd"), ("odd", ""));
    }
}
