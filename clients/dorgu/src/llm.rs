//! `--llm`: the analyzer's language-model client configured from the flags, their environment
//! variables and the global config, in that order. Nothing here can fail the command: a model
//! that is not configured, not reachable or answers badly leaves the static analysis, with a
//! warning saying why.

use std::time::Duration;

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
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "endpoint `{endpoint}` is not an http:// URL; reach remote providers through a local proxy"
        ));
    }
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
    Ok(LlmConfig { endpoint, model, api_key, timeout: Duration::from_secs(args.llm_timeout.max(1)) })
}

/// Returns the client, or why there is none.
pub fn client(args: &LlmArgs, global: &GlobalConfig) -> Result<Client, String> {
    config(args, global).map(Client::new)
}
