//! A gateway and a test upstream, started as real processes with certificates from
//! `persys certs init`, and clients built on the generated stubs.

use std::{path::PathBuf, sync::Arc, time::Duration};

use persys_kit::{
    client::{ClientOptions, TracedChannel, mtls_channel, plain_channel},
    tls::{CertsDir, Tls},
};
use persys_proto::gateway::v1::{LoginRequest, LoginResponse, auth_service_client::AuthServiceClient};
use tempfile::TempDir;

use crate::{bin, certs_init, gateway_args, process::Service, tls_args};

/// The bootstrap admin of every test stack.
pub const ADMIN: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// Options of a test stack.
#[derive(Default, Clone)]
pub struct StackOptions {
    /// Start the test upstream and route `metrics` to it.
    pub upstream: bool,
    /// Extra upstream entries for the gateway, e.g. `analyzer=https://127.0.0.1:1`.
    pub extra_upstreams: Vec<String>,
    /// OTLP endpoint for both processes.
    pub otlp: Option<String>,
    /// Extra gateway flags.
    pub gateway_args: Vec<String>,
    /// Start the real analyzer and route `analyzer` to it.
    pub analyzer: bool,
}

/// A running gateway (and maybe upstream) with its certificates and secrets.
pub struct Stack {
    /// Temp dir with certs, db, logs.
    pub dir: TempDir,
    /// The gateway process.
    pub gateway: Service,
    /// The upstream process.
    pub upstream: Option<Service>,
    /// The analyzer process.
    pub analyzer: Option<Service>,
    /// The JWT signing secret the gateway uses.
    pub jwt_secret: Vec<u8>,
}

impl Stack {
    /// Starts the processes.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        certs_init(&certs)?;
        let jwt_secret: Vec<u8> = b"e2e-test-secret-0123456789abcdef-0123456789".to_vec();
        let secret_file = dir.path().join("jwt-secret");
        std::fs::write(&secret_file, &jwt_secret)?;
        let mut env: Vec<(&str, String)> = vec![("OTEL_BSP_SCHEDULE_DELAY", "100".into())];
        if let Some(endpoint) = &options.otlp {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()));
        }
        let timeout = Duration::from_secs(60);

        let mut upstreams = options.extra_upstreams.clone();
        let upstream = if options.upstream {
            let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into()];
            // The upstream serves with the metrics service's certificate: it stands in for it.
            args.extend(tls_args(&certs, "metrics"));
            let service =
                Service::start("upstream", bin("persys-test-upstream")?, &args, &env, dir.path(), timeout).await?;
            upstreams.push(format!("metrics=https://localhost:{}", service.addr("grpc").port()));
            Some(service)
        } else {
            None
        };

        let analyzer = if options.analyzer {
            let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into()];
            args.extend(tls_args(&certs, "analyzer"));
            let service = Service::start("analyzer", bin("analyzer")?, &args, &env, dir.path(), timeout).await?;
            upstreams.push(format!("analyzer=https://localhost:{}", service.addr("grpc").port()));
            Some(service)
        } else {
            None
        };

        let mut args = gateway_args(dir.path(), &secret_file, &upstreams);
        args.extend(["--cors-origin".into(), "http://dashboard.test".into()]);
        args.extend(options.gateway_args.iter().cloned());
        let mut gateway_env = env.clone();
        gateway_env.push(("PERSYS_GATEWAY_ADMIN_PASSWORD", ADMIN_PASSWORD.into()));
        let gateway = Service::start("gateway", bin("gateway")?, &args, &gateway_env, dir.path(), timeout).await?;
        Ok(Self { dir, gateway, upstream, analyzer, jwt_secret })
    }

    /// Returns the certificates directory.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    /// Returns a channel to the public port.
    pub fn public_channel(&self) -> TracedChannel {
        plain_channel(&format!("http://{}", self.gateway.addr("public")), &ClientOptions::default()).expect("channel")
    }

    /// Loads TLS material for `service` from the certificates directory.
    pub fn tls_for(&self, service: &str) -> Arc<Tls> {
        CertsDir::new(self.certs()).load(service).expect("tls material")
    }

    /// Returns an mTLS channel presenting `service`'s certificate to `addr`.
    pub fn mtls_channel_as(&self, service: &str, addr: std::net::SocketAddr) -> TracedChannel {
        mtls_channel(&format!("http://localhost:{}", addr.port()), &self.tls_for(service), &ClientOptions::default())
            .expect("channel")
    }

    /// Logs in through the public port.
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginResponse, tonic::Status> {
        let mut client = AuthServiceClient::new(self.public_channel());
        client
            .login(LoginRequest { username: username.into(), password: password.into() })
            .await
            .map(|r| r.into_inner())
    }

    /// Logs in as the bootstrap admin.
    pub async fn admin_token(&self) -> String {
        self.login(ADMIN, ADMIN_PASSWORD).await.expect("admin login").access_token
    }
}

pub use persys_client::Bearer;

/// Returns the interceptor that adds `authorization: Bearer TOKEN` to every call.
pub fn bearer(token: impl AsRef<str>) -> Bearer {
    Bearer::new(token.as_ref()).expect("an ASCII token")
}
