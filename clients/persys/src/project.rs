//! `persys project`, `persys env` and `persys build`: Kapsa projects, their environments and
//! builds, read from the reconciler's ProjectService through the gateway (list, get, and a
//! live watch that resumes after a broken connection).

use std::{collections::BTreeMap, ops::ControlFlow};

use clap::{Subcommand, ValueEnum};
use persys_proto::{
    common::v1 as common,
    reconciler::v1::{
        self as pb, BuildPhase, EnvironmentPhase, EnvironmentType, GetBuildRequest, GetEnvironmentRequest,
        GetProjectRequest, ListBuildsRequest, ListEnvironmentsRequest, ListProjectsRequest, WatchBuildsRequest,
        WatchBuildsResponse, WatchEnvironmentsRequest, WatchEnvironmentsResponse, WatchProjectsRequest,
        WatchProjectsResponse,
    },
};
use serde::Serialize;

use crate::{
    client::{Global, Session},
    output::{Format, Table, age, dash, describe, emit, emit_line, enum_name, line, now_secs, rfc3339},
    view,
};

/// Most objects asked for per page.
const PAGE: i32 = 500;

/// `persys project ...`
#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// List projects: repository, readiness, latest image, environments.
    #[command(visible_alias = "ls")]
    List {
        /// Only this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Show one project: its spec, conditions, branches and environments.
    Get {
        /// The project's name.
        name: String,
        /// Its namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Print the projects, then every change as it happens, until Ctrl-C.
    Watch {
        /// Only this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this project (with --namespace).
        #[arg(long, requires = "namespace")]
        name: Option<String>,
    },
}

/// Environment types on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EnvKind {
    /// Declared in the project.
    Permanent,
    /// One per matching branch.
    Preview,
}

impl EnvKind {
    fn proto(self) -> i32 {
        match self {
            Self::Permanent => EnvironmentType::Permanent as i32,
            Self::Preview => EnvironmentType::Preview as i32,
        }
    }
}

/// `persys env ...`
#[derive(Subcommand, Debug)]
pub enum EnvCommand {
    /// List environments: type, phase, branch, image, URL. Environments live in their
    /// project's namespace, `<namespace>-<project>`.
    #[command(visible_alias = "ls")]
    List {
        /// Only this namespace (a project's: `<namespace>-<project>`).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        /// Only this type.
        #[arg(long = "type", value_enum)]
        kind: Option<EnvKind>,
    },
    /// Show one environment: image, URLs, owned objects, conditions.
    Get {
        /// The environment's name.
        name: String,
        /// Its namespace (the project's: `<namespace>-<project>`).
        #[arg(short = 'n', long)]
        namespace: String,
    },
    /// Print the environments, then every change as it happens, until Ctrl-C.
    Watch {
        /// Only this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        /// Only this type.
        #[arg(long = "type", value_enum)]
        kind: Option<EnvKind>,
    },
}

/// `persys build ...`
#[derive(Subcommand, Debug)]
pub enum BuildCommand {
    /// List builds, newest first: branch, commit, phase, image.
    #[command(visible_alias = "ls")]
    List {
        /// Only this namespace (a project's: `<namespace>-<project>`).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
        /// Only this branch's.
        #[arg(long)]
        branch: Option<String>,
    },
    /// Show one build, with the reason of a failure.
    Get {
        /// The build's name (`build-<branch>`).
        name: String,
        /// Its namespace (the project's: `<namespace>-<project>`).
        #[arg(short = 'n', long)]
        namespace: String,
    },
    /// Print the builds, then every change as it happens, until Ctrl-C.
    Watch {
        /// Only this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this project's.
        #[arg(long)]
        project: Option<String>,
    },
}

fn condition_status(value: i32) -> String {
    common::ConditionStatus::try_from(value)
        .map(|v| enum_name(v.as_str_name(), "CONDITION_STATUS_"))
        .unwrap_or_else(|_| format!("Unknown({value})"))
}

fn env_type(value: i32) -> String {
    EnvironmentType::try_from(value)
        .map(|v| enum_name(v.as_str_name(), "ENVIRONMENT_TYPE_"))
        .unwrap_or_else(|_| format!("Unknown({value})"))
}

fn env_phase(value: i32) -> String {
    EnvironmentPhase::try_from(value)
        .map(|v| enum_name(v.as_str_name(), "ENVIRONMENT_PHASE_"))
        .unwrap_or_else(|_| format!("Unknown({value})"))
}

fn build_phase(value: i32) -> String {
    BuildPhase::try_from(value)
        .map(|v| enum_name(v.as_str_name(), "BUILD_PHASE_"))
        .unwrap_or_else(|_| format!("Unknown({value})"))
}

/// Kubernetes metadata for `-o json|yaml`.
#[derive(Serialize)]
struct Meta {
    namespace: String,
    name: String,
    uid: String,
    resource_version: String,
    generation: i64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    created_at: Option<String>,
}

impl From<Option<&pb::ObjectMeta>> for Meta {
    fn from(m: Option<&pb::ObjectMeta>) -> Self {
        let m = m.cloned().unwrap_or_default();
        Self {
            created_at: rfc3339(m.creation_timestamp.as_ref()),
            namespace: m.namespace,
            name: m.name,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            labels: m.labels.into_iter().collect(),
            annotations: m.annotations.into_iter().collect(),
        }
    }
}

#[derive(Serialize)]
struct Condition {
    r#type: String,
    status: String,
    reason: String,
    message: String,
    since: Option<String>,
}

fn conditions(list: &[common::Condition]) -> Vec<Condition> {
    list.iter()
        .map(|c| Condition {
            r#type: c.r#type.clone(),
            status: condition_status(c.status),
            reason: c.reason.clone(),
            message: c.message.clone(),
            since: rfc3339(c.last_transition_time.as_ref()),
        })
        .collect()
}

/// A project for `-o json|yaml`.
#[derive(Serialize)]
struct Project {
    metadata: Meta,
    repository: String,
    branch: String,
    poll_interval_seconds: i64,
    registry: String,
    image_repository: String,
    subdomain: String,
    domain_pool: String,
    environments: Vec<ProjectEnvironment>,
    previews: Option<Previews>,
    latest_commit: String,
    latest_image: String,
    last_polled_at: Option<String>,
    /// The namespace its environments and builds live in.
    environments_namespace: String,
    branches: Vec<Branch>,
    conditions: Vec<Condition>,
}

#[derive(Serialize)]
struct Branch {
    name: String,
    commit: String,
    slug: String,
    image: String,
    failed_commit: String,
}

#[derive(Serialize)]
struct ProjectEnvironment {
    name: String,
    r#type: String,
    ready: bool,
    url: String,
}

#[derive(Serialize)]
struct Previews {
    enabled: bool,
    ttl_seconds: i64,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl From<&pb::Project> for Project {
    fn from(p: &pb::Project) -> Self {
        let spec = p.spec.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let repo = spec.repository.unwrap_or_default();
        let registry = spec.registry.unwrap_or_default();
        let domain = spec.domain.unwrap_or_default();
        Self {
            metadata: p.metadata.as_ref().into(),
            repository: repo.url,
            branch: repo.branch,
            poll_interval_seconds: repo.poll_interval.map_or(0, |d| d.seconds),
            registry: registry.name,
            image_repository: registry.image_repository,
            subdomain: domain.subdomain,
            domain_pool: domain.domain_pool_ref,
            environments: status
                .environments
                .iter()
                .map(|e| ProjectEnvironment {
                    name: e.name.clone(),
                    r#type: env_type(e.r#type),
                    ready: e.ready,
                    url: e.url.clone(),
                })
                .collect(),
            previews: spec.preview_environments.map(|p| {
                let b = p.branches.unwrap_or_default();
                Previews {
                    enabled: p.enabled,
                    ttl_seconds: p.ttl.map_or(0, |d| d.seconds),
                    include: b.include,
                    exclude: b.exclude,
                }
            }),
            latest_commit: status.latest_commit,
            latest_image: status.latest_image,
            last_polled_at: rfc3339(status.last_polled_at.as_ref()),
            environments_namespace: status.namespace,
            branches: status
                .branches
                .iter()
                .map(|b| Branch {
                    name: b.name.clone(),
                    commit: b.commit.clone(),
                    slug: b.slug.clone(),
                    image: b.image.clone(),
                    failed_commit: b.failed_commit.clone(),
                })
                .collect(),
            conditions: conditions(&status.conditions),
        }
    }
}

/// An environment for `-o json|yaml`.
#[derive(Serialize)]
struct Environment {
    metadata: Meta,
    project: String,
    project_namespace: String,
    auto_sync: bool,
    r#type: String,
    branch: String,
    phase: String,
    image: String,
    urls: Vec<String>,
    deployment: String,
    service: String,
    ingress: String,
    expires_at: Option<String>,
    conditions: Vec<Condition>,
}

impl From<&pb::Environment> for Environment {
    fn from(e: &pb::Environment) -> Self {
        let spec = e.spec.clone().unwrap_or_default();
        let status = e.status.clone().unwrap_or_default();
        let resources = status.resources.clone().unwrap_or_default();
        Self {
            metadata: e.metadata.as_ref().into(),
            project: spec.project_ref,
            project_namespace: spec.project_namespace,
            auto_sync: spec.auto_sync,
            r#type: env_type(spec.r#type),
            branch: spec.branch,
            phase: env_phase(status.phase),
            image: status.image,
            urls: status.urls,
            deployment: resources.deployment_name,
            service: resources.service_name,
            ingress: resources.ingress_name,
            expires_at: rfc3339(status.expires_at.as_ref()),
            conditions: conditions(&status.conditions),
        }
    }
}

/// A build for `-o json|yaml`.
#[derive(Serialize)]
struct Build {
    metadata: Meta,
    project: String,
    branch: String,
    commit: String,
    phase: String,
    image: String,
    reason: String,
    message: String,
    build_number: i64,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl From<&pb::Build> for Build {
    fn from(b: &pb::Build) -> Self {
        Self {
            metadata: b.metadata.as_ref().into(),
            project: b.project.clone(),
            branch: b.branch.clone(),
            commit: b.commit_sha.clone(),
            phase: build_phase(b.phase),
            image: b.image.clone(),
            reason: b.reason.clone(),
            message: b.message.clone(),
            build_number: b.build_number,
            started_at: rfc3339(b.started_at.as_ref()),
            finished_at: rfc3339(b.finished_at.as_ref()),
        }
    }
}

fn meta(m: Option<&pb::ObjectMeta>) -> pb::ObjectMeta {
    m.cloned().unwrap_or_default()
}

fn ready(list: &[common::Condition]) -> String {
    list.iter().find(|c| c.r#type == "Ready").map_or_else(|| "-".into(), |c| condition_status(c.status))
}

fn short_commit(sha: &str) -> String {
    dash(&sha[..sha.len().min(7)])
}

const PROJECT_HEADERS: [&str; 7] = ["NAMESPACE", "NAME", "REPOSITORY", "READY", "ENVS", "LATEST IMAGE", "AGE"];

fn project_row(p: &pb::Project, now: i64) -> Vec<String> {
    let m = meta(p.metadata.as_ref());
    let status = p.status.clone().unwrap_or_default();
    let up = status.environments.iter().filter(|e| e.ready).count();
    vec![
        m.namespace,
        m.name,
        p.spec.as_ref().and_then(|s| s.repository.as_ref()).map(|r| r.url.clone()).unwrap_or_default(),
        ready(&status.conditions),
        format!("{up}/{}", status.environments.len()),
        dash(&status.latest_image),
        age(m.creation_timestamp.as_ref(), now),
    ]
}

const ENV_HEADERS: [&str; 8] = ["NAMESPACE", "NAME", "TYPE", "PHASE", "BRANCH", "IMAGE", "URL", "AGE"];

fn env_row(e: &pb::Environment, now: i64) -> Vec<String> {
    let m = meta(e.metadata.as_ref());
    let spec = e.spec.clone().unwrap_or_default();
    let status = e.status.clone().unwrap_or_default();
    vec![
        m.namespace,
        m.name,
        env_type(spec.r#type),
        env_phase(status.phase),
        dash(&spec.branch),
        dash(&status.image),
        status.urls.first().cloned().unwrap_or_else(|| "-".into()),
        age(m.creation_timestamp.as_ref(), now),
    ]
}

const BUILD_HEADERS: [&str; 8] = ["NAMESPACE", "NAME", "PROJECT", "BRANCH", "COMMIT", "PHASE", "IMAGE", "AGE"];

fn build_row(b: &pb::Build, now: i64) -> Vec<String> {
    let m = meta(b.metadata.as_ref());
    vec![
        m.namespace,
        m.name,
        b.project.clone(),
        dash(&b.branch),
        short_commit(&b.commit_sha),
        build_phase(b.phase),
        dash(&b.image),
        age(m.creation_timestamp.as_ref(), now),
    ]
}

fn table(headers: &[&'static str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new(headers);
    for r in rows {
        t.row(r);
    }
    t.to_string()
}

#[derive(Serialize)]
struct Change<T> {
    r#type: String,
    resource_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<T>,
}

/// Follows a watch until Ctrl-C: a table row per change (`EVENT` first), or one JSON line or
/// YAML document per change with its resource version. `parts` splits an event into its type,
/// resource version and object (as a row and as a view); a `BOOKMARK` has no object.
async fn follow<R, S, F, Fut, T>(
    server: &str,
    format: Format,
    headers: &[&'static str],
    open: F,
    parts: impl Fn(R) -> (i32, String, Option<(Vec<String>, T)>),
) -> anyhow::Result<()>
where
    R: persys_client::watch::Revisioned<Cursor = String>,
    S: futures::Stream<Item = Result<R, tonic::Status>> + Unpin,
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<S, persys_client::Error>>,
    T: Serialize,
{
    let mut widths = vec![8];
    widths.extend(headers.iter().map(|h| h.len().max(10)));
    if format == Format::Table {
        let mut head = vec!["EVENT"];
        head.extend(headers);
        println!("{}", line(&head, &widths));
    }
    crate::watch::resumable(server, String::new(), open, |e: R| {
        let (kind, resource_version, item) = parts(e);
        let kind = view::watch_type(kind);
        match (format, item) {
            (Format::Table, Some((row, _))) => {
                let mut cells = vec![kind];
                cells.extend(row);
                println!("{}", line(&cells, &widths));
            }
            (Format::Table, None) => {}
            (_, item) => {
                let object = item.map(|(_, v)| v);
                emit_line(format, &Change { r#type: kind, resource_version, object })?;
            }
        }
        Ok(ControlFlow::Continue(()))
    })
    .await
}

/// Runs a `project` subcommand.
pub async fn run_project(global: &Global, command: ProjectCommand) -> anyhow::Result<()> {
    let s = Session::open(global)?;
    let format = global.output;
    let now = now_secs();
    match command {
        ProjectCommand::List { namespace } => {
            let request = ListProjectsRequest {
                namespace: namespace.unwrap_or_default(),
                page: Some(common::PageRequest { page_size: PAGE, ..Default::default() }),
                ..Default::default()
            };
            let list = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().list_projects(request).await }
                })
                .await?;
            let views: Vec<Project> = list.projects.iter().map(Project::from).collect();
            emit(format, &views, || {
                table(&PROJECT_HEADERS, list.projects.iter().map(|p| project_row(p, now)).collect())
            })
        }
        ProjectCommand::Get { name, namespace } => {
            let request = GetProjectRequest { namespace, name };
            let got = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().get_project(request).await }
                })
                .await?;
            let p = got.project.unwrap_or_default();
            let v = Project::from(&p);
            emit(format, &v, || {
                let mut out = describe(&[
                    ("Name", format!("{}/{}", v.metadata.namespace, v.metadata.name)),
                    (
                        "Repository",
                        format!("{} (branch {}, every {}s)", v.repository, v.branch, v.poll_interval_seconds),
                    ),
                    ("Registry", format!("{} {}", v.registry, v.image_repository)),
                    ("Domain", format!("{} from DomainPool {}", v.subdomain, v.domain_pool)),
                    ("Latest commit", v.latest_commit.clone()),
                    ("Latest image", v.latest_image.clone()),
                    ("Last polled", v.last_polled_at.clone().unwrap_or_default()),
                    ("Runs in namespace", v.environments_namespace.clone()),
                ]);
                out.push_str(&conditions_text(&v.conditions));
                if !v.branches.is_empty() {
                    out.push_str("Branches:\n");
                    let rows = v
                        .branches
                        .iter()
                        .map(|b| {
                            let state = if !b.failed_commit.is_empty() && b.failed_commit == b.commit {
                                "build failed"
                            } else if b.image.is_empty() {
                                "not built yet"
                            } else {
                                "built"
                            };
                            vec![format!("  {}", b.name), short_commit(&b.commit), state.into(), dash(&b.image)]
                        })
                        .collect();
                    out.push_str(&table(&["  BRANCH", "HEAD", "STATE", "IMAGE"], rows));
                }
                if !v.environments.is_empty() {
                    out.push_str("Environments:\n");
                    let rows = v
                        .environments
                        .iter()
                        .map(|e| {
                            vec![
                                format!("  {}", e.name),
                                e.r#type.clone(),
                                if e.ready { "ready" } else { "not ready" }.into(),
                                dash(&e.url),
                            ]
                        })
                        .collect();
                    out.push_str(&table(&["  NAME", "TYPE", "STATE", "URL"], rows));
                }
                out
            })
        }
        ProjectCommand::Watch { namespace, name } => {
            let request = WatchProjectsRequest {
                namespace: namespace.unwrap_or_default(),
                name: name.unwrap_or_default(),
                ..Default::default()
            };
            let session = &s;
            let open = move |since: String| {
                let request = WatchProjectsRequest { since_resource_version: since, ..request.clone() };
                async move {
                    session
                        .client()
                        .call(|c| {
                            let request = request.clone();
                            async move { c.projects().watch_projects(request).await }
                        })
                        .await
                }
            };
            follow(&s.server, format, &PROJECT_HEADERS, open, |e: WatchProjectsResponse| {
                let item = e.project.as_ref().map(|o| (project_row(o, now_secs()), Project::from(o)));
                (e.r#type, e.resource_version, item)
            })
            .await
        }
    }
}

fn conditions_text(list: &[Condition]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let rows = list
        .iter()
        .map(|c| vec![format!("  {}", c.r#type), c.status.clone(), dash(&c.reason), dash(&c.message)])
        .collect();
    format!("Conditions:\n{}", table(&["  TYPE", "STATUS", "REASON", "MESSAGE"], rows))
}

/// Runs an `env` subcommand.
pub async fn run_env(global: &Global, command: EnvCommand) -> anyhow::Result<()> {
    let s = Session::open(global)?;
    let format = global.output;
    let now = now_secs();
    match command {
        EnvCommand::List { namespace, project, kind } => {
            let request = ListEnvironmentsRequest {
                namespace: namespace.unwrap_or_default(),
                project: project.unwrap_or_default(),
                types: kind.map(|k| vec![k.proto()]).unwrap_or_default(),
                page: Some(common::PageRequest { page_size: PAGE, ..Default::default() }),
                ..Default::default()
            };
            let list = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().list_environments(request).await }
                })
                .await?;
            let views: Vec<Environment> = list.environments.iter().map(Environment::from).collect();
            emit(format, &views, || table(&ENV_HEADERS, list.environments.iter().map(|e| env_row(e, now)).collect()))
        }
        EnvCommand::Get { name, namespace } => {
            let request = GetEnvironmentRequest { namespace, name };
            let got = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().get_environment(request).await }
                })
                .await?;
            let e = got.environment.unwrap_or_default();
            let v = Environment::from(&e);
            emit(format, &v, || {
                let mut out = describe(&[
                    ("Name", format!("{}/{}", v.metadata.namespace, v.metadata.name)),
                    ("Project", v.project.clone()),
                    ("Type", v.r#type.clone()),
                    ("Branch", v.branch.clone()),
                    ("Phase", v.phase.clone()),
                    ("Image", v.image.clone()),
                    ("URLs", v.urls.join(", ")),
                    ("Deployment", v.deployment.clone()),
                    ("Service", v.service.clone()),
                    ("Ingress", v.ingress.clone()),
                    ("Expires", v.expires_at.clone().unwrap_or_default()),
                ]);
                out.push_str(&conditions_text(&v.conditions));
                out
            })
        }
        EnvCommand::Watch { namespace, project, kind } => {
            let request = WatchEnvironmentsRequest {
                namespace: namespace.unwrap_or_default(),
                project: project.unwrap_or_default(),
                types: kind.map(|k| vec![k.proto()]).unwrap_or_default(),
                ..Default::default()
            };
            let session = &s;
            let open = move |since: String| {
                let request = WatchEnvironmentsRequest { since_resource_version: since, ..request.clone() };
                async move {
                    session
                        .client()
                        .call(|c| {
                            let request = request.clone();
                            async move { c.projects().watch_environments(request).await }
                        })
                        .await
                }
            };
            follow(&s.server, format, &ENV_HEADERS, open, |e: WatchEnvironmentsResponse| {
                let item = e.environment.as_ref().map(|o| (env_row(o, now_secs()), Environment::from(o)));
                (e.r#type, e.resource_version, item)
            })
            .await
        }
    }
}

/// Runs a `build` subcommand.
pub async fn run_build(global: &Global, command: BuildCommand) -> anyhow::Result<()> {
    let s = Session::open(global)?;
    let format = global.output;
    let now = now_secs();
    match command {
        BuildCommand::List { namespace, project, branch } => {
            let request = ListBuildsRequest {
                namespace: namespace.unwrap_or_default(),
                project: project.unwrap_or_default(),
                branch: branch.unwrap_or_default(),
                page: Some(common::PageRequest { page_size: PAGE, ..Default::default() }),
                ..Default::default()
            };
            let list = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().list_builds(request).await }
                })
                .await?;
            let views: Vec<Build> = list.builds.iter().map(Build::from).collect();
            emit(format, &views, || table(&BUILD_HEADERS, list.builds.iter().map(|b| build_row(b, now)).collect()))
        }
        BuildCommand::Get { name, namespace } => {
            let request = GetBuildRequest { namespace, name };
            let got = s
                .call(|c| {
                    let request = request.clone();
                    async move { c.projects().get_build(request).await }
                })
                .await?;
            let b = got.build.unwrap_or_default();
            let v = Build::from(&b);
            emit(format, &v, || {
                describe(&[
                    ("Name", format!("{}/{}", v.metadata.namespace, v.metadata.name)),
                    ("Project", v.project.clone()),
                    ("Branch", v.branch.clone()),
                    ("Commit", v.commit.clone()),
                    ("Phase", v.phase.clone()),
                    ("Image", v.image.clone()),
                    ("Reason", v.reason.clone()),
                    ("Message", v.message.clone()),
                    ("Build", if v.build_number > 0 { format!("#{}", v.build_number) } else { String::new() }),
                    ("Started", v.started_at.clone().unwrap_or_default()),
                    ("Finished", v.finished_at.clone().unwrap_or_default()),
                ])
            })
        }
        BuildCommand::Watch { namespace, project } => {
            let request = WatchBuildsRequest {
                namespace: namespace.unwrap_or_default(),
                project: project.unwrap_or_default(),
                ..Default::default()
            };
            let session = &s;
            let open = move |since: String| {
                let request = WatchBuildsRequest { since_resource_version: since, ..request.clone() };
                async move {
                    session
                        .client()
                        .call(|c| {
                            let request = request.clone();
                            async move { c.projects().watch_builds(request).await }
                        })
                        .await
                }
            };
            follow(&s.server, format, &BUILD_HEADERS, open, |e: WatchBuildsResponse| {
                let item = e.build.as_ref().map(|o| (build_row(o, now_secs()), Build::from(o)));
                (e.r#type, e.resource_version, item)
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_the_status() {
        let p = pb::Project {
            metadata: Some(pb::ObjectMeta { namespace: "team".into(), name: "api".into(), ..Default::default() }),
            spec: Some(pb::ProjectSpec {
                repository: Some(pb::RepositorySpec { url: "https://git/x.git".into(), ..Default::default() }),
                ..Default::default()
            }),
            status: Some(pb::ProjectStatus {
                latest_image: "r/x@sha256:1".into(),
                environments: vec![
                    pb::ProjectEnvironmentStatus { name: "prod".into(), ready: true, ..Default::default() },
                    pb::ProjectEnvironmentStatus { name: "staging".into(), ready: false, ..Default::default() },
                ],
                conditions: vec![common::Condition {
                    r#type: "Ready".into(),
                    status: common::ConditionStatus::True as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        assert_eq!(project_row(&p, 0), ["team", "api", "https://git/x.git", "True", "1/2", "r/x@sha256:1", "-"]);
        assert_eq!(short_commit("0123456789abcdef"), "0123456");
        assert_eq!(short_commit(""), "-");
    }
}
