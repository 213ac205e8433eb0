//! `persys certs` run as a user would: the real binary on a temp directory.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use persys_kit::Identity;

fn persys(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_persys")).args(args).output().expect("run persys")
}

fn identity_of(cert: &Path) -> Option<Identity> {
    let pem = std::fs::read(cert).unwrap();
    let der = rustls_pemfile::certs(&mut &pem[..]).next().unwrap().unwrap();
    Identity::from_der(&der)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_ca_service_certificates_and_a_private_join_token() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = persys(&["certs", "init", "--dir", certs.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(mode(&certs.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&certs.join("join-token")), 0o600);
    for service in ["gateway", "scheduler", "analyzer", "reconciler", "metrics"] {
        assert_eq!(mode(&certs.join(service).join("key.pem")), 0o600, "{service}");
        assert_eq!(identity_of(&certs.join(service).join("cert.pem")), Some(Identity::Service(service.into())));
    }
    let token = std::fs::read_to_string(certs.join("join-token")).unwrap();
    let (id, secret) = token.trim().split_once('.').expect("id.secret");
    assert_eq!((id.len(), secret.len()), (6, 16));

    // A second init would orphan every certificate: it refuses and says how to proceed.
    let again = persys(&["certs", "init", "--dir", certs.to_str().unwrap()]);
    assert!(!again.status.success());
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("--force") && message.contains("certs issue"), "{message}");
}

#[test]
fn issue_signs_agent_and_service_certificates_with_the_existing_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    assert!(persys(&["certs", "init", "--dir", certs.to_str().unwrap()]).status.success());
    let ca_before = std::fs::read(certs.join("ca.pem")).unwrap();

    let out = persys(&["certs", "issue", "--dir", certs.to_str().unwrap(), "--agent", "node-7"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(identity_of(&certs.join("agent-node-7/cert.pem")), Some(Identity::Agent("node-7".into())));
    assert_eq!(mode(&certs.join("agent-node-7/key.pem")), 0o600);
    assert_eq!(std::fs::read(certs.join("ca.pem")).unwrap(), ca_before, "issuing never replaces the CA");

    let bad = persys(&["certs", "issue", "--dir", certs.to_str().unwrap(), "--service", "no/slashes"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid service name"));

    let missing = persys(&["certs", "issue", "--dir", dir.path().join("nowhere").to_str().unwrap(), "--service", "x"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("persys certs init"));
}
