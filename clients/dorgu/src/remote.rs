//! Through a Persys gateway (`--server`), with the user's `persys login` session or an API key,
//! like every user-facing client: the analysis sent to the analyzer as a client-streamed upload
//! (`Analyze`); `dorgu persona status` and `dorgu cluster status` (`GetApplicationPersona`,
//! `GetClusterPersona`) and `dorgu watch`, the reconciler's PersonaService stream.

use std::{ops::ControlFlow, path::Path};

use anyhow::Context;
use persys_analyzer::{tree::SourceTree, upload};
use persys_client::{Client, Connection, Credential, Error, store::Store};
use persys_crds::{cluster::ClusterPersonaStatus, persona::ApplicationPersonaStatus};
use persys_proto::{
    analyzer::v1::{AnalysisResult, AnalyzeMetadata},
    common::v1::WatchEventType,
    reconciler::v1::{
        ClusterPhase, GetApplicationPersonaRequest, GetClusterPersonaRequest, PersonaKind, PersonaPhase,
        WatchPersonaEventsRequest, WatchPersonaEventsResponse, watch_persona_events_response::Object,
    },
};

use crate::{
    cli::{AnalyzeArgs, FollowArgs, RemoteArgs, WatchClusterArgs, WatchPersonasArgs},
    from_proto,
};

/// A client of the gateway at `server` with an API key, or the stored `persys login` session.
fn client(server: &str, ca: Option<&Path>, token: Option<&String>) -> Result<Client, Error> {
    let connection = Connection::new(server, ca)?;
    let credential = match token {
        Some(key) => Credential::ApiKey(key.clone()),
        None => Credential::Session(Store::default_location()?),
    };
    Client::new(connection, credential)
}

/// Returns what a user should read when a call through `server` fails (`what`: the service).
fn explain(e: Error, server: &str, what: &str) -> anyhow::Error {
    let hint = match &e {
        Error::NotLoggedIn { .. } | Error::SessionEnded { .. } => {
            format!("\n  log in with `persys login --server {server}`, or pass --token with an API key")
        }
        Error::Call(c) if c.code() == tonic::Code::Unauthenticated => {
            format!("\n  log in again with `persys login --server {server}`, or check --token")
        }
        Error::Call(c) if c.unreachable() => "\n  is the gateway running? check --server".to_owned(),
        Error::Call(c) if c.code() == tonic::Code::Unavailable && c.service().as_deref() == Some("reconciler") => {
            "\n  is the reconciler running with --listen, and the gateway started with \
             --upstream reconciler=URL? (docs/reconciler.md)"
                .to_owned()
        }
        _ => String::new(),
    };
    anyhow::anyhow!("{what} through {server}: {e}{hint}")
}

/// Analyses through the gateway at `server`.
pub async fn analyze(
    server: &str,
    args: &AnalyzeArgs,
    meta: AnalyzeMetadata,
    tree: &SourceTree,
) -> anyhow::Result<AnalysisResult> {
    let client = client(server, args.remote.ca.as_deref(), args.remote.token.as_ref())
        .map_err(|e| explain(e, server, "analyzer"))?;
    let requests = upload::to_requests(meta, tree, upload::MAX_CHUNK_BYTES);
    let response = client
        .call(|c| {
            let requests = requests.clone();
            async move { c.analyzer().analyze(tokio_stream::iter(requests)).await }
        })
        .await
        .map_err(|e| explain(e, server, "analyzer"))?;
    response.result.context("the analyzer returned no result")
}

/// `dorgu persona status --server`: the persona's status as the reconciler reports it, in the
/// CRD's terms (what the API server would answer).
pub async fn persona_status(
    server: &str,
    remote: &RemoteArgs,
    namespace: &str,
    name: &str,
) -> anyhow::Result<Option<ApplicationPersonaStatus>> {
    let client =
        client(server, remote.ca.as_deref(), remote.token.as_ref()).map_err(|e| explain(e, server, "reconciler"))?;
    let request = GetApplicationPersonaRequest { namespace: namespace.to_owned(), name: name.to_owned() };
    let response = client
        .call(|c| {
            let request = request.clone();
            async move { c.personas().get_application_persona(request).await }
        })
        .await
        .map_err(|e| explain(e, server, &format!("ApplicationPersona {namespace}/{name}")))?;
    let persona = response.persona.context("the reconciler returned no persona")?;
    Ok(persona.status.as_ref().map(from_proto::persona_status))
}

/// `dorgu cluster status --server`: the named ClusterPersona (or the cluster's one) and its status.
pub async fn cluster_status(
    server: &str,
    remote: &RemoteArgs,
    name: Option<&str>,
) -> anyhow::Result<(String, Option<ClusterPersonaStatus>)> {
    let client =
        client(server, remote.ca.as_deref(), remote.token.as_ref()).map_err(|e| explain(e, server, "reconciler"))?;
    let request = GetClusterPersonaRequest { name: name.unwrap_or_default().to_owned() };
    let what = name.map_or_else(|| "the ClusterPersona".to_owned(), |n| format!("ClusterPersona {n}"));
    let response = client
        .call(|c| {
            let request = request.clone();
            async move { c.personas().get_cluster_persona(request).await }
        })
        .await
        .map_err(|e| explain(e, server, &what))?;
    let persona = response.cluster_persona.context("the reconciler returned no ClusterPersona")?;
    let name = persona.metadata.map(|m| m.name).unwrap_or_default();
    Ok((name, persona.status.as_ref().map(from_proto::cluster_status)))
}

/// `dorgu watch personas`.
pub async fn watch_personas(args: WatchPersonasArgs, json: bool) -> anyhow::Result<()> {
    if args.name.is_some() && args.namespace.is_none() {
        anyhow::bail!("a persona name needs its namespace: add -n NAMESPACE");
    }
    let request = WatchPersonaEventsRequest {
        since_resource_version: String::new(),
        kinds: vec![PersonaKind::Application as i32],
        namespace: args.namespace.clone().unwrap_or_default(),
        name: args.name.clone().unwrap_or_default(),
    };
    watch(&args.follow, request, json).await
}

/// `dorgu watch cluster`.
pub async fn watch_cluster(args: WatchClusterArgs, json: bool) -> anyhow::Result<()> {
    let request = WatchPersonaEventsRequest { kinds: vec![PersonaKind::Cluster as i32], ..Default::default() };
    watch(&args.follow, request, json).await
}

/// Follows `request` from `--since` (a snapshot first when none), printing each event, until
/// `--limit` events were printed; a broken stream is reopened after the last resource version.
async fn watch(follow: &FollowArgs, request: WatchPersonaEventsRequest, json: bool) -> anyhow::Result<()> {
    let (gateway, limit) = (&follow.gateway, follow.limit);
    let server = gateway.server.as_str();
    let client =
        client(server, gateway.ca.as_deref(), gateway.token.as_ref()).map_err(|e| explain(e, server, "reconciler"))?;
    let open = |since: String| {
        let (client, request) = (&client, request.clone());
        async move {
            client
                .call(|c| {
                    let request =
                        WatchPersonaEventsRequest { since_resource_version: since.clone(), ..request.clone() };
                    async move { c.personas().watch_persona_events(request).await }
                })
                .await
        }
    };
    let mut printed = 0u64;
    persys_client::watch::resumable(
        server,
        follow.since.clone().unwrap_or_default(),
        open,
        |event: WatchPersonaEventsResponse| {
            if let Some(line) = event_line(&event, json) {
                println!("{line}");
                printed += 1;
            }
            Ok::<_, Error>(if limit.is_some_and(|l| printed >= l) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        },
        |notice| eprintln!("watch: {notice}"),
    )
    .await
    .map_err(|e| explain(e, server, "reconciler"))
}

/// `WATCH_EVENT_TYPE_ADDED` → `ADDED`, `PERSONA_PHASE_ACTIVE` → `Active`.
fn short_name(full: &str, prefix: &str) -> String {
    let rest = full.strip_prefix(prefix).unwrap_or(full);
    let mut chars = rest.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_ascii_lowercase(),
        None => String::new(),
    }
}

/// One printed line for an event (human or JSON); none for bookmarks.
pub fn event_line(event: &WatchPersonaEventsResponse, json: bool) -> Option<String> {
    let kind = WatchEventType::try_from(event.r#type).unwrap_or(WatchEventType::Unspecified);
    if kind == WatchEventType::Bookmark {
        return None;
    }
    let kind = kind.as_str_name().strip_prefix("WATCH_EVENT_TYPE_").unwrap_or("UNKNOWN").to_owned();
    let (object, namespace, name, phase, issues) = match event.object.as_ref()? {
        Object::ApplicationPersona(p) => {
            let meta = p.metadata.clone().unwrap_or_default();
            let status = p.status.as_ref();
            let phase = status
                .map(|s| {
                    short_name(PersonaPhase::try_from(s.phase).unwrap_or_default().as_str_name(), "PERSONA_PHASE_")
                })
                .unwrap_or_default();
            let issues = status.and_then(|s| s.validation.as_ref()).map_or(0, |v| v.issues.len());
            ("ApplicationPersona", meta.namespace, meta.name, phase, issues)
        }
        Object::ClusterPersona(c) => {
            let meta = c.metadata.clone().unwrap_or_default();
            let phase = c
                .status
                .as_ref()
                .map(|s| {
                    short_name(ClusterPhase::try_from(s.phase).unwrap_or_default().as_str_name(), "CLUSTER_PHASE_")
                })
                .unwrap_or_default();
            ("ClusterPersona", meta.namespace, meta.name, phase, 0)
        }
    };
    let phase = if phase == "Unspecified" { String::new() } else { phase };
    if json {
        return Some(
            serde_json::json!({
                "type": kind,
                "kind": object,
                "namespace": namespace,
                "name": name,
                "phase": phase,
                "validationIssues": issues,
                "summary": event.summary,
                "resourceVersion": event.resource_version,
            })
            .to_string(),
        );
    }
    let target = if namespace.is_empty() { name } else { format!("{namespace}/{name}") };
    let phase = if phase.is_empty() { "-".to_owned() } else { phase };
    let mut line = format!("{kind:<9} {object:<19} {target:<40} {phase:<10}");
    if issues > 0 {
        line.push_str(&format!(" {issues} issue(s)"));
    }
    if !event.summary.is_empty() {
        line.push_str(&format!(" {}", event.summary));
    }
    Some(line.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use persys_proto::reconciler::v1::{ApplicationPersona, ApplicationPersonaStatus, ObjectMeta, ValidationReport};

    use super::*;

    fn persona_event(kind: WatchEventType, phase: PersonaPhase, summary: &str) -> WatchPersonaEventsResponse {
        WatchPersonaEventsResponse {
            r#type: kind as i32,
            object: Some(Object::ApplicationPersona(ApplicationPersona {
                metadata: Some(ObjectMeta { name: "orders".into(), namespace: "shop".into(), ..Default::default() }),
                spec: None,
                status: Some(ApplicationPersonaStatus {
                    phase: phase as i32,
                    validation: Some(ValidationReport { issues: vec![Default::default(); 2], ..Default::default() }),
                    ..Default::default()
                }),
            })),
            resource_version: "42".into(),
            summary: summary.into(),
        }
    }

    #[test]
    fn events_print_type_object_phase_issues_and_summary() {
        let e = persona_event(WatchEventType::Modified, PersonaPhase::Degraded, "phase Active -> Degraded");
        let line = event_line(&e, false).unwrap();
        assert!(line.starts_with("MODIFIED  ApplicationPersona  shop/orders"), "{line}");
        assert!(
            line.contains("Degraded") && line.contains("2 issue(s)") && line.ends_with("phase Active -> Degraded"),
            "{line}"
        );
        let json: serde_json::Value = serde_json::from_str(&event_line(&e, true).unwrap()).unwrap();
        assert_eq!(json["type"], "MODIFIED");
        assert_eq!(json["phase"], "Degraded");
        assert_eq!(json["resourceVersion"], "42");
        assert_eq!(json["validationIssues"], 2);
    }

    #[test]
    fn bookmarks_print_nothing() {
        let bookmark = WatchPersonaEventsResponse { r#type: WatchEventType::Bookmark as i32, ..Default::default() };
        assert_eq!(event_line(&bookmark, false), None);
        assert_eq!(event_line(&bookmark, true), None);
    }
}
