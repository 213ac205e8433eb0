//! The ClusterPersona controller: discovery every [`ClusterOptions::interval`] and whenever a
//! node joins, leaves, or changes readiness, labels, taints or size (not on every heartbeat).
//! It creates the cluster's ClusterPersona when there is none. Decisions are in
//! [`crate::decide::discovery`].

use std::{
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{Namespace, Node, Pod},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller, PredicateConfig, WatchStreamExt,
        controller::Action,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use persys_crds::{
    cluster::{ClusterPersona, ClusterPersonaSpec, ClusterPersonaStatus, NamespaceCounts},
    persona::ApplicationPersona,
};
use persys_kit::shutdown::Shutdown;

use crate::{decide::discovery, decide::status, persona::MANAGER};

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Rediscover at least this often.
    pub interval: Duration,
    /// Name of the ClusterPersona created when none exists; `None` creates none.
    pub create: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self { interval: Duration::from_secs(300), create: Some("cluster".into()) }
    }
}

struct Context {
    client: Client,
    options: ClusterOptions,
}

/// A node's fingerprint: what discovery reports, so heartbeats alone trigger nothing.
fn fingerprint(node: &Node) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.metadata.name.hash(&mut h);
    node.metadata.labels.hash(&mut h);
    discovery::ready(node).hash(&mut h);
    let spec = node.spec.clone().unwrap_or_default();
    spec.provider_id.hash(&mut h);
    for t in spec.taints.iter().flatten() {
        (&t.key, &t.value, &t.effect).hash(&mut h);
    }
    let status = node.status.clone().unwrap_or_default();
    for map in [status.capacity, status.allocatable].into_iter().flatten() {
        for (k, v) in map {
            (k, v.0).hash(&mut h);
        }
    }
    Some(h.finish())
}

/// Discovers the cluster and returns the status to write.
async fn discover(cp: &ClusterPersona, ctx: &Context) -> Result<ClusterPersonaStatus, kube::Error> {
    let client = &ctx.client;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let pods = Api::<Pod>::all(client.clone()).list(&ListParams::default()).await?.items;
    let namespaces = Api::<Namespace>::all(client.clone()).list(&ListParams::default()).await?.items;
    let personas = Api::<ApplicationPersona>::all(client.clone()).list(&ListParams::default()).await?.items;
    let version = client.apiserver_version().await?.git_version;

    let infos: Vec<_> = nodes.iter().map(discovery::node_info).collect();
    let (phase, message) = discovery::phase(&infos);
    let with_personas: std::collections::BTreeSet<_> = personas.iter().filter_map(|p| p.namespace()).collect();
    let previous = cp.status.clone().unwrap_or_default();
    let now = Timestamp::now();
    let generation = cp.metadata.generation;
    let mut out = ClusterPersonaStatus {
        phase: Some(phase.into()),
        last_discovery: Some(now.to_string()),
        resource_summary: Some(discovery::summary(&nodes, &pods)),
        addons: discovery::addons(&pods),
        namespaces: Some(NamespaceCounts {
            total: namespaces.len() as i32,
            active: namespaces
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active"))
                .count() as i32,
            with_personas: with_personas.len() as i32,
        }),
        kubernetes_version: version,
        platform: discovery::platform(&nodes),
        application_count: personas.len() as i32,
        observed_generation: generation,
        nodes: infos,
        conditions: vec![
            status::condition(
                &previous.conditions,
                "Discovered",
                true,
                "Discovered",
                "discovery ran".into(),
                generation,
                now,
            ),
            status::condition(&previous.conditions, "Healthy", phase == "Ready", phase, message, generation, now),
        ],
    };
    let mut a = out.clone();
    a.last_discovery = None;
    let mut b = previous.clone();
    b.last_discovery = None;
    if a == b {
        out = previous;
    }
    Ok(out)
}

async fn reconcile(cp: Arc<ClusterPersona>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let status = discover(&cp, &ctx).await?;
    if cp.status.as_ref() != Some(&status) {
        let patch = serde_json::json!({"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona", "status": status});
        Api::<ClusterPersona>::all(ctx.client.clone())
            .patch_status(&cp.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
        tracing::info!(cluster = %cp.name_any(), phase = status.phase.as_deref().unwrap_or(""), "cluster persona written");
    }
    Ok(Action::requeue(ctx.options.interval))
}

fn error_policy(cp: Arc<ClusterPersona>, error: &kube::Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cp.name_any(), %error, "cluster discovery failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Creates the ClusterPersona `name` unless one (of any name) exists.
pub async fn ensure(client: &Client, name: &str) -> Result<(), kube::Error> {
    let api = Api::<ClusterPersona>::all(client.clone());
    if !api.list(&ListParams::default().limit(1)).await?.items.is_empty() {
        return Ok(());
    }
    let cp = ClusterPersona {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some([("dorgu.io/bootstrap".to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: ClusterPersonaSpec { name: name.into(), ..ClusterPersonaSpec::default() },
        status: None,
    };
    match api.create(&PostParams::default(), &cp).await {
        Ok(_) => {
            tracing::info!(%name, "created the cluster's ClusterPersona");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

fn all(store: &Store<ClusterPersona>) -> Vec<ObjectRef<ClusterPersona>> {
    store.state().iter().map(|cp| ObjectRef::from_obj(&**cp)).collect()
}

/// Runs the controller until `shutdown`.
pub async fn run(client: Client, options: ClusterOptions, shutdown: Shutdown) {
    if let Some(name) = &options.create
        && let Err(error) = ensure(&client, name).await
    {
        tracing::warn!(%error, "creating the cluster's ClusterPersona failed; discovery runs on existing ones");
    }
    let node_changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(fingerprint, PredicateConfig::default());
    let controller = Controller::new(Api::<ClusterPersona>::all(client.clone()), watcher::Config::default());
    let store = controller.store();
    let ctx = Arc::new(Context { client, options });
    controller
        .watches_stream(node_changes, move |_node: Node| all(&store))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "cluster reconcile");
            }
        })
        .await;
}
