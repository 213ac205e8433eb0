//! The gRPC service against the library: byte-identical results on the whole corpus through
//! both the streaming upload and the unary call, and the bad-input contract (status codes and
//! field violations). The server is the real one, served in-process on 127.0.0.1:0.

mod corpus;

use persys_analyzer::{analyze_tree, api::AnalyzerApi, grpc, upload};
use persys_kit::{
    client::{ClientOptions, TracedChannel, plain_channel},
    server::{ServerOptions, serve, wait_until_serving},
    shutdown,
};
use persys_proto::analyzer::v1::{
    AnalyzeMetadata, AnalyzeRepositoryRequest, AnalyzeRequest, FileChunk, ManifestFile, SourceFile,
    ValidateManifestsRequest, analyze_request::Payload, analyzer_service_client::AnalyzerServiceClient,
};
use tonic::Code;
use tonic_types::StatusExt;

async fn start() -> (AnalyzerServiceClient<TracedChannel>, shutdown::ShutdownTrigger) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (routes, health) = grpc::routes(AnalyzerApi::new(None), 4 * 1024 * 1024).await.unwrap();
    let (trigger, stop) = shutdown::channel();
    tokio::spawn(serve(listener, routes, ServerOptions::default(), Some(health), stop));
    let channel = plain_channel(&format!("http://{addr}"), &ClientOptions::default()).unwrap();
    let raw = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    wait_until_serving(raw, std::time::Duration::from_secs(10)).await.unwrap();
    let client = AnalyzerServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    (client, trigger)
}

#[tokio::test]
async fn service_and_library_are_byte_identical_on_the_corpus() {
    let (mut client, _stop) = start().await;
    for name in corpus::names() {
        let tree = corpus::tree(&name);
        let meta = corpus::metadata(&name);
        let expected = analyze_tree(&tree, &meta).unwrap();
        // Small chunks, so files arrive in several pieces.
        let requests = upload::to_requests(meta.clone(), &tree, 97);
        let streamed = client.analyze(tokio_stream::iter(requests)).await.unwrap().into_inner().result.unwrap();
        let files = tree.files().map(|(p, c)| SourceFile { path: p.into(), content: c.to_vec(), mode: 0 }).collect();
        let unary = client
            .analyze_repository(AnalyzeRepositoryRequest { metadata: Some(meta), files })
            .await
            .unwrap()
            .into_inner()
            .result
            .unwrap();
        for (via, got) in [("Analyze", &streamed), ("AnalyzeRepository", &unary)] {
            assert_eq!(got.manifests.len(), expected.manifests.len(), "{name} via {via}");
            for (g, e) in got.manifests.iter().zip(&expected.manifests) {
                assert_eq!(g.path, e.path, "{name} via {via}");
                assert_eq!(g.content.as_bytes(), e.content.as_bytes(), "{name} via {via}: {}", e.path);
            }
            assert_eq!(got, &expected, "{name} via {via}: facts, personas or findings differ");
        }
    }
}

fn chunk(path: &str, data: Vec<u8>) -> AnalyzeRequest {
    AnalyzeRequest { payload: Some(Payload::Chunk(FileChunk { path: path.into(), data, mode: 0 })) }
}

fn meta() -> AnalyzeRequest {
    AnalyzeRequest {
        payload: Some(Payload::Metadata(AnalyzeMetadata { name: "x".into(), ..AnalyzeMetadata::default() })),
    }
}

#[tokio::test]
async fn bad_input_gets_the_documented_status() {
    let (mut client, _stop) = start().await;

    let escape = vec![meta(), chunk("../../etc/passwd", b"root".to_vec())];
    let status = client.analyze(tokio_stream::iter(escape)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    assert_eq!(details.bad_request().unwrap().field_violations[0].field, "chunk.path");

    let files = vec![SourceFile { path: "/abs/Dockerfile".into(), content: b"FROM x".to_vec(), mode: 0 }];
    let status = client.analyze_repository(AnalyzeRepositoryRequest { metadata: None, files }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let nothing = vec![meta(), chunk("README.md", b"hello".to_vec())];
    let status = client.analyze(tokio_stream::iter(nothing)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    for looked_for in ["Dockerfile", "compose.yaml", "package.json"] {
        assert!(status.message().contains(looked_for), "{}", status.message());
    }

    let malformed = vec![meta(), chunk("Dockerfile", b"FROM alpine\nEXPOSE web\n".to_vec())];
    let status = client.analyze(tokio_stream::iter(malformed)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let v = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(v.field, "Dockerfile:2");
    assert!(v.description.contains("not a port"), "{}", v.description);

    let compose = b"services:\n  web:\n    image: x\n    ports: [\"80:http\"]\n".to_vec();
    let status = client.analyze(tokio_stream::iter(vec![meta(), chunk("compose.yaml", compose)])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let field = &details.bad_request().unwrap().field_violations[0].field;
    assert!(field.starts_with("compose.yaml:4:"), "{field}");

    // 65 chunks of 1 MiB: over the 64 MiB limit while still arriving.
    let big: Vec<AnalyzeRequest> =
        std::iter::once(meta()).chain((0..65).map(|i| chunk(&format!("blob{i}"), vec![b'x'; 1024 * 1024]))).collect();
    let status = client.analyze(tokio_stream::iter(big)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // One unary message above the 4 MiB message limit.
    let files = vec![SourceFile { path: "big".into(), content: vec![b'x'; 5 * 1024 * 1024], mode: 0 }];
    let status = client.analyze_repository(AnalyzeRepositoryRequest { metadata: None, files }).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn validate_manifests_applies_the_persona_rules() {
    let (mut client, _stop) = start().await;
    let result = analyze_tree(&corpus::tree("go-gin"), &corpus::metadata("go-gin")).unwrap();
    let persona = result.persona.clone().unwrap();
    let deployment = result.manifests.iter().find(|m| m.kind == "Deployment").unwrap().clone();
    let ok = client
        .validate_manifests(ValidateManifestsRequest {
            manifests: vec![deployment.clone()],
            persona: Some(persona.clone()),
            namespace: "apps".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.passed, "{:?}", ok.findings);
    // Break it: root allowed, escalation on, a limit above the persona's, one replica.
    let broken = deployment
        .content
        .replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
        .replace("runAsNonRoot: true", "runAsNonRoot: false")
        .replace("memory: 1Gi", "memory: 4Gi")
        .replace("replicas: 2", "replicas: 1");
    let bad = client
        .validate_manifests(ValidateManifestsRequest {
            manifests: vec![ManifestFile {
                path: "deployment.yaml".into(),
                content: broken,
                kind: "Deployment".into(),
            }],
            persona: Some(persona),
            namespace: "apps".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.passed);
    let ids: Vec<&str> = bad.findings.iter().map(|f| f.rule_id.as_str()).collect();
    for want in [
        "security.privilege-escalation",
        "security.run-as-non-root",
        "replicas.below-min",
        "resources.memory-limit-above-persona",
    ] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert_eq!(bad.error_count, 3, "{ids:?}");
    assert_eq!(bad.findings[0].severity, persys_proto::analyzer::v1::FindingSeverity::Error as i32);
}
