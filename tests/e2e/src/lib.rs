//! The end-to-end harness: start the real Persys binaries with certificates from
//! `persys certs init`, wait until they announce their ports, and talk to them with clients
//! built on the generated stubs. It also holds an in-process OTLP receiver to check traces,
//! scheduler replicas on a real etcd ([`replicas`]), a TCP proxy to cut connections
//! ([`proxy`]), a private Docker engine ([`dockerd`]), the cluster invariants every fault
//! test checks ([`invariants`]) and kubectl against the test bench's API server ([`kubectl`]).

pub mod analyzer;
pub mod cluster;
pub mod dockerd;
pub mod invariants;
pub mod kubectl;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod replicas;
pub mod stack;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Returns the directory holding the workspace's binaries (next to the running test or bench).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PERSYS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") { dir.parent().expect("target dir").to_path_buf() } else { dir.to_path_buf() }
}

/// Returns the path of a workspace binary, failing with how to build it when missing.
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.exists() {
        bail!("{} is missing: build the binaries first (`cargo build --workspace --bins`)", path.display());
    }
    Ok(path)
}

/// Runs `persys certs init --dir DIR` with the real CLI.
pub fn certs_init(dir: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(bin("persys")?)
        .args(["certs", "init", "--dir"])
        .arg(dir)
        .output()
        .context("running persys certs init")?;
    if !out.status.success() {
        bail!("persys certs init failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Returns the TLS flags of a service whose certificate `certs init` wrote under `dir`.
pub fn tls_args(dir: &Path, service: &str) -> Vec<String> {
    persys_kit::tls::CertsDir::new(dir).tls_flags(service)
}

/// Returns the flags of a gateway in `dir` (certificates in `dir/certs`, SQLite in
/// `dir/gateway.db`) on loopback ports the system picks, signing with the secret in
/// `secret_file`, creating the first admin [`stack::ADMIN`] (its password goes in
/// `PERSYS_GATEWAY_ADMIN_PASSWORD`), forwarding to `upstreams` (`SERVICE=URL`).
pub fn gateway_args(dir: &Path, secret_file: &Path, upstreams: &[String]) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--internal-listen".into(),
        "127.0.0.1:0".into(),
        "--database-url".into(),
        format!("sqlite://{}?mode=rwc", dir.join("gateway.db").display()),
        "--jwt-secret-file".into(),
        secret_file.display().to_string(),
        "--admin-username".into(),
        stack::ADMIN.into(),
    ];
    if !upstreams.is_empty() {
        args.extend(["--upstream".into(), upstreams.join(",")]);
    }
    args.extend(tls_args(&dir.join("certs"), "gateway"));
    args
}
