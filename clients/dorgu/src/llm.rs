//! `--llm`: the analyzer's language-model client configured from the flags, their environment
//! variables and the global config, in that order. Nothing here can fail the command: a model
//! that is not configured, not reachable or answers badly leaves the static analysis, with a
//! warning saying why. The endpoint is https:// (the system's roots, or `--llm-ca-file` /
//! `llm.ca_file`) or http://; an API key goes over plain http:// only to this machine.

use std::{path::PathBuf, time::Duration};

use persys_analyzer::llm::{Client, LlmConfig};

use crate::{cli::LlmArgs, config::GlobalConfig};

/// Ollama's OpenAI-compatible endpoint on this machine.
pub const OLLAMA: &str = "http://127.0.0.1:11434/v1";

/// The warning added when the model is not used, as the analyzer words its own.
pub fn not_used(reason: &str) -> String {
    format!("language model not used ({reason}); the rule-based analysis stands")
}

/// Returns the model's configuration, or why there is none.
pub fn config(args: &LlmArgs, global: &GlobalConfig) -> Result<LlmConfig, String> {
    let g = &global.llm;
    let endpoint = args
        .llm_endpoint
        .clone()
        .filter(|e| !e.is_empty())
        .or_else(|| Some(g.endpoint.clone()).filter(|e| !e.is_empty()))
        .or_else(|| (g.provider == "ollama").then(|| OLLAMA.to_owned()))
        .ok_or_else(|| "no endpoint: give --llm-endpoint or set llm.endpoint with `dorgu config set`".to_owned())?;
    let model = args
        .llm_model
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| Some(g.model.clone()).filter(|m| !m.is_empty()))
        .ok_or_else(|| "no model: give --llm-model or set llm.model with `dorgu config set`".to_owned())?;
    let api_key = args
        .llm_api_key
        .clone()
        .filter(|k| !k.is_empty())
        .or_else(|| Some(g.api_key.clone()).filter(|k| !k.is_empty()));
    let ca_file = args
        .llm_ca_file
        .clone()
        .filter(|f| !f.as_os_str().is_empty())
        .or_else(|| Some(PathBuf::from(&g.ca_file)).filter(|f| !f.as_os_str().is_empty()));
    let config = LlmConfig { endpoint, model, api_key, ca_file, timeout: Duration::from_secs(args.llm_timeout.max(1)) };
    // The message names the endpoint, never the key.
    config.check().map_err(|e| format!("endpoint {e}"))?;
    Ok(config)
}

/// Returns the client, or why there is none (a bad endpoint, an unusable CA file).
pub fn client(args: &LlmArgs, global: &GlobalConfig) -> Result<Client, String> {
    Client::try_new(config(args, global)?)
}
