//! The analyzer started as a real process with certificates from `persys certs init`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tempfile::TempDir;

use crate::{bin, certs_init, process::Service, tls_args};

/// A running analyzer with its certificates.
pub struct Analyzer {
    /// Temp dir with certs and logs.
    pub dir: TempDir,
    /// The process.
    pub service: Service,
}

impl Analyzer {
    /// Starts the analyzer on 127.0.0.1:0; `extra` flags are appended.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        certs_init(&certs)?;
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into()];
        args.extend(tls_args(&certs, "analyzer"));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let service =
            Service::start("analyzer", bin("analyzer")?, &args, &[], dir.path(), Duration::from_secs(60)).await?;
        Ok(Self { dir, service })
    }

    /// Returns the certificates directory.
    pub fn certs(&self) -> std::path::PathBuf {
        self.dir.path().join("certs")
    }

    /// Returns the analyzer's URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.service.addr("grpc").port())
    }
}

/// Returns a fixture app of the analyzer's test corpus (`services/analyzer/tests/fixtures`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/analyzer/tests/fixtures").join(name)
}

/// Returns every file under `dir` (path relative to it, contents), sorted: what `dorgu
/// generate` wrote, for comparing two runs.
pub fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

/// Runs the real `dorgu` with `args` and extra environment, its own config in `config_dir` and
/// no server or token from the caller's environment.
pub fn dorgu(args: &[&str], env: &[(&str, &Path)], config_dir: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(bin("dorgu").unwrap());
    command.args(args).env("DORGU_CONFIG_DIR", config_dir).env_remove("PERSYS_TOKEN").env_remove("DORGU_SERVER");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}
