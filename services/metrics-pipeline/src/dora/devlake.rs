//! Apache DevLake's webhook deployments API (v1.0+ camelCase body):
//! `POST {base}/api/rest/plugins/webhook/connections/{id}/deployments` with the connection's
//! API key as a Bearer token. DevLake requires `id`, `startedDate`, `finishedDate` and a
//! non-empty `deploymentCommits` with `repoUrl` and `commitSha` each; `result` is `SUCCESS` or
//! `FAILURE` (its DORA tasks count nothing else); `environment` one of PRODUCTION, STAGING,
//! TESTING, DEVELOPMENT. Re-posting an id is an upsert there.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use persys_kit::{config::Secret, http as client};
use persys_proto::metrics::v1::{Deployment, DeploymentEnvironment, DeploymentStatus};
use serde_json::{Value, json};

use crate::clock::millis;

/// What one post came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// DevLake took it (2xx).
    Accepted,
    /// Worth trying again: the network, a 5xx, 429, 408.
    Retry(String),
    /// Refused for good: another 4xx.
    Refused(String),
}

/// DevLake's name of an environment.
pub fn environment_name(e: i32) -> &'static str {
    match DeploymentEnvironment::try_from(e) {
        Ok(DeploymentEnvironment::Staging) => "STAGING",
        Ok(DeploymentEnvironment::Testing) => "TESTING",
        Ok(DeploymentEnvironment::Development) => "DEVELOPMENT",
        _ => "PRODUCTION",
    }
}

/// A date as DevLake's examples write them: `2006-01-02T15:04:05+00:00`.
fn date(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00");
    t.format(f).unwrap_or_default()
}

/// The webhook body of `d`; `None` when it has no commit (DevLake refuses those).
pub fn payload(d: &Deployment) -> Option<Value> {
    if d.commits.is_empty() {
        return None;
    }
    let deployed = d.deployed_at.as_ref().map_or(0, millis);
    let started = d.started_at.as_ref().map_or(deployed, millis);
    let result = if d.status == DeploymentStatus::Failed as i32 { "FAILURE" } else { "SUCCESS" };
    let env = environment_name(d.environment);
    let short = &d.revision[..d.revision.len().min(12)];
    let commits: Vec<Value> = d
        .commits
        .iter()
        .map(|c| {
            let first_line = c.message.lines().next().unwrap_or_default();
            let mut commit = json!({
                "repoUrl": c.repo_url,
                "commitSha": c.sha,
                "commitMsg": c.message,
                "startedDate": date(c.authored_at.as_ref().map_or(started, millis)),
                "finishedDate": date(deployed),
                "result": result,
                "displayTitle": first_line,
                "name": format!("deployment for {}", c.sha),
            });
            if !c.ref_name.is_empty() {
                commit["refName"] = json!(c.ref_name);
            }
            commit
        })
        .collect();
    Some(json!({
        "id": d.devlake_id,
        "createdDate": date(started),
        "startedDate": date(started),
        "finishedDate": date(deployed),
        "result": result,
        "environment": env,
        "originalEnvironment": env.to_ascii_lowercase(),
        "displayTitle": format!("{} {short} to {} ({})", d.component, d.cluster, env.to_ascii_lowercase()),
        "name": format!("deploy {} to {}", d.component, env.to_ascii_lowercase()),
        "deploymentCommits": commits,
    }))
}

/// Posts deployments to one DevLake.
pub struct Devlake {
    http: client::Client,
    base: String,
    token: Option<Secret>,
    timeout: Duration,
}

impl Devlake {
    /// A client of the DevLake at `base`.
    pub fn new(base: &str, token: Option<Secret>, timeout: Duration) -> Result<Self, client::ClientError> {
        Ok(Self { http: client::client(None, "DevLake")?, base: base.trim_end_matches('/').to_owned(), token, timeout })
    }

    /// Posts `body` to webhook connection `connection`.
    pub async fn post(&self, connection: &str, body: &Value) -> Outcome {
        let path = format!("/api/rest/plugins/webhook/connections/{connection}/deployments");
        let mut request = Request::post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("persys-metrics-pipeline/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let request = match request.body(Full::new(bytes)) {
            Ok(r) => r,
            Err(e) => return Outcome::Refused(format!("DevLake {path}: {e}")),
        };
        match client::send(&self.http, request, self.timeout).await {
            Err(e) => Outcome::Retry(format!("DevLake {path}: {e}")),
            Ok(r) if r.status.is_success() => Outcome::Accepted,
            Ok(r) => {
                let text: String = String::from_utf8_lossy(&r.body).chars().take(200).collect();
                let why = format!("DevLake {path} answered {}: {}", r.status, text.trim());
                let retry = r.status.is_server_error()
                    || r.status == StatusCode::TOO_MANY_REQUESTS
                    || r.status == StatusCode::REQUEST_TIMEOUT;
                if retry { Outcome::Retry(why) } else { Outcome::Refused(why) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::metrics::v1::{Deployment, DeploymentCommit, DeploymentEnvironment, DeploymentStatus};

    use super::{date, payload};
    use crate::clock::timestamp;

    #[test]
    fn the_body_has_what_devlake_requires() {
        let mut d = Deployment {
            devlake_id: "ui:production:abc".into(),
            component: "ui".into(),
            cluster: "east".into(),
            revision: "abc".into(),
            environment: DeploymentEnvironment::Staging as i32,
            status: DeploymentStatus::Failed as i32,
            deployed_at: Some(timestamp(1_700_000_000_000)),
            started_at: Some(timestamp(1_699_990_000_000)),
            ..Deployment::default()
        };
        assert_eq!(payload(&d), None, "no commits: DevLake would refuse it");
        d.commits.push(DeploymentCommit {
            repo_url: "https://github.com/acme/ui".into(),
            sha: "a".repeat(40),
            message: "fix: the thing\n\nlong text".into(),
            authored_at: Some(timestamp(1_699_990_000_000)),
            ..DeploymentCommit::default()
        });
        let body = payload(&d).unwrap();
        assert_eq!(body["id"], "ui:production:abc");
        assert_eq!(body["result"], "FAILURE");
        assert_eq!(body["environment"], "STAGING");
        assert_eq!(body["startedDate"], "2023-11-14T19:26:40+00:00");
        assert_eq!(body["finishedDate"], "2023-11-14T22:13:20+00:00");
        let c = &body["deploymentCommits"][0];
        assert_eq!(c["commitSha"], "a".repeat(40));
        assert_eq!(c["repoUrl"], "https://github.com/acme/ui");
        assert_eq!(c["displayTitle"], "fix: the thing");
        assert!(c.get("refName").is_none(), "never a SHA in refName");
        assert_eq!(date(0), "1970-01-01T00:00:00+00:00");
    }
}
