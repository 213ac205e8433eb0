//! Forwarded calls tell callers what failed, never where or how (issue 10, item 12): upstream
//! addresses and transport errors go to the log only.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
};

use persys_gateway::{
    accounts::{AuthMethod, Principal},
    proxy::{Proxy, Upstream},
    store::StoreError,
};
use persys_kit::{
    ApiError, UserClaims,
    client::{ClientOptions, plain_channel},
    identity::Role,
};
use prost::Message;
use tonic::{Code, Status};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn list_nodes_request() -> http::Request<axum::body::Body> {
    member_request(
        "/persys.scheduler.v1.SchedulerService/ListNodes",
        persys_proto::scheduler::v1::ListNodesRequest::default(),
    )
}

/// A gRPC call to `path` carrying `message`, from a member the gateway has authenticated.
fn member_request(path: &str, message: impl Message) -> http::Request<axum::body::Body> {
    let encoded = message.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    frame.extend_from_slice(&encoded);
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header("content-type", "application/grpc")
        .body(axum::body::Body::from(frame))
        .unwrap();
    request.extensions_mut().insert(Principal {
        user: UserClaims { id: "u1".into(), name: "ada".into(), role: Role::Member },
        method: AuthMethod::Jwt,
    });
    request
}

#[track_caller]
fn assert_clean(status: &Status, port: u16) {
    let message = status.message().to_lowercase();
    for leak in ["127.0.0.1", &port.to_string(), "transport error", "connection refused", "tcp connect", "os error"] {
        assert!(!message.contains(leak), "the caller's message reveals `{leak}`: {}", status.message());
    }
}

#[tokio::test]
async fn a_dead_upstream_is_reported_without_its_address_or_transport_error() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("http://127.0.0.1:{port}");
    let channel = plain_channel(&address, &ClientOptions::default()).unwrap();
    let upstreams = HashMap::from([("scheduler".to_owned(), Upstream { channel, address: address.clone() })]);
    let proxy = Proxy::new(upstreams, 4 << 20, None);

    for _ in 0..2 {
        let response = proxy.call(list_nodes_request()).await.unwrap();
        let status = Status::from_header_map(response.headers()).expect("a status in the headers");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "service `scheduler` is unavailable; try again");
        assert_clean(&status, port);
    }

    // The operator gets the detail.
    let logged = log.text();
    assert!(logged.contains("upstream unreachable"), "{logged}");
    assert!(logged.contains(&address), "the log names the address: {logged}");
    assert!(logged.to_lowercase().contains("connection refused"), "the log has the cause: {logged}");
}

#[test]
fn store_failures_reach_callers_as_a_clean_internal_error() {
    let raw = sqlx::Error::Protocol("connection to server at 10.0.3.4:5432 failed: FATAL: role \"gw\"".into());
    let status = Status::from(ApiError::from(StoreError::Database(raw)));
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error; see the server log");
    // Conflicts and missing rows stay specific: they are the caller's business.
    let status = Status::from(ApiError::from(StoreError::NotFound("user `u1`".into())));
    assert_eq!((status.code(), status.message()), (Code::NotFound, "user `u1` not found"));
}

#[tokio::test]
async fn agents_only_services_are_never_forwarded_even_with_an_upstream() {
    // Something listens there; the call must not reach it anyway.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let channel = plain_channel(&address, &ClientOptions::default()).unwrap();
    let upstreams = HashMap::from([("metrics".to_owned(), Upstream { channel, address })]);
    let proxy = Proxy::new(upstreams, 4 << 20, None);
    let ingest = persys_proto::metrics::v1::IngestRequest { node_id: "n1".into(), batch_seq: 1, ..Default::default() };
    let response = proxy.call(member_request("/persys.metrics.v1.MetricsIngestService/Ingest", ingest)).await.unwrap();
    let status = Status::from_header_map(response.headers()).expect("a status in the headers");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert!(status.message().contains("not part of the public API"), "{status:?}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the gateway connected to the upstream");
}
