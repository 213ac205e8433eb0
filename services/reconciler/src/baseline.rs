//! Resource baselines: with a Prometheus URL configured, the persona controller asks the
//! [`Learner`] after each reconcile, and it measures the workload's container over the window
//! (mean and peak CPU and memory, see [`crate::decide::baseline`]) at most once per interval
//! per persona, writing `status.learned` and the `BaselineLearned` condition under its own
//! field manager, [`MANAGER`]. The persona controller turns the baseline into right-sizing
//! recommendations on its next reconcile (the write wakes it).
//!
//! Prometheus missing, failing or without the series is reported in the condition (reason
//! `PrometheusUnavailable` or `NoData`), never fatal; the last baseline stays, and the next
//! attempt waits [`RETRY`] (or the interval, when shorter).

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use persys_crds::persona::{ApplicationPersona, Learned};

use crate::decide::{
    baseline::{self, Measured, Target},
    status,
};

/// The field manager of `status.learned` and the `BaselineLearned` condition.
pub const MANAGER: &str = "persys-reconciler-baseline";
/// The condition this module owns.
pub const CONDITION: &str = "BaselineLearned";
/// Wait after a failed attempt before the next one.
pub const RETRY: Duration = Duration::from_secs(300);

/// Where Prometheus is and how often to ask it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Base URL, such as `http://prometheus-server.monitoring.svc` (a path prefix is kept).
    pub url: String,
    /// A bearer token is read from this file before each baseline (rotated tokens work).
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for an `https` URL; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Learn a persona's baseline at most this often.
    pub interval: Duration,
    /// Over this much history.
    pub window: Duration,
    /// Per query.
    pub timeout: Duration,
}

impl Options {
    /// Defaults: every 15 minutes over the last hour, 10 s a query.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token_file: None,
            ca_file: None,
            interval: Duration::from_secs(900),
            window: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a baseline could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Prometheus could not be reached, timed out, or answered with an error.
    #[error("Prometheus at {url}: {reason}")]
    Unavailable {
        /// Where.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Measures workloads through Prometheus's HTTP API and records baselines.
pub struct Learner {
    options: Options,
    endpoint: String,
    http: persys_kit::http::Client,
    /// Last attempt per persona uid, so a failing Prometheus is not asked on every reconcile.
    attempts: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Learner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learner").field("options", &self.options).finish_non_exhaustive()
    }
}

/// A parse of `/api/v1/query`'s answer: the single value of a vector or scalar result, `None`
/// for an empty vector or NaN.
pub fn parse_answer(body: &[u8]) -> Result<Option<f64>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let error = v["error"].as_str().unwrap_or("no reason given");
        return Err(format!("{kind}: {error}"));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([]) => return Ok(None),
            Some([one]) => &one["value"],
            Some(_) => return Err("the query returned several series; one was expected".into()),
            None => return Err("a vector answer without a result".into()),
        },
        Some("scalar") => &data["result"],
        other => return Err(format!("unexpected result type {other:?}")),
    };
    let value = sample[1].as_str().ok_or("a sample without a value")?;
    let value: f64 = value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    Ok(value.is_finite().then_some(value))
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Learner {
    /// A learner for `options`; fails on a URL that is not http(s) or an unreadable CA file.
    pub fn new(options: Options) -> anyhow::Result<Self> {
        let url = options.url.trim_end_matches('/').to_owned();
        let uri: http::Uri = url.parse().map_err(|e| anyhow::anyhow!("--prometheus-url `{url}`: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            anyhow::bail!("--prometheus-url `{url}`: give an http:// or https:// URL with a host");
        }
        let http = persys_kit::http::client(options.ca_file.as_deref(), "Prometheus")?;
        Ok(Self { endpoint: format!("{url}/api/v1/query"), options, http, attempts: Mutex::new(HashMap::new()) })
    }

    fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::Unavailable { url: self.options.url.clone(), reason: reason.into() }
    }

    /// One instant query.
    async fn query(&self, promql: &str, token: Option<&str>) -> Result<Option<f64>, Error> {
        let mut request = http::Request::post(&self.endpoint)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = Full::new(Bytes::from(format!("query={}", form_encode(promql))));
        let request = request.body(body).map_err(|e| self.unavailable(e.to_string()))?;
        let response = persys_kit::http::send(&self.http, request, self.options.timeout)
            .await
            .map_err(|reason| self.unavailable(reason))?;
        let (status, body) = (response.status, response.body);
        match parse_answer(&body) {
            Ok(v) if status.is_success() => Ok(v),
            Ok(_) => Err(self.unavailable(format!("HTTP {status}"))),
            Err(reason) => Err(self.unavailable(format!("HTTP {status}: {reason}"))),
        }
    }

    /// The four figures of `target`'s baseline.
    pub async fn measure(&self, target: &Target) -> Result<Measured, Error> {
        let token = match &self.options.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| self.unavailable(format!("reading the token file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let q = baseline::queries(target, self.options.window);
        let t = token.as_deref();
        let (avg_cpu, peak_cpu, avg_memory, peak_memory) = tokio::try_join!(
            self.query(&q.avg_cpu, t),
            self.query(&q.peak_cpu, t),
            self.query(&q.avg_memory, t),
            self.query(&q.peak_memory, t)
        )?;
        Ok(Measured { avg_cpu, peak_cpu, avg_memory, peak_memory })
    }

    /// Whether `persona` is due: its last baseline is an interval old (or missing), and no
    /// attempt was made for it within [`RETRY`] (or the interval, when shorter).
    fn due(&self, persona: &ApplicationPersona, now: Timestamp) -> bool {
        let last = persona.status.as_ref().and_then(|s| s.learned.as_ref()).and_then(|l| l.last_learned.as_deref());
        if !baseline::due(last, now, self.options.interval) {
            return false;
        }
        let uid = persona.uid().unwrap_or_default();
        let mut attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let backoff = RETRY.min(self.options.interval);
        if attempts.get(&uid).is_some_and(|at| at.elapsed() < backoff) {
            return false;
        }
        if attempts.len() >= 1024 {
            // Deleted personas' entries go once they no longer hold anything back.
            attempts.retain(|_, at| at.elapsed() < backoff);
        }
        attempts.insert(uid, Instant::now());
        true
    }

    /// Learns `persona`'s baseline from `target` when it is due, and records the outcome.
    pub async fn learn_if_due(
        &self,
        client: &Client,
        persona: &ApplicationPersona,
        target: &Target,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        if !self.due(persona, now) {
            return Ok(());
        }
        let previous = persona.status.clone().unwrap_or_default();
        let generation = persona.metadata.generation;
        let (learned, condition) = match self.measure(target).await {
            Ok(measured) => match measured.baseline() {
                Some(b) => {
                    let message = format!(
                        "{} {}/{} container {} over the last {}s: CPU {} mean, {} peak; memory {} mean, {} peak",
                        match target.kind {
                            baseline::Kind::Deployment => "Deployment",
                            baseline::Kind::StatefulSet => "StatefulSet",
                        },
                        target.namespace,
                        target.name,
                        target.container,
                        self.options.window.as_secs(),
                        or_dash(&b.avg_cpu),
                        or_dash(&b.peak_cpu),
                        or_dash(&b.avg_memory),
                        or_dash(&b.peak_memory),
                    );
                    let learned = Learned { resource_baseline: Some(b), last_learned: Some(now.to_string()) };
                    (
                        Some(learned),
                        status::condition(&previous.conditions, CONDITION, true, "Learned", message, generation, now),
                    )
                }
                None => (
                    None,
                    status::condition(
                        &previous.conditions,
                        CONDITION,
                        false,
                        "NoData",
                        format!(
                            "Prometheus has no container_cpu_usage_seconds_total or container_memory_working_set_bytes \
                             series for container {} of the pods of {}/{} in the last {}s",
                            target.container,
                            target.namespace,
                            target.name,
                            self.options.window.as_secs()
                        ),
                        generation,
                        now,
                    ),
                ),
            },
            Err(error) => {
                tracing::warn!(persona = %persona.name_any(), %error, "no baseline learned");
                (
                    None,
                    status::condition(
                        &previous.conditions,
                        CONDITION,
                        false,
                        "PrometheusUnavailable",
                        error.to_string(),
                        generation,
                        now,
                    ),
                )
            }
        };
        let unchanged_condition = previous.conditions.iter().any(|c| same_condition(c, &condition));
        if learned.is_none() && unchanged_condition {
            return Ok(());
        }
        let mut status = serde_json::json!({ "conditions": [condition] });
        // A failure keeps the last baseline: this manager sends it again so it stays owned.
        if let Some(l) = learned.as_ref().or(previous.learned.as_ref()) {
            status["learned"] = serde_json::to_value(l).unwrap_or_default();
        }
        let patch = serde_json::json!({
            "apiVersion": persys_crds::persona::API_VERSION,
            "kind": persys_crds::persona::KIND,
            "status": status,
        });
        let ns = persona.namespace().unwrap_or_default();
        Api::<ApplicationPersona>::namespaced(client.clone(), &ns)
            .patch_status(&persona.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        if let Some(b) = learned.and_then(|l| l.resource_baseline) {
            tracing::info!(
                persona = %persona.name_any(), namespace = %ns, avg_cpu = %b.avg_cpu, peak_cpu = %b.peak_cpu,
                avg_memory = %b.avg_memory, peak_memory = %b.peak_memory, "baseline learned"
            );
        }
        Ok(())
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn same_condition(a: &Condition, b: &Condition) -> bool {
    a.type_ == b.type_ && a.status == b.status && a.reason == b.reason && a.message == b.message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_or_refused_with_the_reason() {
        let one =
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.25"]}]}}"#;
        assert_eq!(parse_answer(one), Ok(Some(0.25)));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(empty), Ok(None));
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"NaN"]}}"#;
        assert_eq!(parse_answer(nan), Ok(None));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(parse_answer(error), Err("bad_data: parse error at char 3".into()));
        assert!(parse_answer(b"<html>").unwrap_err().starts_with("not a Prometheus answer"));
        let two =
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#;
        assert!(parse_answer(two).is_err());
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(form_encode(r#"a{b="c d"}[1h]"#), "a%7Bb%3D%22c+d%22%7D%5B1h%5D");
    }

    #[test]
    fn urls_are_checked() {
        assert!(Learner::new(Options::new("ftp://x")).is_err());
        assert!(Learner::new(Options::new("not a url")).is_err());
        let l = Learner::new(Options::new("http://prometheus.monitoring:9090/prom/")).unwrap();
        assert_eq!(l.endpoint, "http://prometheus.monitoring:9090/prom/api/v1/query");
    }
}
