//! Argument groups every Persys binary flattens into its own clap struct. Every flag is also an
//! environment variable, and [`ConfigError`] explains what to fix.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use crate::tls::{CertsDir, Tls, TlsError, TlsPaths};

/// A configuration problem found at start; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging and tracing.
#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, env = "PERSYS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info,persys_gateway=debug`.
    #[arg(long, env = "PERSYS_LOG", default_value = "info")]
    pub log_filter: String,
    /// Address of the admin HTTP server (`/metrics`, `/healthz`); `off` disables it.
    #[arg(long, env = "PERSYS_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    pub admin_listen: String,
}

impl TelemetryArgs {
    /// Text logs at `info` and no admin port: for a service embedded in another process (such
    /// as `persys-stack`), which sets up logging and serves its own admin port.
    pub fn embedded() -> Self {
        Self { log_format: LogFormat::Text, log_filter: "info".into(), admin_listen: "off".into() }
    }

    /// Returns the admin address, or `None` when disabled.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.admin_listen == "off" {
            return Ok(None);
        }
        self.admin_listen.parse().map(Some).map_err(|_| {
            ConfigError(format!(
                "--admin-listen / PERSYS_ADMIN_LISTEN: `{}` is not HOST:PORT or `off`",
                self.admin_listen
            ))
        })
    }
}

/// The mTLS material of a service.
#[derive(Args, Clone, Debug)]
pub struct TlsArgs {
    /// PEM file of the cluster CA that every peer certificate must chain to.
    #[arg(long, env = "PERSYS_TLS_CA")]
    pub tls_ca: PathBuf,
    /// PEM file of this service's certificate chain.
    #[arg(long, env = "PERSYS_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM file of this service's private key.
    #[arg(long, env = "PERSYS_TLS_KEY")]
    pub tls_key: PathBuf,
    /// How often to check the files for a rotated certificate, e.g. `30s`.
    #[arg(long, env = "PERSYS_TLS_RELOAD_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
}

impl TlsArgs {
    /// `service`'s certificate and key under `certs` (see [`CertsDir`]), checked for rotation
    /// every 30 s like the flags' default.
    pub fn from_certs(certs: &CertsDir, service: &str) -> Self {
        let paths = certs.paths(service);
        Self {
            tls_ca: paths.ca,
            tls_cert: paths.cert,
            tls_key: paths.key,
            tls_reload_interval: Duration::from_secs(30),
        }
    }

    /// Loads the material and starts watching it for rotation.
    pub fn load(&self) -> Result<std::sync::Arc<Tls>, TlsError> {
        let tls =
            Tls::load(TlsPaths { ca: self.tls_ca.clone(), cert: self.tls_cert.clone(), key: self.tls_key.clone() })?;
        tls.spawn_reloader(self.tls_reload_interval);
        Ok(tls)
    }
}

/// Parses durations such as `250ms`, `30s`, `5m`, `2h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 500ms, 30s, 5m or 2h"))?;
    let seconds =
        |per: u64| n.checked_mul(per).map(Duration::from_secs).ok_or_else(|| format!("`{s}` is too long a duration"));
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86400),
        _ => Err(format!("`{s}`: unknown unit `{unit}`; use ms, s, m, h or d")),
    }
}

/// A secret given as a flag or variable (a database URL with its password, a join token):
/// `Debug` prints `Secret(<redacted>)`, so printing a config never shows it. Read it with
/// [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Prints a configuration error the way clap prints its own and exits with status 2.
pub fn exit_on_error<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    match result {
        Ok(v) => v,
        Err(e) => {
            // `{:#}`: anyhow errors with their causes ("loading the kubeconfig: ...").
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        #[derive(clap::Parser, Debug)]
        struct Flags {
            #[arg(long)]
            url: Secret,
            #[arg(long)]
            token: Option<Secret>,
        }
        let flags =
            <Flags as clap::Parser>::try_parse_from(["x", "--url", "postgres://u:hunter2@db/x", "--token", "abc.def"])
                .unwrap();
        assert_eq!(flags.url.expose(), "postgres://u:hunter2@db/x");
        assert_eq!(flags.token.as_ref().map(Secret::expose), Some("abc.def"));
        let shown = format!("{flags:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("abc.def") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("m").is_err());
        // Overflow is an error, not a panic (rule files and flags are user input).
        assert!(parse_duration("99999999999999999d").unwrap_err().contains("too long"));
        assert!(parse_duration(&format!("{}h", u64::MAX)).is_err());
    }
}
