//! ArgoCD: when the `argoproj.io/v1alpha1` `Application` CRD exists (checked by discovery at
//! start and every [`RECHECK`] until it does; the operator runs fine without it), follows every
//! Application and writes its sync status, health, revision and last sync time into the
//! `status.argoCD` of the persona it deploys.
//!
//! The persona: the Application's app name (label `app.kubernetes.io/name`, else `app`, else
//! its name) as a persona's `spec.name` in the destination namespace; else the one persona of
//! that name in the cluster (several: none, reported in the log). `status.argoCD` is written by
//! server-side apply under its own field manager, [`MANAGER`], so the persona controller (which
//! never sends that field) and this one never undo each other.
//!
//! With a [`Dora`] reporter, each Application's newest sync is also recorded in the metrics
//! pipeline as a DORA deployment ([`deployment_of`]) once it has settled: Synced and Healthy is
//! a success; Degraded, or OutOfSync with Missing, a failure; anything else (Progressing) waits.
//! The pipeline drops repeats, so a restart re-sending them is harmless.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams},
    discovery,
    runtime::{Controller, controller::Action, watcher},
};
use persys_crds::persona::{ApplicationPersona, ArgoCdStatus};
use persys_kit::{client::TracedChannel, shutdown::Shutdown};
use persys_proto::metrics::v1::{DeploymentStatus, RecordDeploymentRequest, dora_service_client::DoraServiceClient};

/// The field manager of `status.argoCD`.
pub const MANAGER: &str = "persys-reconciler-argocd";
/// How often to look for the Application CRD while it is missing.
pub const RECHECK: Duration = Duration::from_secs(300);
/// Re-read every Application at least this often.
const REQUEUE: Duration = Duration::from_secs(60);

/// What the controller reads of an Application: (app name, destination namespace, status).
pub fn read(app: &DynamicObject) -> (String, String, ArgoCdStatus) {
    let labels = app.labels();
    let name =
        labels.get("app.kubernetes.io/name").or_else(|| labels.get("app")).cloned().unwrap_or_else(|| app.name_any());
    let data = &app.data;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let destination = text(&data["spec"]["destination"]["namespace"]);
    let destination = if destination.is_empty() { app.namespace().unwrap_or_default() } else { destination };
    let or_unknown = |s: String| if s.is_empty() { "Unknown".to_owned() } else { s };
    let status = ArgoCdStatus {
        sync_status: or_unknown(text(&data["status"]["sync"]["status"])),
        health_status: or_unknown(text(&data["status"]["health"]["status"])),
        last_sync_time: data["status"]["operationState"]["finishedAt"].as_str().map(str::to_owned),
        revision: text(&data["status"]["sync"]["revision"]),
        application_name: app.name_any(),
        application_namespace: app.namespace().unwrap_or_default(),
    };
    (name, destination, status)
}

/// The deployment an Application's newest sync makes, once it has settled; `None` while it has
/// no sync history or is still progressing. `cluster` names this cluster.
pub fn deployment_of(app: &DynamicObject, cluster: &str) -> Option<RecordDeploymentRequest> {
    let data = &app.data;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let last = data["status"]["history"].as_array()?.last()?;
    let revision = text(&last["revision"]);
    let deployed = text(&last["deployedAt"]);
    let deployed = time::OffsetDateTime::parse(&deployed, &time::format_description::well_known::Rfc3339).ok()?;
    if revision.is_empty() {
        return None;
    }
    let sync = text(&data["status"]["sync"]["status"]);
    let health = text(&data["status"]["health"]["status"]);
    let status = if health == "Degraded" || (sync == "OutOfSync" && health == "Missing") {
        DeploymentStatus::Failed
    } else if sync == "Synced" && health == "Healthy" && text(&data["status"]["sync"]["revision"]) == revision {
        DeploymentStatus::Success
    } else {
        return None;
    };
    let destination = text(&data["spec"]["destination"]["name"]);
    let cluster = if destination.is_empty() || destination == "in-cluster" { cluster.to_owned() } else { destination };
    let labels = app.labels();
    let component = labels.get("app.kubernetes.io/name").or_else(|| labels.get("app")).cloned().unwrap_or_default();
    let source = if last["source"].is_object() { &last["source"] } else { &data["spec"]["source"] };
    let images = data["status"]["summary"]["images"]
        .as_array()
        .map(|list| list.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Some(RecordDeploymentRequest {
        application: app.name_any(),
        argocd_namespace: app.namespace().unwrap_or_default(),
        cluster,
        component,
        revision,
        source_repo_url: text(&source["repoURL"]),
        source_path: text(&source["path"]),
        images,
        status: status as i32,
        sync_status: sync,
        health_status: health,
        deployed_at: Some(prost_types::Timestamp { seconds: deployed.unix_timestamp(), nanos: 0 }),
        ..RecordDeploymentRequest::default()
    })
}

/// Records Applications' syncs in the metrics pipeline.
pub struct Dora {
    client: DoraServiceClient<TracedChannel>,
    cluster: String,
    /// Syncs recorded already (application, revision, time, status), so a requeue does not
    /// call again.
    sent: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Dora {
    /// A reporter over `channel` (to the pipeline), naming this cluster `cluster`.
    pub fn new(channel: TracedChannel, cluster: &str) -> Self {
        Self { client: DoraServiceClient::new(channel), cluster: cluster.to_owned(), sent: Default::default() }
    }

    /// Records `app`'s newest sync if it settled and was not recorded yet.
    pub async fn report(&self, app: &DynamicObject) -> Result<(), tonic::Status> {
        let Some(request) = deployment_of(app, &self.cluster) else { return Ok(()) };
        let key = format!(
            "{}/{}@{}@{:?}@{}",
            request.argocd_namespace,
            request.application,
            request.revision,
            request.deployed_at.map(|t| t.seconds),
            request.status
        );
        if self.sent.lock().is_ok_and(|s| s.contains(&key)) {
            return Ok(());
        }
        let answer = self.client.clone().record_deployment(request).await?.into_inner();
        if let Ok(mut sent) = self.sent.lock() {
            if sent.len() > 10_000 {
                sent.clear();
            }
            sent.insert(key);
        }
        if !answer.duplicate {
            let id = answer.deployment.map(|d| d.id).unwrap_or_default();
            tracing::info!(application = %app.name_any(), deployment = %id, "ArgoCD sync recorded for DORA");
        }
        Ok(())
    }
}

struct Context {
    client: Client,
    dora: Option<Arc<Dora>>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

async fn reconcile(app: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    // A pipeline that cannot be reached does not hold up the persona's status: the sync is
    // recorded on a later pass.
    let mut requeue = REQUEUE;
    if let Some(dora) = &ctx.dora
        && let Err(status) = dora.report(&app).await
    {
        tracing::warn!(application = %app.name_any(), error = %status.message(), code = ?status.code(), "recording the sync for DORA failed; retrying");
        requeue = Duration::from_secs(10);
    }
    let (name, destination, status) = read(&app);
    let here =
        Api::<ApplicationPersona>::namespaced(ctx.client.clone(), &destination).list(&ListParams::default()).await?;
    let mut found: Vec<ApplicationPersona> = here.items.into_iter().filter(|p| p.spec.name == name).collect();
    if found.is_empty() {
        let all = Api::<ApplicationPersona>::all(ctx.client.clone()).list(&ListParams::default()).await?;
        found = all.items.into_iter().filter(|p| p.spec.name == name).collect();
    }
    let persona = match found.as_slice() {
        [one] => one,
        [] => return Ok(Action::requeue(requeue)),
        many => {
            let names: Vec<String> =
                many.iter().map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())).collect();
            tracing::warn!(application = %app.name_any(), personas = %names.join(", "), "several personas match; none updated");
            return Ok(Action::requeue(requeue));
        }
    };
    if persona.status.as_ref().and_then(|s| s.argo_cd.as_ref()) != Some(&status) {
        let patch = serde_json::json!({
            "apiVersion": persys_crds::persona::API_VERSION, "kind": persys_crds::persona::KIND,
            "status": {"argoCD": status},
        });
        Api::<ApplicationPersona>::namespaced(ctx.client.clone(), &persona.namespace().unwrap_or_default())
            .patch_status(&persona.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        tracing::info!(application = %app.name_any(), persona = %persona.name_any(), sync = %status.sync_status, "argoCD status written");
    }
    Ok(Action::requeue(requeue))
}

fn error_policy(app: Arc<DynamicObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(application = %app.name_any(), %error, "ArgoCD reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// The Application resource, if the cluster serves it.
pub async fn application_resource(client: &Client) -> Option<ApiResource> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    discovery::pinned_kind(client, &gvk).await.ok().map(|(resource, _)| resource)
}

/// Waits for the Application CRD (checking every `recheck`), then follows Applications until
/// `shutdown`, recording their syncs with `dora` when given.
pub async fn run(client: Client, recheck: Duration, dora: Option<Arc<Dora>>, shutdown: Shutdown) {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let Some(resource) = crate::served(&client, &gvk, recheck, &shutdown).await else { return };
    tracing::info!("following ArgoCD Applications");
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    Controller::new_with(api, watcher::Config::default(), resource)
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client, dora }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "ArgoCD reconcile");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_the_app_name_destination_and_status() {
        let a = app(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop-prod", "namespace": "argocd", "labels": {"app": "shop"}},
            "spec": {"destination": {"namespace": "apps"}},
            "status": {"sync": {"status": "Synced", "revision": "abc123"}, "health": {"status": "Healthy"},
                "operationState": {"finishedAt": "2026-12-01T10:00:00Z"}}
        }));
        let (name, ns, s) = read(&a);
        assert_eq!((name.as_str(), ns.as_str()), ("shop", "apps"));
        assert_eq!(
            (s.sync_status.as_str(), s.health_status.as_str(), s.revision.as_str()),
            ("Synced", "Healthy", "abc123")
        );
        assert_eq!(s.last_sync_time.as_deref(), Some("2026-12-01T10:00:00Z"));
        assert_eq!((s.application_name.as_str(), s.application_namespace.as_str()), ("shop-prod", "argocd"));
    }

    fn synced(sync: &str, health: &str, current: &str) -> DynamicObject {
        app(serde_json::json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop-east", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "shop"}},
            "spec": {"destination": {"name": "in-cluster", "namespace": "apps"},
                "source": {"repoURL": "https://github.com/acme/infra", "path": "apps/shop/prod"}},
            "status": {"sync": {"status": sync, "revision": current}, "health": {"status": health},
                "summary": {"images": ["quay.io/acme/shop:3f9a1c2"]},
                "history": [
                    {"id": 1, "revision": "aaa1111", "deployedAt": "2026-12-01T09:00:00Z"},
                    {"id": 2, "revision": "bbb2222", "deployedAt": "2026-12-01T10:00:00Z",
                     "source": {"repoURL": "https://github.com/acme/infra.git", "path": "apps/shop/production"}}]}
        }))
    }

    #[test]
    fn settled_syncs_are_deployments_and_progress_is_not() {
        let d = deployment_of(&synced("Synced", "Healthy", "bbb2222"), "east").unwrap();
        assert_eq!((d.application.as_str(), d.component.as_str(), d.cluster.as_str()), ("shop-east", "shop", "east"));
        assert_eq!((d.revision.as_str(), d.status), ("bbb2222", DeploymentStatus::Success as i32));
        assert_eq!(d.deployed_at.unwrap().seconds, 1_796_119_200, "the history entry's time, not now");
        assert_eq!(d.source_path, "apps/shop/production", "the synced source, from the history");
        assert_eq!(d.images, ["quay.io/acme/shop:3f9a1c2"]);
        let failed = deployment_of(&synced("Synced", "Degraded", "bbb2222"), "east").unwrap();
        assert_eq!(failed.status, DeploymentStatus::Failed as i32);
        let missing = deployment_of(&synced("OutOfSync", "Missing", "ccc3333"), "east").unwrap();
        assert_eq!(missing.status, DeploymentStatus::Failed as i32);
        assert!(deployment_of(&synced("Synced", "Progressing", "bbb2222"), "east").is_none());
        assert!(
            deployment_of(&synced("Synced", "Healthy", "ccc3333"), "east").is_none(),
            "a newer sync not in history yet"
        );
        let none = app(serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "team"}, "status": {"sync": {"status": "Synced"}}}));
        assert!(deployment_of(&none, "east").is_none(), "no history: nothing synced yet");
    }

    #[test]
    fn missing_fields_read_as_unknown_and_the_own_namespace() {
        let a = app(serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "web", "namespace": "team"}}));
        let (name, ns, s) = read(&a);
        assert_eq!((name.as_str(), ns.as_str()), ("web", "team"));
        assert_eq!((s.sync_status.as_str(), s.health_status.as_str()), ("Unknown", "Unknown"));
        assert!(s.last_sync_time.is_none());
    }
}
