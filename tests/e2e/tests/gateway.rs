//! End-to-end tests of the gateway: the real `gateway` binary in front of a real upstream
//! process over mTLS, with certificates from the real `persys certs init`.

use std::time::Duration;

use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use persys_e2e::stack::{ADMIN, ADMIN_PASSWORD, Bearer, Stack, StackOptions, bearer};
use persys_gateway::auth::{AUDIENCE, Claims, ISSUER, TokenKeys};
use persys_proto::{
    common::v1::Role,
    gateway::v1::{
        CreateApiKeyRequest, CreateUserRequest, ListUsersRequest, LogoutRequest, RefreshRequest, WhoAmIRequest,
        api_key_service_client::ApiKeyServiceClient, auth_service_client::AuthServiceClient,
        user_service_client::UserServiceClient,
    },
    metrics::v1::{
        QueryRangeRequest, QueryRangeResponse, WatchHostMetricsRequest,
        metrics_query_service_client::MetricsQueryServiceClient,
    },
};
use prost::Message;
use tonic::{Code, service::interceptor::InterceptedService};
use tonic_types::StatusExt;

type Metrics = MetricsQueryServiceClient<InterceptedService<persys_kit::client::TracedChannel, Bearer>>;

fn metrics_client(stack: &Stack, token: &str) -> Metrics {
    MetricsQueryServiceClient::with_interceptor(stack.public_channel(), bearer(token))
}

fn query(nodes: &[&str]) -> QueryRangeRequest {
    QueryRangeRequest {
        node_ids: nodes.iter().map(|s| s.to_string()).collect(),
        match_labels: [("env".to_string(), "e2e".to_string())].into(),
        ..Default::default()
    }
}

async fn with_upstream() -> Stack {
    Stack::start(StackOptions { upstream: true, ..Default::default() }).await.expect("stack")
}

#[tokio::test]
async fn forwards_unary_and_server_streaming_calls_with_the_verified_user() {
    let stack = with_upstream().await;
    let token = stack.admin_token().await;
    let mut client = metrics_client(&stack, &token);

    let answer = client.query_range(query(&["n1", "n2"])).await.expect("forwarded unary").into_inner();
    let nodes: Vec<_> = answer.series.iter().map(|s| s.node_id.as_str()).collect();
    assert_eq!(nodes, ["n1", "n2"]);
    let labels = &answer.series[0].labels;
    assert_eq!(labels["caller_user"], ADMIN);
    assert_eq!(labels["caller_role"], "admin");
    assert_eq!(labels["caller_identity"], "spiffe://persys/gateway");
    assert_eq!(labels["env"], "e2e");

    let mut stream = client
        .watch_host_metrics(WatchHostMetricsRequest {
            node_ids: vec!["a".into(), "b".into(), "c".into()],
            since_revision: 10,
            include_containers: false,
        })
        .await
        .expect("forwarded stream")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("stream item");
        seen.push((event.metrics.unwrap().node_id, event.revision));
    }
    assert_eq!(seen, [("a@admin".to_string(), 11), ("b@admin".to_string(), 12), ("c@admin".to_string(), 13)]);

    // Identity headers a client sends itself are replaced by the gateway's.
    let mut request = tonic::Request::new(query(&["n1"]));
    request.metadata_mut().insert("x-persys-user-name", "mallory".parse().unwrap());
    request.metadata_mut().insert("x-persys-user-role", "admin".parse().unwrap());
    let answer = client.query_range(request).await.unwrap().into_inner();
    assert_eq!(answer.series[0].labels["caller_user"], ADMIN);

    assert!(stack.gateway.stop().await.unwrap(), "gateway exits cleanly on SIGTERM");
}

fn grpc_web_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Splits a grpc-web response body into data messages and the trailer block.
fn parse_grpc_web(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let mut messages = Vec::new();
    let mut trailers = String::new();
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            trailers.push_str(&String::from_utf8_lossy(payload));
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

#[tokio::test]
async fn grpc_web_over_http1_returns_the_same_answer() {
    let stack = with_upstream().await;
    let token = stack.admin_token().await;
    let direct = metrics_client(&stack, &token).query_range(query(&["w1"])).await.unwrap().into_inner();

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let request = http::Request::post(format!(
        "http://{}/persys.metrics.v1.MetricsQueryService/QueryRange",
        stack.gateway.addr("public")
    ))
    .header("content-type", "application/grpc-web+proto")
    .header("x-grpc-web", "1")
    .header("origin", "http://dashboard.test")
    .header("authorization", format!("Bearer {token}"))
    .body(Full::new(grpc_web_frame(&query(&["w1"]).encode_to_vec()).into()))
    .unwrap();
    let response = client.request(request).await.expect("http/1.1 request");
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "http://dashboard.test");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/grpc-web"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let (messages, trailers) = parse_grpc_web(&body);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    assert_eq!(messages.len(), 1);
    assert_eq!(QueryRangeResponse::decode(&messages[0][..]).unwrap(), direct);

    // Without a token the browser gets the gRPC status, not a hang or an HTTP error page.
    let request = http::Request::post(format!(
        "http://{}/persys.metrics.v1.MetricsQueryService/QueryRange",
        stack.gateway.addr("public")
    ))
    .header("content-type", "application/grpc-web+proto")
    .body(Full::new(grpc_web_frame(&query(&["w1"]).encode_to_vec()).into()))
    .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let (_, trailers) = parse_grpc_web(&body);
    assert!(
        status.as_deref() == Some("16") || trailers.contains("grpc-status:16"),
        "expected UNAUTHENTICATED, got {status:?} {trailers}"
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let mut auth = AuthServiceClient::new(stack.public_channel());
    let login = stack.login(ADMIN, ADMIN_PASSWORD).await.unwrap();
    assert_eq!(login.user.as_ref().unwrap().username, ADMIN);

    let first = auth.refresh(RefreshRequest { refresh_token: login.refresh_token.clone() }).await.unwrap().into_inner();
    assert_ne!(first.refresh_token, login.refresh_token);
    let who = MetricsOrAuth::whoami(&stack, &first.access_token).await.unwrap();
    assert_eq!(who, (ADMIN.to_string(), "jwt".to_string()));

    // The original token again: reuse. It fails, and so does the token rotated from it.
    let reuse = auth.refresh(RefreshRequest { refresh_token: login.refresh_token.clone() }).await.unwrap_err();
    assert_eq!(reuse.code(), Code::Unauthenticated);
    assert!(reuse.message().contains("revoked"), "{}", reuse.message());
    let after = auth.refresh(RefreshRequest { refresh_token: first.refresh_token.clone() }).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);

    // Logout revokes a fresh session's refresh token.
    let second = stack.login(ADMIN, ADMIN_PASSWORD).await.unwrap();
    auth.logout(LogoutRequest { refresh_token: second.refresh_token.clone() }).await.unwrap();
    let gone = auth.refresh(RefreshRequest { refresh_token: second.refresh_token }).await.unwrap_err();
    assert_eq!(gone.code(), Code::Unauthenticated);

    // All of it is in the audit log.
    let mut users = UserServiceClient::with_interceptor(stack.public_channel(), bearer(second.access_token));
    let events = users
        .list_audit_events(persys_proto::gateway::v1::ListAuditEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"refresh.reuse"), "{actions:?}");
    assert!(actions.contains(&"logout"), "{actions:?}");
    assert!(actions.iter().filter(|a| **a == "login").count() >= 2, "{actions:?}");
}

struct MetricsOrAuth;

impl MetricsOrAuth {
    async fn whoami(stack: &Stack, token: &str) -> Result<(String, String), tonic::Status> {
        let mut auth = AuthServiceClient::with_interceptor(stack.public_channel(), bearer(token));
        let who = auth.who_am_i(WhoAmIRequest {}).await?.into_inner();
        Ok((who.user.unwrap().username, who.auth_method))
    }
}

#[tokio::test]
async fn internal_port_refuses_missing_and_foreign_client_certificates() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let internal = stack.gateway.addr("internal");
    let health = |channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
    };

    // A Persys service certificate from the cluster CA gets in.
    assert!(health(stack.mtls_channel_as("scheduler", internal)).await.is_ok());

    // No client certificate: the server verifies us against nothing and hangs up.
    let tls = stack.tls_for("scheduler");
    let config = rustls::ClientConfig::builder_with_provider(persys_kit::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(tls.roots())
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let anonymous = persys_kit::client::tls_channel(
        &format!("http://localhost:{}", internal.port()),
        std::sync::Arc::new(config),
        &Default::default(),
    )
    .unwrap();
    assert!(health(anonymous).await.is_err(), "a client without a certificate must be refused");

    // A certificate from another CA, naming a real Persys identity, is refused too.
    let other = persys_kit::pki::Ca::generate("impostor", Duration::from_secs(3600)).unwrap();
    let forged = other
        .issue(&persys_kit::pki::LeafRequest {
            identity: persys_kit::Identity::Service("gateway".into()),
            dns_names: vec!["localhost".into()],
            ips: vec![],
            validity: Duration::from_secs(600),
        })
        .unwrap();
    let dir = stack.dir.path().join("impostor");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), forged.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), forged.key_pem).unwrap();
    let impostor = persys_kit::tls::Tls::load(persys_kit::tls::TlsPaths {
        ca: stack.certs().join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
    .unwrap();
    let channel = persys_kit::client::mtls_channel(
        &format!("http://localhost:{}", internal.port()),
        &impostor,
        &Default::default(),
    )
    .unwrap();
    assert!(health(channel).await.is_err(), "a certificate from another CA must be refused");
}

#[tokio::test]
async fn upstreams_trust_identity_metadata_only_from_the_gateway() {
    let stack = with_upstream().await;
    let upstream = stack.upstream.as_ref().unwrap().addr("grpc");
    // The analyzer's certificate is valid, but the upstream only admits the gateway.
    let channel = stack.mtls_channel_as("analyzer", upstream);
    let mut request = tonic::Request::new(query(&["x"]));
    request.metadata_mut().insert("x-persys-user-name", "admin".parse().unwrap());
    let denied = MetricsQueryServiceClient::new(channel).query_range(request).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // With the gateway's certificate the same call goes through and the user is believed.
    let channel = stack.mtls_channel_as("gateway", upstream);
    let mut request = tonic::Request::new(query(&["x"]));
    for (k, v) in [("x-persys-user-id", "u1"), ("x-persys-user-name", "ada"), ("x-persys-user-role", "member")] {
        request.metadata_mut().insert(k, v.parse().unwrap());
    }
    let ok = MetricsQueryServiceClient::new(channel).query_range(request).await.unwrap().into_inner();
    assert_eq!(ok.series[0].labels["caller_user"], "ada");
}

#[tokio::test]
async fn bad_credentials_and_roles_get_clear_statuses() {
    let stack = Stack::start(StackOptions {
        upstream: true,
        extra_upstreams: vec!["reconciler=https://localhost:1".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    // Wrong password and unknown user: the same answer.
    let wrong = stack.login(ADMIN, "not-the-password").await.unwrap_err();
    let unknown = stack.login("nobody-here", "not-the-password").await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!((wrong.code(), wrong.message()), (unknown.code(), unknown.message()));

    // No token, a forged token, an expired one, one for another audience.
    let no_token = MetricsQueryServiceClient::new(stack.public_channel()).query_range(query(&["a"])).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = |aud: &str, exp: i64| Claims {
        iss: ISSUER.into(),
        aud: aud.into(),
        sub: "someone".into(),
        name: ADMIN.into(),
        role: "admin".into(),
        iat: now,
        exp,
        jti: "t".into(),
        ver: 0,
    };
    let real = TokenKeys::new(&stack.jwt_secret);
    let forged = TokenKeys::new(b"an-attackers-secret-of-thirty-two-bytes!").sign(&claims(AUDIENCE, now + 600));
    let expired = real.sign(&claims(AUDIENCE, now - 1));
    let wrong_audience = real.sign(&claims("somewhere-else", now + 600));
    for token in [forged, expired, wrong_audience, "garbage".to_string()] {
        let status = metrics_client(&stack, &token).query_range(query(&["a"])).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{token}");
    }

    // A viewer may not manage users; bad input is answered with field violations.
    let admin = stack.admin_token().await;
    let mut users = UserServiceClient::with_interceptor(stack.public_channel(), bearer(admin.clone()));
    let invalid = users
        .create_user(CreateUserRequest { username: "x".into(), password: "short".into(), role: Role::Viewer as i32 })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields: Vec<_> =
        invalid.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["username", "password"]);
    let no_role = users
        .create_user(CreateUserRequest { username: "vera".into(), password: "viewer-password-1".into(), role: 0 })
        .await
        .unwrap_err();
    assert_eq!(no_role.code(), Code::InvalidArgument);
    users
        .create_user(CreateUserRequest {
            username: "vera".into(),
            password: "viewer-password-1".into(),
            role: Role::Viewer as i32,
        })
        .await
        .unwrap();
    let viewer = stack.login("vera", "viewer-password-1").await.unwrap().access_token;
    let denied = UserServiceClient::with_interceptor(stack.public_channel(), bearer(viewer.clone()))
        .list_users(ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // An oversized request to a forwarded method never reaches the upstream.
    let mut big = query(&["a"]);
    big.match_labels.insert("blob".into(), "x".repeat(5 * 1024 * 1024));
    let too_big = metrics_client(&stack, &admin).query_range(big).await.unwrap_err();
    assert_eq!(too_big.code(), Code::ResourceExhausted, "{too_big:?}");

    // The same for the gateway's own services.
    let huge = users
        .create_user(CreateUserRequest { username: "big".into(), password: "p".repeat(5 * 1024 * 1024), role: 1 })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::ResourceExhausted, "{huge:?}");

    // Services with no upstream, or one that is down, are named in the error.
    let missing = persys_proto::scheduler::v1::scheduler_service_client::SchedulerServiceClient::with_interceptor(
        stack.public_channel(),
        bearer(admin.clone()),
    )
    .get_node(persys_proto::scheduler::v1::GetNodeRequest { id: "n".into() })
    .await;
    let missing = missing.unwrap_err();
    assert_eq!(missing.code(), Code::Unavailable);
    assert!(missing.message().contains("`scheduler`"), "{}", missing.message());
    let down = persys_proto::reconciler::v1::persona_service_client::PersonaServiceClient::with_interceptor(
        stack.public_channel(),
        bearer(admin),
    )
    .get_cluster_persona(persys_proto::reconciler::v1::GetClusterPersonaRequest::default())
    .await
    .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    assert!(down.message().contains("`reconciler`"), "{}", down.message());

    // The gateway is still healthy after all of that.
    let ok = metrics_client(&stack, &viewer).query_range(query(&["still"])).await.unwrap().into_inner();
    assert_eq!(ok.series[0].labels["caller_role"], "viewer");
}

#[tokio::test]
async fn api_keys_authenticate_forwarded_calls_until_revoked() {
    let stack = with_upstream().await;
    let admin = stack.admin_token().await;
    let mut keys = ApiKeyServiceClient::with_interceptor(stack.public_channel(), bearer(admin));
    let created =
        keys.create_api_key(CreateApiKeyRequest { name: "ci".into(), expires_at: None }).await.unwrap().into_inner();
    assert!(created.secret.starts_with("psk_"));
    let key = created.api_key.unwrap();
    assert!(created.secret.contains(&key.prefix));

    let answer = metrics_client(&stack, &created.secret).query_range(query(&["k"])).await.unwrap().into_inner();
    assert_eq!(answer.series[0].labels["caller_user"], ADMIN);
    assert_eq!(MetricsOrAuth::whoami(&stack, &created.secret).await.unwrap().1, "api_key");

    keys.revoke_api_key(persys_proto::gateway::v1::RevokeApiKeyRequest { id: key.id }).await.unwrap();
    let refused = metrics_client(&stack, &created.secret).query_range(query(&["k"])).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

// The OTLP exporter runs its batches on a thread of its own that needs a multi-threaded runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_client_gateway_and_upstream() {
    let receiver = persys_e2e::otlp::Receiver::start().await.unwrap();
    let stack = Stack::start(StackOptions { upstream: true, otlp: Some(receiver.endpoint()), ..Default::default() })
        .await
        .unwrap();
    let token = stack.admin_token().await;

    let telemetry = persys_kit::telemetry::init_with_endpoint(
        "e2e-client",
        &persys_kit::config::TelemetryArgs {
            log_format: persys_kit::config::LogFormat::Text,
            log_filter: "warn".into(),
            admin_listen: "off".into(),
        },
        Some(receiver.endpoint()),
    )
    .unwrap();
    let span = tracing::info_span!("e2e.client.query");
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.context().span().span_context().trace_id().to_string()
    };
    {
        use tracing::Instrument;
        metrics_client(&stack, &token).query_range(query(&["t"])).instrument(span).await.unwrap();
    }
    telemetry.flush();
    drop(telemetry);

    let spans = receiver
        .wait_for(Duration::from_secs(30), |spans| {
            let in_trace = |svc: &str| spans.iter().any(|s| s.trace_id == trace_id && s.service == svc);
            in_trace("gateway") && in_trace("test-upstream") && in_trace("e2e-client")
        })
        .await;
    let services: std::collections::BTreeSet<_> =
        spans.iter().filter(|s| s.trace_id == trace_id).map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        ["e2e-client", "gateway", "test-upstream"].into_iter().collect(),
        "spans: {spans:#?}\ngateway log:\n{}",
        stack.gateway.log()
    );
    // The upstream's server span is a child of a span of the gateway, not a new root.
    let gateway_ids: Vec<_> = spans.iter().filter(|s| s.service == "gateway").map(|s| s.span_id.clone()).collect();
    let upstream_server = spans
        .iter()
        .find(|s| s.service == "test-upstream" && s.trace_id == trace_id && s.name.contains("MetricsQueryService"))
        .expect("upstream server span");
    assert!(gateway_ids.contains(&upstream_server.parent_span_id));
}

const REFLECTED_SERVICES: [&str; 9] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "persys.gateway.v1.AuthService",
    "persys.gateway.v1.UserService",
    "persys.scheduler.v1.SchedulerService",
    "persys.analyzer.v1.AnalyzerService",
    "persys.metrics.v1.MetricsQueryService",
    "persys.reconciler.v1.PersonaService",
    "grpc.health.v1.Health",
];

#[tokio::test]
async fn reflection_on_the_public_port_lists_every_persys_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let mut client = ServerReflectionClient::new(stack.public_channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in REFLECTED_SERVICES {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
}

/// grpcio's reflection client, older grpcurl releases and IDE plugins ask v1alpha only.
#[tokio::test]
async fn reflection_v1alpha_answers_with_the_same_services_and_descriptors() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let mut client = ServerReflectionClient::new(stack.public_channel());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("persys.scheduler.v1.SchedulerService".into()),
    ]
    .map(|m| ServerReflectionRequest { host: String::new(), message_request: Some(m) });
    let mut responses = client.server_reflection_info(futures::stream::iter(requests)).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected v1alpha reflection answer {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in REFLECTED_SERVICES {
        assert!(names.contains(&expected), "{expected} missing from v1alpha list {names:?}");
    }
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected v1alpha reflection answer {response:?}");
    };
    assert!(!files.file_descriptor_proto.is_empty(), "no descriptor for the scheduler service");
}

#[tokio::test]
async fn the_dashboard_files_are_served_beside_grpc_web_and_nothing_else_is_opened() {
    let web = tempfile::tempdir().unwrap();
    let root = web.path().join("dist");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), "<!doctype html><title>Persys</title>").unwrap();
    std::fs::write(root.join("assets/app-1a2b.js"), "console.log('persys')").unwrap();
    std::fs::write(web.path().join("secret.txt"), "outside the web root").unwrap();
    let stack = Stack::start(StackOptions {
        upstream: true,
        gateway_args: vec!["--web-root".into(), root.display().to_string()],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let base = format!("http://{}", stack.gateway.addr("public"));
    let get = |path: &str| {
        let request = http::Request::get(format!("{base}{path}")).body(Full::default()).unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.expect("http/1.1 request");
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    // No token needed for the files; the page is checked every time, assets are immutable.
    let (page, body) = get("/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers["cache-control"], "no-cache");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert_eq!(&body[..], b"<!doctype html><title>Persys</title>");
    let (js, body) = get("/assets/app-1a2b.js").await;
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(&body[..], b"console.log('persys')");
    // The app's routes load the page; missing files and the world outside the root do not.
    let (route, body) = get("/workloads/web-1").await;
    assert_eq!((route.status.as_u16(), &body[..]), (200, &b"<!doctype html><title>Persys</title>"[..]));
    assert_eq!(get("/assets/nope.js").await.0.status, 404);
    assert_eq!(get("/%2e%2e/secret.txt").await.0.status, 404);

    // gRPC-web on the same port still needs a token, and works with one.
    let token = stack.admin_token().await;
    let call = |token: Option<&str>| {
        let mut request = http::Request::post(format!("{base}/persys.metrics.v1.MetricsQueryService/QueryRange"))
            .header("content-type", "application/grpc-web+proto");
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Full::new(grpc_web_frame(&query(&["w1"]).encode_to_vec()).into())).unwrap();
        let client = client.clone();
        async move {
            let response = client.request(request).await.unwrap();
            let status = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, parse_grpc_web(&body).1)
        }
    };
    let (status, trailers) = call(None).await;
    assert!(status.as_deref() == Some("16") || trailers.contains("grpc-status:16"), "{status:?} {trailers}");
    let (_, trailers) = call(Some(&token)).await;
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
}
