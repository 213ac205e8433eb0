//! The gateway's configuration: every flag is also a `PERSYS_GATEWAY_*` environment variable.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use persys_kit::{
    config::{ConfigError, TelemetryArgs, TlsArgs, parse_duration},
    tls::CertsDir,
};

/// The Persys gateway: the one public entry of the platform.
#[derive(Parser, Debug)]
#[command(name = "gateway", version, about, long_about = None)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the public and internal gRPC ports (the default).
    Serve,
    /// Create an admin user in the database and exit; the password is read from stdin.
    CreateAdmin {
        /// The admin's user name.
        #[arg(long)]
        username: String,
    },
}

/// Options of the server.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Public gRPC + gRPC-web address, for users, browsers and CLIs.
    #[arg(long, env = "PERSYS_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Internal mTLS address, for other Persys services.
    #[arg(long, env = "PERSYS_GATEWAY_INTERNAL_LISTEN", default_value = "127.0.0.1:8443")]
    pub internal_listen: SocketAddr,
    /// Serve the public port over TLS with the service certificate (clients then need the CA).
    #[arg(long, env = "PERSYS_GATEWAY_PUBLIC_TLS", default_value_t = false)]
    pub public_tls: bool,
    /// Database URL: `postgres://USER:PASS@HOST/DB`, or `sqlite://PATH?mode=rwc` for one node.
    #[arg(long, env = "PERSYS_GATEWAY_DATABASE_URL", hide_env_values = true)]
    pub database_url: persys_kit::config::Secret,
    /// Maximum database connections.
    #[arg(long, env = "PERSYS_GATEWAY_DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// File holding the secret (32+ bytes) that signs access tokens.
    #[arg(long, env = "PERSYS_GATEWAY_JWT_SECRET_FILE")]
    pub jwt_secret_file: PathBuf,
    /// Lifetime of access tokens.
    #[arg(long, env = "PERSYS_GATEWAY_ACCESS_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_ttl: Duration,
    /// Lifetime of refresh tokens.
    #[arg(long, env = "PERSYS_GATEWAY_REFRESH_TTL", default_value = "7d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,
    /// Upstreams as SERVICE=URL (e.g. `scheduler=https://scheduler:7000`), repeatable or comma-separated.
    #[arg(long = "upstream", env = "PERSYS_GATEWAY_UPSTREAMS", value_delimiter = ',')]
    pub upstreams: Vec<String>,
    /// Origins allowed to call through gRPC-web (CORS); `*` allows any.
    #[arg(
        long = "cors-origin",
        env = "PERSYS_GATEWAY_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:5173"
    )]
    pub cors_origins: Vec<String>,
    /// Serve the browser dashboard's built files from this directory on the public port
    /// (plain GETs outside authentication; unknown paths without an extension get index.html).
    #[arg(long, env = "PERSYS_GATEWAY_WEB_ROOT", value_name = "DIR")]
    pub web_root: Option<std::path::PathBuf>,
    /// Largest request message accepted, in bytes.
    #[arg(long, env = "PERSYS_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Largest client-streamed upload forwarded (all its messages together), in bytes, e.g.
    /// the files `dorgu generate --server` sends to the analyzer.
    #[arg(long, env = "PERSYS_GATEWAY_MAX_UPLOAD_BYTES", default_value_t = crate::proxy::DEFAULT_UPLOAD_BYTES)]
    pub max_upload_bytes: usize,
    /// How long in-flight calls may finish after SIGTERM.
    #[arg(long, env = "PERSYS_GATEWAY_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Create this admin at start when the database has no users (with the password below).
    #[arg(long, env = "PERSYS_GATEWAY_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// Password of the bootstrap admin.
    #[arg(long, env = "PERSYS_GATEWAY_ADMIN_PASSWORD", hide_env_values = true, hide = true)]
    pub admin_password: Option<persys_kit::config::Secret>,
    /// Login attempts allowed per user name per minute.
    #[arg(long, env = "PERSYS_GATEWAY_LOGIN_PER_USER", default_value_t = 5)]
    pub login_per_user: u32,
    /// Login attempts allowed per client address per minute.
    #[arg(long, env = "PERSYS_GATEWAY_LOGIN_PER_PEER", default_value_t = 20)]
    pub login_per_peer: u32,
    /// mTLS material.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl ServeArgs {
    /// A gateway whose public port is `listen` (plaintext) and internal port a loopback port
    /// the system picks, on `database_url`, signing tokens with the secret in `jwt_secret_file`,
    /// with its certificate `gateway` under `certs` and no admin port; no upstreams and no first
    /// admin (set `upstreams`, `admin_username` and `admin_password`); everything else as the
    /// flags' defaults (checked by a test).
    pub fn loopback(certs: &CertsDir, listen: SocketAddr, database_url: String, jwt_secret_file: PathBuf) -> Self {
        Self {
            listen,
            internal_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_tls: false,
            database_url: database_url.into(),
            database_max_connections: 10,
            jwt_secret_file,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            upstreams: Vec::new(),
            cors_origins: vec!["http://localhost:5173".into()],
            web_root: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_upload_bytes: crate::proxy::DEFAULT_UPLOAD_BYTES,
            drain_timeout: Duration::from_secs(10),
            admin_username: None,
            admin_password: None,
            login_per_user: 5,
            login_per_peer: 20,
            tls: TlsArgs::from_certs(certs, "gateway"),
            telemetry: TelemetryArgs::embedded(),
        }
    }

    /// Returns the upstreams by service name, or what is wrong with them.
    pub fn upstream_map(&self) -> Result<HashMap<String, String>, ConfigError> {
        let mut map = HashMap::new();
        for entry in self.upstreams.iter().filter(|e| !e.trim().is_empty()) {
            let (service, url) = entry.split_once('=').ok_or_else(|| {
                ConfigError(format!(
                    "--upstream `{entry}`: expected SERVICE=URL, e.g. scheduler=https://scheduler:7000"
                ))
            })?;
            let service = service.trim();
            if service.is_empty()
                || service == "gateway"
                || !service.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                return Err(ConfigError(format!("--upstream `{entry}`: `{service}` is not a Persys service name")));
            }
            let url = url.trim().to_owned();
            if !url.starts_with("https://") {
                return Err(ConfigError(format!("--upstream `{entry}`: URL must start with https://")));
            }
            map.insert(service.to_owned(), url);
        }
        Ok(map)
    }

    /// Reads the token signing secret.
    pub fn jwt_secret(&self) -> Result<Vec<u8>, ConfigError> {
        let secret = std::fs::read(&self.jwt_secret_file)
            .map_err(|e| ConfigError(format!("--jwt-secret-file {}: {e}", self.jwt_secret_file.display())))?;
        let secret = secret.trim_ascii().to_vec();
        if secret.len() < 32 {
            return Err(ConfigError(format!(
                "--jwt-secret-file {}: the secret must be at least 32 bytes (e.g. `openssl rand -hex 32`)",
                self.jwt_secret_file.display()
            )));
        }
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use persys_kit::tls::CertsDir;

    use super::{Cli, ServeArgs};

    #[test]
    fn loopback_is_the_flags_defaults() {
        let certs = CertsDir::new("/certs");
        let mut argv: Vec<String> = ["gateway", "--listen", "127.0.0.1:8080", "--internal-listen", "127.0.0.1:0"]
            .into_iter()
            .chain(["--database-url", "sqlite://g.db", "--jwt-secret-file", "/s", "--admin-listen", "off"])
            .map(String::from)
            .collect();
        argv.extend(certs.tls_flags("gateway"));
        let parsed = Cli::try_parse_from(argv).unwrap().serve;
        let built = ServeArgs::loopback(&certs, "127.0.0.1:8080".parse().unwrap(), "sqlite://g.db".into(), "/s".into());
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        assert_eq!(built.database_url, parsed.database_url, "Debug hides it; compare the value");
    }
}
