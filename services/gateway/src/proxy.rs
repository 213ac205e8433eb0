//! Transparent forwarding of `persys.<service>.v1.*` calls to the service that owns them.
//!
//! The gateway knows every Persys method from the compiled descriptor set, so it can refuse
//! unknown methods and the stream kinds it does not carry before touching an upstream. The
//! request message of unary and server-streaming calls is read whole (they send exactly one)
//! and checked against the message limit; a client stream (an upload, such as the analyzer's
//! `Analyze`) flows through as it arrives, up to the upload limit in total. Either way it is
//! sent on over mTLS with the caller's verified identity in `x-persys-user-*` metadata; the
//! response, streamed or not, flows back untouched. Bidirectional streams are not carried.

use std::{collections::HashMap, convert::Infallible, sync::Arc};

use axum::body::Body as AxumBody;
use http::{HeaderMap, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use persys_kit::{client::TracedChannel, identity::strip_user_headers};
use prost::Message;
use tonic::{Status, body::Body};
use tower::ServiceExt;

use crate::accounts::Principal;

/// The kind of a method, as far as forwarding cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response: forwarded as it arrives, up to the upload limit.
    ClientStreaming,
    /// Streams both ways: not forwarded.
    Bidirectional,
}

/// The default limit of one client-streamed upload through the gateway: the analyzer's 64 MiB
/// of files, and room for the framing.
pub const DEFAULT_UPLOAD_BYTES: usize = 72 << 20;

/// Returns every method of the Persys contracts by gRPC path.
pub fn method_table() -> HashMap<String, MethodKind> {
    let set = prost_types::FileDescriptorSet::decode(persys_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled descriptor set decodes");
    let mut table = HashMap::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            for method in &service.method {
                let kind = match (method.client_streaming(), method.server_streaming()) {
                    (false, false) => MethodKind::Unary,
                    (false, true) => MethodKind::ServerStreaming,
                    (true, false) => MethodKind::ClientStreaming,
                    (true, true) => MethodKind::Bidirectional,
                };
                table.insert(format!("/{package}.{}/{}", service.name(), method.name()), kind);
            }
        }
    }
    table
}

/// Returns the service an owned path belongs to: `/persys.scheduler.v1.X/Y` → `scheduler`.
pub fn owning_service(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/persys.")?;
    let (service, rest) = rest.split_once('.')?;
    rest.starts_with("v1.").then_some(service)
}

/// One upstream service: the channel calls go through and its address, for the log only.
#[derive(Clone)]
pub struct Upstream {
    /// The channel.
    pub channel: TracedChannel,
    /// Where it connects; logged when it fails, never sent to callers.
    pub address: String,
}

/// Forwards calls to upstream services.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    methods: HashMap<String, MethodKind>,
    upstreams: HashMap<String, Upstream>,
    max_request_bytes: usize,
    max_upload_bytes: usize,
    audit: Option<AuditSink>,
}

/// One forwarded call worth an audit record: who, what, on what, from where.
#[derive(Clone, Debug)]
pub struct Audited {
    /// The caller.
    pub principal: Principal,
    /// What, e.g. `workload.exec`.
    pub action: &'static str,
    /// On what (an id from the request).
    pub target: String,
    /// More detail (never secrets).
    pub detail: String,
    /// The client's address.
    pub peer: String,
    /// Whether the upstream took the call (it answered without an error status up front);
    /// a refusal (not found, permission denied) or an unreachable upstream is `false`.
    pub allowed: bool,
}

/// Where audit records of forwarded calls go.
pub type AuditSink = Arc<dyn Fn(Audited) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Returns the audit record of a forwarded call that needs one: running commands in workloads
/// and on nodes, and acting on a node's containers.
pub fn audited(path: &str, body: &[u8], principal: &Principal, peer: String) -> Option<Audited> {
    let message = body.get(5..)?;
    let (action, target, detail) = match path {
        "/persys.scheduler.v1.SchedulerService/ExecWorkload" => {
            let r = persys_proto::scheduler::v1::ExecWorkloadRequest::decode(message).ok()?;
            ("workload.exec", r.workload_id, format!("replica {}: {:?}", r.replica_index, r.command))
        }
        "/persys.metrics.v1.CommandService/RunCommand" => {
            let r = persys_proto::metrics::v1::RunCommandRequest::decode(message).ok()?;
            let what = if r.shell.is_empty() { format!("{:?}", r.argv) } else { format!("sh -c {:?}", r.shell) };
            ("node.command", r.node_id, what)
        }
        "/persys.metrics.v1.CommandService/DockerAction" => {
            let r = persys_proto::metrics::v1::DockerActionRequest::decode(message).ok()?;
            let action =
                persys_proto::metrics::v1::DockerActionType::try_from(r.action).map_or("unknown", |a| a.as_str_name());
            ("node.docker", r.node_id, format!("{action} {}", r.container_id))
        }
        _ => return None,
    };
    Some(Audited { principal: principal.clone(), action, target, detail, peer, allowed: false })
}

/// Headers that describe the client's connection or credentials, never forwarded.
const DROPPED: [&str; 4] = ["authorization", "host", "connection", "cookie"];

/// Services for agents and other services, on those services' own ports: never forwarded from
/// the public port (the scheduler would refuse the gateway's identity anyway).
const INTERNAL: [&str; 4] = [
    "persys.scheduler.v1.AgentService",
    "persys.scheduler.v1.BootstrapService",
    "persys.scheduler.v1.NodeCommandService",
    "persys.metrics.v1.MetricsIngestService",
];

impl Proxy {
    /// Returns a proxy over `upstreams` (service name → upstream).
    pub fn new(upstreams: HashMap<String, Upstream>, max_request_bytes: usize, audit: Option<AuditSink>) -> Self {
        let max_upload_bytes = DEFAULT_UPLOAD_BYTES;
        Self {
            inner: Arc::new(Inner { methods: method_table(), upstreams, max_request_bytes, max_upload_bytes, audit }),
        }
    }

    /// Sets the limit of one client-streamed upload, in bytes (all its messages together).
    /// Call it before the proxy is cloned.
    pub fn with_upload_limit(mut self, bytes: usize) -> Self {
        Arc::get_mut(&mut self.inner).expect("the upload limit is set before the proxy is shared").max_upload_bytes =
            bytes;
        self
    }

    /// Returns whether `path` is a Persys method served elsewhere (not by the gateway itself).
    pub fn forwards(path: &str) -> bool {
        owning_service(path).is_some_and(|s| s != "gateway")
    }

    /// Forwards one call; every failure becomes a gRPC status response.
    pub async fn call(&self, request: Request<AxumBody>) -> Result<Response<Body>, Infallible> {
        Ok(match self.forward(request).await {
            Ok(response) => response,
            Err(status) => status.into_http(),
        })
    }

    async fn forward(&self, request: Request<AxumBody>) -> Result<Response<Body>, Status> {
        let path = request.uri().path().to_owned();
        let kind = self.inner.methods.get(&path).copied().ok_or_else(|| {
            Status::unimplemented(format!("unknown method {path}: check the service and method names (grpcurl list)"))
        })?;
        let service_name = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        if INTERNAL.contains(&service_name) {
            return Err(Status::unimplemented(format!(
                "{service_name} is for agents and services on their own ports, not part of the public API"
            )));
        }
        if kind == MethodKind::Bidirectional {
            return Err(Status::unimplemented(format!(
                "{path} is a bidirectional stream, which the gateway does not forward; call the service directly"
            )));
        }
        let service = owning_service(&path).unwrap_or_default().to_owned();
        let Upstream { channel, address } = self.inner.upstreams.get(&service).cloned().ok_or_else(|| {
            persys_kit::error::service_unavailable(
                &service,
                format!("service `{service}` is not available: no upstream is configured for it on this gateway"),
            )
        })?;
        let principal = request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing credentials"))?;

        let (mut parts, body) = request.into_parts();
        // Set when an upload passes its limit, so the caller learns why the call failed.
        let too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (body, record) = if kind == MethodKind::ClientStreaming {
            let flag = too_large.clone();
            let limited = Limited::new(body, self.inner.max_upload_bytes).map_err(move |e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                e
            });
            (Body::new(limited), None)
        } else {
            let limit = self.inner.max_request_bytes;
            let bytes = Limited::new(body, limit + 5).collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    Status::resource_exhausted(format!("request message larger than {limit} bytes"))
                } else {
                    tracing::debug!(error = %chain(e.as_ref()), "reading the request failed");
                    Status::cancelled("the request body could not be read")
                }
            })?;
            let bytes = bytes.to_bytes();
            check_single_frame(&bytes, limit)?;
            // Recorded once the upstream has answered: whether it took the call or refused it.
            let record = match &self.inner.audit {
                Some(_) => audited(&path, &bytes, &principal, crate::api::peer(&parts.extensions)),
                None => None,
            };
            (Body::new(Full::new(bytes)), record)
        };

        let mut headers = HeaderMap::with_capacity(parts.headers.len() + 3);
        for (name, value) in parts.headers.drain().filter_map(|(k, v)| k.map(|k| (k, v))) {
            if !DROPPED.contains(&name.as_str()) {
                headers.append(name, value);
            }
        }
        strip_user_headers(&mut headers);
        principal.user.write_headers(&mut headers);

        let mut upstream = Request::builder()
            .method(http::Method::POST)
            .uri(Uri::try_from(path.as_str()).map_err(|_| Status::invalid_argument("bad path"))?)
            .version(http::Version::HTTP_2)
            .body(body)
            .map_err(|e| {
                tracing::error!(error = %e, "building the upstream request failed");
                Status::internal("internal error; see the server log")
            })?;
        *upstream.headers_mut() = headers;

        // Addresses and transport errors are for the operator's log; callers learn only which
        // service failed and that retrying makes sense.
        let upload_limit = self.inner.max_upload_bytes;
        let response = channel.oneshot(upstream).await.map_err(|e| {
            if too_large.load(std::sync::atomic::Ordering::Relaxed) {
                return Status::resource_exhausted(format!(
                    "upload larger than the gateway's limit of {} MiB",
                    upload_limit >> 20
                ));
            }
            tracing::warn!(%service, %address, error = %chain(&e), "upstream unreachable");
            unavailable(&service)
        });
        if let (Some(sink), Some(mut record)) = (&self.inner.audit, record) {
            // A call refused up front is answered with its status in the headers
            // (trailers-only); one that was taken streams first.
            let refused = match &response {
                Ok(r) => r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).filter(|c| *c != "0"),
                Err(_) => Some("14"),
            };
            record.allowed = refused.is_none();
            if let Some(code) = refused {
                record
                    .detail
                    .push_str(&format!(" (refused: {:?})", tonic::Code::from(code.parse::<i32>().unwrap_or(2))));
            }
            sink(record).await;
        }
        Ok(response?.map(Body::new))
    }
}

/// Returns the status of a call whose upstream cannot be reached: the service (also in an
/// `ErrorInfo` detail), nothing more.
pub fn unavailable(service: &str) -> Status {
    persys_kit::error::service_unavailable(service, format!("service `{service}` is unavailable; try again"))
}

/// Returns an error with every cause, `outer: inner: ...`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Checks that a gRPC request body is exactly one length-prefixed message within the limit.
fn check_single_frame(bytes: &[u8], limit: usize) -> Result<(), Status> {
    if bytes.len() < 5 {
        return Err(Status::invalid_argument("request body is not a gRPC message"));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if len > limit {
        return Err(Status::resource_exhausted(format!("request message of {len} bytes exceeds the limit of {limit}")));
    }
    if bytes.len() != len + 5 {
        return Err(Status::invalid_argument("request body must hold exactly one message for this method"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owning_service_reads_the_package() {
        assert_eq!(owning_service("/persys.scheduler.v1.SchedulerService/GetNode"), Some("scheduler"));
        assert_eq!(owning_service("/persys.gateway.v1.AuthService/Login"), Some("gateway"));
        assert_eq!(owning_service("/persys.scheduler.v2.X/Y"), None);
        assert_eq!(owning_service("/grpc.health.v1.Health/Check"), None);
        assert!(Proxy::forwards("/persys.analyzer.v1.AnalyzerService/Analyze"));
        assert!(!Proxy::forwards("/persys.gateway.v1.AuthService/Login"));
    }

    #[test]
    fn method_table_knows_stream_kinds() {
        let t = method_table();
        assert_eq!(t.get("/persys.gateway.v1.AuthService/Login"), Some(&MethodKind::Unary));
        assert_eq!(t.get("/persys.scheduler.v1.SchedulerService/WatchNodes"), Some(&MethodKind::ServerStreaming));
        assert_eq!(t.get("/persys.scheduler.v1.AgentService/Connect"), Some(&MethodKind::Bidirectional));
        assert_eq!(t.get("/persys.analyzer.v1.AnalyzerService/Analyze"), Some(&MethodKind::ClientStreaming));
    }

    #[test]
    fn exec_and_node_command_calls_are_audited_with_target_and_command() {
        let principal = Principal {
            user: persys_kit::UserClaims {
                id: "u1".into(),
                name: "ada".into(),
                role: persys_kit::identity::Role::Admin,
            },
            method: crate::accounts::AuthMethod::Jwt,
        };
        let request = persys_proto::scheduler::v1::ExecWorkloadRequest {
            workload_id: "w1".into(),
            command: vec!["id".into()],
            ..Default::default()
        };
        let mut body = vec![0u8];
        let encoded = request.encode_to_vec();
        body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
        body.extend_from_slice(&encoded);
        let a = audited("/persys.scheduler.v1.SchedulerService/ExecWorkload", &body, &principal, "127.0.0.1".into())
            .unwrap();
        assert_eq!((a.action, a.target.as_str()), ("workload.exec", "w1"));
        assert!(a.detail.contains("\"id\""), "{}", a.detail);
        assert!(
            audited("/persys.scheduler.v1.SchedulerService/GetWorkload", &body, &principal, String::new()).is_none()
        );

        // Commands on nodes and actions on their containers are audited too.
        let framed = |m: &dyn Fn() -> Vec<u8>| {
            let encoded = m();
            let mut body = vec![0u8];
            body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
            body.extend_from_slice(&encoded);
            body
        };
        let run = persys_proto::metrics::v1::RunCommandRequest {
            node_id: "n1".into(),
            shell: "uptime | cut -c1-9".into(),
            ..Default::default()
        };
        let a = audited(
            "/persys.metrics.v1.CommandService/RunCommand",
            &framed(&|| run.encode_to_vec()),
            &principal,
            String::new(),
        )
        .unwrap();
        assert_eq!((a.action, a.target.as_str()), ("node.command", "n1"));
        assert!(a.detail.contains("sh -c") && a.detail.contains("uptime | cut"), "{}", a.detail);
        let docker = persys_proto::metrics::v1::DockerActionRequest {
            node_id: "n1".into(),
            container_id: "nginx".into(),
            action: persys_proto::metrics::v1::DockerActionType::Restart as i32,
            ..Default::default()
        };
        let a = audited(
            "/persys.metrics.v1.CommandService/DockerAction",
            &framed(&|| docker.encode_to_vec()),
            &principal,
            String::new(),
        )
        .unwrap();
        assert_eq!(
            (a.action, a.target.as_str(), a.detail.as_str()),
            ("node.docker", "n1", "DOCKER_ACTION_TYPE_RESTART nginx")
        );
    }

    #[test]
    fn frames_are_checked() {
        let mut ok = vec![0, 0, 0, 0, 3];
        ok.extend_from_slice(b"abc");
        assert!(check_single_frame(&ok, 10).is_ok());
        assert_eq!(check_single_frame(&ok, 2).unwrap_err().code(), tonic::Code::ResourceExhausted);
        assert_eq!(check_single_frame(&ok[..6], 10).unwrap_err().code(), tonic::Code::InvalidArgument);
        assert_eq!(check_single_frame(b"", 10).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
