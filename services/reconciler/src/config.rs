//! Command line and environment.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use persys_kit::config::{TelemetryArgs, parse_duration};

pub use crate::decide::admission::Mode;

/// What the webhook does when it cannot look personas up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Allow, with a warning.
    Ignore,
    /// Deny.
    Fail,
}

/// The Persys reconciler: Kubernetes operator for ApplicationPersonas.
#[derive(Debug, Parser)]
#[command(name = "reconciler", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions as YAML (apply them with `kubectl apply -f -`).
    Crds,
    /// Run the controllers.
    Run(Box<RunArgs>),
}

/// `reconciler run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Kubeconfig to use; by default KUBECONFIG, ~/.kube/config or the in-cluster account.
    #[arg(long, env = "PERSYS_RECONCILER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Reconcile every persona at least this often, besides on every change (e.g. `60s`, `5m`).
    #[arg(long, env = "PERSYS_RECONCILER_REQUEUE", default_value = "60s", value_parser = parse_duration)]
    pub requeue: Duration,
    /// Reconcile only this namespace (a namespaced install); every namespace by default.
    #[arg(long, env = "PERSYS_RECONCILER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Rediscover the cluster (ClusterPersona status) at least this often, besides on node
    /// changes.
    #[arg(long, env = "PERSYS_RECONCILER_DISCOVERY_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub discovery_interval: Duration,
    /// Run ClusterPersona discovery (`false` to skip it). It reads nodes, namespaces and pods
    /// cluster-wide, so it is off whenever `--namespace` restricts the reconciler.
    #[arg(long, env = "PERSYS_RECONCILER_CLUSTER_DISCOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub cluster_discovery: bool,
    /// Name of the ClusterPersona created when the cluster has none; empty creates none.
    #[arg(long, env = "PERSYS_RECONCILER_CLUSTER_PERSONA", default_value = "cluster")]
    pub cluster_persona: String,
    /// Namespace of the Lease electing the one replica that runs the controllers (the chart
    /// sets the release's namespace).
    #[arg(long, env = "PERSYS_RECONCILER_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of that Lease.
    #[arg(long, env = "PERSYS_RECONCILER_LEASE_NAME", default_value = "persys-reconciler")]
    pub lease_name: String,
    /// How long a leader holds the Lease without renewing it; it renews every third of that,
    /// and a successor takes over this long after a leader vanishes without releasing.
    #[arg(long, env = "PERSYS_RECONCILER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease; the host name (the pod's name) and a random
    /// suffix by default.
    #[arg(long, env = "PERSYS_RECONCILER_IDENTITY")]
    pub identity: Option<String>,
    /// Serve PersonaService (gRPC, mutual TLS) here for the gateway; off when unset. Needs
    /// `--tls-ca`, `--tls-cert` and `--tls-key` (the service identity `reconciler`).
    #[arg(long, env = "PERSYS_RECONCILER_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// PEM CA every caller's certificate must chain to.
    #[arg(long, env = "PERSYS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate chain of this service (`spiffe://persys/reconciler`).
    #[arg(long, env = "PERSYS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "PERSYS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Services allowed to call PersonaService, by certificate identity (comma-separated);
    /// users come through the gateway.
    #[arg(
        long = "allowed-caller",
        env = "PERSYS_RECONCILER_ALLOWED_CALLERS",
        value_delimiter = ',',
        default_value = "gateway,stack"
    )]
    pub allowed_callers: Vec<String>,
    /// Metrics pipeline (`https://metrics:7400`) in which ArgoCD syncs are recorded as DORA
    /// deployments (`RecordDeployment`, mTLS as `reconciler`); off when unset. Needs
    /// `--tls-ca`, `--tls-cert` and `--tls-key`.
    #[arg(long, env = "PERSYS_RECONCILER_METRICS_PIPELINE")]
    pub metrics_pipeline: Option<String>,
    /// This cluster's name in DORA deployments of Applications deploying to it (ArgoCD calls
    /// it `in-cluster`); Applications with another `spec.destination.name` carry that name.
    #[arg(long, env = "PERSYS_RECONCILER_CLUSTER_NAME", default_value = "in-cluster")]
    pub cluster_name: String,
    /// Serve the validating admission webhook (HTTPS, `POST /validate`) on this address; off
    /// when unset. Needs the three `--webhook-tls-*` files.
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain of the webhook's serving certificate (its SAN is the name the API
    /// server calls, e.g. persys-reconciler.persys.svc). Reloaded when it changes.
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_TLS_CERT", requires = "webhook_listen")]
    pub webhook_tls_cert: Option<PathBuf>,
    /// PEM private key of the webhook's certificate.
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_TLS_KEY", requires = "webhook_listen")]
    pub webhook_tls_key: Option<PathBuf>,
    /// PEM CA bundle that issued the webhook's certificate (the caBundle registered with the
    /// API server).
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_TLS_CA", requires = "webhook_listen")]
    pub webhook_tls_ca: Option<PathBuf>,
    /// Default webhook mode: advisory (allow, findings as warnings) or enforcing (deny on
    /// validation errors). A persona's `dorgu.io/webhook-mode` annotation or its namespace's
    /// label of the same name overrides it.
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_MODE", value_enum, default_value_t = Mode::Advisory)]
    pub webhook_mode: Mode,
    /// When personas cannot be looked up: `ignore` allows with a warning (fail open), `fail`
    /// denies (fail closed). Set it like the failurePolicy registered with the API server.
    #[arg(long, env = "PERSYS_RECONCILER_WEBHOOK_FAILURE_POLICY", value_enum, default_value_t = FailurePolicy::Ignore)]
    pub webhook_failure_policy: FailurePolicy,
    /// Verify Kapsa Registries (cluster-scoped) with credentials read from Secrets in this
    /// namespace only (the chart sets its release namespace); off when unset, and whenever
    /// `--namespace` restricts the reconciler.
    #[arg(long, env = "PERSYS_RECONCILER_REGISTRY_CREDENTIALS_NAMESPACE")]
    pub registry_credentials_namespace: Option<String>,
    /// Check every Registry at least this often, besides on its changes and its Secret's.
    #[arg(long, env = "PERSYS_RECONCILER_REGISTRY_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub registry_interval: Duration,
    /// Run Kapsa's Project and Environment controllers: a namespace per Project
    /// (`<namespace>-<project>`) with its builds (kpack), Environments and their Deployments,
    /// Services and Ingresses. Off by default (it creates namespaces and RoleBindings), and
    /// whenever `--namespace` restricts the reconciler.
    #[arg(long, env = "PERSYS_RECONCILER_PROJECTS", default_value_t = false, action = clap::ArgAction::Set)]
    pub projects: bool,
    /// The kpack builder projects build with, as `Kind/name` (`ClusterBuilder/default`,
    /// `Builder/paketo`).
    #[arg(long, env = "PERSYS_RECONCILER_KPACK_BUILDER", default_value = "ClusterBuilder/default", value_parser = parse_builder)]
    pub kpack_builder: (String, String),
    /// Resource baselines from Prometheus.
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// Logging and the admin port.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Where the reconciler learns resource baselines.
#[derive(Args, Clone, Debug)]
pub struct PrometheusArgs {
    /// Prometheus base URL (e.g. `http://prometheus-server.monitoring.svc`): each persona's
    /// `status.learned.resourceBaseline` (mean and peak CPU and memory of its workload's first
    /// container, from cAdvisor's series) and right-sizing recommendations. Off when unset.
    #[arg(long = "prometheus-url", env = "PERSYS_RECONCILER_PROMETHEUS_URL")]
    pub url: Option<String>,
    /// File holding a bearer token for Prometheus, read before each baseline.
    #[arg(long = "prometheus-token-file", env = "PERSYS_RECONCILER_PROMETHEUS_TOKEN_FILE", requires = "url")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for an https Prometheus URL; the system's roots by default.
    #[arg(long = "prometheus-ca-file", env = "PERSYS_RECONCILER_PROMETHEUS_CA_FILE", requires = "url")]
    pub ca_file: Option<PathBuf>,
    /// Learn a persona's baseline at most this often.
    #[arg(long, env = "PERSYS_RECONCILER_BASELINE_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    pub baseline_interval: Duration,
    /// The history a baseline covers.
    #[arg(long, env = "PERSYS_RECONCILER_BASELINE_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub baseline_window: Duration,
}

impl PrometheusArgs {
    /// The learner's options, when a URL is set.
    pub fn options(&self) -> Option<crate::baseline::Options> {
        let url = self.url.as_ref().filter(|u| !u.is_empty())?;
        Some(crate::baseline::Options {
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            interval: self.baseline_interval,
            window: self.baseline_window,
            ..crate::baseline::Options::new(url.clone())
        })
    }
}

/// `Kind/name` of a kpack builder.
fn parse_builder(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((kind @ ("ClusterBuilder" | "Builder"), name)) if !name.is_empty() => Ok((kind.into(), name.into())),
        _ => Err(format!("`{s}` is not a kpack builder like ClusterBuilder/default or Builder/<name>")),
    }
}
