//! The Environment controller (Kapsa's `kapsa-project.io/v1alpha1` `Environment`): runs one
//! copy of a project as a Deployment, a Service, an Ingress (TLS through cert-manager) and, when
//! asked, a HorizontalPodAutoscaler, all owned by the Environment in its namespace (so the
//! garbage collector removes them with it); writes phase, image, URLs and the Ready condition
//! through server-side apply under [`MANAGER`]. What it owns is decided by
//! [`crate::decide::environment`]; the Project controller sets the image and host.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler, core::v1::Service, networking::v1::Ingress},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
    runtime::{Controller, controller::Action, watcher},
};
use persys_crds::kapsa::{Environment, EnvironmentResources, EnvironmentStatus, Project};
use persys_kit::shutdown::Shutdown;
use serde_json::json;

use crate::{
    decide::{environment, project, status},
    project::EXPIRES_AT,
};

/// The field manager of what the Environment controller writes.
pub const MANAGER: &str = "persys-reconciler-environment";

/// Errors of one reconcile; each is retried by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be written as JSON.
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reconcile every Environment at least this often.
    pub requeue: Duration,
    /// Wait after a failed reconcile.
    pub retry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { requeue: Duration::from_secs(60), retry: Duration::from_secs(5) }
    }
}

struct Context {
    client: Client,
    options: Options,
}

/// Server-side applies `obj` (typed) as `MANAGER`.
async fn put<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let mut value = serde_json::to_value(obj)?;
    value["apiVersion"] = json!(K::api_version(&Default::default()));
    value["kind"] = json!(K::kind(&Default::default()));
    Ok(api.patch(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value)).await?)
}

/// Deletes `name` of kind `K` when it exists and this Environment owns it.
async fn remove<K>(client: &Client, ns: &str, name: &str, owner: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    if let Some(o) = api.get_opt(name).await?
        && o.owner_references().iter().any(|r| r.uid == owner)
    {
        api.delete(name, &DeleteParams::background()).await?;
    }
    Ok(())
}

/// The branch of the Environment's project is building (a head with neither an image nor a
/// failure yet).
async fn building(ctx: &Context, env: &Environment) -> Result<bool, Error> {
    let (Some(branch), ns) = (&env.spec.branch, &env.spec.project_ref.namespace) else { return Ok(false) };
    if ns.is_empty() {
        return Ok(false);
    }
    let project = Api::<Project>::namespaced(ctx.client.clone(), ns).get_opt(&env.spec.project_ref.name).await?;
    Ok(project
        .and_then(|p| p.status)
        .and_then(|s| s.branches.into_iter().find(|b| b.name == *branch))
        .is_some_and(|b| project::building(&b)))
}

async fn reconcile(env: Arc<Environment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(ns) = env.namespace() else { return Ok(Action::await_change()) };
    let name = env.name_any();
    let uid = env.uid().unwrap_or_default();
    let now = Timestamp::now();
    let previous = env.status.clone().unwrap_or_default();
    let mut next = EnvironmentStatus {
        observed_generation: env.metadata.generation,
        expires_at: env.annotations().get(EXPIRES_AT).cloned(),
        ..Default::default()
    };
    let judgement = match environment::owned(&env, None) {
        Err(e) => environment::Judgement {
            phase: "Failed",
            ready: false,
            reason: "InvalidSpec".into(),
            message: e.to_string(),
        },
        Ok(owned) => {
            let mut resources = EnvironmentResources::default();
            let deployment = match &owned.deployment {
                Some(d) => {
                    let d = put(&ctx.client, &ns, d).await?;
                    resources.deployment_name = Some(d.name_any());
                    Some(d)
                }
                None => None,
            };
            let service = put(&ctx.client, &ns, &owned.service).await?;
            resources.service_name = Some(service.name_any());
            match &owned.ingress {
                Some(i) => resources.ingress_name = Some(put(&ctx.client, &ns, i).await?.name_any()),
                None => remove::<Ingress>(&ctx.client, &ns, &name, &uid).await?,
            }
            match &owned.hpa {
                Some(h) => {
                    put(&ctx.client, &ns, h).await?;
                }
                None => remove::<HorizontalPodAutoscaler>(&ctx.client, &ns, &name, &uid).await?,
            }
            next.resources = Some(resources);
            next.urls = environment::urls(&env);
            let building = if env.spec.image.is_none() { building(&ctx, &env).await? } else { false };
            environment::phase(&env, deployment.as_ref(), building)
        }
    };
    next.phase = Some(judgement.phase.into());
    next.image = env.spec.image.clone();
    let ready = status::condition(
        &previous.conditions,
        "Ready",
        judgement.ready,
        &judgement.reason,
        judgement.message.clone(),
        env.metadata.generation,
        now,
    );
    next.conditions = vec![ready];
    if next != previous {
        if previous.phase != next.phase {
            tracing::info!(environment = %format!("{ns}/{name}"), phase = judgement.phase, message = %judgement.message, "environment");
        }
        let patch = json!({"apiVersion": persys_crds::kapsa::API_VERSION, "kind": "Environment", "status": next});
        Api::<Environment>::namespaced(ctx.client.clone(), &ns)
            .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(Action::requeue(ctx.options.requeue))
}

fn error_policy(env: Arc<Environment>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(environment = %env.name_any(), namespace = ?env.namespace(), %error, "environment reconcile failed; retrying");
    Action::requeue(ctx.options.retry)
}

/// Waits for the Environment CRD, then follows every Environment (and the Deployments,
/// Services and Ingresses they own) until `shutdown`.
pub async fn run(client: Client, options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    let gvk = kube::api::GroupVersionKind::gvk("kapsa-project.io", "v1alpha1", "Environment");
    if crate::served(&client, &gvk, crate::argocd::RECHECK, &shutdown).await.is_none() {
        return Ok(());
    }
    tracing::info!("following Kapsa Environments");
    let owned = || watcher::Config::default().labels(crate::project::LABEL_PROJECT);
    Controller::new(Api::<Environment>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Deployment>::all(client.clone()), owned())
        .owns(Api::<Service>::all(client.clone()), owned())
        .owns(Api::<Ingress>::all(client.clone()), owned())
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client, options }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "environment reconcile");
            }
        })
        .await;
    Ok(())
}
