//! The agent's configuration: every flag is also a `PERSYS_AGENT_*` environment variable.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::Parser;
use persys_kit::config::{ConfigError, TelemetryArgs, parse_duration};

/// The Persys node agent: runs workloads on this machine for the scheduler.
#[derive(Parser, Debug, Clone)]
#[command(name = "agent", version, about, long_about = None)]
pub struct Cli {
    /// Scheduler mTLS address (AgentService and certificate renewal), `https://HOST:PORT`.
    #[arg(long, env = "PERSYS_AGENT_SCHEDULER")]
    pub scheduler: String,
    /// Scheduler bootstrap address (server-side TLS only, for Join), `https://HOST:PORT`.
    /// Needed only until the node has joined.
    #[arg(long, env = "PERSYS_AGENT_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// Join token `<id>.<secret>`, used once on the first start.
    #[arg(long, env = "PERSYS_AGENT_JOIN_TOKEN", hide_env_values = true, conflicts_with = "join_token_file")]
    pub join_token: Option<persys_kit::config::Secret>,
    /// File holding the join token (preferred over `--join-token`, which shows in `ps`).
    #[arg(long, env = "PERSYS_AGENT_JOIN_TOKEN_FILE")]
    pub join_token_file: Option<PathBuf>,
    /// PEM file of the cluster CA that the scheduler's certificate must chain to during join;
    /// after join the CA bundle the scheduler returned (in the state directory) is used.
    #[arg(long, env = "PERSYS_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Directory for the node id, key (0600), certificates and process logs.
    #[arg(long, env = "PERSYS_AGENT_STATE_DIR", default_value = "/var/lib/persys-agent")]
    pub state_dir: PathBuf,
    /// Node name reported as hostname; defaults to the machine's hostname.
    #[arg(long, env = "PERSYS_AGENT_NODE_NAME")]
    pub node_name: Option<String>,
    /// Node label `KEY=VALUE`, repeatable or comma-separated.
    #[arg(long = "label", env = "PERSYS_AGENT_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Addresses of this machine to advertise, most preferred first (default: none).
    #[arg(long = "address", env = "PERSYS_AGENT_ADDRESSES", value_delimiter = ',')]
    pub addresses: Vec<String>,
    /// Workload drivers to enable: `docker`, `process` (host processes; off unless listed).
    #[arg(long, env = "PERSYS_AGENT_DRIVERS", value_delimiter = ',', default_value = "docker")]
    pub drivers: Vec<String>,
    /// Directory for host processes' working directories and output (process driver); it must
    /// lie outside `--state-dir`, which holds the node's key.
    #[arg(long, env = "PERSYS_AGENT_PROCESS_DIR", default_value = "/var/lib/persys-processes")]
    pub process_dir: PathBuf,
    /// User (name or UID[:GID]) host processes run as when their spec names none; used when the
    /// agent runs as root (an admin's spec may name another user, `root` included). An agent
    /// that is not root runs them as its own user.
    #[arg(long, env = "PERSYS_AGENT_PROCESS_USER", default_value = "nobody")]
    pub process_user: String,
    /// Docker engine address: `unix:///path` or `tcp://HOST:PORT`; defaults to `DOCKER_HOST`,
    /// then `unix:///var/run/docker.sock`.
    #[arg(long, env = "PERSYS_AGENT_DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Network containers join when their spec names none (`bridge`, `host`, `none`, or a
    /// user-defined network).
    #[arg(long, env = "PERSYS_AGENT_NETWORK_MODE", default_value = "bridge")]
    pub network_mode: String,
    /// Named networks that members' workloads may join besides `--network-mode` and `none`,
    /// comma-separated; `host` and `container:NAME` stay for admins' workloads only.
    #[arg(long, env = "PERSYS_AGENT_ALLOWED_NETWORKS", value_delimiter = ',')]
    pub allowed_networks: Vec<String>,
    /// How long one attempt to pull an image may take before it is abandoned (e.g. `10m`).
    #[arg(long, env = "PERSYS_AGENT_IMAGE_PULL_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub image_pull_timeout: std::time::Duration,
    /// Attempts at pulling an image before the instance fails, with 1 s, 2 s, 4 s... between.
    #[arg(long, env = "PERSYS_AGENT_IMAGE_PULL_ATTEMPTS", default_value_t = 3)]
    pub image_pull_attempts: u32,
    /// Host directory under which workloads may bind-mount paths, repeatable; none allows
    /// named volumes only.
    #[arg(long = "volume-root", env = "PERSYS_AGENT_VOLUME_ROOTS", value_delimiter = ',')]
    pub volume_roots: Vec<PathBuf>,
    /// Loopback address of the local admin gRPC API (AgentAdminService); `off` disables it.
    #[arg(long, env = "PERSYS_AGENT_ADMIN_API_LISTEN", default_value = "127.0.0.1:9091")]
    pub admin_api_listen: String,
    /// Heartbeat interval until the scheduler's Welcome sets its own.
    #[arg(long, env = "PERSYS_AGENT_HEARTBEAT_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
    /// CPU kept for the system, in millicores, subtracted from capacity to give allocatable.
    #[arg(long, env = "PERSYS_AGENT_RESERVED_CPU_MILLIS", default_value_t = 0)]
    pub reserved_cpu_millis: i64,
    /// Memory kept for the system, in bytes, subtracted from capacity to give allocatable.
    #[arg(long, env = "PERSYS_AGENT_RESERVED_MEMORY_BYTES", default_value_t = 0)]
    pub reserved_memory_bytes: i64,
    /// Status events kept while disconnected; the oldest are dropped beyond it.
    #[arg(long, env = "PERSYS_AGENT_EVENT_BUFFER", default_value_t = 4096)]
    pub event_buffer: usize,
    /// Largest gap between reconnect attempts (attempts start at 1 s and double, with jitter).
    #[arg(long, env = "PERSYS_AGENT_MAX_BACKOFF", default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Metrics pipeline address (MetricsIngestService, mTLS with the node's certificate),
    /// `https://HOST:PORT`; host metrics are not shipped when unset.
    #[arg(long, env = "PERSYS_AGENT_METRICS_PIPELINE")]
    pub metrics_pipeline: Option<String>,
    /// Time between host metric samples (one batch each).
    #[arg(long, env = "PERSYS_AGENT_METRICS_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub metrics_interval: Duration,
    /// Metric batches kept while the pipeline has not answered them (720 is one hour at 5 s);
    /// the oldest are dropped beyond it.
    #[arg(long, env = "PERSYS_AGENT_METRICS_BUFFER", default_value_t = 720)]
    pub metrics_buffer: usize,
    /// Executables that admins may run on this machine as host commands (ChatOps), absolute
    /// paths or bare names looked up in a fixed PATH, comma-separated; none by default, so no
    /// host command runs until listed here.
    #[arg(long = "host-commands", env = "PERSYS_AGENT_HOST_COMMANDS", value_delimiter = ',')]
    pub host_commands: Vec<String>,
    /// Also accept shell command lines (`/bin/sh -c`) as host commands: anything the host
    /// command user can do. Off by default.
    #[arg(long, env = "PERSYS_AGENT_HOST_SHELL")]
    pub host_shell: bool,
    /// User (name or UID[:GID]) host commands run as when the agent runs as root; an agent
    /// that is not root runs them as its own user.
    #[arg(long, env = "PERSYS_AGENT_HOST_COMMAND_USER", default_value = "nobody")]
    pub host_command_user: String,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Workload drivers the agent can enable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drivers {
    /// Containers on a Docker engine.
    pub docker: bool,
    /// Processes on the host.
    pub process: bool,
}

impl Cli {
    /// An agent that joins the scheduler at `scheduler` through `bootstrap` with `join_token`,
    /// trusting the CA in `ca_file` and keeping its key and records in `state_dir`, with no
    /// admin port; everything else as the flags' defaults (checked by a test): set the fields
    /// to change them.
    pub fn joining(
        scheduler: String,
        bootstrap: String,
        join_token: String,
        ca_file: PathBuf,
        state_dir: PathBuf,
    ) -> Self {
        Self {
            scheduler,
            bootstrap: Some(bootstrap),
            join_token: Some(join_token.into()),
            join_token_file: None,
            ca_file: Some(ca_file),
            state_dir,
            node_name: None,
            labels: Vec::new(),
            addresses: Vec::new(),
            drivers: vec!["docker".into()],
            process_dir: "/var/lib/persys-processes".into(),
            process_user: "nobody".into(),
            docker_host: None,
            network_mode: "bridge".into(),
            allowed_networks: Vec::new(),
            image_pull_timeout: Duration::from_secs(600),
            image_pull_attempts: 3,
            volume_roots: Vec::new(),
            admin_api_listen: "127.0.0.1:9091".into(),
            heartbeat_interval: Duration::from_secs(5),
            reserved_cpu_millis: 0,
            reserved_memory_bytes: 0,
            event_buffer: 4096,
            max_backoff: Duration::from_secs(30),
            metrics_pipeline: None,
            metrics_interval: Duration::from_secs(5),
            metrics_buffer: 720,
            host_commands: Vec::new(),
            host_shell: false,
            host_command_user: "nobody".into(),
            telemetry: TelemetryArgs::embedded(),
        }
    }

    /// Returns the enabled drivers, or which name is unknown.
    pub fn driver_set(&self) -> Result<Drivers, ConfigError> {
        let mut set = Drivers::default();
        for name in self.drivers.iter().map(|d| d.trim()).filter(|d| !d.is_empty()) {
            match name {
                "docker" => set.docker = true,
                "process" => set.process = true,
                other => {
                    return Err(ConfigError(format!("--drivers: unknown driver `{other}`; use docker and/or process")));
                }
            }
        }
        if set == Drivers::default() {
            return Err(ConfigError("--drivers: enable at least one of docker, process".into()));
        }
        Ok(set)
    }

    /// Returns the process driver's directory, refused when it lies inside the state directory
    /// (or holds it): processes must not reach the node's key.
    pub fn process_dir(&self) -> Result<PathBuf, ConfigError> {
        let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let (dir, state) = (absolute(&self.process_dir), absolute(&self.state_dir));
        if dir.starts_with(&state) || state.starts_with(&dir) {
            return Err(ConfigError(format!(
                "--process-dir {} must lie outside --state-dir {} (which holds the node's key)",
                dir.display(),
                state.display()
            )));
        }
        Ok(dir)
    }

    /// Returns the node labels, or the entry that is not `KEY=VALUE`.
    pub fn label_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut map = BTreeMap::new();
        for entry in self.labels.iter().filter(|e| !e.trim().is_empty()) {
            let (k, v) = entry
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| ConfigError(format!("--label `{entry}`: expected KEY=VALUE")))?;
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(map)
    }

    /// Returns the scheduler address, checked to be `https://HOST:PORT` (TLS comes from the
    /// agent's certificates).
    pub fn scheduler_url(&self) -> Result<String, ConfigError> {
        channel_url("--scheduler", &self.scheduler)
    }

    /// Returns the metrics pipeline address when host metrics are shipped, checked to be
    /// `https://HOST:PORT`, with `--metrics-interval` and `--metrics-buffer` checked to be
    /// above zero.
    pub fn metrics_pipeline_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.metrics_pipeline.as_deref().filter(|u| !u.trim().is_empty()) else { return Ok(None) };
        if self.metrics_interval.is_zero() {
            return Err(ConfigError("--metrics-interval must be above zero".into()));
        }
        if self.metrics_buffer == 0 {
            return Err(ConfigError("--metrics-buffer must be at least 1 batch".into()));
        }
        channel_url("--metrics-pipeline", url).map(Some)
    }

    /// Returns the bootstrap address, if configured.
    pub fn bootstrap_url(&self) -> Result<Option<String>, ConfigError> {
        self.bootstrap.as_deref().map(|b| channel_url("--bootstrap", b)).transpose()
    }

    /// Reads the join token from `--join-token` or `--join-token-file`, if any.
    pub fn join_token(&self) -> Result<Option<String>, ConfigError> {
        if let Some(token) = &self.join_token {
            return Ok(Some(token.expose().trim().to_owned()));
        }
        let Some(path) = &self.join_token_file else { return Ok(None) };
        let token = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("--join-token-file {}: {e}", path.display())))?;
        Ok(Some(token.trim().to_owned()))
    }

    /// Returns the admin API address, `None` when disabled; only loopback addresses are accepted.
    pub fn admin_listen(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.admin_api_listen == "off" {
            return Ok(None);
        }
        let addr: std::net::SocketAddr = self.admin_api_listen.parse().map_err(|_| {
            ConfigError(format!(
                "--admin-api-listen `{}`: expected a loopback HOST:PORT or `off`",
                self.admin_api_listen
            ))
        })?;
        if !addr.ip().is_loopback() {
            return Err(ConfigError(format!("--admin-api-listen `{addr}`: the admin API listens on loopback only")));
        }
        Ok(Some(addr))
    }

    /// Returns the Docker engine address to use.
    pub fn docker_address(&self) -> String {
        self.docker_host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
    }
}

fn channel_url(flag: &str, url: &str) -> Result<String, ConfigError> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .ok_or_else(|| ConfigError(format!("{flag} `{url}`: expected https://HOST:PORT")))?;
    if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
        return Err(ConfigError(format!("{flag} `{url}`: expected https://HOST:PORT")));
    }
    Ok(format!("https://{}", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    #[test]
    fn joining_is_the_flags_defaults() {
        use clap::Parser;
        let argv = ["agent", "--scheduler", "https://s:1", "--bootstrap", "https://s:2", "--join-token", "t"]
            .into_iter()
            .chain(["--ca-file", "/ca.pem", "--state-dir", "/state", "--admin-listen", "off"]);
        let parsed = super::Cli::try_parse_from(argv).unwrap();
        let built = super::Cli::joining(
            "https://s:1".into(),
            "https://s:2".into(),
            "t".into(),
            "/ca.pem".into(),
            "/state".into(),
        );
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        assert_eq!(built.join_token, parsed.join_token, "Debug hides it; compare the value");
    }

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["agent", "--scheduler", "https://scheduler:7443"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn drivers_default_to_docker_and_reject_unknown_names() {
        assert_eq!(cli(&[]).driver_set().unwrap(), Drivers { docker: true, process: false });
        assert_eq!(
            cli(&["--drivers", "docker,process"]).driver_set().unwrap(),
            Drivers { docker: true, process: true }
        );
        assert!(cli(&["--drivers", "podman"]).driver_set().is_err());
    }

    #[test]
    fn labels_and_urls_are_validated() {
        let c = cli(&["--label", "zone=a", "--label", "disk=ssd"]);
        assert_eq!(c.label_map().unwrap().get("zone").map(String::as_str), Some("a"));
        assert!(cli(&["--label", "novalue"]).label_map().is_err());
        assert_eq!(c.scheduler_url().unwrap(), "https://scheduler:7443");
        let bad = Cli::try_parse_from(["agent", "--scheduler", "http://x:1"]).unwrap();
        assert!(bad.scheduler_url().is_err());
        assert!(cli(&["--admin-api-listen", "0.0.0.0:9091"]).admin_listen().is_err());
        assert_eq!(cli(&["--admin-api-listen", "off"]).admin_listen().unwrap(), None);
    }

    #[test]
    fn metrics_shipping_is_off_by_default_and_validated_when_on() {
        let off = cli(&[]);
        assert_eq!(off.metrics_pipeline_url().unwrap(), None);
        assert_eq!((off.metrics_interval, off.metrics_buffer), (Duration::from_secs(5), 720));
        let on = cli(&["--metrics-pipeline", "https://pipeline:7445/", "--metrics-interval", "250ms"]);
        assert_eq!(on.metrics_pipeline_url().unwrap().as_deref(), Some("https://pipeline:7445"));
        assert_eq!(on.metrics_interval, Duration::from_millis(250));
        assert!(cli(&["--metrics-pipeline", "pipeline:7445"]).metrics_pipeline_url().is_err());
        assert!(
            cli(&["--metrics-pipeline", "https://p:1", "--metrics-interval", "0s"]).metrics_pipeline_url().is_err()
        );
        assert!(cli(&["--metrics-pipeline", "https://p:1", "--metrics-buffer", "0"]).metrics_pipeline_url().is_err());
    }
}
