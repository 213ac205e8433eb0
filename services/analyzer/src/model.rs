//! The deployable applications an analysis found, in the terms the generators need.

use std::collections::{BTreeMap, BTreeSet};

/// Kind of application (the persona's `type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AppKind {
    /// Serves an API.
    Api,
    /// Serves a web front end.
    Web,
    /// Background work, no port.
    Worker,
    /// Runs on a schedule.
    Cron,
    /// One per node.
    Daemon,
}

impl AppKind {
    /// Returns the CRD string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Web => "web",
            Self::Worker => "worker",
            Self::Cron => "cron",
            Self::Daemon => "daemon",
        }
    }

    /// Parses a CRD string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "api" => Self::Api,
            "web" => Self::Web,
            "worker" => Self::Worker,
            "cron" => Self::Cron,
            "daemon" => Self::Daemon,
            _ => return None,
        })
    }
}

/// A port the application listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPort {
    /// Container port.
    pub port: u16,
    /// UDP rather than TCP.
    pub udp: bool,
    /// Port name (DNS label, at most 15 characters), unique within the app.
    pub name: String,
    /// What it serves: `http`, `grpc`, `metrics`, `postgresql`, ...
    pub purpose: String,
    /// Published outside (compose `ports` with a host port), so reachable from outside.
    pub published: bool,
}

/// Where an environment variable's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    /// A plain value, put in the ConfigMap.
    Plain(String),
    /// A reference to a key of the app's Secret (never the value).
    Secret {
        /// Whether the pod may start without it.
        optional: bool,
    },
    /// A setting the application requires and nothing sets: a reference to a key of the app's
    /// ConfigMap that is not there yet, so the pod waits, saying which key is missing, until
    /// it is added.
    ConfigKey,
}

/// How the application's health is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// HTTP GET.
    Http {
        /// Liveness path.
        path: String,
        /// Readiness path (may equal `path`).
        readiness: String,
        /// Port.
        port: u16,
    },
    /// A command in the container.
    Exec(Vec<String>),
    /// A TCP connection to the port.
    Tcp(u16),
    /// No probe (no health check, and no TCP port to connect to).
    None,
}

/// CPU and memory quantities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amounts {
    /// CPU, e.g. `100m`.
    pub cpu: String,
    /// Memory, e.g. `256Mi`.
    pub memory: String,
}

/// A PersistentVolumeClaim mounted by the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMount {
    /// Claim name.
    pub claim: String,
    /// Mount path.
    pub path: String,
    /// Read-only mount.
    pub read_only: bool,
}

/// A writable scratch directory (emptyDir).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scratch {
    /// Mount path.
    pub path: String,
    /// Backed by memory (compose tmpfs).
    pub memory: bool,
}

/// A backing service the app talks to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backing {
    /// Name: another app of this analysis, or a kind like `postgresql`.
    pub name: String,
    /// `database`, `cache`, `queue`, `service` or `external`.
    pub kind: String,
    /// Ports to reach it on.
    pub ports: Vec<u16>,
    /// Whether it is another app of this analysis (so reachable by pod selector).
    pub in_analysis: bool,
}

/// One application to deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// DNS-1123 name of every resource.
    pub name: String,
    /// The project it belongs to (`app.kubernetes.io/part-of`).
    pub part_of: String,
    /// Image reference.
    pub image: String,
    /// Built from this source (vs. a third-party image).
    pub built: bool,
    /// Kind.
    pub kind: AppKind,
    /// `app.kubernetes.io/component`, e.g. `api`, `database`.
    pub component: String,
    /// Language, framework.
    pub language: String,
    /// Framework.
    pub framework: String,
    /// Description.
    pub description: String,
    /// Ports.
    pub ports: Vec<AppPort>,
    /// Environment by name.
    pub env: BTreeMap<String, EnvValue>,
    /// Variables the code reads that nothing sets.
    pub env_unset: BTreeSet<String>,
    /// Variables the code and the framework's configuration read, with where and how.
    pub env_reads: crate::detect::EnvReads,
    /// Command override (compose `entrypoint`).
    pub command: Vec<String>,
    /// Args override (compose `command`).
    pub args: Vec<String>,
    /// Health check.
    pub probe: Probe,
    /// Seconds the app needs to start.
    pub startup_secs: u32,
    /// Requests.
    pub requests: Amounts,
    /// Limits.
    pub limits: Amounts,
    /// Persona resource profile: `minimal`, `standard`, `compute-heavy`, `memory-heavy`.
    pub profile: String,
    /// Replicas.
    pub replicas: i32,
    /// Autoscaling range and target, when autoscaled.
    pub autoscale: Option<(i32, i32, i32)>,
    /// Target memory percent of the autoscaler (0 for none).
    pub target_memory: i32,
    /// Scaling behaviour.
    pub behavior: String,
    /// UID to run as when the image's own user is root or a name.
    pub run_as_user: Option<i64>,
    /// Group owning mounted volumes.
    pub fs_group: Option<i64>,
    /// The image's default user is root.
    pub image_runs_as_root: bool,
    /// Writable scratch directories.
    pub scratch: Vec<Scratch>,
    /// Claims mounted.
    pub claims: Vec<ClaimMount>,
    /// Backing services it reaches.
    pub backing: Vec<Backing>,
    /// Other apps of the analysis that reach this one.
    pub dependents: Vec<String>,
    /// Ingress host, when exposed through an Ingress.
    pub host: Option<String>,
    /// Ingress paths with their types.
    pub ingress_paths: Vec<(String, String)>,
    /// Whether ports are published outside (compose), for the network policy.
    pub external: bool,
    /// Metrics path.
    pub metrics_path: Option<String>,
    /// Start command (informational).
    pub start_command: Vec<String>,
    /// Tier.
    pub tier: String,
    /// Ownership: team, owner, repository, on-call, runbook.
    pub team: String,
    /// Owner.
    pub owner: String,
    /// On-call.
    pub oncall: String,
    /// Runbook.
    pub runbook: String,
    /// Maintenance window.
    pub maintenance_window: String,
    /// Automatic restarts allowed.
    pub auto_restart: bool,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    pub annotations: BTreeMap<String, String>,
    /// Rollout strategy: `RollingUpdate` or `Recreate`.
    pub strategy: String,
    /// Why each conclusion was reached.
    pub notes: Vec<String>,
}

/// Returns `s` as a DNS-1123 label: lower case, `[a-z0-9-]`, at most 63 characters, starting
/// and ending alphanumerically; `fallback` when nothing is left.
pub fn dns_label(s: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out: String = out.trim_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() { fallback.to_owned() } else { out }
}

/// Returns whether an environment variable name or value looks like a secret.
pub fn is_secret(name: &str, value: Option<&str>) -> bool {
    const WORDS: &[&str] = &[
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "PWD",
        "TOKEN",
        "KEY",
        "APIKEY",
        "CREDENTIALS",
        "CREDENTIAL",
        "PRIVATE",
        "DSN",
    ];
    // Connection strings usually embed credentials.
    const NAMES: &[&str] =
        &["DATABASE_URL", "DB_URL", "MONGO_URI", "MONGODB_URI", "MONGO_URL", "AMQP_URL", "RABBITMQ_URL"];
    let upper = name.to_ascii_uppercase();
    if upper.split(['_', '-', '.']).any(|w| WORDS.contains(&w)) || NAMES.iter().any(|n| upper.ends_with(n)) {
        return true;
    }
    // A URL with credentials (`postgres://user:pass@db/x`) is a secret whatever its name.
    value.is_some_and(|v| {
        v.split_once("://").is_some_and(|(_, rest)| {
            let authority = rest.split('/').next().unwrap_or("");
            authority.split_once('@').is_some_and(|(creds, _)| creds.contains(':'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label("My_App.v2", "app"), "my-app-v2");
        assert_eq!(dns_label("--", "app"), "app");
        assert_eq!(dns_label(&"a".repeat(70), "app").len(), 63);
    }

    #[test]
    fn secrets_by_name_and_value() {
        assert!(is_secret("DB_PASSWORD", None));
        assert!(is_secret("stripe_api_key", None));
        assert!(is_secret("DATABASE_URL", Some("postgres://app:hunter2@db:5432/app")));
        assert!(is_secret("DATABASE_URL", None));
        assert!(!is_secret("API_URL", Some("http://api:8000")));
        assert!(!is_secret("KEYCLOAK_URL", None));
        assert!(!is_secret("PORT", Some("8080")));
    }
}
