//! The ApplicationPersona controller, in the controller-rs shape: a [`Context`], `reconcile`
//! and `error_policy`, status through server-side apply under the field manager [`MANAGER`].
//!
//! It reconciles on persona changes, on changes of any Deployment or StatefulSet that could
//! match a persona (or is the one a persona resolved to), and every [`Options::requeue`]. The
//! workloads are read from reflector caches filled by the same watches that trigger it, so a
//! reconcile costs one status write, and none when nothing changed.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::Pod,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use persys_analyzer::{persona::convert, validate};
use persys_crds::persona::{
    ApplicationPersona, ApplicationPersonaStatus, DeploymentsStatus, HealthStatus, PodFailure, ValidationStatus,
    WorkloadStatus,
};
use persys_kit::shutdown::Shutdown;
use persys_proto::analyzer::v1::{Finding, FindingSeverity};

use crate::{
    baseline, cache,
    decide::{
        baseline::{self as baselines, Resources, Target},
        health::{self, Health, WorkloadState},
        resolve::{self, Candidate, Resolution},
        status::{self, Observed},
    },
    workload::{self, Cached},
};

/// The field manager of every status the reconciler writes.
pub const MANAGER: &str = "persys-reconciler";

/// Most pod failures kept in a status.
const MAX_POD_FAILURES: usize = 10;
/// Most recommendations kept in a status.
const MAX_RECOMMENDATIONS: usize = 10;

/// Errors of one reconcile; each is retried by [`error_policy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The persona has no namespace (the CRD is namespaced, so only a broken cache does this).
    #[error("the persona has no namespace")]
    NoNamespace,
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reconcile every persona at least this often.
    pub requeue: Duration,
    /// Wait after a failed reconcile.
    pub retry: Duration,
    /// Watch only this namespace; every namespace when `None`.
    pub namespace: Option<String>,
    /// Learn resource baselines from Prometheus; off when `None`.
    pub baseline: Option<Arc<baseline::Learner>>,
}

impl Default for Options {
    fn default() -> Self {
        Self { requeue: Duration::from_secs(60), retry: Duration::from_secs(5), namespace: None, baseline: None }
    }
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    deployments: Store<Cached<Deployment>>,
    statefulsets: Store<Cached<StatefulSet>>,
    /// Both workload caches filled (see [`crate::cache`]).
    ready: cache::Ready,
    options: Options,
}

/// A workload read from a cache or an admission request, with what the decisions need.
pub enum Workload {
    /// A Deployment.
    Deployment(Arc<Cached<Deployment>>),
    /// A StatefulSet.
    StatefulSet(Arc<Cached<StatefulSet>>),
}

impl Workload {
    /// A typed Deployment read as the cache reads it.
    pub fn from_deployment(d: &Deployment) -> Self {
        Self::Deployment(Arc::new(
            Cached::from_value(serde_json::to_value(d).unwrap_or_default())
                .unwrap_or_else(|_| unreachable!("a typed Deployment serialises to the shape it is read from")),
        ))
    }

    /// A typed StatefulSet read as the cache reads it.
    pub fn from_statefulset(s: &StatefulSet) -> Self {
        Self::StatefulSet(Arc::new(
            Cached::from_value(serde_json::to_value(s).unwrap_or_default())
                .unwrap_or_else(|_| unreachable!("a typed StatefulSet serialises to the shape it is read from")),
        ))
    }

    fn parts(&self) -> (&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, &workload::Spec) {
        match self {
            Self::Deployment(d) => (&d.metadata, &d.spec),
            Self::StatefulSet(s) => (&s.metadata, &s.spec),
        }
    }

    /// [`resolve::could_match`] without building a [`Candidate`] (no clones): whether `app`
    /// appears where some rung of the resolution looks.
    pub(crate) fn could_match(&self, app: &str) -> bool {
        let (meta, spec) = self.parts();
        let keys = ["app.kubernetes.io/name", "app"];
        let has = |labels: Option<&BTreeMap<String, String>>| {
            labels.is_some_and(|l| keys.iter().any(|k| l.get(*k).is_some_and(|v| v == app)))
        };
        meta.name.as_deref() == Some(app)
            || has(meta.labels.as_ref())
            || has(spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref()))
            || has(spec.selector.match_labels.as_ref())
    }

    pub(crate) fn candidate(&self) -> Candidate {
        match self {
            Self::Deployment(d) => d.candidate(),
            Self::StatefulSet(s) => s.candidate(),
        }
    }

    /// The workload as a Deployment for the shared rules: a StatefulSet's replicas and pod
    /// template are what the rules check, so it is read through the same shape.
    pub(crate) fn as_deployment(&self) -> Deployment {
        match self {
            Self::Deployment(d) => d.to_deployment(),
            Self::StatefulSet(s) => s.to_deployment(),
        }
    }

    fn state(&self, pod_failures: usize) -> WorkloadState {
        let (meta, spec) = self.parts();
        let status = match self {
            Self::Deployment(d) => d.status.as_ref(),
            Self::StatefulSet(s) => s.status.as_ref(),
        };
        // Only a Deployment reports progress (a StatefulSet has no Progressing condition).
        let progressing = match self {
            Self::Deployment(_) => status
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Progressing"))
                .map(|c| !(c.status == "False" || c.reason.as_deref() == Some("ProgressDeadlineExceeded"))),
            Self::StatefulSet(_) => None,
        };
        WorkloadState {
            desired: spec.replicas.unwrap_or(1),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
            observed: status.and_then(|s| s.observed_generation).unwrap_or(0) >= meta.generation.unwrap_or(0),
            progressing,
            pod_failures,
        }
    }

    fn image(&self) -> String {
        let (_, spec) = self.parts();
        spec.template.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
    }
}

/// Failures of the workload's pods, found by its selector: containers waiting for a reason
/// that will not fix itself, containers last killed by the OOM killer, unschedulable pods.
pub fn pod_failures(pods: &[Pod]) -> Vec<PodFailure> {
    const WAITING: [&str; 6] = [
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "InvalidImageName",
        "RunContainerError",
    ];
    let mut out = Vec::new();
    for pod in pods {
        let name = pod.name_any();
        let status = pod.status.clone().unwrap_or_default();
        for c in status.container_statuses.unwrap_or_default() {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(w) = waiting.filter(|w| w.reason.as_deref().is_some_and(|r| WAITING.contains(&r))) {
                out.push(PodFailure {
                    pod_name: name.clone(),
                    container: c.name.clone(),
                    reason: w.reason.clone().unwrap_or_default(),
                    message: w.message.clone().unwrap_or_default(),
                });
            } else if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref())
                && t.reason.as_deref() == Some("OOMKilled")
            {
                out.push(PodFailure {
                    pod_name: name.clone(),
                    container: c.name.clone(),
                    reason: "OOMKilled".into(),
                    message: format!("restarted {} time(s)", c.restart_count),
                });
            }
        }
        for cond in status.conditions.unwrap_or_default() {
            if cond.type_ == "PodScheduled" && cond.status == "False" && cond.reason.as_deref() == Some("Unschedulable")
            {
                out.push(PodFailure {
                    pod_name: name.clone(),
                    container: String::new(),
                    reason: "Unschedulable".into(),
                    message: cond.message.unwrap_or_default(),
                });
            }
        }
    }
    out.truncate(MAX_POD_FAILURES);
    out
}

fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The conditions this controller writes; others belong to other field managers.
fn is_own_condition(type_: &str) -> bool {
    matches!(type_, "Ready" | "Validated")
}

/// A status with its timestamps cleared (and its conditions in one order), for comparing what
/// changed.
fn without_times(s: &ApplicationPersonaStatus) -> ApplicationPersonaStatus {
    let mut s = s.clone();
    s.last_updated = None;
    s.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    if let Some(h) = s.health.as_mut() {
        h.last_check = None;
    }
    if let Some(v) = s.validation.as_mut() {
        v.last_checked = None;
    }
    s
}

/// The workloads of namespace `ns` in the caches that could belong to the persona named `app`
/// on some rung of the resolution. The others can never be found by [`resolve::resolve`], so
/// leaving them out changes no decision; it keeps a reconcile proportional to the persona's
/// candidates instead of to every workload in its namespace (with thousands of Deployments in
/// one namespace, building a candidate for each on every reconcile saturated the controller).
fn workloads_in(ctx: &Context, ns: &str, app: &str) -> Vec<Workload> {
    let mut workloads: Vec<Workload> = ctx
        .deployments
        .state()
        .into_iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .map(Workload::Deployment)
        .filter(|w| w.could_match(app))
        .collect();
    workloads.extend(
        ctx.statefulsets
            .state()
            .into_iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .map(Workload::StatefulSet)
            .filter(|w| w.could_match(app)),
    );
    workloads
}

/// The selector of the workload `persona` resolves to, when that workload is not healthy by its
/// own status: its pods are worth listing for failures.
fn pods_to_check(persona: &ApplicationPersona, workloads: &[Workload]) -> Option<BTreeMap<String, String>> {
    let candidates: Vec<Candidate> = workloads.iter().map(Workload::candidate).collect();
    let Resolution::Found { index, .. } = resolve::resolve(&persona.spec.name, &candidates) else { return None };
    let healthy = health::health(&workloads[index].state(0)).0 == Health::Healthy;
    (!healthy && !candidates[index].selector.is_empty()).then(|| candidates[index].selector.clone())
}

/// Decides the status of `persona` from its namespace's cached workloads and, when its workload
/// is not healthy, its pods' failures.
async fn observe(
    persona: &ApplicationPersona,
    ns: &str,
    ctx: &Context,
) -> Result<(ApplicationPersonaStatus, Option<Target>), Error> {
    let workloads = workloads_in(ctx, ns, &persona.spec.name);
    let failures = match pods_to_check(persona, &workloads) {
        Some(selector) => {
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
                .list(&ListParams::default().labels(&selector_string(&selector)))
                .await?;
            pod_failures(&pods.items)
        }
        None => Vec::new(),
    };
    let status = decide_status(persona, &workloads, failures, Timestamp::now());
    // What a baseline would measure: only worked out when baselines are on.
    let target = status.workload.as_ref().filter(|_| ctx.options.baseline.is_some()).and_then(|found| {
        let w = workloads.iter().find(|w| {
            let c = w.candidate();
            c.kind == found.kind && c.name == found.name
        })?;
        Some(Target {
            namespace: ns.to_owned(),
            kind: baselines::Kind::parse(&found.kind)?,
            name: found.name.clone(),
            container: first_container(&w.as_deployment())?.0,
        })
    });
    Ok((status, target))
}

/// The name and resources of the pod template's first container (the one a persona describes).
pub fn first_container(d: &Deployment) -> Option<(String, Resources)> {
    let c = d.spec.template.spec.as_ref()?.containers.first()?;
    let r = c.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, k: &str| {
        m.and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    let (requests, limits) = (r.and_then(|r| r.requests.as_ref()), r.and_then(|r| r.limits.as_ref()));
    Some((
        c.name.clone(),
        Resources {
            cpu_request: get(requests, "cpu"),
            cpu_limit: get(limits, "cpu"),
            memory_request: get(requests, "memory"),
            memory_limit: get(limits, "memory"),
        },
    ))
}

/// The status of `persona` among `workloads` (its namespace's), given the failures of its
/// workload's pods, at `now`: resolution, the shared validation rules, health, phase,
/// conditions and recommendations. Pure; returns the previous status unchanged when nothing
/// but times would change, so an unchanged status is never rewritten.
pub fn decide_status(
    persona: &ApplicationPersona,
    workloads: &[Workload],
    failures: Vec<PodFailure>,
    now: Timestamp,
) -> ApplicationPersonaStatus {
    let app = persona.spec.name.as_str();
    let previous = persona.status.clone().unwrap_or_default();
    let generation = persona.metadata.generation;
    let candidates: Vec<Candidate> = workloads.iter().map(Workload::candidate).collect();

    let mut findings: Vec<Finding> = Vec::new();
    let mut out = ApplicationPersonaStatus { observed_generation: generation, ..ApplicationPersonaStatus::default() };
    let spec = convert::from_crd(&persona.spec);
    let mut resources = None;
    let observed = match (&spec, resolve::resolve(app, &candidates)) {
        (Err(e), _) => {
            findings.push(validate::finding(
                FindingSeverity::Error,
                persys_proto::analyzer::v1::RuleGroup::Schema,
                "schema.persona",
                format!("the persona cannot be read: {e}"),
                "fix the persona's spec",
                "spec",
            ));
            Observed::InvalidPersona
        }
        (Ok(_), Resolution::NotFound) => {
            Observed::NoWorkload { message: resolve::not_found_message(app), ambiguous: false }
        }
        (Ok(_), Resolution::Ambiguous { rung, candidates }) => Observed::NoWorkload {
            message: format!(
                "several workloads match on {rung}: {}; label the one this persona describes",
                candidates.join(", ")
            ),
            ambiguous: true,
        },
        (Ok(spec), Resolution::Found { index, rung }) => {
            let w = &workloads[index];
            let c = &candidates[index];
            out.workload = Some(WorkloadStatus { kind: c.kind.clone(), name: c.name.clone(), matched_by: rung.into() });
            findings.extend(validate::validate_persona(spec));
            let as_deployment = w.as_deployment();
            findings.extend(validate::validate_deployment(&as_deployment, spec));
            resources = first_container(&as_deployment).map(|(_, r)| r);
            let (h, message) = health::health(&w.state(failures.len()));
            let image = w.image();
            let mut deployments = previous.deployments.clone().unwrap_or_default();
            if h == Health::Healthy {
                deployments.last_successful = image.clone();
            } else if h == Health::Unhealthy && deployments.current == image {
                deployments.last_failed = image.clone();
            }
            deployments.current = image;
            out.deployments = Some(DeploymentsStatus { ..deployments });
            let desired = w.state(0).desired;
            out.health = Some(HealthStatus {
                status: h.as_str().into(),
                last_check: Some(now.to_string()),
                message,
                desired_replicas: Some(desired),
                ready_replicas: Some(w.state(0).ready),
                pod_failures: failures,
            });
            Observed::Workload(h)
        }
    };
    if out.health.is_none() {
        let message = match &observed {
            Observed::NoWorkload { message, .. } => message.clone(),
            _ => "the persona cannot be used".into(),
        };
        out.health = Some(HealthStatus {
            status: "Unknown".into(),
            last_check: Some(now.to_string()),
            message,
            ..HealthStatus::default()
        });
    }
    let errors = findings.iter().filter(|f| f.severity == FindingSeverity::Error as i32).count();
    let (phase, reason, message) = status::phase(&observed, errors);
    out.phase = Some(phase.as_str().into());
    let validated = !matches!(observed, Observed::NoWorkload { .. });
    out.validation = Some(ValidationStatus {
        passed: errors == 0,
        last_checked: Some(now.to_string()),
        issues: status::issues(&findings),
    });
    out.recommendations = status::recommendations(&findings, usize::MAX);
    if let (Some(b), Some(r)) = (previous.learned.as_ref().and_then(|l| l.resource_baseline.as_ref()), &resources) {
        out.recommendations.extend(baselines::right_sizing(b, r));
    }
    out.recommendations = status::most_urgent(out.recommendations, MAX_RECOMMENDATIONS);
    out.learned = previous.learned.clone();
    out.argo_cd = previous.argo_cd.clone();
    out.conditions = vec![
        status::condition(
            &previous.conditions,
            "Ready",
            phase == status::Phase::Active,
            reason,
            message,
            generation,
            now,
        ),
        match (validated, errors) {
            (false, _) => status::condition(
                &previous.conditions,
                "Validated",
                true,
                "Skipped",
                "no workload to validate".into(),
                generation,
                now,
            ),
            (true, 0) => status::condition(
                &previous.conditions,
                "Validated",
                true,
                "Passed",
                "no validation errors".into(),
                generation,
                now,
            ),
            (true, n) => status::condition(
                &previous.conditions,
                "Validated",
                false,
                "ValidationFailed",
                format!("{n} validation error(s)"),
                generation,
                now,
            ),
        },
    ];
    // Conditions of the other field managers (the baseline's) are kept as they are.
    out.conditions.extend(previous.conditions.iter().filter(|c| !is_own_condition(&c.type_)).cloned());
    out.last_updated = Some(now.to_string());
    // Keep the previous times when nothing else changed, so an unchanged status is not rewritten.
    if without_times(&out) == without_times(&previous) {
        return previous;
    }
    out
}

/// Reconciles one persona: resolve, validate, judge health, write the status if it changed.
pub async fn reconcile(persona: Arc<ApplicationPersona>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = persona.namespace().ok_or(Error::NoNamespace)?;
    // An empty cache would read as "no workload": wait for the first full list.
    ctx.ready.clone().await;
    let (status, target) = observe(&persona, &ns, &ctx).await?;
    if persona.status.as_ref() != Some(&status) {
        let api = Api::<ApplicationPersona>::namespaced(ctx.client.clone(), &ns);
        // argoCD, learned and the BaselineLearned condition belong to other field managers:
        // never sent from here, so this apply neither owns nor removes them.
        let mut body = status.clone();
        body.argo_cd = None;
        body.learned = None;
        body.conditions.retain(|c| is_own_condition(&c.type_));
        let patch = serde_json::json!({
            "apiVersion": persys_crds::persona::API_VERSION,
            "kind": persys_crds::persona::KIND,
            "status": body,
        });
        api.patch_status(&persona.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        tracing::info!(
            persona = %persona.name_any(), namespace = %ns, phase = status.phase.as_deref().unwrap_or(""),
            "persona status written"
        );
    }
    if let (Some(learner), Some(target)) = (&ctx.options.baseline, target) {
        learner.learn_if_due(&ctx.client, &persona, &target).await?;
    }
    Ok(Action::requeue(ctx.options.requeue))
}

/// Retries a failed reconcile after [`Options::retry`].
pub fn error_policy(persona: Arc<ApplicationPersona>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(persona = %persona.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(ctx.options.retry)
}

/// Personas in `ns` a workload change should wake: those it could match, the one it was
/// resolved to, and those several workloads matched (a workload that stops matching can settle
/// an ambiguity, and only its new state is known here). A persona no workload matched is not
/// woken by the others: a workload can only change that by matching it, which the first test
/// sees. (Waking every unresolved persona made each change in a namespace of thousands of new
/// personas wake all the ones still waiting for their workload, and rewrite their statuses.)
fn affected(
    personas: &Store<ApplicationPersona>,
    ns: Option<String>,
    c: &Candidate,
) -> Vec<ObjectRef<ApplicationPersona>> {
    personas
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace == ns)
        .filter(|p| {
            let status = p.status.as_ref();
            let ambiguous = || {
                status.is_some_and(|s| s.conditions.iter().any(|k| k.type_ == "Ready" && k.reason == status::AMBIGUOUS))
            };
            match status.and_then(|s| s.workload.as_ref()) {
                Some(w) => (w.kind == c.kind && w.name == c.name) || resolve::could_match(&p.spec.name, c),
                None => resolve::could_match(&p.spec.name, c) || ambiguous(),
            }
        })
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
}

/// Personas whose workload selects `pod`, when the pod is failing.
fn failing_pod_owners(
    personas: &Store<ApplicationPersona>,
    deployments: &Store<Cached<Deployment>>,
    statefulsets: &Store<Cached<StatefulSet>>,
    pod: &Pod,
) -> Vec<ObjectRef<ApplicationPersona>> {
    if pod_failures(std::slice::from_ref(pod)).is_empty() {
        return Vec::new();
    }
    let ns = pod.namespace();
    let labels = pod.labels();
    let selects = |selector: &BTreeMap<String, String>| {
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    personas
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace == ns)
        .filter(|p| {
            let Some(w) = p.status.as_ref().and_then(|s| s.workload.as_ref()) else { return false };
            let Some(ns) = ns.as_deref() else { return false };
            match w.kind.as_str() {
                "Deployment" => deployments
                    .get(&ObjectRef::new(&w.name).within(ns))
                    .is_some_and(|d| selects(&d.candidate().selector)),
                _ => statefulsets
                    .get(&ObjectRef::new(&w.name).within(ns))
                    .is_some_and(|s| selects(&s.candidate().selector)),
            }
        })
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
}

/// Runs the controller until `shutdown`, on the personas of `personas` (a cache of the same
/// namespace, or of every one, as [`Options::namespace`]).
pub async fn run(client: Client, options: Options, personas: cache::Personas, shutdown: Shutdown) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    type WatchItem<K> = Result<watcher::Event<K>, watcher::Error>;
    /// A watch of the workloads of kind `W` feeding a cache of its own, as [`Cached`]: each
    /// object without what no decision reads.
    fn cached<W>(
        client: &Client,
        namespace: Option<&str>,
    ) -> (Store<Cached<W>>, impl futures::Stream<Item = WatchItem<Cached<W>>> + Send + 'static)
    where
        W: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
        Cached<W>: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store::<Cached<W>>();
        let events = watcher(api::<Cached<W>>(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(Cached::forget_unread)
            .reflect(writer);
        (store, events)
    }
    let ns = options.namespace.as_deref();
    // Workloads as [`Cached`]: only the fields the decisions read (~1.5 KiB each instead of a
    // typed object's ~9 KiB).
    let (deployments, deployment_events) = cached::<Deployment>(&client, ns);
    let (statefulsets, statefulset_events) = cached::<StatefulSet>(&client, ns);
    let (deployment_events, statefulset_events) =
        (deployment_events.touched_objects(), statefulset_events.touched_objects());

    // Pods only wake personas (no cache): a pod starting to fail changes no workload status
    // when it was not ready anyway, so without this a crash loop would wait for the requeue.
    let pod_events = watcher(api::<Pod>(&client, ns), watcher::Config::default()).default_backoff().touched_objects();

    // Personas from the process's one cache (PersonaService reads it too). The controller waits
    // for its store by `Store::wait_until_ready`, which wakes only one of concurrent waiters
    // (see [`crate::cache`]): it is built once the cache is filled, so it never waits.
    tokio::select! {
        _ = personas.ready() => {}
        _ = shutdown.clone().wait() => return,
    }
    let controller = Controller::for_shared_stream(personas.changes(), personas.store().clone());
    let personas = personas.store().clone();
    let (p1, p2, p3) = (personas.clone(), personas.clone(), personas);
    let (d3, s3) = (deployments.clone(), statefulsets.clone());
    let ready = {
        let (d, s) = (deployments.clone(), statefulsets.clone());
        cache::ready(async move {
            let _ = d.wait_until_ready().await;
            let _ = s.wait_until_ready().await;
        })
    };
    let ctx = Arc::new(Context { client, deployments, statefulsets, ready, options });
    controller
        .watches_stream(deployment_events, move |d: Cached<Deployment>| affected(&p1, d.namespace(), &d.candidate()))
        .watches_stream(statefulset_events, move |s: Cached<StatefulSet>| affected(&p2, s.namespace(), &s.candidate()))
        .watches_stream(pod_events, move |pod: Pod| failing_pod_owners(&p3, &d3, &s3, &pod))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "persona reconcile");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{
            apps::v1::{DeploymentSpec, StatefulSetSpec},
            core::v1::PodTemplateSpec,
        },
        apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
    };
    use proptest::prelude::*;

    use super::*;

    fn labels() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
        let key = prop::sample::select(vec!["app.kubernetes.io/name", "app", "tier", "name"]);
        let value = prop::sample::select(vec!["shop", "cart", "shop-v2"]);
        prop::option::of(prop::collection::btree_map(key.prop_map(String::from), value.prop_map(String::from), 0..3))
    }

    fn persona(name: &str, status: serde_json::Value) -> ApplicationPersona {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"name": name, "type": "api"}, "status": status}))
        .unwrap()
    }

    /// A workload change wakes the personas it could match, the one resolved to it and the
    /// ambiguous ones; not a persona merely waiting for a workload of its own, nor one in
    /// another namespace.
    #[test]
    fn a_workload_change_wakes_only_the_personas_it_concerns() {
        let ready = |reason: &str| {
            serde_json::json!({"type": "Ready", "status": "False", "reason": reason, "message": "m",
                "lastTransitionTime": "2026-12-01T00:00:00Z"})
        };
        let (store, mut writer) = reflector::store::<ApplicationPersona>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in [
            persona("waiting", serde_json::json!({"conditions": [ready("NoWorkload")]})),
            persona("new", serde_json::Value::Null),
            persona("twin", serde_json::json!({"conditions": [ready(status::AMBIGUOUS)]})),
            persona(
                "found",
                serde_json::json!({"workload": {"kind": "Deployment", "name": "found-v2", "matchedBy": "selector"}}),
            ),
        ] {
            writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        let mut elsewhere = persona("elsewhere", serde_json::json!({"conditions": [ready(status::AMBIGUOUS)]}));
        elsewhere.metadata.namespace = Some("other".into());
        writer.apply_watcher_event(&watcher::Event::InitApply(elsewhere));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let woken = |name: &str, labels: &[(&str, &str)]| {
            let c = Candidate {
                kind: "Deployment".into(),
                name: name.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Candidate::default()
            };
            let mut names: Vec<String> =
                affected(&store, Some("apps".into()), &c).into_iter().map(|r| r.name).collect();
            names.sort();
            names
        };
        assert_eq!(woken("unrelated", &[("app.kubernetes.io/name", "unrelated")]), ["twin"]);
        assert_eq!(woken("found-v2", &[]), ["found", "twin"]);
        assert_eq!(woken("x", &[("app", "waiting")]), ["twin", "waiting"]);
        assert_eq!(woken("new", &[]), ["new", "twin"]);
        assert_eq!(woken("y", &[("app.kubernetes.io/name", "found")]), ["found", "twin"]);
    }

    proptest! {
        /// The pre-filter agrees with the resolution's own `could_match` on every rung, so
        /// leaving workloads out before resolving changes no outcome.
        #[test]
        fn the_cheap_prefilter_agrees_with_the_resolution(
            name in prop::sample::select(vec!["shop", "cart", "web"]),
            app in prop::sample::select(vec!["shop", "cart", "shop-v2"]),
            meta_labels in labels(),
            template_labels in labels(),
            selector in labels(),
            stateful in any::<bool>(),
        ) {
            let metadata = ObjectMeta { name: Some(name.into()), labels: meta_labels, ..ObjectMeta::default() };
            let template = PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: template_labels, ..ObjectMeta::default() }),
                ..PodTemplateSpec::default()
            };
            let selector = LabelSelector { match_labels: selector, ..LabelSelector::default() };
            let workload = if stateful {
                Workload::from_statefulset(&StatefulSet {
                    metadata,
                    spec: StatefulSetSpec { template, selector, ..StatefulSetSpec::default() },
                    status: None,
                })
            } else {
                Workload::from_deployment(&Deployment {
                    metadata,
                    spec: DeploymentSpec { template, selector, ..DeploymentSpec::default() },
                    status: None,
                })
            };
            prop_assert_eq!(workload.could_match(app), resolve::could_match(app, &workload.candidate()));
        }
    }
}
