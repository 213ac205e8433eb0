//! ProjectService over mutual TLS, on the real API server's Kapsa objects: Projects,
//! Environments in the projects' own namespaces and kpack Images (a stand-in CRD with kpack's
//! group, version, kind and status subresource, as in `kapsa.rs`), made by the test with the
//! statuses the controllers and kpack would write (no controller runs). Lists with their
//! order, pages and filters; gets; watches from a snapshot and resumed from a version, and a
//! version too old; invalid requests naming their field; a reconciler restricted to a
//! namespace.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use persys_crds::kapsa::{Environment, Project};
use persys_kit::{client::TracedChannel, pki::Ca, shutdown::ShutdownTrigger};
use persys_proto::{
    common::v1::{LabelSelector, LabelSelectorRequirement, PageRequest, WatchEventType},
    reconciler::v1::{
        self as pb, BuildPhase, BuildStrategy, EnvironmentPhase, EnvironmentType,
        project_service_client::ProjectServiceClient,
    },
};
use persys_reconciler::{decide, project};
use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt;

mod common;

const MANAGER: &str = "persys-tests";
/// How long a watch event may take to arrive.
const EVENT: Duration = Duration::from_secs(20);

/// The fields an INVALID_ARGUMENT names.
fn fields(s: &Status) -> Vec<String> {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    s.get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at})
}

async fn namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .unwrap();
}

async fn apply_project(projects: &Api<Project>, name: &str, tier: &str, strategy: &str) {
    let p = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project",
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {"repository": {"url": format!("https://git.example.com/{name}.git"), "pollInterval": 120,
                "credentials": {"secretRef": {"name": "git"}}},
            "build": {"strategy": strategy, "args": {"GO_VERSION": "1.23"}},
            "registry": {"name": "harbor", "imageRepository": format!("team/{name}")},
            "domain": {"subdomain": name, "domainPoolRef": "apps"},
            "environments": [{"name": "dev", "branch": "develop", "autoSync": true}, {"name": "prod"}],
            "previewEnvironments": {"enabled": true, "ttl": "1h30m", "branches": {"include": ["feature/*"]}}}});
    projects.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&p)).await.unwrap();
}

async fn project_status(projects: &Api<Project>, ns: &str, name: &str, image: &str) {
    let s = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project", "status": {
        "observedGeneration": 1, "latestCommit": "abc1234", "latestImage": image,
        "lastPolled": "2026-12-01T00:00:00Z", "namespace": decide::project::namespace(ns, name),
        "branches": [{"name": "feature/login", "commit": "def5678", "commitSeenAt": "2026-12-01T00:00:00Z",
            "slug": "feature-login", "failedCommit": "def5678"}],
        "environments": [{"name": "dev", "ready": true, "url": "https://dev.api.apps.example.com", "type": "permanent"}],
        "conditions": [condition("Ready", "True", "Ready", "all environments run", "2026-12-01T00:00:00Z")]}});
    projects.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&s)).await.unwrap();
}

/// An Environment of Project `project_ns/project` in the project's namespace, as the Project
/// controller makes it, with the Environment controller's `phase`.
async fn apply_environment(client: &Client, project_ns: &str, project: &str, name: &str, kind: &str, phase: &str) {
    let ns = decide::project::namespace(project_ns, project);
    let api = Api::<Environment>::namespaced(client.clone(), &ns);
    let e = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment",
        "metadata": {"name": name, "labels": {project::LABEL_PROJECT: project, project::LABEL_PROJECT_NAMESPACE: project_ns,
            project::LABEL_TYPE: kind}},
        "spec": {"projectRef": {"name": project, "namespace": project_ns}, "type": kind, "branch": "develop",
            "image": "harbor/team/api@sha256:1", "autoSync": true,
            "runtime": {"replicas": 2, "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}}});
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&e)).await.unwrap();
    let s = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment", "status": {
        "phase": phase, "image": "harbor/team/api@sha256:1", "urls": [format!("https://{name}.api.apps.example.com")],
        "resources": {"deploymentName": name, "serviceName": name}}});
    api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&s)).await.unwrap();
}

/// A kpack Image of Project `project_ns/project` building `branch`, with kpack's status:
/// `ready` True (built), False (failed) or Unknown (building) since `at`.
async fn apply_image(
    images: &Api<DynamicObject>,
    project_ns: &str,
    project: &str,
    branch: &str,
    ready: &str,
    at: &str,
) {
    let slug = branch.replace('/', "-");
    let name = format!("build-{slug}");
    let i = json!({"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
        "metadata": {"name": name, "labels": {project::LABEL_PROJECT: project, project::LABEL_PROJECT_NAMESPACE: project_ns,
                project::LABEL_BRANCH: slug},
            "annotations": {"kapsa-project.io/branch-name": branch, "kapsa-project.io/commit": format!("{slug}-sha")}},
        "spec": {"tag": format!("harbor/team/{project}:{slug}"),
            "source": {"git": {"url": "https://git.example.com/api.git", "revision": format!("{slug}-sha")}}}});
    images.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&i)).await.unwrap();
    set_image(images, &name, ready, at).await;
}

async fn set_image(images: &Api<DynamicObject>, name: &str, ready: &str, at: &str) {
    let generation = images.get(name).await.unwrap().metadata.generation;
    let (reason, message) = if ready == "False" { ("BuildFailed", "build step exited 1") } else { ("", "") };
    let mut status = json!({"observedGeneration": generation, "buildCounter": 3,
        "conditions": [condition("Ready", ready, reason, message, at)]});
    if ready == "True" {
        status["latestImage"] = json!(format!("harbor/team/api@sha256:{name}"));
    }
    images.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await.unwrap();
}

fn name_of(m: Option<&pb::ObjectMeta>) -> String {
    m.map(|m| m.name.clone()).unwrap_or_default()
}

/// The next `n` events of a watch, (type, object name) each; an empty name for a BOOKMARK.
async fn next<S, T>(events: &mut S, n: usize, name: impl Fn(&T) -> (i32, String)) -> Vec<(WatchEventType, String)>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let e =
            tokio::time::timeout(EVENT, events.next()).await.expect("an event in time").expect("the stream goes on");
        let (t, name) = name(&e.expect("an event, not an error"));
        out.push((WatchEventType::try_from(t).unwrap(), name));
    }
    out
}

fn project_event(e: &pb::WatchProjectsResponse) -> (i32, String) {
    (e.r#type, name_of(e.project.as_ref().and_then(|p| p.metadata.as_ref())))
}

fn environment_event(e: &pb::WatchEnvironmentsResponse) -> (i32, String) {
    (e.r#type, name_of(e.environment.as_ref().and_then(|p| p.metadata.as_ref())))
}

fn build_event(e: &pb::WatchBuildsResponse) -> (i32, String) {
    (e.r#type, name_of(e.build.as_ref().and_then(|p| p.metadata.as_ref())))
}

use WatchEventType::{Added as ADDED, Bookmark as BOOKMARK, Deleted as DELETED, Modified as MODIFIED};

fn page(size: i32, token: &str) -> Option<PageRequest> {
    Some(PageRequest { page_size: size, page_token: token.into() })
}

/// The test's world: two Project namespaces, four Projects, their Environments and Images.
struct World {
    client: Client,
    /// Projects api, web and worker.
    ns: String,
    /// Another Project called api.
    other: String,
    /// The namespace of `ns`/api's environments and builds.
    api_ns: String,
}

impl World {
    async fn make(client: Client) -> Self {
        common::install_crds(&client, vec![common::kpack_crd()]).await;
        let id = std::process::id();
        let (ns, other) = (format!("pgrpc-{id}"), format!("pgrpc2-{id}"));
        let api_ns = decide::project::namespace(&ns, "api");
        for n in
            [&ns, &other, &api_ns, &decide::project::namespace(&ns, "web"), &decide::project::namespace(&other, "api")]
        {
            namespace(&client, n).await;
        }
        let projects = Api::<Project>::namespaced(client.clone(), &ns);
        apply_project(&projects, "api", "backend", "dockerfile").await;
        apply_project(&projects, "web", "frontend", "buildpack").await;
        apply_project(&projects, "worker", "backend", "buildpack").await;
        project_status(&projects, &ns, "api", "harbor/team/api@sha256:1").await;
        apply_project(&Api::namespaced(client.clone(), &other), "api", "backend", "buildpack").await;

        apply_environment(&client, &ns, "api", "prod", "permanent", "Pending").await;
        apply_environment(&client, &ns, "api", "dev", "permanent", "Running").await;
        apply_environment(&client, &ns, "api", "preview-feature-login", "preview", "Building").await;
        apply_environment(&client, &ns, "web", "dev", "permanent", "Running").await;
        apply_environment(&client, &other, "api", "dev", "permanent", "Failed").await;

        let images = Self::images_in(&client, &api_ns);
        apply_image(&images, &ns, "api", "main", "True", "2026-12-01T01:00:00Z").await;
        apply_image(&images, &ns, "api", "feature/login", "False", "2026-12-01T02:00:00Z").await;
        apply_image(&images, &ns, "api", "develop", "Unknown", "2026-12-01T03:00:00Z").await;
        let web = Self::images_in(&client, &decide::project::namespace(&ns, "web"));
        apply_image(&web, &ns, "web", "main", "True", "2026-11-30T00:00:00Z").await;
        Self { client, ns, other, api_ns }
    }

    fn images_in(client: &Client, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk_with_plural(&project::kpack_image(), "images"))
    }

    fn namespaces(&self) -> Vec<String> {
        vec![
            self.ns.clone(),
            self.other.clone(),
            self.api_ns.clone(),
            decide::project::namespace(&self.ns, "web"),
            decide::project::namespace(&self.other, "api"),
        ]
    }
}

/// A ProjectService (restricted to `namespace`, if given; builds from `builds`) with a
/// PersonaService beside it, over mTLS; a client of it as the gateway.
async fn serve(
    client: &Client,
    builds: GroupVersionKind,
    namespace: Option<String>,
    dir: &std::path::Path,
    ca: &Ca,
) -> (ProjectServiceClient<TracedChannel>, ShutdownTrigger) {
    let (channel, trigger) = common::serve(client, builds, namespace, dir, ca).await;
    (ProjectServiceClient::new(channel), trigger)
}

#[tokio::test]
async fn project_service_lists_gets_and_watches_kapsa_objects_over_mtls() {
    let Some(client) = common::client().await else { return };
    let w = World::make(client.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("projects-grpc-test", Duration::from_secs(3600)).unwrap();
    let (mut gateway, _stop) = serve(&client, project::kpack_image(), None, dir.path(), &ca).await;

    projects(&mut gateway, &w).await;
    environments(&mut gateway, &w).await;
    builds(&mut gateway, &w).await;
    watch_projects(&mut gateway, &w).await;
    watch_environments_and_builds(&mut gateway, &w).await;
    restricted(&client, &w, dir.path(), &ca).await;
    without_kpack(&client, &w, dir.path(), &ca).await;

    for ns in w.namespaces() {
        Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.unwrap();
    }
}

async fn projects(gateway: &mut ProjectServiceClient<TracedChannel>, w: &World) {
    // In namespace and name order, two to a page.
    let list = |page, label_selector| pb::ListProjectsRequest { page, namespace: w.ns.clone(), label_selector };
    let names = |ps: &[pb::Project]| -> Vec<String> { ps.iter().map(|p| name_of(p.metadata.as_ref())).collect() };
    let first = gateway.list_projects(list(page(2, ""), None)).await.unwrap().into_inner();
    assert_eq!(names(&first.projects), ["api", "web"]);
    assert!(!first.resource_version.is_empty());
    let p = first.page.unwrap();
    assert_eq!(p.total_size, Some(3));
    let second = gateway.list_projects(list(page(2, &p.next_page_token), None)).await.unwrap().into_inner();
    assert_eq!(names(&second.projects), ["worker"]);
    assert!(second.page.unwrap().next_page_token.is_empty(), "the last page");

    // Every namespace: ours among them, the Project namespace first.
    let every = gateway.list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    let ours: Vec<String> = every
        .projects
        .iter()
        .filter_map(|p| p.metadata.as_ref())
        .filter(|m| m.namespace == w.ns || m.namespace == w.other)
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .collect();
    assert_eq!(
        ours,
        [format!("{}/api", w.ns), format!("{}/web", w.ns), format!("{}/worker", w.ns), format!("{}/api", w.other)]
    );

    // By label, with a set-based requirement too.
    let backend =
        LabelSelector { match_labels: [("tier".to_owned(), "backend".to_owned())].into(), ..Default::default() };
    let by_label = gateway.list_projects(list(None, Some(backend))).await.unwrap().into_inner();
    assert_eq!(names(&by_label.projects), ["api", "worker"]);
    let not_backend = LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: persys_proto::common::v1::LabelSelectorOperator::NotIn as i32,
            values: vec!["backend".into()],
        }],
        ..Default::default()
    };
    let by_expression = gateway.list_projects(list(None, Some(not_backend))).await.unwrap().into_inner();
    assert_eq!(names(&by_expression.projects), ["web"]);

    // Get: spec and status in the contract's terms; a clear NOT_FOUND.
    let got = gateway
        .get_project(pb::GetProjectRequest { namespace: w.ns.clone(), name: "api".into() })
        .await
        .unwrap()
        .into_inner()
        .project
        .unwrap();
    let spec = got.spec.unwrap();
    let repo = spec.repository.unwrap();
    assert_eq!((repo.url.as_str(), repo.branch.as_str()), ("https://git.example.com/api.git", "main"));
    assert_eq!(repo.poll_interval.map(|d| d.seconds), Some(120));
    assert_eq!(repo.credentials.map(|c| c.name), Some("git".into()));
    let build = spec.build.unwrap();
    assert_eq!(build.strategy, BuildStrategy::Dockerfile as i32);
    assert_eq!(build.args.get("GO_VERSION").map(String::as_str), Some("1.23"));
    assert_eq!(spec.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["dev", "prod"]);
    assert!(spec.environments[0].auto_sync);
    let preview = spec.preview_environments.unwrap();
    assert_eq!(preview.ttl.map(|d| d.seconds), Some(5400));
    assert_eq!(preview.branches.unwrap().include, ["feature/*"]);
    let status = got.status.unwrap();
    assert_eq!((status.latest_commit.as_str(), status.latest_image.as_str()), ("abc1234", "harbor/team/api@sha256:1"));
    assert_eq!(status.environments[0].r#type, EnvironmentType::Permanent as i32);
    assert!(status.last_polled_at.is_some());
    assert_eq!(status.conditions[0].r#type, "Ready");
    assert_eq!(status.namespace, decide::project::namespace(&w.ns, "api"));
    let branch = &status.branches[0];
    assert_eq!((branch.name.as_str(), branch.slug.as_str()), ("feature/login", "feature-login"));
    assert_eq!((branch.commit.as_str(), branch.failed_commit.as_str()), ("def5678", "def5678"));
    assert!(branch.commit_seen_at.is_some() && branch.image.is_empty());
    let missing =
        gateway.get_project(pb::GetProjectRequest { namespace: w.ns.clone(), name: "nope".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains(&format!("Project {}/nope", w.ns)), "{}", missing.message());

    // Invalid requests name their fields.
    let invalid = gateway.get_project(pb::GetProjectRequest::default()).await.unwrap_err();
    assert_eq!(fields(&invalid), ["namespace", "name"]);
    let unspecified = LabelSelector {
        match_expressions: vec![LabelSelectorRequirement { key: "tier".into(), operator: 0, values: vec![] }],
        ..Default::default()
    };
    let bad = gateway.list_projects(list(page(-1, ""), Some(unspecified))).await.unwrap_err();
    assert_eq!(fields(&bad), ["page.page_size", "label_selector.match_expressions[0].operator"]);
    let bad_watch = pb::WatchProjectsRequest { name: "api".into(), ..Default::default() };
    assert_eq!(fields(&gateway.watch_projects(bad_watch).await.unwrap_err()), ["namespace"]);
}

async fn environments(gateway: &mut ProjectServiceClient<TracedChannel>, w: &World) {
    let names = |es: &[pb::Environment]| -> Vec<String> {
        es.iter()
            .map(|e| e.metadata.as_ref().map(|m| format!("{}/{}", m.namespace, m.name)).unwrap_or_default())
            .collect()
    };
    let api = |n: &str| format!("{}/{n}", w.api_ns);
    let of = |project: String| pb::ListEnvironmentsRequest { project, ..Default::default() };

    // One Project exactly, by <namespace>/<name>: its environments, in its own namespace.
    let exact = gateway.list_environments(of(format!("{}/api", w.ns))).await.unwrap().into_inner();
    assert_eq!(names(&exact.environments), [api("dev"), api("preview-feature-login"), api("prod")]);
    assert!(!exact.resource_version.is_empty());
    // By name only: the other namespace's api too.
    let by_name = gateway.list_environments(of("api".into())).await.unwrap().into_inner();
    let all = names(&by_name.environments);
    for e in [api("dev"), format!("{}/dev", decide::project::namespace(&w.other, "api"))] {
        assert!(all.contains(&e), "{e} in {all:?}");
    }
    // Pages of two.
    let paged = pb::ListEnvironmentsRequest { page: page(2, ""), ..of(format!("{}/api", w.ns)) };
    let first = gateway.list_environments(paged.clone()).await.unwrap().into_inner();
    assert_eq!(names(&first.environments), [api("dev"), api("preview-feature-login")]);
    let token = first.page.unwrap().next_page_token;
    let second = pb::ListEnvironmentsRequest { page: page(2, &token), ..paged };
    assert_eq!(names(&gateway.list_environments(second).await.unwrap().into_inner().environments), [api("prod")]);
    // Previews; running ones; one namespace.
    let previews =
        pb::ListEnvironmentsRequest { types: vec![EnvironmentType::Preview as i32], ..of(format!("{}/api", w.ns)) };
    let previews = gateway.list_environments(previews).await.unwrap().into_inner();
    assert_eq!(names(&previews.environments), [api("preview-feature-login")]);
    let preview = &previews.environments[0];
    assert_eq!(preview.spec.as_ref().unwrap().r#type, EnvironmentType::Preview as i32);
    assert_eq!(preview.status.as_ref().unwrap().phase, EnvironmentPhase::Building as i32);
    let running =
        pb::ListEnvironmentsRequest { phases: vec![EnvironmentPhase::Running as i32], ..of(format!("{}/api", w.ns)) };
    assert_eq!(names(&gateway.list_environments(running).await.unwrap().into_inner().environments), [api("dev")]);
    let web_ns = decide::project::namespace(&w.ns, "web");
    let in_web = pb::ListEnvironmentsRequest { namespace: web_ns.clone(), ..Default::default() };
    assert_eq!(
        names(&gateway.list_environments(in_web).await.unwrap().into_inner().environments),
        [format!("{web_ns}/dev")]
    );

    // Get, in the project's namespace; NOT_FOUND in the Project's own.
    let dev = gateway
        .get_environment(pb::GetEnvironmentRequest { namespace: w.api_ns.clone(), name: "dev".into() })
        .await
        .unwrap()
        .into_inner()
        .environment
        .unwrap();
    let spec = dev.spec.unwrap();
    assert_eq!((spec.project_ref.as_str(), spec.branch.as_str()), ("api", "develop"));
    assert_eq!(spec.project_namespace, w.ns);
    assert_eq!((spec.image.as_str(), spec.auto_sync), ("harbor/team/api@sha256:1", true));
    let runtime = spec.runtime.unwrap();
    assert_eq!(runtime.replicas, Some(2));
    assert_eq!(runtime.ports[0].container_port, 8080);
    let status = dev.status.unwrap();
    assert_eq!(status.phase, EnvironmentPhase::Running as i32);
    assert_eq!(status.resources.unwrap().deployment_name, "dev");
    assert_eq!(status.urls, ["https://dev.api.apps.example.com"]);
    let elsewhere = gateway
        .get_environment(pb::GetEnvironmentRequest { namespace: w.ns.clone(), name: "dev".into() })
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), Code::NotFound);
    assert!(elsewhere.message().contains(&format!("Environment {}/dev", w.ns)), "{}", elsewhere.message());

    // Invalid: an unspecified type, a project that is no name.
    let bad = pb::ListEnvironmentsRequest { types: vec![0], project: "a/b/c".into(), ..Default::default() };
    assert_eq!(fields(&gateway.list_environments(bad).await.unwrap_err()), ["project", "types"]);
    assert_eq!(
        fields(&gateway.get_environment(pb::GetEnvironmentRequest::default()).await.unwrap_err()),
        ["namespace", "name"]
    );
}

async fn builds(gateway: &mut ProjectServiceClient<TracedChannel>, w: &World) {
    let names = |bs: &[pb::Build]| -> Vec<String> { bs.iter().map(|b| name_of(b.metadata.as_ref())).collect() };
    let in_api = |page| pb::ListBuildsRequest { page, namespace: w.api_ns.clone(), ..Default::default() };

    // Newest first (by kpack's last state change), two to a page.
    let first = gateway.list_builds(in_api(page(2, ""))).await.unwrap().into_inner();
    assert_eq!(names(&first.builds), ["build-develop", "build-feature-login"]);
    assert!(!first.resource_version.is_empty());
    let p = first.page.unwrap();
    assert_eq!(p.total_size, Some(3));
    let second = gateway.list_builds(in_api(page(2, &p.next_page_token))).await.unwrap().into_inner();
    assert_eq!(names(&second.builds), ["build-main"]);
    assert!(second.page.unwrap().next_page_token.is_empty());

    // What each build says.
    let [running, failed] = &first.builds[..] else { panic!("two builds") };
    assert_eq!(running.phase, BuildPhase::Running as i32);
    assert!(running.started_at.is_some() && running.finished_at.is_none() && running.image.is_empty());
    assert_eq!(
        (failed.phase, failed.reason.as_str(), failed.message.as_str()),
        (BuildPhase::Failed as i32, "BuildFailed", "build step exited 1")
    );
    assert_eq!((failed.branch.as_str(), failed.commit_sha.as_str()), ("feature/login", "feature-login-sha"));
    let main = &second.builds[0];
    assert_eq!(main.phase, BuildPhase::Succeeded as i32);
    assert_eq!(main.image, "harbor/team/api@sha256:build-main");
    assert_eq!((main.project.as_str(), main.strategy, main.build_number), ("api", BuildStrategy::Dockerfile as i32, 3));
    assert!(main.finished_at.is_some());

    // Filters: the project (across namespaces), a branch, a phase.
    let of = |project: &str| pb::ListBuildsRequest { project: project.into(), ..Default::default() };
    let exact = gateway.list_builds(of(&format!("{}/web", w.ns))).await.unwrap().into_inner();
    assert_eq!(names(&exact.builds), ["build-main"]);
    assert_eq!(exact.builds[0].strategy, BuildStrategy::Buildpack as i32, "the Project's strategy");
    let login = pb::ListBuildsRequest { branch: "feature/login".into(), ..of(&format!("{}/api", w.ns)) };
    assert_eq!(names(&gateway.list_builds(login).await.unwrap().into_inner().builds), ["build-feature-login"]);
    let ok = pb::ListBuildsRequest { phases: vec![BuildPhase::Succeeded as i32], ..of(&format!("{}/api", w.ns)) };
    assert_eq!(names(&gateway.list_builds(ok).await.unwrap().into_inner().builds), ["build-main"]);

    // Get; NOT_FOUND; invalid.
    let got = gateway
        .get_build(pb::GetBuildRequest { namespace: w.api_ns.clone(), name: "build-develop".into() })
        .await
        .unwrap()
        .into_inner()
        .build
        .unwrap();
    assert_eq!((got.branch.as_str(), got.phase), ("develop", BuildPhase::Running as i32));
    let missing = gateway
        .get_build(pb::GetBuildRequest { namespace: w.api_ns.clone(), name: "build-nope".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains(&format!("Build {}/build-nope", w.api_ns)), "{}", missing.message());
    let bad = pb::ListBuildsRequest { page: page(0, "not-a-token"), phases: vec![0], ..Default::default() };
    assert_eq!(fields(&gateway.list_builds(bad).await.unwrap_err()), ["page.page_token", "phases"]);
}

async fn watch_projects(gateway: &mut ProjectServiceClient<TracedChannel>, w: &World) {
    let projects = Api::<Project>::namespaced(w.client.clone(), &w.ns);
    let watch = |since: &str| pb::WatchProjectsRequest {
        since_resource_version: since.into(),
        namespace: w.ns.clone(),
        name: String::new(),
    };
    // A snapshot in name order, its BOOKMARK, then a Project made, changed and deleted.
    let mut events = gateway.watch_projects(watch("")).await.unwrap().into_inner();
    let snapshot = next(&mut events, 4, project_event).await;
    let s = |t, n: &str| (t, n.to_owned());
    assert_eq!(snapshot, [s(ADDED, "api"), s(ADDED, "web"), s(ADDED, "worker"), s(BOOKMARK, "")]);
    apply_project(&projects, "batch", "backend", "buildpack").await;
    project_status(&projects, &w.ns, "batch", "harbor/team/batch@sha256:2").await;
    projects.delete("batch", &DeleteParams::default()).await.unwrap();
    let mut live = Vec::new();
    let mut added_version = String::new();
    while live.len() < 3 {
        let e = tokio::time::timeout(EVENT, events.next()).await.expect("an event in time").unwrap().unwrap();
        if e.r#type == BOOKMARK as i32 {
            continue;
        }
        if e.r#type == ADDED as i32 {
            added_version = e.resource_version.clone();
        }
        if e.r#type == MODIFIED as i32 {
            let status = e.project.as_ref().and_then(|p| p.status.clone()).unwrap();
            assert_eq!(status.latest_image, "harbor/team/batch@sha256:2");
        }
        let (t, name) = project_event(&e);
        live.push((WatchEventType::try_from(t).unwrap(), name));
    }
    assert_eq!(live, [s(ADDED, "batch"), s(MODIFIED, "batch"), s(DELETED, "batch")]);
    drop(events);

    // Resumed from the ADDED version: the rest again, in order, no snapshot.
    let mut resumed = gateway.watch_projects(watch(&added_version)).await.unwrap().into_inner();
    let again: Vec<_> =
        next(&mut resumed, 2, project_event).await.into_iter().filter(|(t, _)| *t != BOOKMARK).collect();
    assert_eq!(again, [s(MODIFIED, "batch"), s(DELETED, "batch")]);

    // One Project by name.
    let one = pb::WatchProjectsRequest { name: "web".into(), ..watch("") };
    let mut events = gateway.watch_projects(one).await.unwrap().into_inner();
    assert_eq!(next(&mut events, 2, project_event).await, [s(ADDED, "web"), s(BOOKMARK, "")]);

    // A version Kubernetes no longer holds: OUT_OF_RANGE (on the call or as the stream's first
    // item), saying to list again.
    let stale = match gateway.watch_projects(watch("1")).await {
        Err(status) => status,
        Ok(stream) => {
            let first = tokio::time::timeout(EVENT, stream.into_inner().next()).await.expect("an answer in time");
            first.expect("an item").expect_err("OUT_OF_RANGE, not an event")
        }
    };
    assert_eq!(stale.code(), Code::OutOfRange, "{stale:?}");
    assert!(stale.message().contains("list again"), "{}", stale.message());
}

async fn watch_environments_and_builds(gateway: &mut ProjectServiceClient<TracedChannel>, w: &World) {
    let s = |t, n: &str| (t, n.to_owned());
    // The previews of one Project: its snapshot, then a change.
    let request = pb::WatchEnvironmentsRequest {
        project: format!("{}/api", w.ns),
        types: vec![EnvironmentType::Preview as i32],
        ..Default::default()
    };
    let mut events = gateway.watch_environments(request).await.unwrap().into_inner();
    assert_eq!(next(&mut events, 2, environment_event).await, [s(ADDED, "preview-feature-login"), s(BOOKMARK, "")]);
    // A permanent environment changing is filtered out; the preview changing is not.
    apply_environment(&w.client, &w.ns, "api", "dev", "permanent", "Failed").await;
    apply_environment(&w.client, &w.ns, "api", "preview-feature-login", "preview", "Running").await;
    let changed = loop {
        let e = tokio::time::timeout(EVENT, events.next()).await.expect("an event in time").unwrap().unwrap();
        if e.r#type != BOOKMARK as i32 {
            break e;
        }
    };
    assert_eq!(environment_event(&changed), (MODIFIED as i32, "preview-feature-login".into()));
    assert_eq!(changed.environment.unwrap().status.unwrap().phase, EnvironmentPhase::Running as i32);
    let bad = pb::WatchEnvironmentsRequest { types: vec![7], ..Default::default() };
    assert_eq!(fields(&gateway.watch_environments(bad).await.unwrap_err()), ["types"]);

    // The builds of the project's namespace: the snapshot (in name order), then kpack
    // finishing one.
    let request = pb::WatchBuildsRequest { namespace: w.api_ns.clone(), ..Default::default() };
    let mut events = gateway.watch_builds(request).await.unwrap().into_inner();
    assert_eq!(
        next(&mut events, 4, build_event).await,
        [s(ADDED, "build-develop"), s(ADDED, "build-feature-login"), s(ADDED, "build-main"), s(BOOKMARK, "")]
    );
    set_image(&World::images_in(&w.client, &w.api_ns), "build-develop", "True", "2026-12-01T04:00:00Z").await;
    let built = loop {
        let e = tokio::time::timeout(EVENT, events.next()).await.expect("an event in time").unwrap().unwrap();
        if e.r#type != BOOKMARK as i32 {
            break e;
        }
    };
    assert_eq!(build_event(&built), (MODIFIED as i32, "build-develop".into()));
    let b = built.build.unwrap();
    assert_eq!((b.phase, b.image.as_str()), (BuildPhase::Succeeded as i32, "harbor/team/api@sha256:build-develop"));
    let bad = pb::WatchBuildsRequest { project: "Not A Name".into(), ..Default::default() };
    assert_eq!(fields(&gateway.watch_builds(bad).await.unwrap_err()), ["project"]);
}

/// Restricted to the Projects' namespace (`--namespace`): its Projects only, whatever the
/// caller asks, and none of the environments or builds that live in the projects' namespaces.
async fn restricted(client: &Client, w: &World, dir: &std::path::Path, ca: &Ca) {
    let (mut one, _stop) = serve(client, project::kpack_image(), Some(w.ns.clone()), dir, ca).await;
    let every = one.list_projects(pb::ListProjectsRequest::default()).await.unwrap().into_inner();
    let names: Vec<String> = every.projects.iter().map(|p| name_of(p.metadata.as_ref())).collect();
    assert_eq!(names, ["api", "web", "worker"], "its namespace's projects, none of another");
    let elsewhere = pb::ListProjectsRequest { namespace: w.other.clone(), ..Default::default() };
    let refused = one.list_projects(elsewhere).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&format!("serves namespace {} only", w.ns)), "{}", refused.message());
    let get = pb::GetEnvironmentRequest { namespace: w.api_ns.clone(), name: "dev".into() };
    assert_eq!(one.get_environment(get).await.unwrap_err().code(), Code::FailedPrecondition);
    let none = one.list_builds(pb::ListBuildsRequest::default()).await.unwrap().into_inner();
    assert!(none.builds.is_empty(), "builds live in the projects' namespaces");
}

/// Without kpack (its Image kind not served; here a version of it that does not exist): no
/// builds, not an error; projects and environments as ever.
async fn without_kpack(client: &Client, w: &World, dir: &std::path::Path, ca: &Ca) {
    let missing = GroupVersionKind::gvk("kpack.io", "v1alpha9", "Image");
    let (mut gateway, _stop) = serve(client, missing, None, dir, ca).await;
    let in_api = pb::ListBuildsRequest { namespace: w.api_ns.clone(), ..Default::default() };
    let none = gateway.list_builds(in_api).await.unwrap().into_inner();
    assert!(none.builds.is_empty());
    assert_eq!(none.page.unwrap().total_size, Some(0));
    assert!(!none.resource_version.is_empty());
    let get = pb::GetBuildRequest { namespace: w.api_ns.clone(), name: "build-main".into() };
    let missing = gateway.get_build(get).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("kpack is not installed"), "{}", missing.message());
    let request = pb::WatchBuildsRequest { namespace: w.api_ns.clone(), ..Default::default() };
    let mut events = gateway.watch_builds(request).await.unwrap().into_inner();
    assert_eq!(next(&mut events, 1, build_event).await, [(BOOKMARK, String::new())], "an empty snapshot");
    let exact = pb::ListEnvironmentsRequest { project: format!("{}/api", w.ns), ..Default::default() };
    assert_eq!(gateway.list_environments(exact).await.unwrap().into_inner().environments.len(), 3);
}
