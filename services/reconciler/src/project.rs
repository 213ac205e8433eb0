//! The Project controller (Kapsa's `kapsa-project.io/v1alpha1` `Project`): gives each project
//! a namespace of its own (`<namespace>-<project>`) with a build ServiceAccount, the registry
//! credentials and a RoleBinding for its developers; polls the git repository's branch heads
//! over smart HTTP every `spec.repository.pollInterval`; builds each tracked branch's head with
//! a kpack `Image` tagged in the project's registry repository; and keeps one `Environment` per
//! `spec.environments` entry and per preview branch in the project's namespace, with host names
//! allocated from the project's DomainPool. Status is written through server-side apply under
//! [`MANAGER`].
//!
//! Ownership: the Environments, kpack Images and the rest live in the project's namespace, not
//! the Project's, and Kubernetes ignores owner references across namespaces; so the Project
//! carries the finalizer [`FINALIZER`], and deleting it deletes the project's namespace (the
//! namespace controller then removes everything in it) and releases its host names. Inside
//! the namespace an Environment owns its Deployment, Service, Ingress and autoscaler, which
//! the garbage collector removes with it.
//!
//! A failed build sets `BuildSucceeded=False` with kpack's reason and leaves every environment
//! on its last good image; the failed commit is not built again until the branch moves.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller,
        controller::Action,
        finalizer::{Event, finalizer},
        reflector::ObjectRef,
        watcher,
    },
};
use persys_crds::kapsa::{
    Allocation, BranchStatus, DomainPool, Environment, EnvironmentSummary, IssuerRef, Project, ProjectStatus, Registry,
};
use persys_kit::shutdown::Shutdown;
use serde_json::json;

use crate::decide::{
    domain,
    project::{self, BuildOutcome, Plan},
    registry as registries, status,
};

/// The field manager of everything the Project controller writes.
pub const MANAGER: &str = "persys-reconciler-kapsa";
/// Holds a Project until its namespace is deleted and its host names released.
pub const FINALIZER: &str = "kapsa-project.io/finalizer";
/// Label: the project's name, on its namespace and everything in it.
pub const LABEL_PROJECT: &str = "kapsa-project.io/project";
/// Label: the project's own namespace.
pub const LABEL_PROJECT_NAMESPACE: &str = "kapsa-project.io/project-namespace";
/// Label: the Environment's type.
pub const LABEL_TYPE: &str = "kapsa-project.io/type";
/// Label: the branch slug an Environment or a build follows.
pub const LABEL_BRANCH: &str = "kapsa-project.io/branch";
/// Annotation: when a preview Environment goes (RFC 3339).
pub const EXPIRES_AT: &str = "kapsa-project.io/expires-at";
/// Annotation: set it to a new value (a time, a counter) to poll the repository now, as
/// `kubectl annotate project api kapsa-project.io/refresh="$(date +%s)" --overwrite`.
pub const REFRESH: &str = "kapsa-project.io/refresh";
/// The ServiceAccount kpack builds run as.
pub const BUILD_SERVICE_ACCOUNT: &str = "kapsa-build";
/// The copy of the registry's credentials in a project namespace.
pub const REGISTRY_SECRET: &str = "kapsa-registry";
/// kpack's Image.
pub fn kpack_image() -> GroupVersionKind {
    GroupVersionKind::gvk("kpack.io", "v1alpha2", "Image")
}

/// Errors of one reconcile; each is retried by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer could not be added or removed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// The one namespace registry credentials are read from (as the Registry controller's);
    /// without it, builds push with the ServiceAccount's own credentials only.
    pub credentials_namespace: Option<String>,
    /// The kpack builder (kind, name).
    pub builder: (String, String),
    /// Per git call.
    pub timeout: Duration,
    /// Wait after a failed reconcile.
    pub retry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            credentials_namespace: None,
            builder: ("ClusterBuilder".into(), "default".into()),
            timeout: Duration::from_secs(15),
            retry: Duration::from_secs(10),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    http: persys_kit::http::Client,
    options: Options,
    /// kpack's Image resource, when kpack is installed.
    kpack: Option<ApiResource>,
    /// Each project's last successful setup.
    setups: Setups,
}

/// How long a project's setup (namespace, registry credentials, ServiceAccounts, RoleBinding)
/// is trusted before a reconcile checks it again: what the controller does not watch (a
/// namespace or RoleBinding changed by hand, rotated registry credentials) is repaired within
/// this time.
pub const SETUP_RESYNC: Duration = Duration::from_secs(300);

/// The registry host each project's last successful setup found, with the generation it was
/// done for and when, by [`key`]. Reconciles caused by builds, environments or the poll
/// timer reuse it instead of applying the same objects again; a new generation, a change of
/// the project's Registry or [`SETUP_RESYNC`] redo it.
#[derive(Clone, Default)]
struct Setups(Arc<std::sync::Mutex<BTreeMap<String, Setup>>>);

/// One project's setup: the generation it was done for, the registry host, when.
type Setup = (Option<i64>, String, std::time::Instant);

impl Setups {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Setup>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The registry host of `p`'s setup, when it was done for this generation and recently.
    fn fresh(&self, p: &Project) -> Option<String> {
        let setups = self.lock();
        let (generation, host, at) = setups.get(&key(p))?;
        (*generation == p.metadata.generation && at.elapsed() < SETUP_RESYNC).then(|| host.clone())
    }

    fn remember(&self, p: &Project, host: &str) {
        self.lock().insert(key(p), (p.metadata.generation, host.to_owned(), std::time::Instant::now()));
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// A condition to write: (type, ok, reason, message).
type Verdict = (&'static str, bool, &'static str, String);

/// The project's key in DomainPool allocations.
fn key(p: &Project) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

fn labels(p: &Project) -> serde_json::Value {
    json!({
        "app.kubernetes.io/managed-by": "persys-reconciler",
        LABEL_PROJECT: p.name_any(),
        LABEL_PROJECT_NAMESPACE: p.namespace().unwrap_or_default(),
    })
}

/// The project's namespace, made and labelled; `Err` with a message when another project or
/// someone else holds that name.
async fn ensure_namespace(ctx: &Context, p: &Project, ns: &str) -> Result<Result<(), String>, Error> {
    let api = Api::<Namespace>::all(ctx.client.clone());
    if let Some(existing) = api.get_opt(ns).await? {
        let l = existing.labels();
        let ours = l.get(LABEL_PROJECT) == Some(&p.name_any())
            && l.get(LABEL_PROJECT_NAMESPACE).map(String::as_str) == p.namespace().as_deref();
        if !ours {
            return Ok(Err(format!(
                "namespace {ns} exists and does not belong to this project; delete it or rename the project"
            )));
        }
        if existing.metadata.deletion_timestamp.is_some() {
            return Ok(Err(format!("namespace {ns} is still being deleted; it is recreated once it is gone")));
        }
    }
    let patch = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": ns, "labels": labels(p),
        "annotations": {"kapsa-project.io/parent-namespace": p.namespace().unwrap_or_default()},
    }});
    api.patch(ns, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(Ok(()))
}

/// The registry's host (for image references) and whether its credentials were copied.
async fn registry_access(ctx: &Context, p: &Project, ns: &str) -> Result<Result<(String, bool), String>, Error> {
    let name = &p.spec.registry.name;
    let Some(reg) = Api::<Registry>::all(ctx.client.clone()).get_opt(name).await? else {
        return Ok(Err(format!("Registry {name} does not exist; create it or fix spec.registry.name")));
    };
    let base = match registries::base_url(&reg.spec.endpoint) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("Registry {name}: {e}"))),
    };
    let host = base.split_once("://").map_or(base.as_str(), |(_, h)| h).trim_end_matches('/').to_owned();
    let (Some(auth), Some(creds_ns)) = (&reg.spec.auth, &ctx.options.credentials_namespace) else {
        return Ok(Ok((host, false)));
    };
    let secret_ns = if auth.secret_ref.namespace.is_empty() { creds_ns } else { &auth.secret_ref.namespace };
    if secret_ns != creds_ns {
        return Ok(Err(format!(
            "Registry {name}'s Secret is outside the credentials namespace {creds_ns}; the Registry reports it"
        )));
    }
    let Some(secret) = Api::<Secret>::namespaced(ctx.client.clone(), creds_ns).get_opt(&auth.secret_ref.name).await?
    else {
        return Ok(Err(format!("Registry {name}'s Secret {creds_ns}/{} does not exist", auth.secret_ref.name)));
    };
    let data = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    let creds = match registries::credentials(&data, &base) {
        Ok(c) => c,
        Err(why) => return Ok(Err(format!("Registry {name}'s Secret: {why}"))),
    };
    // kpack pushes, and the project's pods pull, with these: a dockerconfigjson for the
    // registry's host, in the project's namespace only.
    let auth = base64_encode(&format!("{}:{}", creds.username, creds.password));
    let config =
        json!({"auths": {host.clone(): {"username": creds.username, "password": creds.password, "auth": auth}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": REGISTRY_SECRET, "labels": labels(p), "annotations": {"kpack.io/docker": host}},
        "stringData": {".dockerconfigjson": config.to_string()}});
    Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .patch(REGISTRY_SECRET, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret))
        .await?;
    Ok(Ok((host, true)))
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The build ServiceAccount, the default one's pull secret and the developers' RoleBinding.
async fn ensure_access(ctx: &Context, p: &Project, ns: &str, registry_secret: bool) -> Result<(), Error> {
    let pp = PatchParams::apply(MANAGER).force();
    let secrets = if registry_secret { json!([{"name": REGISTRY_SECRET}]) } else { json!([]) };
    let build = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": BUILD_SERVICE_ACCOUNT, "labels": labels(p)},
        "secrets": secrets, "imagePullSecrets": secrets, "automountServiceAccountToken": false});
    let sas = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(ctx.client.clone(), ns);
    sas.patch(BUILD_SERVICE_ACCOUNT, &pp, &Patch::Apply(&build)).await?;
    if registry_secret {
        // The environments' pods run as `default`: it pulls with the registry's credentials.
        let default = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"},
            "imagePullSecrets": [{"name": REGISTRY_SECRET}]});
        sas.patch("default", &PatchParams::apply(MANAGER), &Patch::Apply(&default)).await?;
    }
    // Read access to the project's namespace for its developers: whoever the cluster's
    // authentication puts in the group `kapsa:<namespace>:<project>`.
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "kapsa-developers", "labels": labels(p)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
            "name": format!("kapsa:{}:{}", p.namespace().unwrap_or_default(), p.name_any())}]});
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(ctx.client.clone(), ns)
        .patch("kapsa-developers", &pp, &Patch::Apply(&binding))
        .await?;
    Ok(())
}

/// Branch heads from the repository: `Ok(heads)` or the reason it could not be read.
async fn poll(ctx: &Context, p: &Project) -> Result<Result<BTreeMap<String, String>, String>, Error> {
    let repo = &p.spec.repository;
    let credentials = match &repo.credentials {
        None => None,
        Some(c) => {
            let own = p.namespace().unwrap_or_default();
            if !c.secret_ref.namespace.is_empty() && c.secret_ref.namespace != own {
                return Ok(Err(format!(
                    "spec.repository.credentials must name a Secret in the project's namespace {own}"
                )));
            }
            match Api::<Secret>::namespaced(ctx.client.clone(), &own).get_opt(&c.secret_ref.name).await? {
                None => return Ok(Err(format!("Secret {own}/{} does not exist", c.secret_ref.name))),
                Some(s) => match crate::git::credentials_from_secret(&s) {
                    Ok(b) => Some(b),
                    Err(e) => return Ok(Err(format!("Secret {own}/{}: {e}", c.secret_ref.name))),
                },
            }
        }
    };
    match crate::git::branches(&ctx.http, &repo.url, credentials.as_ref(), ctx.options.timeout).await {
        Ok(refs) => Ok(Ok(refs.branches)),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Applies the kpack Image of `build` and reads what kpack reported for its commit.
async fn build(
    ctx: &Context,
    kpack: &ApiResource,
    p: &Project,
    ns: &str,
    image_repo: &str,
    b: &project::Build,
) -> Result<BuildOutcome, Error> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, kpack);
    let name = format!("build-{}", b.slug);
    let mut source = json!({"git": {"url": p.spec.repository.url, "revision": b.commit}});
    if p.spec.build.context != "." && !p.spec.build.context.is_empty() {
        source["subPath"] = json!(p.spec.build.context);
    }
    let env: Vec<_> = p.spec.build.env.iter().map(|e| json!({"name": e.name, "value": e.value})).collect();
    let mut build_labels = labels(p);
    build_labels[LABEL_BRANCH] = json!(b.slug);
    let image = json!({"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
        "metadata": {"name": name, "labels": build_labels,
            "annotations": {"kapsa-project.io/branch-name": b.branch, "kapsa-project.io/commit": b.commit}},
        "spec": {"tag": format!("{image_repo}:{}", b.tag), "serviceAccountName": BUILD_SERVICE_ACCOUNT,
            "builder": {"kind": ctx.options.builder.0, "name": ctx.options.builder.1},
            "source": source, "build": {"env": env}}});
    let applied = api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&image)).await?;
    Ok(outcome(&applied, &b.commit))
}

/// What kpack's status says about the build of `commit`.
fn outcome(image: &DynamicObject, commit: &str) -> BuildOutcome {
    let spec_commit = image.data["spec"]["source"]["git"]["revision"].as_str();
    let status = &image.data["status"];
    let observed = status["observedGeneration"].as_i64();
    if spec_commit != Some(commit) || observed.is_none() || observed != image.metadata.generation {
        return BuildOutcome::Building;
    }
    let ready = status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
    match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => match status["latestImage"].as_str() {
            Some(img) if !img.is_empty() => BuildOutcome::Succeeded(img.to_owned()),
            _ => BuildOutcome::Building,
        },
        Some("False") => {
            let c = ready.unwrap_or(&serde_json::Value::Null);
            let reason = c["reason"].as_str().unwrap_or("BuildFailed");
            let message = c["message"].as_str().unwrap_or("");
            BuildOutcome::Failed(if message.is_empty() { reason.to_owned() } else { format!("{reason}: {message}") })
        }
        _ => BuildOutcome::Building,
    }
}

/// Allocates host names for `wanted` from DomainPool `pool` (and releases the project's
/// others), retrying on conflicting writes: environment name → host, and the pool's issuer.
async fn allocate(
    ctx: &Context,
    pool: &str,
    project: &str,
    wanted: &[(String, String)],
) -> Result<Result<(BTreeMap<String, String>, IssuerRef), String>, Error> {
    let api = Api::<DomainPool>::all(ctx.client.clone());
    for _ in 0..8 {
        let Some(mut dp) = api.get_opt(pool).await? else {
            return Ok(Err(format!("DomainPool {pool} does not exist; create it or fix spec.domain.domainPoolRef")));
        };
        let before = dp.status.clone().unwrap_or_default();
        let names: BTreeSet<&str> = wanted.iter().map(|(n, _)| n.as_str()).collect();
        // Release what the project no longer has, and labels that changed.
        let mut allocations: Vec<Allocation> = before
            .allocations
            .iter()
            .filter(|a| {
                a.project != project
                    || (names.contains(a.environment.as_str())
                        && wanted.iter().any(|(n, l)| *n == a.environment && *l == a.subdomain))
            })
            .cloned()
            .collect();
        let mut hosts = BTreeMap::new();
        for (env, label) in wanted {
            let pick = u64::from(crate::rand_suffix());
            match domain::allocate(&dp.spec, &allocations, project, env, label, pick) {
                Ok(a) => {
                    hosts.insert(env.clone(), format!("{}.{}", a.subdomain, a.base_domain));
                    if !allocations.contains(&a) {
                        allocations.push(a);
                    }
                }
                Err(e) => return Ok(Err(format!("DomainPool {pool}: {e}"))),
            }
        }
        let issuer = dp.spec.cert_manager.issuer_ref.clone();
        if allocations == before.allocations {
            return Ok(Ok((hosts, issuer)));
        }
        let mut next = before;
        next.allocations = allocations;
        dp.status = Some(next);
        match api.replace_status(pool, &PostParams::default(), &dp).await {
            Ok(_) => return Ok(Ok((hosts, issuer))),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Err(format!("DomainPool {pool} kept changing; retrying")))
}

/// Releases every host name of `project` in `pool`.
async fn release(ctx: &Context, pool: &str, project: &str) -> Result<(), Error> {
    let api = Api::<DomainPool>::all(ctx.client.clone());
    for _ in 0..8 {
        let Some(mut dp) = api.get_opt(pool).await? else { return Ok(()) };
        let mut st = dp.status.clone().unwrap_or_default();
        let before = st.allocations.len();
        st.allocations.retain(|a| a.project != project);
        if st.allocations.len() == before {
            return Ok(());
        }
        dp.status = Some(st);
        match api.replace_status(pool, &PostParams::default(), &dp).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Applies the wanted Environments, deletes the others of the project.
#[allow(clippy::too_many_arguments)]
async fn environments(
    ctx: &Context,
    p: &Project,
    ns: &str,
    plan: &Plan,
    branches: &[BranchStatus],
    hosts: &BTreeMap<String, String>,
    issuer: Option<&IssuerRef>,
) -> Result<Vec<EnvironmentSummary>, Error> {
    let api = Api::<Environment>::namespaced(ctx.client.clone(), ns);
    let existing = api.list(&ListParams::default().labels(&format!("{LABEL_PROJECT}={}", p.name_any()))).await?;
    let current: BTreeMap<String, Environment> = existing.items.into_iter().map(|e| (e.name_any(), e)).collect();
    let mut summaries = Vec::new();
    for want in &plan.environments {
        let branch = branches.iter().find(|b| b.name == want.branch);
        let now_image = current.get(&want.name).and_then(|e| e.spec.image.as_deref());
        let image = project::environment_image(now_image, want.auto_sync, branch);
        let mut env_labels = labels(p);
        env_labels[LABEL_TYPE] = json!(want.kind.as_str());
        if let Some(b) = branch {
            env_labels[LABEL_BRANCH] = json!(b.slug);
        }
        let mut annotations = serde_json::Map::new();
        if let Some(e) = want.expires_at {
            annotations.insert(EXPIRES_AT.into(), json!(e.to_string()));
        }
        let mut ingress = serde_json::Map::new();
        if let Some(host) = hosts.get(&want.name) {
            ingress.insert("host".into(), json!(host));
            if let Some(i) = issuer {
                let key = if i.kind == "Issuer" { "cert-manager.io/issuer" } else { "cert-manager.io/cluster-issuer" };
                ingress.insert("annotations".into(), json!({key: i.name}));
            }
        }
        let mut spec = json!({
            "projectRef": {"name": p.name_any(), "namespace": p.namespace().unwrap_or_default()},
            "type": want.kind.as_str(), "branch": want.branch, "autoSync": want.auto_sync,
        });
        if let Some(img) = &image {
            spec["image"] = json!(img);
        }
        if !ingress.is_empty() {
            spec["ingress"] = serde_json::Value::Object(ingress);
        }
        let patch = json!({"apiVersion": persys_crds::kapsa::API_VERSION, "kind": "Environment",
            "metadata": {"name": want.name, "labels": env_labels, "annotations": annotations}, "spec": spec});
        let applied = api.patch(&want.name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        let st = applied.status.unwrap_or_default();
        summaries.push(EnvironmentSummary {
            name: want.name.clone(),
            ready: st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"),
            url: st.urls.first().cloned(),
            kind: want.kind.as_str().into(),
        });
    }
    let wanted: BTreeSet<&str> = plan.environments.iter().map(|e| e.name.as_str()).collect();
    for (name, env) in &current {
        if !wanted.contains(name.as_str()) && env.metadata.deletion_timestamp.is_none() {
            tracing::info!(project = %key(p), environment = %name, "deleting an environment the project no longer has");
            api.delete(name, &DeleteParams::background()).await?;
        }
    }
    Ok(summaries)
}

async fn apply(p: Arc<Project>, ctx: &Context) -> Result<Action, Error> {
    let now = Timestamp::now();
    let generation = p.metadata.generation;
    let previous = p.status.clone().unwrap_or_default();
    let ns = project::namespace(&p.namespace().unwrap_or_default(), &p.name_any());
    let mut verdicts: Vec<Verdict> = Vec::new();
    let mut next = ProjectStatus { observed_generation: generation, namespace: Some(ns.clone()), ..previous.clone() };
    let poll_every = Duration::from_secs(p.spec.repository.poll_interval.max(60).unsigned_abs());
    let mut requeue = poll_every;

    let ready = match ctx.setups.fresh(&p) {
        Some(host) => Ok(host),
        None => {
            ctx.setups.forget(&key(&p));
            match ensure_namespace(ctx, &p, &ns).await? {
                Err(why) => Err(("NamespaceTaken", why)),
                Ok(()) => match registry_access(ctx, &p, &ns).await? {
                    Err(why) => Err(("RegistryNotReady", why)),
                    Ok((host, copied)) => {
                        ensure_access(ctx, &p, &ns, copied).await?;
                        ctx.setups.remember(&p, &host);
                        Ok(host)
                    }
                },
            }
        }
    };
    let host = match ready {
        Ok(h) => h,
        Err((reason, why)) => {
            verdicts.push(("Ready", false, reason, why));
            write_status(ctx, &p, next, &previous, verdicts, now).await?;
            return Ok(Action::requeue(ctx.options.retry.max(Duration::from_secs(30))));
        }
    };

    // Poll when due: a new generation, a new refresh request, or pollInterval since the last poll.
    let refresh = p.annotations().get(REFRESH).cloned();
    let last = previous.last_polled.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let due_in = last
        .and_then(|l| l.checked_add(poll_every).ok())
        .and_then(|due| Duration::try_from(due.since(now).ok()?).ok())
        .filter(|d| !d.is_zero() && previous.observed_generation == generation && refresh == previous.last_refresh);
    let heads = match due_in {
        Some(wait) => {
            requeue = wait;
            verdicts.push(previous_condition(&previous, "RepositoryAccessible"));
            None
        }
        None => {
            next.last_polled = Some(now.to_string());
            next.last_refresh = refresh.clone();
            match poll(ctx, &p).await? {
                Ok(h) => {
                    let n = h.len();
                    verdicts.push(("RepositoryAccessible", true, "Polled", format!("{n} branch(es)")));
                    Some(h)
                }
                Err(why) => {
                    verdicts.push(("RepositoryAccessible", false, "PollFailed", why));
                    None
                }
            }
        }
    };
    let mut plan = match project::plan(&p.spec, &previous.branches, heads.as_ref(), now) {
        Ok(plan) => plan,
        Err(why) => {
            verdicts.push(("Ready", false, "InvalidSpec", why));
            write_status(ctx, &p, next, &previous, verdicts, now).await?;
            return Ok(Action::requeue(requeue));
        }
    };
    if let Some(e) = plan.next_expiry
        && let Ok(d) = e.since(now).and_then(Duration::try_from)
    {
        requeue = requeue.min(d + Duration::from_secs(1));
    }

    // Builds.
    let image_repo = format!("{host}/{}", p.spec.registry.image_repository);
    let mut failures = Vec::new();
    let mut pending = 0;
    match (&ctx.kpack, p.spec.build.strategy.as_str()) {
        (_, "dockerfile") => verdicts.push((
            "BuildSucceeded",
            false,
            "StrategyUnsupported",
            "builds run on kpack (Cloud Native Buildpacks), which does not build Dockerfiles; set spec.build.strategy: buildpack".into(),
        )),
        (None, _) => verdicts.push((
            "BuildSucceeded",
            false,
            "KpackMissing",
            "kpack is not installed (no kpack.io/v1alpha2 Image); install kpack to build".into(),
        )),
        (Some(kpack), _) => {
            for b in &plan.builds {
                let outcome = build(ctx, kpack, &p, &ns, &image_repo, b).await?;
                if let Some(st) = plan.branches.iter_mut().find(|s| s.name == b.branch) {
                    project::record(st, &b.commit, &outcome);
                }
                match outcome {
                    BuildOutcome::Failed(why) => failures.push(format!("{} at {}: {why}", b.branch, project::short(&b.commit))),
                    BuildOutcome::Building => pending += 1,
                    BuildOutcome::Succeeded(_) => {}
                }
            }
            verdicts.push(match (failures.is_empty(), pending) {
                (false, _) => ("BuildSucceeded", false, "BuildFailed", failures.join("; ")),
                (true, 0) => ("BuildSucceeded", true, "Built", "every tracked branch's head is built".into()),
                (true, n) => ("BuildSucceeded", true, "Building", format!("{n} build(s) running; last good images stay")),
            });
        }
    }
    // Builds and kpack's other reports arrive through the Image watch; without kpack, check again soon.
    if ctx.kpack.is_none() {
        requeue = requeue.min(Duration::from_secs(60));
    }

    // Host names, then environments.
    let wanted: Vec<(String, String)> =
        plan.environments.iter().map(|e| (e.name.clone(), e.host_label.clone())).collect();
    let (hosts, issuer, pool_problem) = match allocate(ctx, &p.spec.domain.domain_pool_ref, &key(&p), &wanted).await? {
        Ok((h, i)) => (h, Some(i), None),
        Err(why) => (BTreeMap::new(), None, Some(why)),
    };
    next.environments = environments(ctx, &p, &ns, &plan, &plan.branches, &hosts, issuer.as_ref()).await?;
    let default = plan.branches.iter().find(|b| b.name == p.spec.repository.branch);
    next.latest_commit = default.map(|b| b.commit.clone()).or(previous.latest_commit.clone());
    next.latest_image = default.and_then(|b| b.image.clone()).or(previous.latest_image.clone());
    next.branches = std::mem::take(&mut plan.branches);
    let ready = match pool_problem {
        Some(why) => ("Ready", false, "DomainsUnavailable", why),
        None => {
            let n = next.environments.len();
            let up = next.environments.iter().filter(|e| e.ready).count();
            ("Ready", true, "Reconciled", format!("{up}/{n} environment(s) running"))
        }
    };
    verdicts.push(ready);
    write_status(ctx, &p, next, &previous, verdicts, now).await?;
    Ok(Action::requeue(requeue))
}

/// The previous condition of `type_`, kept as it was (nothing new was learnt about it).
fn previous_condition(previous: &ProjectStatus, type_: &'static str) -> Verdict {
    match previous.conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == "True" => (type_, true, "Polled", c.message.clone()),
        Some(c) => (type_, false, "PollFailed", c.message.clone()),
        None => (type_, false, "NotPolled", "not polled yet".into()),
    }
}

async fn write_status(
    ctx: &Context,
    p: &Project,
    mut next: ProjectStatus,
    previous: &ProjectStatus,
    verdicts: Vec<Verdict>,
    now: Timestamp,
) -> Result<(), Error> {
    let generation = p.metadata.generation;
    let mut conditions: Vec<_> = previous.conditions.clone();
    for (type_, ok, reason, message) in verdicts {
        let c = status::condition(&previous.conditions, type_, ok, reason, message, generation, now);
        conditions.retain(|x| x.type_ != type_);
        conditions.push(c);
    }
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    next.conditions = conditions;
    if next == *previous {
        return Ok(());
    }
    let patch = json!({"apiVersion": persys_crds::kapsa::API_VERSION, "kind": "Project", "status": next});
    Api::<Project>::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default())
        .patch_status(&p.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}

async fn cleanup(p: Arc<Project>, ctx: &Context) -> Result<Action, Error> {
    ctx.setups.forget(&key(&p));
    let ns = project::namespace(&p.namespace().unwrap_or_default(), &p.name_any());
    let api = Api::<Namespace>::all(ctx.client.clone());
    if let Some(existing) = api.get_opt(&ns).await?
        && existing.labels().get(LABEL_PROJECT) == Some(&p.name_any())
        && existing.metadata.deletion_timestamp.is_none()
    {
        tracing::info!(project = %key(&p), namespace = %ns, "project deleted: deleting its namespace");
        api.delete(&ns, &DeleteParams::background()).await?;
    }
    release(ctx, &p.spec.domain.domain_pool_ref, &key(&p)).await?;
    Ok(Action::await_change())
}

async fn reconcile(p: Arc<Project>, ctx: Arc<Context>) -> Result<Action, Error> {
    let api = Api::<Project>::namespaced(ctx.client.clone(), &p.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, p, |event| async {
        match event {
            Event::Apply(p) => apply(p, &ctx).await,
            Event::Cleanup(p) => cleanup(p, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e) | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

fn error_policy(p: Arc<Project>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(project = %key(&p), %error, "project reconcile failed; retrying");
    Action::requeue(ctx.options.retry)
}

/// Waits for the Project CRD, then follows every Project (and the kpack Images and
/// Environments of each) until `shutdown`.
pub async fn run(client: Client, options: Options, shutdown: Shutdown) -> anyhow::Result<()> {
    let http = persys_kit::http::client(None, "git repositories")?;
    let gvk = GroupVersionKind::gvk("kapsa-project.io", "v1alpha1", "Project");
    if crate::served(&client, &gvk, crate::argocd::RECHECK, &shutdown).await.is_none() {
        return Ok(());
    }
    let kpack = kube::discovery::pinned_kind(&client, &kpack_image()).await.ok().map(|(r, _)| r);
    if kpack.is_none() {
        tracing::warn!("kpack is not installed (no kpack.io/v1alpha2 Image): projects are polled but not built");
    }
    tracing::info!("following Kapsa Projects");
    let projects = Api::<Project>::all(client.clone());
    let to_project = |o: &kube::api::ObjectMeta| {
        let l = o.labels.as_ref()?;
        Some(ObjectRef::<Project>::new(l.get(LABEL_PROJECT)?).within(l.get(LABEL_PROJECT_NAMESPACE)?))
    };
    let setups = Setups::default();
    let mut controller = Controller::new(projects, watcher::Config::default()).watches(
        Api::<Environment>::all(client.clone()),
        watcher::Config::default().labels(LABEL_PROJECT),
        move |e: Environment| to_project(&e.metadata),
    );
    // A Registry's change (its endpoint, its credentials' Secret) redoes the setup of the
    // projects that push to it.
    let store = controller.store();
    let invalidate = setups.clone();
    controller =
        controller.watches(Api::<Registry>::all(client.clone()), watcher::Config::default(), move |r: Registry| {
            let name = r.name_any();
            let users: Vec<_> = store.state().into_iter().filter(|p| p.spec.registry.name == name).collect();
            for p in &users {
                invalidate.forget(&key(p));
            }
            users.into_iter().map(|p| ObjectRef::from_obj(&*p)).collect::<Vec<_>>()
        });
    if let Some(r) = &kpack {
        controller = controller.watches_with(
            Api::<DynamicObject>::all_with(client.clone(), r),
            r.clone(),
            watcher::Config::default().labels(LABEL_PROJECT),
            move |i: DynamicObject| to_project(&i.metadata),
        );
    }
    controller
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, Arc::new(Context { client, http, options, kpack, setups }))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "project reconcile");
            }
        })
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(generation: i64, status: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
            "metadata": {"name": "b", "generation": generation},
            "spec": {"source": {"git": {"revision": "abc"}}}, "status": status}))
        .unwrap()
    }

    #[test]
    fn kpack_statuses_read_as_outcomes() {
        let ok = json!({"observedGeneration": 2, "latestImage": "r/x@sha256:1",
            "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(outcome(&image(2, ok.clone()), "abc"), BuildOutcome::Succeeded("r/x@sha256:1".into()));
        assert_eq!(outcome(&image(3, ok.clone()), "abc"), BuildOutcome::Building, "an older generation's result");
        assert_eq!(outcome(&image(2, ok), "def"), BuildOutcome::Building, "another commit");
        let failed = json!({"observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "exit 1"}]});
        assert_eq!(outcome(&image(2, failed), "abc"), BuildOutcome::Failed("BuildFailed: exit 1".into()));
        assert_eq!(outcome(&image(2, json!({})), "abc"), BuildOutcome::Building);
    }
}
