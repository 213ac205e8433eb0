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

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams},
    discovery,
    runtime::{Controller, controller::Action, watcher},
};
use persys_crds::persona::{ApplicationPersona, ArgoCdStatus};
use persys_kit::shutdown::Shutdown;

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

struct Context {
    client: Client,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

async fn reconcile(app: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
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
        [] => return Ok(Action::requeue(REQUEUE)),
        many => {
            let names: Vec<String> =
                many.iter().map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())).collect();
            tracing::warn!(application = %app.name_any(), personas = %names.join(", "), "several personas match; none updated");
            return Ok(Action::requeue(REQUEUE));
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
    Ok(Action::requeue(REQUEUE))
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
/// `shutdown`.
pub async fn run(client: Client, recheck: Duration, shutdown: Shutdown) {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let Some(resource) = crate::served(&client, &gvk, recheck, &shutdown).await else { return };
    tracing::info!("following ArgoCD Applications");
    let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
    Controller::new_with(api, watcher::Config::default(), resource)
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client }))
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
