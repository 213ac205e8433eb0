//! The real analyzer binary over real mTLS, driven by the real dorgu CLI: `--server` output is
//! byte-identical to the offline library on sample apps, callers are checked by certificate
//! identity, and bad input gets its documented status.

use std::path::{Path, PathBuf};

use persys_e2e::analyzer::Analyzer;
use persys_kit::{
    client::{ClientOptions, mtls_channel},
    tls::{Tls, TlsPaths},
};
use persys_proto::analyzer::v1::{
    AnalyzeMetadata, AnalyzeRepositoryRequest, SourceFile, analyzer_service_client::AnalyzerServiceClient,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/analyzer/tests/fixtures").join(name)
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn dorgu_server_mode_matches_offline_mode() {
    let analyzer = Analyzer::start(&[]).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["compose-shop", "node-express", "java-spring-maven", "php-laravel"] {
        let app = fixture(name);
        let offline = tmp.path().join(format!("{name}-offline"));
        let online = tmp.path().join(format!("{name}-online"));
        let common = ["generate", app.to_str().unwrap(), "--name", name, "-n", "apps", "--host", "app.example.com"];
        let out =
            analyzer.dorgu(&[&common[..], &["-o", offline.to_str().unwrap()]].concat(), None, tmp.path()).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The all-in-one `stack` identity is among the analyzer's allowed callers.
        let out = analyzer
            .dorgu(&[&common[..], &["-o", online.to_str().unwrap()]].concat(), Some("stack"), tmp.path())
            .unwrap();
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), analyzer.service.log());
        let (a, b) = (files(&offline), files(&online));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{name}: --server output differs from offline output");
    }
}

#[tokio::test]
async fn callers_are_checked_by_certificate_identity() {
    let analyzer = Analyzer::start(&[]).await.unwrap();
    let certs = analyzer.certs();
    let client_as = |service: &str| {
        let tls = Tls::load(TlsPaths {
            ca: certs.join("ca.pem"),
            cert: certs.join(service).join("cert.pem"),
            key: certs.join(service).join("key.pem"),
        })
        .unwrap();
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
