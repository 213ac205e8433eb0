//! The analyzer started as a real process with certificates from `persys certs init`.

use std::time::Duration;

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
