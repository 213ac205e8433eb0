//! Tower layers that carry W3C trace context across every gRPC hop and record RPC metrics.
//!
//! [`TraceLayer::server`] opens a server span per call whose parent is the caller's
//! `traceparent`; [`TraceLayer::client`] opens a client span and writes its context into the
//! outgoing headers. Both record [`Metrics`] when given some.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::propagation::{Extractor, Injector};
use tower::{Layer, Service};
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{Metrics, split_path};

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

/// Writes the current span's trace context into `headers`.
pub fn inject_current(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// The path series of requests that are not Persys or gRPC-infrastructure calls are recorded
/// under: static files, health probes over plain HTTP, scanners. One label for all of them keeps
/// the number of metric series bounded whatever the callers send.
pub const OTHER_PATH: &str = "/http/other";

/// Returns the path a request is labelled with: its own for gRPC calls (content type
/// `application/grpc*`) to `persys.*` and `grpc.*` services, [`OTHER_PATH`] for anything else.
pub fn metric_path<B>(request: &Request<B>) -> &str {
    let path = request.uri().path();
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc && (path.starts_with("/persys.") || path.starts_with("/grpc.")) { path } else { OTHER_PATH }
}

/// Returns the gRPC status code of a response from its headers (trailers-only responses, which
/// is how errors before the first message travel); responses with a body report `Ok`.
fn status_of<B>(response: &Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Which end of a call a [`TraceLayer`] sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Serving: the span's parent is the caller's `traceparent`.
    Server,
    /// Calling: the span's context is written into the outgoing headers.
    Client,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// A span per gRPC call, carried across the hop as W3C trace context, and RPC metrics.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    side: Side,
    metrics: Option<Metrics>,
}

impl TraceLayer {
    /// Returns the server-side layer, recording `metrics` when given.
    pub fn server(metrics: Option<Metrics>) -> Self {
        Self { side: Side::Server, metrics }
    }

    /// Returns the client-side layer, recording `metrics` when given.
    pub fn client(metrics: Option<Metrics>) -> Self {
        Self { side: Side::Client, metrics }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner, layer: self.clone() }
    }
}

/// The service made by [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    layer: TraceLayer,
}

impl<S, B, R> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let side = self.layer.side;
        let path = metric_path(&request).to_owned();
        let (service, method) = split_path(&path);
        let span = tracing::info_span!(
            "grpc",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = side.as_str(),
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            // Filled in by the gateway once it has authenticated the caller.
            user = Empty,
        );
        match side {
            Side::Server => {
                let parent =
                    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(request.headers())));
                let _ = span.set_parent(parent);
            }
            Side::Client => {
                let _entered = span.enter();
                inject_current(request.headers_mut());
            }
        }
        let start = Instant::now();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let metrics = self.layer.metrics.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    let code = status_of(response);
                    tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                    if let Some(m) = &metrics {
                        m.observe(side.as_str(), &path, code, start.elapsed());
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_calls_to_known_packages_are_labelled_by_method() {
        let request = |path: &str, content_type: &str| {
            Request::builder().uri(path).header(http::header::CONTENT_TYPE, content_type).body(()).unwrap()
        };
        let call = "/persys.scheduler.v1.SchedulerService/ListWorkloads";
        assert_eq!(metric_path(&request(call, "application/grpc")), call);
        assert_eq!(metric_path(&request(call, "application/grpc-web+proto")), call);
        let health = "/grpc.health.v1.Health/Check";
        assert_eq!(metric_path(&request(health, "application/grpc")), health);
        // Static files, plain HTTP and made-up services share one series.
        assert_eq!(metric_path(&request("/assets/app-3f2a.js", "text/javascript")), OTHER_PATH);
        assert_eq!(metric_path(&request(call, "application/json")), OTHER_PATH);
        assert_eq!(metric_path(&request("/random.Service/X", "application/grpc")), OTHER_PATH);
    }
}
