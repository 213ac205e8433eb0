//! The pipeline's configuration: every flag is also a `PERSYS_METRICS_*` environment variable
//! (the service is named `metrics`; only the crate and binary say `metrics-pipeline`).

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser};
use persys_kit::{
    config::{ConfigError, TelemetryArgs, TlsArgs, parse_duration},
    tls::CertsDir,
};

/// The Persys metrics pipeline: host metrics from agents into PostgreSQL (or SQLite), and queries.
#[derive(Parser, Debug)]
#[command(name = "metrics-pipeline", version, about, long_about = None)]
pub struct Cli {
    /// Serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Options of the server.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// gRPC address (mTLS): agents ingest, the gateway and services query.
    #[arg(long, env = "PERSYS_METRICS_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,
    /// PostgreSQL URL, e.g. `postgres://persys@db/persys_metrics`; or a SQLite file,
    /// `sqlite://PATH?mode=rwc`, for a single pipeline (one process: the all-in-one stack).
    #[arg(long, env = "PERSYS_METRICS_DATABASE_URL", hide_env_values = true)]
    pub database_url: persys_kit::config::Secret,
    /// PostgreSQL schema holding the pipeline's tables and migration history (created if
    /// missing), so the pipeline can share a database with the gateway; unused on SQLite.
    #[arg(long, env = "PERSYS_METRICS_DATABASE_SCHEMA", default_value = "metrics")]
    pub database_schema: String,
    /// Most database connections (PostgreSQL; SQLite uses one, its single writer).
    #[arg(long, env = "PERSYS_METRICS_DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    pub database_max_connections: u32,
    /// Services allowed to query, by certificate identity (comma-separated); users come
    /// through the gateway.
    #[arg(
        long = "allowed-caller",
        env = "PERSYS_METRICS_ALLOWED_CALLERS",
        value_delimiter = ',',
        default_value = "gateway,reconciler,stack"
    )]
    pub allowed_callers: Vec<String>,
    /// How long raw samples are kept; older samples are refused at ingest, e.g. `7d`.
    #[arg(long, env = "PERSYS_METRICS_RAW_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub raw_retention: Duration,
    /// How long the one-minute rollups are kept (queries with whole-minute steps read them).
    #[arg(long, env = "PERSYS_METRICS_MINUTE_RETENTION", default_value = "90d", value_parser = parse_duration)]
    pub minute_retention: Duration,
    /// How long the one-hour rollups are kept (queries with whole-hour steps read them).
    #[arg(long, env = "PERSYS_METRICS_HOUR_RETENTION", default_value = "730d", value_parser = parse_duration)]
    pub hour_retention: Duration,
    /// How many live samples a watcher may fall behind before it is dropped.
    #[arg(long, env = "PERSYS_METRICS_WATCH_BUFFER", default_value_t = 1024)]
    pub watch_buffer: usize,
    /// First retry delay of a failed notification, doubled per attempt up to 5 min.
    #[arg(long, env = "PERSYS_METRICS_NOTIFY_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub notify_backoff: Duration,
    /// How long a failing notification is retried before it is given up.
    #[arg(long, env = "PERSYS_METRICS_NOTIFY_GIVE_UP", default_value = "1h", value_parser = parse_duration)]
    pub notify_give_up: Duration,
    /// Bound on one notification delivery.
    #[arg(long, env = "PERSYS_METRICS_NOTIFY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub notify_timeout: Duration,
    /// How often open alerts are re-posted to Alertmanager channels (it ends alerts that are
    /// not re-sent within 5 min) and repeat notifications are queued.
    #[arg(long, env = "PERSYS_METRICS_NOTIFY_REFRESH", default_value = "1m", value_parser = parse_duration)]
    pub notify_refresh: Duration,
    /// GitHub API base URL the DORA pipeline reads commits from (GitHub Enterprise:
    /// `https://<host>/api/v3`).
    #[arg(long, env = "PERSYS_METRICS_GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,
    /// GitHub token for reading commits (contents: read); anonymous calls get 60 an hour.
    /// Or authenticate as a GitHub App with the three `--github-app-*` flags instead.
    #[arg(long, env = "PERSYS_METRICS_GITHUB_TOKEN", hide_env_values = true, conflicts_with = "github_app_id")]
    pub github_token: Option<persys_kit::config::Secret>,
    /// GitHub App ID (or client ID) to read commits as an app installation (permission
    /// contents: read); needs `--github-app-installation-id` and `--github-app-private-key-file`.
    #[arg(long, env = "PERSYS_METRICS_GITHUB_APP_ID", requires_all = ["github_app_installation_id", "github_app_private_key_file"])]
    pub github_app_id: Option<String>,
    /// The installation of the GitHub App (in the organisation owning the repositories).
    #[arg(long, env = "PERSYS_METRICS_GITHUB_APP_INSTALLATION_ID", requires = "github_app_id")]
    pub github_app_installation_id: Option<u64>,
    /// The GitHub App's private key, PEM as GitHub hands it out (or PKCS#8).
    #[arg(long, env = "PERSYS_METRICS_GITHUB_APP_PRIVATE_KEY_FILE", requires = "github_app_id")]
    pub github_app_private_key_file: Option<std::path::PathBuf>,
    /// Source repository of an image repository, `<image repository>=<repository URL>`
    /// (repeatable; comma-separated in the environment), e.g.
    /// `quay.io/acme/ui=https://github.com/acme/ui`; images without one are looked up by
    /// GitHub commit search.
    #[arg(long = "dora-image-repo", env = "PERSYS_METRICS_DORA_IMAGE_REPOS", value_delimiter = ',', value_parser = parse_image_repo)]
    pub dora_image_repos: Vec<(String, String)>,
    /// Apache DevLake base URL deployments are sent to; none when unset.
    #[arg(long, env = "PERSYS_METRICS_DEVLAKE_URL")]
    pub devlake_url: Option<String>,
    /// DevLake webhook connection ids every deployment is sent to (comma-separated).
    #[arg(long = "devlake-connection", env = "PERSYS_METRICS_DEVLAKE_CONNECTIONS", value_delimiter = ',')]
    pub devlake_connections: Vec<String>,
    /// DevLake webhook API key (sent as a Bearer token).
    #[arg(long, env = "PERSYS_METRICS_DEVLAKE_TOKEN", hide_env_values = true)]
    pub devlake_token: Option<persys_kit::config::Secret>,
    /// Attempts of a DevLake push (and of resolving commits) before it is given up.
    #[arg(long, env = "PERSYS_METRICS_DEVLAKE_ATTEMPTS", default_value_t = 6)]
    pub devlake_attempts: i32,
    /// First retry delay of a DevLake push or a GitHub lookup, doubled per attempt.
    #[arg(long, env = "PERSYS_METRICS_DEVLAKE_BACKOFF", default_value = "1s", value_parser = parse_duration)]
    pub devlake_backoff: Duration,
    /// Redis URL holding DevLake claims, so pipelines with their own databases (one per
    /// cluster) send each deployment once; give Redis AOF persistence.
    #[arg(long, env = "PERSYS_METRICS_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<persys_kit::config::Secret>,
    /// Prefix of the pipeline's keys in Redis; pipelines that must send each deployment once
    /// between them share it.
    #[arg(long, env = "PERSYS_METRICS_REDIS_PREFIX", default_value = "persys:dora")]
    pub redis_prefix: String,
    /// How long Redis remembers a sent deployment.
    #[arg(long, env = "PERSYS_METRICS_DORA_DEDUPE_TTL", default_value = "30d", value_parser = parse_duration)]
    pub dora_dedupe_ttl: Duration,
    /// Scheduler (`https://scheduler:7443`): its workloads are recorded as DORA deployments
    /// (each workload one rollout of its name), and host commands and container actions are
    /// relayed through it to the nodes' agents; both off when unset.
    #[arg(long, env = "PERSYS_METRICS_SCHEDULER")]
    pub scheduler: Option<String>,
    /// Cluster-wide allow-list of host commands, comma-separated: when set, `argv[0]` must be
    /// one of these exactly and shell command lines are refused; when empty, each node's agent
    /// list decides alone (and an agent allows none until told).
    #[arg(long = "host-commands", env = "PERSYS_METRICS_HOST_COMMANDS", value_delimiter = ',')]
    pub host_commands: Vec<String>,
    /// The cluster name those rollouts carry.
    #[arg(long, env = "PERSYS_METRICS_ROLLOUTS_CLUSTER", default_value = "persys")]
    pub rollouts_cluster: String,
    /// How long in-flight calls may finish after SIGTERM.
    #[arg(long, env = "PERSYS_METRICS_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// mTLS material.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Parses `<image repository>=<repository URL>`.
fn parse_image_repo(s: &str) -> Result<(String, String), String> {
    let (image, repo) = s.split_once('=').ok_or_else(|| format!("{s:?}: use <image repository>=<repository URL>"))?;
    let repo = crate::dora::github::normalise_repo_url(repo)
        .ok_or_else(|| format!("{repo:?} is not a repository URL like https://github.com/<owner>/<repo>"))?;
    let image = image.trim().trim_end_matches('/');
    if image.is_empty() || image.contains(['@', ' ']) {
        return Err(format!("{s:?}: the image repository (before '=') is empty or has a tag or digest"));
    }
    Ok((image.to_owned(), repo))
}

impl ServeArgs {
    /// How the DORA pipeline reaches GitHub, DevLake and Redis; an error names a GitHub App
    /// key that cannot be used.
    pub fn dora_options(&self) -> Result<crate::dora::Options, String> {
        let github_app = match (&self.github_app_id, self.github_app_installation_id, &self.github_app_private_key_file)
        {
            (Some(id), Some(installation), Some(key)) => Some(
                crate::dora::github_app::AppCredentials::from_file(id, installation, key)
                    .map_err(|e| format!("--github-app-private-key-file {e}"))?,
            ),
            (None, None, None) => None,
            _ => {
                return Err("a GitHub App needs all of --github-app-id, --github-app-installation-id and \
                            --github-app-private-key-file"
                    .into());
            }
        };
        Ok(crate::dora::Options {
            github_api: self.github_api_url.clone(),
            github_token: self.github_token.clone(),
            github_app,
            image_repos: self.dora_image_repos.clone(),
            devlake_url: self.devlake_url.clone(),
            devlake_token: self.devlake_token.clone(),
            devlake_connections: self.devlake_connections.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            dedupe_ttl: self.dora_dedupe_ttl,
            backoff: self.devlake_backoff,
            attempts: self.devlake_attempts,
            ..crate::dora::Options::default()
        })
    }

    /// How notifications are retried and refreshed.
    pub fn notify_options(&self) -> crate::notify::Options {
        crate::notify::Options {
            backoff: self.notify_backoff,
            give_up: self.notify_give_up,
            timeout: self.notify_timeout,
            refresh: self.notify_refresh,
        }
    }

    /// A pipeline on a loopback port the system picks, over `database_url`, with the
    /// `metrics` certificate under `certs` and the flags' defaults otherwise.
    pub fn loopback(certs: &CertsDir, database_url: String) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            database_schema: "metrics".into(),
            database_max_connections: 8,
            allowed_callers: ["gateway", "reconciler", "stack"].map(String::from).to_vec(),
            raw_retention: Duration::from_secs(7 * 86_400),
            minute_retention: Duration::from_secs(90 * 86_400),
            hour_retention: Duration::from_secs(730 * 86_400),
            watch_buffer: 1024,
            notify_backoff: Duration::from_secs(1),
            notify_give_up: Duration::from_secs(3600),
            notify_timeout: Duration::from_secs(10),
            notify_refresh: Duration::from_secs(60),
            github_api_url: "https://api.github.com".into(),
            github_token: None,
            github_app_id: None,
            github_app_installation_id: None,
            github_app_private_key_file: None,
            dora_image_repos: Vec::new(),
            devlake_url: None,
            devlake_connections: Vec::new(),
            devlake_token: None,
            devlake_attempts: 6,
            devlake_backoff: Duration::from_secs(1),
            redis_url: None,
            redis_prefix: "persys:dora".into(),
            dora_dedupe_ttl: Duration::from_secs(30 * 86_400),
            scheduler: None,
            host_commands: Vec::new(),
            rollouts_cluster: "persys".into(),
            drain_timeout: Duration::from_secs(10),
            tls: TlsArgs::from_certs(certs, crate::SERVICE),
            telemetry: TelemetryArgs::embedded(),
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.watch_buffer == 0 {
            return Err(ConfigError("--watch-buffer / PERSYS_METRICS_WATCH_BUFFER must be at least 1".into()));
        }
        if self.notify_refresh < Duration::from_secs(1) || self.notify_refresh > Duration::from_secs(120) {
            return Err(ConfigError(
                "--notify-refresh / PERSYS_METRICS_NOTIFY_REFRESH must be between 1s and 2m (Alertmanager ends alerts not re-sent within 5m)".into(),
            ));
        }
        if self.notify_backoff.is_zero() || self.notify_timeout.is_zero() {
            return Err(ConfigError("--notify-backoff and --notify-timeout must be more than 0".into()));
        }
        if self.devlake_url.is_some() && self.devlake_connections.is_empty() {
            return Err(ConfigError(
                "--devlake-url is set but no --devlake-connection / PERSYS_METRICS_DEVLAKE_CONNECTIONS: name the webhook connection ids deployments go to".into(),
            ));
        }
        if let Some(url) = &self.devlake_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(ConfigError(format!(
                "--devlake-url / PERSYS_METRICS_DEVLAKE_URL: {url:?} is not an http(s) URL"
            )));
        }
        if !(1..=20).contains(&self.devlake_attempts) || self.devlake_backoff.is_zero() {
            return Err(ConfigError("--devlake-attempts must be 1 to 20 and --devlake-backoff more than 0".into()));
        }
        if let Some(url) = &self.redis_url
            && !url.expose().starts_with("redis://")
            && !url.expose().starts_with("rediss://")
        {
            return Err(ConfigError("--redis-url / PERSYS_METRICS_REDIS_URL must be a redis:// URL".into()));
        }
        if self.minute_retention < self.raw_retention || self.hour_retention < self.minute_retention {
            return Err(ConfigError(
                "retention must grow with the resolution: --raw-retention <= --minute-retention <= --hour-retention"
                    .into(),
            ));
        }
        if self.raw_retention < Duration::from_secs(3600) {
            return Err(ConfigError("--raw-retention / PERSYS_METRICS_RAW_RETENTION must be at least 1h".into()));
        }
        if !crate::store::valid_schema(&self.database_schema) {
            return Err(ConfigError(format!(
                "--database-schema / PERSYS_METRICS_DATABASE_SCHEMA: `{}` is not a plain lowercase name",
                self.database_schema
            )));
        }
        let url = self.database_url.expose();
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") && !crate::db::is_sqlite(url) {
            return Err(ConfigError(
                "--database-url / PERSYS_METRICS_DATABASE_URL must be a postgres:// URL (or sqlite://PATH?mode=rwc for a single pipeline)"
                    .into(),
            ));
        }
        Ok(())
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
        let mut argv: Vec<String> = ["metrics-pipeline", "--listen", "127.0.0.1:0", "--admin-listen", "off"]
            .into_iter()
            .chain(["--database-url", "postgres://db/m", "--log-format", "text"])
            .map(String::from)
            .collect();
        argv.extend(certs.tls_flags("metrics"));
        let parsed = Cli::try_parse_from(argv).unwrap().serve;
        let built = ServeArgs::loopback(&certs, "postgres://db/m".into());
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
        assert_eq!(built.database_url, parsed.database_url, "Debug hides it; compare the value");
        assert!(built.validate().is_ok());
        let sqlite = ServeArgs { database_url: "sqlite://x.db?mode=rwc".into(), ..built.clone() };
        assert!(sqlite.validate().is_ok());
        let mysql = ServeArgs { database_url: "mysql://db/m".into(), ..built };
        assert!(mysql.validate().unwrap_err().0.contains("postgres://"));
    }
}
