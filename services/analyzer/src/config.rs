//! The analyzer's configuration: every flag is also a `PERSYS_ANALYZER_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser};
use persys_kit::config::{ConfigError, TelemetryArgs, TlsArgs, parse_duration};

use crate::llm::{Client, LlmConfig};

/// The Persys analyzer: an application's source to Kubernetes manifests and a persona.
#[derive(Parser, Debug)]
#[command(name = "analyzer", version, about, long_about = None)]
pub struct Cli {
    /// Serving options.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Options of the server.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// gRPC address (mTLS).
    #[arg(long, env = "PERSYS_ANALYZER_LISTEN", default_value = "127.0.0.1:7300")]
    pub listen: SocketAddr,
    /// Largest request message accepted, in bytes (AnalyzeRepository carries all files in one).
    #[arg(long, env = "PERSYS_ANALYZER_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Services allowed to call the analyzer, by certificate identity (comma-separated).
    #[arg(
        long = "allowed-caller",
        env = "PERSYS_ANALYZER_ALLOWED_CALLERS",
        value_delimiter = ',',
        default_value = "gateway,reconciler,stack"
    )]
    pub allowed_callers: Vec<String>,
    /// How long in-flight calls may finish after SIGTERM.
    #[arg(long, env = "PERSYS_ANALYZER_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// OpenAI-compatible endpoint for the optional enhancement, e.g. `https://api.openai.com/v1`
    /// or `http://127.0.0.1:11434/v1`; unset disables it. With an API key, plain `http://` is
    /// refused unless the host is this machine (the key would cross the network in clear text).
    #[arg(long, env = "PERSYS_ANALYZER_LLM_ENDPOINT")]
    pub llm_endpoint: Option<String>,
    /// Model to ask.
    #[arg(long, env = "PERSYS_ANALYZER_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    /// File holding the endpoint's API key, if it needs one.
    #[arg(long, env = "PERSYS_ANALYZER_LLM_API_KEY_FILE")]
    pub llm_api_key_file: Option<PathBuf>,
    /// PEM file of the CA behind an https:// endpoint with a private CA (default: the system's
    /// roots).
    #[arg(long, env = "PERSYS_ANALYZER_LLM_CA_FILE")]
    pub llm_ca_file: Option<PathBuf>,
    /// Time allowed for one answer before falling back to the rules.
    #[arg(long, env = "PERSYS_ANALYZER_LLM_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub llm_timeout: Duration,
    /// mTLS material.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Logs, traces, metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl ServeArgs {
    /// Returns the language-model configuration, or `None` when disabled.
    pub fn llm(&self) -> Result<Option<LlmConfig>, ConfigError> {
        let Some(endpoint) = self.llm_endpoint.clone().filter(|e| !e.is_empty()) else { return Ok(None) };
        let api_key = match &self.llm_api_key_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("--llm-api-key-file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            )
            .filter(|k| !k.is_empty()),
            None => None,
        };
        let config = LlmConfig {
            endpoint,
            model: self.llm_model.clone(),
            api_key,
            ca_file: self.llm_ca_file.clone(),
            timeout: self.llm_timeout,
        };
        config.check().map_err(|e| ConfigError(format!("--llm-endpoint: {e}")))?;
        // Reads the CA file now, so an unusable one stops the start instead of every call.
        Client::try_new(config.clone()).map_err(|e| ConfigError(format!("--llm-ca-file: {e}")))?;
        Ok(Some(config))
    }

    /// Returns the allowed caller names, checked.
    pub fn callers(&self) -> Result<Vec<String>, ConfigError> {
        let callers: Vec<String> =
            self.allowed_callers.iter().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect();
        if let Some(bad) = callers.iter().find(|c| !c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-')) {
            return Err(ConfigError(format!("--allowed-caller `{bad}` is not a service name")));
        }
        Ok(callers)
    }
}
