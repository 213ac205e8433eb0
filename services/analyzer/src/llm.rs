//! Optional language-model enhancement through an OpenAI-compatible chat completions endpoint
//! (OpenAI, Ollama's `/v1`, vLLM, LM Studio, Gemini's OpenAI endpoint...). Off unless an
//! endpoint is configured. The model is asked for a strict JSON schema; the answer is parsed
//! and range-checked, and any failure, refusal or timeout leaves the rule-based analysis as it
//! was, with a warning.
//!
//! The endpoint is `https://` (verified against the system's roots, or a CA file for a private
//! endpoint) or `http://`. An API key never crosses the network in clear text: `http://` with a
//! key is refused unless the host is this machine (127.0.0.0/8, `::1`, `localhost`), e.g. a
//! local Ollama or a local proxy. The key is sent only in the `authorization` header and never
//! appears in a log line or an error.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use crate::{analysis::Analysis, model::AppKind};

/// Where and how to reach the model.
#[derive(Clone)]
pub struct LlmConfig {
    /// Base URL ending before `/chat/completions`, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1`.
    pub endpoint: String,
    /// Model name.
    pub model: String,
    /// Bearer token, if the endpoint needs one.
    pub api_key: Option<String>,
    /// PEM bundle of the CA behind an `https://` endpoint's certificate (a private endpoint);
    /// without it, the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl LlmConfig {
    /// Checks the endpoint (see [`check_endpoint`]) with this config's key.
    pub fn check(&self) -> Result<(), String> {
        check_endpoint(&self.endpoint, self.api_key.is_some()).map(|_| ())
    }
}

/// Whether `host` (as in a URL, IPv6 in brackets) is this machine: 127.0.0.0/8, `::1` (also
/// IPv4-mapped) or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Checks an endpoint and returns it parsed: an `http://` or `https://` URL with a host and no
/// credentials in it, and, when an API key goes with it (`with_key`), `https://` or a loopback
/// host, so the key never crosses the network in clear text. The message says what to change.
pub fn check_endpoint(endpoint: &str, with_key: bool) -> Result<Uri, String> {
    let write_it = "write it as https://HOST[:PORT]/v1 (or http:// for a server without an API key or on this machine)";
    let uri: Uri = endpoint.parse().map_err(|e| format!("`{endpoint}` is not a URL ({e}); {write_it}"))?;
    let Some(authority) = uri.authority() else {
        return Err(format!("`{endpoint}` is not a URL with a scheme and a host; {write_it}"));
    };
    if authority.as_str().contains('@') {
        // Not echoed: what precedes the @ is a credential.
        return Err("the endpoint URL holds credentials (USER:PASSWORD@); remove them and configure the API \
                    key instead"
            .into());
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("`{endpoint}` has no host; {write_it}"));
    }
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if with_key && !is_loopback(host) => {
            return Err(format!(
                "`{endpoint}` is plain http:// to {host}, another machine, and an API key is configured: \
                 the key would cross the network in clear text. Use the provider's https:// endpoint, or \
                 reach it through a proxy on this machine (http://127.0.0.1:PORT/...)"
            ));
        }
        Some("http") => {}
        Some(other) => return Err(format!("`{endpoint}`: scheme `{other}` is not http or https; {write_it}")),
        None => return Err(format!("`{endpoint}` has no scheme; {write_it}")),
    }
    Ok(uri)
}

/// A client of the configured endpoint.
#[derive(Clone)]
pub struct Client {
    config: LlmConfig,
    /// The HTTP client, or why there is none (then every call fails with it).
    http: Result<persys_kit::http::Client, String>,
}

/// What the model may change, and nothing else.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Enhancement {
    /// One-paragraph description.
    pub description: String,
    /// `api`, `web` or `worker`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `critical`, `standard` or `best-effort`.
    pub tier: String,
    /// Fewest replicas.
    pub min_replicas: i32,
    /// Most replicas.
    pub max_replicas: i32,
    /// Target CPU percent.
    pub target_cpu: i32,
}

/// The JSON schema the model must answer with.
pub fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["description", "type", "tier", "min_replicas", "max_replicas", "target_cpu"],
        "properties": {
            "description": {"type": "string", "maxLength": 500},
            "type": {"type": "string", "enum": ["api", "web", "worker"]},
            "tier": {"type": "string", "enum": ["critical", "standard", "best-effort"]},
            "min_replicas": {"type": "integer", "minimum": 1, "maximum": 50},
            "max_replicas": {"type": "integer", "minimum": 1, "maximum": 100},
            "target_cpu": {"type": "integer", "minimum": 10, "maximum": 95}
        }
    })
}

impl Enhancement {
    /// Parses and range-checks an answer.
    pub fn parse(content: &str) -> Result<Self, String> {
        let e: Enhancement =
            serde_json::from_str(content.trim()).map_err(|e| format!("answer is not the schema: {e}"))?;
        if e.description.trim().is_empty() || e.description.len() > 500 {
            return Err("description is empty or longer than 500 characters".into());
        }
        if !matches!(e.kind.as_str(), "api" | "web" | "worker") {
            return Err(format!("type `{}` is not api, web or worker", e.kind));
        }
        if !matches!(e.tier.as_str(), "critical" | "standard" | "best-effort") {
            return Err(format!("tier `{}` is not critical, standard or best-effort", e.tier));
        }
        if !(1..=50).contains(&e.min_replicas) || !(e.min_replicas..=100).contains(&e.max_replicas) {
            return Err(format!("replica range {}..{} is out of bounds", e.min_replicas, e.max_replicas));
        }
        if !(10..=95).contains(&e.target_cpu) {
            return Err(format!("target_cpu {} is outside 10-95", e.target_cpu));
        }
        Ok(e)
    }
}

fn prompt(analysis: &Analysis) -> serde_json::Value {
    let app = analysis.primary_app();
    json!({
        "name": app.name,
        "language": app.language,
        "framework": app.framework,
        "detected_type": app.kind.as_str(),
        "ports": app.ports.iter().map(|p| json!({"port": p.port, "purpose": p.purpose})).collect::<Vec<_>>(),
        "dependencies": app.backing.iter().map(|b| &b.name).collect::<Vec<_>>(),
        "environment_names": app.env.keys().collect::<Vec<_>>(),
        "detection_notes": app.notes,
        "owner_instructions": analysis.options.instructions,
    })
}

impl Client {
    /// Returns a client for `config`. A config that fails [`LlmConfig::check`] or whose CA file
    /// is unusable gives a client whose every call fails with the reason, as a warning; use
    /// [`Client::try_new`] to learn it at once.
    pub fn new(config: LlmConfig) -> Self {
        let http = Self::http(&config);
        Self { config, http }
    }

    /// Returns a client for `config`, or what to change in it.
    pub fn try_new(config: LlmConfig) -> Result<Self, String> {
        let http = Self::http(&config)?;
        Ok(Self { config, http: Ok(http) })
    }

    fn http(config: &LlmConfig) -> Result<persys_kit::http::Client, String> {
        config.check()?;
        persys_kit::http::client(config.ca_file.as_deref(), "language model endpoint").map_err(|e| e.to_string())
    }

    async fn call(&self, analysis: &Analysis) -> Result<Enhancement, String> {
        let http = self.http.as_ref()?;
        let body = json!({
            "model": self.config.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": "You are a platform engineer. From the facts detected in an application's source, describe the application in one paragraph and judge its type, criticality tier and replica range. Answer only with JSON matching the schema."},
                {"role": "user", "content": prompt(analysis).to_string()}
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "persona_enhancement", "strict": true, "schema": schema()}}
        });
        let url = format!("{}/chat/completions", self.config.endpoint.trim_end_matches('/'));
        let uri = check_endpoint(&url, self.config.api_key.is_some())?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.authority().map_or_else(String::new, |a| a.to_string());
        let mut request = http::Request::post(uri).header("content-type", "application/json");
        if let Some(key) = &self.config.api_key {
            // The message of a bad value names no part of it.
            let mut value = HeaderValue::try_from(format!("Bearer {key}"))
                .map_err(|_| "the API key holds characters a header cannot carry".to_owned())?;
            value.set_sensitive(true);
            request = request.header("authorization", value);
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| e.to_string())?;
        let response = persys_kit::http::send(http, request, self.config.timeout).await.map_err(|e| {
            let hint = if https && e.contains("certificate") {
                "; if the endpoint's certificate comes from a private CA, give that CA with --llm-ca-file"
            } else {
                ""
            };
            format!("request to {host} failed: {e}{hint}")
        })?;
        if !response.status.is_success() {
            return Err(format!("endpoint answered {}", response.status));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&response.body).map_err(|e| format!("answer is not JSON: {e}"))?;
        let message = &value["choices"][0]["message"];
        if let Some(refusal) = message["refusal"].as_str() {
            return Err(format!("the model refused: {refusal}"));
        }
        let content = message["content"].as_str().ok_or("the answer has no choices[0].message.content")?;
        Enhancement::parse(content)
    }

    /// Refines the primary application of `analysis`; returns whether the model's answer was
    /// used. On failure the analysis keeps its rule-based values and gains a warning.
    pub async fn enhance(&self, analysis: &mut Analysis) -> bool {
        let e = match self.call(analysis).await {
            Ok(e) => e,
            Err(reason) => {
                tracing::warn!(%reason, "language model enhancement failed; using the rules");
                analysis.warnings.push(format!("language model not used ({reason}); the rule-based analysis stands"));
                return false;
            }
        };
        let primary = analysis.primary;
        let app = &mut analysis.apps[primary];
        app.description = e.description.trim().to_owned();
        let kind = AppKind::parse(&e.kind).unwrap_or(app.kind);
        // A worker has no port; never let the model contradict what the files say.
        if (kind == AppKind::Worker) == app.ports.is_empty() {
            app.kind = kind;
        }
        app.tier = e.tier;
        if let Some((_, _, _)) = app.autoscale {
            app.autoscale = Some((e.min_replicas, e.max_replicas, e.target_cpu));
            app.replicas = e.min_replicas;
        }
        app.notes.push("description, type, tier and scaling refined by the language model".into());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = r#"{"description":"Orders API.","type":"api","tier":"critical","min_replicas":3,"max_replicas":12,"target_cpu":60}"#;
        assert_eq!(Enhancement::parse(ok).unwrap().min_replicas, 3);
        for bad in [
            r#"{"description":"x","type":"api","tier":"critical","min_replicas":3,"max_replicas":2,"target_cpu":60}"#,
            r#"{"description":"x","type":"db","tier":"critical","min_replicas":1,"max_replicas":2,"target_cpu":60}"#,
            r#"{"description":"x","type":"api","tier":"critical","min_replicas":1,"max_replicas":2,"target_cpu":60,"extra":1}"#,
            "not json",
        ] {
            assert!(Enhancement::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "127.8.9.10", "[::1]", "::1", "localhost", "LocalHost", "[::ffff:127.0.0.1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["192.0.2.1", "[2001:db8::1]", "localhost.example.com", "example.com", "128.0.0.1", ""] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn an_api_key_never_crosses_the_network_in_clear_text() {
        for ok in [
            ("https://api.example.com/v1", true),
            ("http://127.0.0.1:11434/v1", true),
            ("http://localhost:8080/v1", true),
            ("http://[::1]:8080/v1", true),
            // No key: plain http to another machine (Ollama on a GPU box) stays allowed.
            ("http://192.0.2.1:11434/v1", false),
        ] {
            assert!(check_endpoint(ok.0, ok.1).is_ok(), "{ok:?}: {:?}", check_endpoint(ok.0, ok.1));
        }
        let refused = check_endpoint("http://192.0.2.1:11434/v1", true).unwrap_err();
        assert!(refused.contains("clear text") && refused.contains("https://"), "{refused}");
        for (bad, why) in [
            ("ftp://example.com/v1", "scheme `ftp` is not http or https"),
            ("api.example.com/v1", "is not a URL"),
            ("localhost:8080", "has no scheme"),
            ("http://", "not a URL"),
            ("not a url", "not a URL"),
        ] {
            let e = check_endpoint(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = check_endpoint("https://me:s3cret@api.example.com/v1", false).unwrap_err();
        assert!(e.contains("credentials") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn the_key_is_not_in_debug_output() {
        let config = LlmConfig {
            endpoint: "https://api.example.com/v1".into(),
            model: "m".into(),
            api_key: Some("sk-secret-value".into()),
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        assert!(!format!("{config:?}").contains("sk-secret-value"));
    }
}
