//! The scheduler's configuration: every flag is also a `PERSYS_SCHEDULER_*` variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use persys_kit::{
    config::{ConfigError, TelemetryArgs, TlsArgs, parse_duration},
    tls::CertsDir,
};

/// How placement ranks the nodes that fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Fill the busiest node that fits first (fewer, fuller nodes).
    #[default]
    Binpack,
    /// Prefer the emptiest node (workloads spread out).
    Spread,
}

/// The Persys scheduler.
#[derive(Parser, Debug, Clone)]
#[command(name = "scheduler", version, about)]
pub struct Config {
    /// mTLS address for the gateway, other services and agents' streams.
    #[arg(long, env = "PERSYS_SCHEDULER_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// TLS (server-auth only) address where machines join with a token.
    #[arg(long, env = "PERSYS_SCHEDULER_BOOTSTRAP_LISTEN", default_value = "127.0.0.1:7444")]
    pub bootstrap_listen: SocketAddr,
    /// etcd endpoints, comma-separated; `memory` keeps state in this process (one replica only).
    #[arg(long, env = "PERSYS_SCHEDULER_ETCD", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd: Vec<String>,
    /// Key prefix of this cluster in etcd.
    #[arg(long, env = "PERSYS_SCHEDULER_PREFIX", default_value = "/persys")]
    pub prefix: String,
    /// The cluster CA's private key, to sign node certificates (the CA certificate is --tls-ca).
    #[arg(long, env = "PERSYS_SCHEDULER_CA_KEY")]
    pub ca_key: PathBuf,
    /// DNS zone of the CoreDNS etcd-plugin records (`<node>.nodes.ZONE`, `<workload>.workloads.ZONE`);
    /// `off` writes none.
    #[arg(long, env = "PERSYS_SCHEDULER_DNS_ZONE", default_value = "persys.local")]
    pub dns_zone: String,
    /// Lifetime of node certificates.
    #[arg(long, env = "PERSYS_SCHEDULER_NODE_CERT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub node_cert_ttl: Duration,
    /// How often agents send heartbeats.
    #[arg(long, env = "PERSYS_SCHEDULER_HEARTBEAT", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// A node whose heartbeats stop for this long is NotReady (its liveness lease expires).
    #[arg(long, env = "PERSYS_SCHEDULER_LEASE_TTL", default_value = "15s", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// A NotReady node becomes Down after this long, and its workloads are rescheduled.
    #[arg(long, env = "PERSYS_SCHEDULER_DOWN_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub down_grace: Duration,
    /// Placement strategy.
    #[arg(long, env = "PERSYS_SCHEDULER_STRATEGY", value_enum, default_value_t = Strategy::Binpack)]
    pub strategy: Strategy,
    /// Named container networks members may put workloads on, comma-separated (members
    /// otherwise get the node's default network or `none`; `host` and `container:NAME` are for
    /// admins only, whatever this says).
    #[arg(long, env = "PERSYS_SCHEDULER_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub allowed_networks: Vec<String>,
    /// Refuse container workloads without a CPU and a memory limit (so no tenant can take a
    /// node's whole CPU or memory). Host processes (admins only) are exempt.
    #[arg(long, env = "PERSYS_SCHEDULER_REQUIRE_LIMITS")]
    pub require_limits: bool,
    /// Name of this replica in leader election (defaults to a random id).
    #[arg(long, env = "PERSYS_SCHEDULER_REPLICA")]
    pub replica: Option<String>,
    /// How long in-flight calls may finish after SIGTERM.
    #[arg(long, env = "PERSYS_SCHEDULER_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// mTLS material.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl Config {
    /// One replica on loopback ports the system picks, with its state in memory and no admin
    /// port, its certificate `scheduler` under `certs` and node certificates signed with
    /// `certs`' CA key; everything else as the flags' defaults (checked by a test).
    pub fn loopback(certs: &CertsDir) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: any_port,
            bootstrap_listen: any_port,
            etcd: vec!["memory".into()],
            prefix: "/persys".into(),
            ca_key: certs.ca_key(),
            dns_zone: "persys.local".into(),
            node_cert_ttl: Duration::from_secs(24 * 3600),
            heartbeat: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(15),
            down_grace: Duration::from_secs(60),
            strategy: Strategy::Binpack,
            allowed_networks: Vec::new(),
            require_limits: false,
            replica: None,
            drain_timeout: Duration::from_secs(10),
            tls: TlsArgs::from_certs(certs, "scheduler"),
            telemetry: TelemetryArgs::embedded(),
        }
    }

    /// Checks values that clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat.is_zero() || self.lease_ttl <= self.heartbeat {
            return Err(ConfigError(format!(
                "--lease-ttl ({:?}) must be longer than --heartbeat ({:?}), e.g. three heartbeats",
                self.lease_ttl, self.heartbeat
            )));
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            return Err(ConfigError(format!("--prefix `{}` must start with `/` and not end with one", self.prefix)));
        }
        if let Some(bad) = self.allowed_networks.iter().find(|n| crate::api::admission::is_host_level(n.trim())) {
            return Err(ConfigError(format!(
                "--allowed-networks `{bad}`: the host's and other containers' namespaces stay admin-only"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use persys_kit::tls::CertsDir;

    use super::Config;

    #[test]
    fn loopback_is_the_flags_defaults() {
        let certs = CertsDir::new("/certs");
        let mut argv: Vec<String> = ["scheduler", "--listen", "127.0.0.1:0", "--bootstrap-listen", "127.0.0.1:0"]
            .into_iter()
            .chain(["--etcd", "memory", "--admin-listen", "off", "--ca-key", "/certs/ca-key.pem"])
            .map(String::from)
            .collect();
        argv.extend(certs.tls_flags("scheduler"));
        let parsed = Config::try_parse_from(argv).unwrap();
        assert_eq!(format!("{:?}", Config::loopback(&certs)), format!("{parsed:?}"));
    }
}
