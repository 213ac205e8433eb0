//! The real analyzer binary over real mTLS behind the real gateway, driven by the real dorgu CLI:
//! `--server` goes through the gateway with the user's login and its output is byte-identical
//! to the offline library on sample apps; uploads are bounded; callers of the analyzer itself
//! are checked by certificate identity, and bad input gets its documented status.

use persys_client::{Connection, store::Store};
use persys_e2e::{
    analyzer::{Analyzer, dorgu, files, fixture},
    stack::{ADMIN, ADMIN_PASSWORD, Stack, StackOptions},
};
use persys_kit::{
    client::{ClientOptions, mtls_channel},
    tls::CertsDir,
};
use persys_proto::analyzer::v1::{
    AnalyzeMetadata, AnalyzeRepositoryRequest, AnalyzeRequest, FileChunk, SourceFile, analyze_request,
    analyzer_service_client::AnalyzerServiceClient,
};

#[tokio::test]
async fn dorgu_server_mode_goes_through_the_gateway_and_matches_offline_mode() {
    let stack = Stack::start(StackOptions { analyzer: true, ..Default::default() }).await.unwrap();
    let url = format!("http://{}", stack.gateway.addr("public"));
    let tmp = tempfile::tempdir().unwrap();
    // The session `persys login` keeps, which dorgu uses too.
    let sessions = tmp.path().join("persys");
    let store = Store::at(sessions.join("credentials.json"));
    persys_client::login(&Connection::new(&url, None).unwrap(), &store, ADMIN, ADMIN_PASSWORD).await.unwrap();
    let session = [("PERSYS_CONFIG_DIR", sessions.as_path())];
    for name in ["compose-shop", "node-express", "java-spring-maven", "php-laravel"] {
        let app = fixture(name);
        let offline = tmp.path().join(format!("{name}-offline"));
        let online = tmp.path().join(format!("{name}-online"));
        let common = ["generate", app.to_str().unwrap(), "--name", name, "-n", "apps", "--host", "app.example.com"];
        let out = dorgu(&[&common[..], &["-o", offline.to_str().unwrap()]].concat(), &[], tmp.path());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out =
            dorgu(&[&common[..], &["-o", online.to_str().unwrap(), "--server", &url]].concat(), &session, tmp.path());
        let log = stack.analyzer.as_ref().unwrap().log();
        assert!(out.status.success(), "{}\n{}\n{log}", String::from_utf8_lossy(&out.stderr), stack.gateway.log());
        let (a, b) = (files(&offline), files(&online));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{name}: --server output differs from offline output");
    }

    // Without a session or a key, dorgu says how to get one and writes nothing.
    let app = fixture("node-express");
    let out_dir = tmp.path().join("refused");
    let nobody = tmp.path().join("nobody");
    let args = ["generate", app.to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--server", &url];
    let out = dorgu(&args, &[("PERSYS_CONFIG_DIR", nobody.as_path())], tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("persys login --server {url}")), "{stderr}");
    assert!(!out_dir.exists(), "nothing is written when the analysis fails");
    // A wrong API key is refused by the gateway, before the analyzer.
    let out = dorgu(
        &[&args[..], &["--token", "psk_not-a-key"]].concat(),
        &[("PERSYS_CONFIG_DIR", nobody.as_path())],
        tmp.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("check --token"), "{stderr}");
}

#[tokio::test]
async fn uploads_past_the_gateways_limit_are_refused_with_resource_exhausted() {
    let stack = Stack::start(StackOptions {
        analyzer: true,
        gateway_args: vec!["--max-upload-bytes".into(), "65536".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let token = stack.admin_token().await;
    let mut client = AnalyzerServiceClient::with_interceptor(stack.public_channel(), persys_e2e::stack::bearer(token));
    let upload = |size: usize| {
        let mut requests = vec![AnalyzeRequest {
            payload: Some(analyze_request::Payload::Metadata(AnalyzeMetadata {
                name: "big".into(),
                ..Default::default()
            })),
        }];
        let dockerfile = b"FROM alpine\nEXPOSE 8080\n".to_vec();
        requests.push(AnalyzeRequest {
            payload: Some(analyze_request::Payload::Chunk(FileChunk {
                path: "Dockerfile".into(),
                data: dockerfile,
                mode: 0,
            })),
        });
        for i in 0..size / 16384 {
            requests.push(AnalyzeRequest {
                payload: Some(analyze_request::Payload::Chunk(FileChunk {
                    path: format!("data/{i}.bin"),
                    data: vec![b'x'; 16384],
                    mode: 0,
                })),
            });
        }
        tokio_stream::iter(requests)
    };
    // Under the limit: analysed.
    let ok = client.analyze(upload(32 * 1024)).await.unwrap().into_inner();
    assert!(ok.result.unwrap().manifests.iter().any(|m| m.kind == "Deployment"));
    // Past it: a clear status, not "unavailable".
    let status = client.analyze(upload(256 * 1024)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("upload larger than"), "{status:?}");
    // The gateway and the analyzer still serve.
    client.analyze(upload(0)).await.unwrap();
}

#[tokio::test]
async fn callers_are_checked_by_certificate_identity() {
    let analyzer = Analyzer::start(&[]).await.unwrap();
    let certs = analyzer.certs();
    let client_as = |service: &str| {
        let tls = CertsDir::new(&certs).load(service).unwrap();
        let url = format!("http://localhost:{}", analyzer.service.addr("grpc").port());
        AnalyzerServiceClient::new(mtls_channel(&url, &tls, &ClientOptions::default()).unwrap())
    };
    let request = || AnalyzeRepositoryRequest {
        metadata: Some(AnalyzeMetadata { name: "tiny".into(), ..AnalyzeMetadata::default() }),
        files: vec![SourceFile { path: "Dockerfile".into(), content: b"FROM alpine\nEXPOSE 8080\n".to_vec(), mode: 0 }],
    };
    let ok = client_as("gateway").analyze_repository(request()).await.unwrap().into_inner();
    assert!(ok.result.unwrap().manifests.iter().any(|m| m.kind == "Deployment"));
    let denied = client_as("scheduler").analyze_repository(request()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    let escape = AnalyzeRepositoryRequest {
        metadata: None,
        files: vec![SourceFile { path: "../outside".into(), content: b"x".to_vec(), mode: 0 }],
    };
    let status = client_as("gateway").analyze_repository(escape).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
