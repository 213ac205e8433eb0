//! The Persys reconciler: the Kubernetes operator halves of Dorgu and Kapsa.
//!
//! Today it reconciles `ApplicationPersona`s (`dorgu.io/v1`): it resolves each persona's
//! Deployment or StatefulSet, validates it with the analyzer's persona rules, judges its
//! health and writes phase, health, validation issues, recommendations and the Ready and
//! Validated conditions into the persona's status. `reconciler crds` prints the CRDs.
//! Decisions live in [`decide`] as pure functions; [`persona`] only reads and writes.

pub mod access;
pub mod argocd;
pub mod baseline;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod domainpool;
pub mod environment;
pub mod git;
pub mod grpc;
pub mod leader;
pub mod persona;
pub mod project;
pub mod projects_grpc;
pub mod projects_proto;
pub mod proto;
pub mod registry;
pub mod serving;
pub mod webhook;
pub mod workload;

use anyhow::Context as _;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
use persys_kit::shutdown::Shutdown;

/// The CRDs as one multi-document YAML stream, as `reconciler crds` prints it and the Helm
/// chart carries it.
pub fn crds_yaml() -> anyhow::Result<String> {
    let mut out = String::from(
        "# The CustomResourceDefinitions of the Persys reconciler, written by `reconciler crds`:\n\
         # do not edit; regenerate with `cargo run -p persys-reconciler -- crds > deploy/helm/persys/crds/persys-crds.yaml`.\n",
    );
    for crd in persys_crds::all() {
        out.push_str("---\n");
        out.push_str(&persys_kit::yaml::to_string(&crd).context("writing a CRD as YAML")?);
    }
    Ok(out)
}

/// A client for the cluster in `kubeconfig`, or the one `KUBECONFIG`, `~/.kube/config` or the
/// in-cluster service account names.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading the kubeconfig {}", path.display()))?
        }
        None => Config::infer().await.context("finding a cluster (set KUBECONFIG or --kubeconfig)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// Serves PersonaService, and ProjectService when `projects` is given (Kapsa projects on), on
/// `listener` with mutual TLS, admitting only `callers` (service identities), until `shutdown`;
/// returns the server's task.
pub async fn serve_personas(
    personas: grpc::Personas,
    projects: Option<projects_grpc::Projects>,
    listener: tokio::net::TcpListener,
    tls: &std::sync::Arc<persys_kit::tls::Tls>,
    callers: &[String],
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), persys_kit::server::ServeError>>> {
    use persys_kit::identity::{AuthorizeLayer, Matcher, Policy};
    use persys_proto::reconciler::v1::{
        persona_service_server::PersonaServiceServer, project_service_server::ProjectServiceServer,
    };
    let (routes, health) = persys_kit::server::base_routes(&[])?;
    health.serving::<PersonaServiceServer<grpc::Personas>>().await;
    let mut routes = routes.add_service(personas.server());
    if let Some(projects) = projects {
        health.serving::<ProjectServiceServer<projects_grpc::Projects>>().await;
        routes = routes.add_service(projects.server());
    }
    // The whole package: ProjectService, when Kapsa projects are off and it is not served,
    // then answers UNIMPLEMENTED to its callers, rather than refusing who they are.
    let policy = Policy::new().allow("/persys.reconciler.v1.", callers.iter().map(|c| Matcher::Service(c.clone())));
    let options = persys_kit::server::ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(AuthorizeLayer::new(policy)),
        ..persys_kit::server::ServerOptions::default()
    };
    Ok(tokio::spawn(persys_kit::server::serve(listener, routes, options, Some(health), shutdown)))
}

/// Runs the controllers and the admin port until `shutdown`.
pub async fn run(args: config::RunArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let metrics = persys_kit::metrics::Metrics::new();
    let admin = persys_kit::server::spawn_admin(&args.telemetry, &metrics, shutdown.clone()).await?;
    if let Some(addr) = admin {
        tracing::info!(%addr, "admin endpoints (/metrics, /healthz)");
    }
    let projects = match (args.projects, &args.namespace) {
        (true, None) => Some(project::Options {
            credentials_namespace: args.registry_credentials_namespace.clone(),
            builder: args.kpack_builder.clone(),
            ..project::Options::default()
        }),
        (true, Some(_)) => {
            tracing::info!("Kapsa projects are off: --namespace restricts the reconciler (projects make namespaces)");
            None
        }
        (false, _) => None,
    };
    // One cache of the personas for PersonaService (every replica) and the persona controller
    // (the leader).
    let persona_cache = cache::Personas::start(client.clone(), args.namespace.as_deref(), shutdown.clone());
    let (mut grpc_addr, mut webhook_addr) = (None, None);
    if let Some(addr) = args.listen {
        let (Some(ca), Some(cert), Some(key)) = (args.tls_ca.clone(), args.tls_cert.clone(), args.tls_key.clone())
        else {
            anyhow::bail!("--listen needs --tls-ca, --tls-cert and --tls-key");
        };
        let tls = persys_kit::tls::Tls::load(persys_kit::tls::TlsPaths { ca, cert, key })
            .context("loading the mTLS material")?;
        tls.spawn_reloader(std::time::Duration::from_secs(30));
        let (listener, bound) = persys_kit::server::bind(addr).await?;
        // Members read the namespaces that name them (`persys.io/members`): one cache for
        // both services.
        let namespaces = access::Namespaces::start(client.clone(), args.namespace.clone(), shutdown.clone());
        let personas = grpc::Personas::start(
            client.clone(),
            &persona_cache,
            args.namespace.clone(),
            namespaces.clone(),
            shutdown.clone(),
        );
        // ProjectService reads what the Project controller makes (and its RBAC allows): only
        // with Kapsa projects on.
        let project_service = projects
            .is_some()
            .then(|| projects_grpc::Projects::start(client.clone(), None, namespaces, shutdown.clone()));
        let services = if project_service.is_some() { "PersonaService, ProjectService" } else { "PersonaService" };
        serve_personas(personas, project_service, listener, &tls, &args.allowed_callers, shutdown.clone()).await?;
        tracing::info!(addr = %bound, services, "gRPC (mTLS)");
        grpc_addr = Some(bound);
    }
    if let Some(addr) = args.webhook_listen {
        let (Some(cert), Some(key), Some(ca)) =
            (args.webhook_tls_cert.clone(), args.webhook_tls_key.clone(), args.webhook_tls_ca.clone())
        else {
            anyhow::bail!("--webhook-listen needs --webhook-tls-cert, --webhook-tls-key and --webhook-tls-ca");
        };
        let tls = persys_kit::tls::Tls::load(persys_kit::tls::TlsPaths { ca, cert, key })
            .context("loading the webhook's certificate")?;
        tls.spawn_reloader(std::time::Duration::from_secs(30));
        let fail_open = args.webhook_failure_policy == config::FailurePolicy::Ignore;
        let router = webhook::Webhook::new(client.clone(), args.webhook_mode, fail_open).router();
        let (listener, bound) = persys_kit::server::bind(addr).await?;
        tracing::info!(addr = %bound, mode = ?args.webhook_mode, fail_open, "admission webhook");
        webhook_addr = Some(bound);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = persys_kit::server::serve_https(listener, router, &tls, stop).await {
                tracing::error!(%error, "admission webhook stopped");
            }
        });
    }
    let baseline = match args.prometheus.options() {
        Some(o) => {
            tracing::info!(url = %o.url, interval = ?o.interval, window = ?o.window, "resource baselines from Prometheus");
            Some(std::sync::Arc::new(baseline::Learner::new(o)?))
        }
        None => {
            tracing::info!("no --prometheus-url: resource baselines are off");
            None
        }
    };
    let options = persona::Options {
        requeue: args.requeue,
        namespace: args.namespace.clone(),
        baseline,
        ..persona::Options::default()
    };
    let cluster_options = cluster::ClusterOptions {
        interval: args.discovery_interval,
        create: (!args.cluster_persona.is_empty()).then(|| args.cluster_persona.clone()),
    };
    let discovery = args.cluster_discovery && args.namespace.is_none();
    if args.cluster_discovery && !discovery {
        tracing::info!("ClusterPersona discovery is off: --namespace restricts the reconciler to one namespace");
    }
    let registry_options = match (&args.registry_credentials_namespace, &args.namespace) {
        (Some(ns), None) => {
            Some(registry::Options { interval: args.registry_interval, ..registry::Options::new(ns.clone()) })
        }
        (Some(_), Some(_)) => {
            tracing::info!(
                "the Registry controller is off: --namespace restricts the reconciler (Registries are cluster-wide)"
            );
            None
        }
        (None, _) => None,
    };
    let dora = match &args.metrics_pipeline {
        Some(url) => {
            let (Some(ca), Some(cert), Some(key)) = (args.tls_ca.clone(), args.tls_cert.clone(), args.tls_key.clone())
            else {
                anyhow::bail!("--metrics-pipeline needs --tls-ca, --tls-cert and --tls-key (the identity reconciler)");
            };
            let tls = persys_kit::tls::Tls::load(persys_kit::tls::TlsPaths { ca, cert, key })
                .context("loading the mTLS material")?;
            tls.spawn_reloader(std::time::Duration::from_secs(30));
            let options = persys_kit::client::ClientOptions {
                request_timeout: Some(std::time::Duration::from_secs(10)),
                ..Default::default()
            };
            let channel = persys_kit::client::mtls_channel_to(
                url,
                &tls,
                persys_kit::Identity::Service("metrics".into()),
                &options,
            )
            .with_context(|| format!("--metrics-pipeline {url}"))?;
            tracing::info!(%url, cluster = %args.cluster_name, "recording ArgoCD syncs as DORA deployments");
            Some(std::sync::Arc::new(argocd::Dora::new(channel, &args.cluster_name)))
        }
        None => None,
    };
    // Every port is bound (the controllers start once this replica leads).
    persys_kit::server::announce_ready(
        "reconciler",
        &[("grpc", grpc_addr), ("webhook", webhook_addr), ("admin", admin)],
    );
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let elector =
        leader::Elector::new(client.clone(), &args.lease_namespace, &args.lease_name, &identity, args.lease_duration);
    tracing::info!(%identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "electing a leader");
    elector
        .run_while_leading(shutdown, move |stop| {
            let personas = persona::run(client.clone(), options.clone(), persona_cache.clone(), stop.clone());
            let argocd = argocd::run(client.clone(), argocd::RECHECK, dora.clone(), stop.clone());
            let clusters = discovery.then(|| cluster::run(client.clone(), cluster_options.clone(), stop.clone()));
            let registries = registry_options.clone().map(|o| registry::run(client.clone(), o, stop.clone()));
            let kapsa = projects.clone().map(|o| {
                let environments = environment::run(client.clone(), environment::Options::default(), stop.clone());
                let pools = domainpool::run(client.clone(), domainpool::Options::default(), stop.clone());
                let projects = project::run(client.clone(), o, stop.clone());
                async move {
                    let (p, e, d) = tokio::join!(projects, environments, pools);
                    for (what, result) in [("Project", p), ("Environment", e), ("DomainPool", d)] {
                        if let Err(error) = result {
                            tracing::error!(%error, "the {what} controller stopped");
                        }
                    }
                }
            });
            async move {
                let clusters = async {
                    if let Some(c) = clusters {
                        c.await;
                    }
                };
                let registries = async {
                    if let Some(r) = registries
                        && let Err(error) = r.await
                    {
                        tracing::error!(%error, "the Registry controller stopped");
                    }
                };
                let kapsa = async {
                    if let Some(k) = kapsa {
                        k.await;
                    }
                };
                tokio::join!(personas, argocd, clusters, registries, kapsa);
            }
        })
        .await;
    Ok(())
}

/// Waits until the API server serves `gvk` (checking by discovery every `recheck`, saying so
/// once in the log), or `shutdown`: the resource, or `None` on shutdown. An integration whose
/// CRD is missing waits instead of failing every watch.
pub async fn served(
    client: &Client,
    gvk: &kube::api::GroupVersionKind,
    recheck: std::time::Duration,
    shutdown: &Shutdown,
) -> Option<kube::api::ApiResource> {
    let mut said = false;
    loop {
        if let Ok((resource, _)) = kube::discovery::pinned_kind(client, gvk).await {
            return Some(resource);
        }
        if !said {
            tracing::info!(group = %gvk.group, version = %gvk.version, kind = %gvk.kind, every = ?recheck,
                "the API server does not serve this kind (CRD not installed?); waiting for it");
            said = true;
        }
        tokio::select! {
            _ = shutdown.clone().wait() => return None,
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

/// The host name (a pod's name) and a random suffix, so two processes on one host differ.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "reconciler".into());
    format!("{host}-{:08x}", rand_suffix())
}

/// A number that differs between calls and processes (not for secrets).
pub(crate) fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() as u32
}
