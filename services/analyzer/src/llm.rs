//! Optional language-model enhancement through an OpenAI-compatible chat completions endpoint
//! (OpenAI, Ollama's `/v1`, vLLM, LM Studio, Gemini's OpenAI endpoint...). Off unless an
//! endpoint is configured. The model is asked for a strict JSON schema; the answer is parsed
//! and range-checked, and any failure, refusal or timeout leaves the rule-based analysis as it
//! was, with a warning. Plain `http://` endpoints only: remote providers are reached through a
//! local proxy, so the service holds no outbound TLS configuration.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client as HyperClient, rt::TokioExecutor};
use serde::Deserialize;
use serde_json::json;

use crate::{analysis::Analysis, model::AppKind};

/// Where and how to reach the model.
#[derive(Clone, Debug)]
pub struct LlmConfig {
    /// Base URL ending before `/chat/completions`, e.g. `http://127.0.0.1:11434/v1`.
    pub endpoint: String,
    /// Model name.
    pub model: String,
    /// Bearer token, if the endpoint needs one.
    pub api_key: Option<String>,
    /// Time allowed for one answer.
    pub timeout: Duration,
}

/// A client of the configured endpoint.
#[derive(Clone)]
pub struct Client {
    config: LlmConfig,
    http: HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
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
    /// Returns a client for `config`.
    pub fn new(config: LlmConfig) -> Self {
        let http = HyperClient::builder(TokioExecutor::new()).build_http();
        Self { config, http }
    }

    async fn call(&self, analysis: &Analysis) -> Result<Enhancement, String> {
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
        if !url.starts_with("http://") {
            return Err("the endpoint must be an http:// URL".into());
        }
        let mut request = http::Request::post(&url).header("content-type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let request = request.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| e.to_string())?;
        let response = self.http.request(request).await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| format!("reading the answer: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("endpoint answered {status}"));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))?;
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
        let outcome = match tokio::time::timeout(self.config.timeout, self.call(analysis)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.config.timeout)),
        };
        let e = match outcome {
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
}
