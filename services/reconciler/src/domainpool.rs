//! The DomainPool controller (Kapsa's `kapsa-project.io/v1alpha1` `DomainPool`,
//! cluster-scoped): the pool's `Ready` condition (its cert-manager issuer exists and is ready,
//! when cert-manager is installed) and the release of host names held by Projects that no longer
//! exist (deleted while no reconciler ran their finalizer). The Project controller allocates; this
//! one only reports and cleans up, through the same optimistic concurrency on the pool's status.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use persys_crds::kapsa::{DomainPool, Project};
use persys_kit::shutdown::Shutdown;

use crate::decide::status;

/// Errors of one reconcile; each is retried by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// Check every pool at least this often (the issuer's readiness is not watched).
    pub requeue: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self { requeue: Duration::from_secs(300) }
    }
}

struct Context {
    client: Client,
    options: Options,
    /// cert-manager's ClusterIssuer, when cert-manager is installed.
    cluster_issuer: Option<ApiResource>,
}

/// The Ready verdict on the pool's issuer: (ok, reason, message).
async fn issuer_verdict(ctx: &Context, pool: &DomainPool) -> Result<(bool, &'static str, String), Error> {
    let issuer = &pool.spec.cert_manager.issuer_ref;
    if issuer.kind == "Issuer" {
        return Ok((
            true,
            "NamespacedIssuer",
            format!(
                "Issuer {} is namespaced: it must exist in each project's namespace (a ClusterIssuer serves all)",
                issuer.name
            ),
        ));
    }
    let Some(resource) = &ctx.cluster_issuer else {
        return Ok((
            true,
            "IssuerNotChecked",
            format!("cert-manager is not installed: ClusterIssuer {} is not checked", issuer.name),
        ));
    };
    let api = Api::<DynamicObject>::all_with(ctx.client.clone(), resource);
    let Some(found) = api.get_opt(&issuer.name).await? else {
        return Ok((false, "IssuerNotFound", format!("ClusterIssuer {} does not exist", issuer.name)));
    };
    let ready = found.data["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| (c["status"] == "True", c["message"].as_str().unwrap_or_default().to_owned()));
    Ok(match ready {
        Some((true, _)) => (true, "IssuerReady", format!("ClusterIssuer {} is ready", issuer.name)),
        Some((false, message)) => {
            (false, "IssuerNotReady", format!("ClusterIssuer {} is not ready: {message}", issuer.name))
        }
        None => (false, "IssuerNotReady", format!("ClusterIssuer {} reports no readiness yet", issuer.name)),
    })
}

async fn reconcile(pool: Arc<DomainPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<DomainPool>::all(ctx.client.clone());
    let (ok, reason, message) = issuer_verdict(&ctx, &pool).await?;
    for _ in 0..8 {
        let Some(mut current) = api.get_opt(&pool.name_any()).await? else { return Ok(Action::await_change()) };
        let before = current.status.clone().unwrap_or_default();
        let mut next = before.clone();
        // Host names of Projects that are gone (their finalizer never ran).
        let holders: BTreeSet<String> = before.allocations.iter().map(|a| a.project.clone()).collect();
        let mut gone = BTreeSet::new();
        for holder in holders {
            let Some((ns, name)) = holder.split_once('/') else { continue };
            if Api::<Project>::namespaced(ctx.client.clone(), ns).get_opt(name).await?.is_none() {
                gone.insert(holder);
            }
        }
        next.allocations.retain(|a| !gone.contains(&a.project));
        let n = next.allocations.len();
        let message = format!("{message}; {n} host name(s) allocated");
        let ready = status::condition(
            &before.conditions,
            "Ready",
            ok,
            reason,
            message,
            current.metadata.generation,
            Timestamp::now(),
        );
        next.conditions = vec![ready];
        next.observed_generation = current.metadata.generation;
        // Equal apart from the transition time kept from before: nothing to write.
        if next == before {
            break;
        }
        for project in &gone {
            tracing::info!(pool = %pool.name_any(), %project, "released the host names of a deleted project");
        }
        current.status = Some(next);
        match api.replace_status(&pool.name_any(), &PostParams::default(), &current).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(ctx.options.requeue))
}

fn error_policy(pool: Arc<DomainPool>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(pool = %pool.name_any(), %error, "domain pool reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Waits for the DomainPool CRD, then follows every DomainPool (and the Projects using each)
/// until `shutdown`.
pub async fn run(client: Client, options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    let gvk = GroupVersionKind::gvk("kapsa-project.io", "v1alpha1", "DomainPool");
    if crate::served(&client, &gvk, crate::argocd::RECHECK, &shutdown).await.is_none() {
        return Ok(());
    }
    let cluster_issuer =
        kube::discovery::pinned_kind(&client, &GroupVersionKind::gvk("cert-manager.io", "v1", "ClusterIssuer"))
            .await
            .ok()
            .map(|(r, _)| r);
    tracing::info!(cert_manager = cluster_issuer.is_some(), "following Kapsa DomainPools");
    Controller::new(Api::<DomainPool>::all(client.clone()), watcher::Config::default())
        // A Project's deletion (or a change of its pool) re-checks the pool it names.
        .watches(Api::<Project>::all(client.clone()), watcher::Config::default(), |p: Project| {
            Some(ObjectRef::<DomainPool>::new(&p.spec.domain.domain_pool_ref))
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client, options, cluster_issuer }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "domain pool reconcile");
            }
        })
        .await;
    Ok(())
}
