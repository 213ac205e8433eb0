//! `ProjectService` over mTLS: Kapsa's Projects, their Environments and their builds from this
//! replica's own caches (every replica serves, leader or not), and their changes as resumable
//! server streams, in the shape of PersonaService ([`crate::grpc`]).
//!
//! Where things live is the Project controller's layout ([`crate::project`]): a Project
//! `<ns>/<name>` gets a namespace of its own, `<ns>-<name>`
//! ([`crate::decide::project::namespace`]), holding its Environments and its kpack Images
//! `build-<branch slug>`. So the namespace of an Environment or a Build, in requests and in its
//! metadata, is the project's namespace, not the Project's. The `project` filters take the
//! Project's name, or `<namespace>/<name>` for exactly one Project.
//!
//! A Build is one kpack Image (`kpack.io/v1alpha2`, labelled by the Project controller) as it
//! stands: the build of its current revision ([`crate::projects_proto::build`]). Without kpack
//! there are no builds: lists are empty, GetBuild is NOT_FOUND and a watch sends only the
//! BOOKMARK of its empty snapshot. kpack installed later is found within [`KPACK_RECHECK`].
//!
//! A watch resumes from a Kubernetes resource version; one Kubernetes no longer holds is
//! `OUT_OF_RANGE` (list again). Without a version it starts with a snapshot (`ADDED` for each
//! object, in namespace and name order) closed by a `BOOKMARK`.
//!
//! Restricted to a namespace (`--namespace`), the caches and watches hold that namespace only
//! (its Projects, and the Environments and Images in it), and a request naming another is
//! refused, as PersonaService does. Such a reconciler runs no Project controller, and a
//! project's own namespace is another one, so it serves no project's environments or builds.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};
use persys_crds::kapsa::{Environment, Project};
use persys_kit::{
    error::{ApiError, Violations},
    select,
    shutdown::Shutdown,
};
use persys_proto::{
    common::v1::{PageResponse, WatchEventType},
    reconciler::v1::{
        self as pb,
        project_service_server::{ProjectService, ProjectServiceServer},
    },
};
use tonic::{Request, Response, Status};

use crate::{
    access::{Namespaces, Sight},
    cache,
    project::{LABEL_PROJECT, LABEL_PROJECT_NAMESPACE, kpack_image},
    projects_proto as convert,
    serving::{self, CACHE_WAIT, Change, Events, Selectors, check_selector, follow, key, page_size, paginate},
};

mod request;

use request::{
    BuildOrder, ProjectFilter, build_order, build_token, environment_project, image_project, known, of_branch,
    parse_build_token,
};

/// How often the service looks again for kpack's Image kind while it is not served.
pub const KPACK_RECHECK: Duration = Duration::from_secs(60);

/// The kpack Images' cache, once the kind is served.
#[derive(Clone)]
struct Kpack {
    resource: ApiResource,
    images: Store<DynamicObject>,
    /// The cache filled.
    ready: cache::Ready,
}

/// The service and its caches.
#[derive(Clone)]
pub struct Projects {
    client: Client,
    projects: Store<Project>,
    environments: Store<Environment>,
    /// Set once kpack's Image kind is found served.
    kpack: Arc<std::sync::OnceLock<Kpack>>,
    /// The first look for kpack done (found or not).
    looked: cache::Ready,
    /// The one namespace served (`--namespace`), or every one.
    namespace: Option<String>,
    /// The namespaces' members, for member scoping.
    namespaces: Namespaces,
    /// The Project and Environment caches filled.
    ready: cache::Ready,
}

/// A watch of `api` feeding `writer`, managedFields dropped (nothing reads them).
fn fill<K>(api: Api<K>, config: watcher::Config, writer: Writer<K>) -> BoxFuture<'static, ()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, config)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .for_each(|_| async {})
        .boxed()
}

/// Whether discovery failed because the kind is not served (rather than the API server
/// failing).
fn not_served(e: &kube::Error) -> bool {
    match e {
        kube::Error::Discovery(_) => true,
        kube::Error::Api(s) => s.code == 404,
        _ => false,
    }
}

/// Looks for kpack's Image kind until it is served (then caches its Kapsa Images until
/// `shutdown`), or `shutdown`. `looked` is sent after the first answer.
async fn find_kpack(
    client: Client,
    kind: GroupVersionKind,
    namespace: Option<String>,
    kpack: Arc<std::sync::OnceLock<Kpack>>,
    looked: tokio::sync::oneshot::Sender<()>,
    shutdown: Shutdown,
) {
    let mut looked = Some(looked);
    let mut said = false;
    loop {
        let wait = match kube::discovery::pinned_kind(&client, &kind).await {
            Ok((resource, _)) => {
                let writer = Writer::new(resource.clone());
                let images = writer.as_reader();
                let api = match &namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                // Only the Project controller's Images: kpack's other users are not Kapsa's.
                let events = fill(api, watcher::Config::default().labels(LABEL_PROJECT), writer);
                let ready = {
                    let images = images.clone();
                    cache::ready(async move {
                        let _ = images.wait_until_ready().await;
                    })
                };
                let _ = kpack.set(Kpack { resource, images, ready });
                if let Some(l) = looked.take() {
                    let _ = l.send(());
                }
                tracing::info!("ProjectService serves builds from kpack Images");
                tokio::select! {
                    _ = events => {}
                    _ = shutdown.wait() => {}
                }
                return;
            }
            Err(error) if not_served(&error) => {
                if !said {
                    tracing::info!(group = %kind.group, version = %kind.version, kind = %kind.kind,
                        every = ?KPACK_RECHECK,
                        "kpack is not installed (its Image kind is not served): ProjectService serves no builds until it is");
                    said = true;
                }
                if let Some(l) = looked.take() {
                    let _ = l.send(());
                }
                KPACK_RECHECK
            }
            // The API server failed: ask again soon (calls wait for the first answer).
            Err(error) => {
                tracing::debug!(%error, "looking for kpack");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = shutdown.clone().wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Projects {
    /// Starts the caches (watches of every Project and Environment, and of the Project
    /// controller's kpack Images once kpack is found) until `shutdown`; members read the
    /// namespaces `namespaces` says they may.
    pub fn start(client: Client, namespace: Option<String>, namespaces: Namespaces, shutdown: Shutdown) -> Self {
        Self::start_with(client, kpack_image(), namespace, namespaces, shutdown)
    }

    /// [`Projects::start`] reading builds from `builds`, a kind shaped as kpack's Image (e.g.
    /// another version of it; a kind not served reads as kpack not installed).
    pub fn start_with(
        client: Client,
        builds: GroupVersionKind,
        namespace: Option<String>,
        namespaces: Namespaces,
        shutdown: Shutdown,
    ) -> Self {
        let (projects, writer) = reflector::store();
        let project_events = fill(typed::<Project>(&client, namespace.as_deref()), watcher::Config::default(), writer);
        let (environments, writer) = reflector::store();
        let environment_events =
            fill(typed::<Environment>(&client, namespace.as_deref()), watcher::Config::default(), writer);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = futures::future::join(project_events, environment_events) => {}
                _ = stop.wait() => {}
            }
        });
        let kpack = Arc::new(std::sync::OnceLock::new());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(find_kpack(client.clone(), builds, namespace.clone(), kpack.clone(), tx, shutdown));
        let looked = cache::ready(async move {
            let _ = rx.await;
        });
        let ready = {
            let (p, e, n) = (projects.clone(), environments.clone(), namespaces.ready());
            cache::ready(async move {
                let _ = p.wait_until_ready().await;
                let _ = e.wait_until_ready().await;
                n.await;
            })
        };
        Self { client, projects, environments, kpack, looked, namespace, namespaces, ready }
    }

    /// The gRPC service.
    pub fn server(self) -> ProjectServiceServer<Self> {
        ProjectServiceServer::new(self)
    }

    /// The namespace a request may read (empty: every one): its own, or the one this
    /// reconciler serves; refused when it names another.
    fn scope(&self, requested: &str) -> Result<String, Status> {
        match &self.namespace {
            None => Ok(requested.to_owned()),
            Some(ns) if requested.is_empty() || requested == ns => Ok(ns.clone()),
            Some(ns) => Err(Status::failed_precondition(format!(
                "this reconciler serves namespace {ns} only (--namespace); namespace {requested} is not followed"
            ))),
        }
    }

    async fn ready(&self) -> Result<(), Status> {
        tokio::time::timeout(CACHE_WAIT, self.ready.clone()).await.map_err(|_| {
            Status::unavailable(
                "the reconciler's project cache is not filled yet (is the API server reachable, \
                 and are Kapsa's CRDs installed?)",
            )
        })
    }

    /// kpack's Images, filled; `None` without kpack.
    async fn kpack(&self) -> Result<Option<Kpack>, Status> {
        let unavailable =
            |_| Status::unavailable("the reconciler's build cache is not filled yet (is the API server reachable?)");
        tokio::time::timeout(CACHE_WAIT, self.looked.clone()).await.map_err(unavailable)?;
        let Some(kpack) = self.kpack.get() else { return Ok(None) };
        tokio::time::timeout(CACHE_WAIT, kpack.ready.clone()).await.map_err(unavailable)?;
        Ok(Some(kpack.clone()))
    }

    /// The Project a build's Image belongs to (by its labels), from the cache.
    fn strategy_of(&self, image: &DynamicObject) -> pb::BuildStrategy {
        let labels = image.labels();
        let (Some(name), Some(ns)) = (labels.get(LABEL_PROJECT), labels.get(LABEL_PROJECT_NAMESPACE)) else {
            return pb::BuildStrategy::Unspecified;
        };
        self.projects
            .get(&ObjectRef::new(name).within(ns))
            .map_or(pb::BuildStrategy::Unspecified, |p| convert::strategy(&p.spec.build.strategy))
    }
}

fn typed<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) if !ns.is_empty() => Api::namespaced(client.clone(), ns),
        _ => Api::all(client.clone()),
    }
}

fn dynamic(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    if namespace.is_empty() {
        Api::all_with(client.clone(), resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, resource)
    }
}

#[tonic::async_trait]
impl ProjectService for Projects {
    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, r.page.as_ref());
        check_selector(&mut v, r.label_selector.as_ref());
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        let after = r.page.map(|p| p.page_token).unwrap_or_default();
        let mut items: Vec<Arc<Project>> = self
            .projects
            .state()
            .into_iter()
            .filter(|p| namespace.is_empty() || p.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|p| sight.sees(&p.namespace().unwrap_or_default()))
            .filter(|p| r.label_selector.as_ref().is_none_or(|s| select::selector_matches(|k| p.labels().get(k), s)))
            .collect();
        items.sort_by_cached_key(|p| key(&**p));
        let (page, page_response) = paginate(items, size, |p| after.is_empty() || key(&**p) > after, |p| key(&**p));
        let version = serving::version(typed::<Project>(&self.client, Some(&namespace))).await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: page.iter().map(|p| convert::project(p)).collect(),
            page: Some(page_response),
            resource_version: version,
        }))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::GetProjectResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        v.check(r.namespace.is_empty(), "namespace", "required: the Project's namespace");
        v.check(r.name.is_empty(), "name", "required");
        v.finish()?;
        self.scope(&r.namespace)?;
        self.ready().await?;
        // What a member may not read reads as missing.
        let found = self.projects.get(&ObjectRef::new(&r.name).within(&r.namespace));
        let p = found
            .filter(|_| sight.sees(&r.namespace))
            .ok_or_else(|| ApiError::NotFound(format!("Project {}/{}", r.namespace, r.name)))?;
        Ok(Response::new(pb::GetProjectResponse { project: Some(convert::project(&p)) }))
    }

    type WatchProjectsStream = Events<pb::WatchProjectsResponse>;

    async fn watch_projects(
        &self,
        request: Request<pb::WatchProjectsRequest>,
    ) -> Result<Response<Self::WatchProjectsStream>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        v.check(!r.name.is_empty() && r.namespace.is_empty(), "namespace", "required when name is set");
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        let selectors = Selectors {
            fields: (!r.name.is_empty()).then(|| format!("metadata.name={}", r.name)),
            ..Selectors::default()
        };
        let since = (!r.since_resource_version.is_empty()).then_some(r.since_resource_version);
        let api = typed::<Project>(&self.client, Some(&namespace));
        Ok(Response::new(follow(api, selectors, since, sight, |c: Change<'_, Project>| {
            Some(pb::WatchProjectsResponse {
                r#type: c.kind as i32,
                project: c.object.map(convert::project),
                resource_version: c.version,
            })
        })))
    }

    async fn list_environments(
        &self,
        request: Request<pb::ListEnvironmentsRequest>,
    ) -> Result<Response<pb::ListEnvironmentsResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, r.page.as_ref());
        let project = ProjectFilter::parse(&mut v, "project", &r.project);
        v.check(
            !known::<pb::EnvironmentType>(&r.types, 0),
            "types",
            "use PERMANENT or PREVIEW (ENVIRONMENT_TYPE_UNSPECIFIED is not a type); leave types empty for both",
        );
        v.check(
            !known::<pb::EnvironmentPhase>(&r.phases, 0),
            "phases",
            "use PENDING, BUILDING, RUNNING or FAILED (ENVIRONMENT_PHASE_UNSPECIFIED is not a phase); leave phases empty for every phase",
        );
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        if let Some(ProjectFilter { namespace: Some(ns), .. }) = &project {
            sight.check_filter(ns)?;
        }
        let after = r.page.map(|p| p.page_token).unwrap_or_default();
        let mut items: Vec<Arc<Environment>> = self
            .environments
            .state()
            .into_iter()
            .filter(|e| namespace.is_empty() || e.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|e| sight.sees(&e.namespace().unwrap_or_default()))
            .filter(|e| {
                project.as_ref().is_none_or(|f| {
                    let (ns, name) = environment_project(e);
                    f.matches(&ns, &name)
                })
            })
            .filter(|e| r.types.is_empty() || r.types.contains(&(convert::environment_type(&e.spec.kind) as i32)))
            .filter(|e| {
                let phase = convert::environment_phase(e.status.as_ref().and_then(|s| s.phase.as_deref()));
                r.phases.is_empty() || r.phases.contains(&(phase as i32))
            })
            .collect();
        items.sort_by_cached_key(|e| key(&**e));
        let (page, page_response) = paginate(items, size, |e| after.is_empty() || key(&**e) > after, |e| key(&**e));
        let version = serving::version(typed::<Environment>(&self.client, Some(&namespace))).await?;
        Ok(Response::new(pb::ListEnvironmentsResponse {
            environments: page.iter().map(|e| convert::environment(e)).collect(),
            page: Some(page_response),
            resource_version: version,
        }))
    }

    async fn get_environment(
        &self,
        request: Request<pb::GetEnvironmentRequest>,
    ) -> Result<Response<pb::GetEnvironmentResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        v.check(
            r.namespace.is_empty(),
            "namespace",
            "required: the project's namespace (<Project namespace>-<Project name>), where its environments live",
        );
        v.check(r.name.is_empty(), "name", "required");
        v.finish()?;
        self.scope(&r.namespace)?;
        self.ready().await?;
        let found = self.environments.get(&ObjectRef::new(&r.name).within(&r.namespace));
        let e = found.filter(|_| sight.sees(&r.namespace)).ok_or_else(|| {
            ApiError::NotFound(format!(
                "Environment {}/{} (a Project's environments live in the project's namespace, \
                 <Project namespace>-<Project name>)",
                r.namespace, r.name
            ))
        })?;
        Ok(Response::new(pb::GetEnvironmentResponse { environment: Some(convert::environment(&e)) }))
    }

    type WatchEnvironmentsStream = Events<pb::WatchEnvironmentsResponse>;

    async fn watch_environments(
        &self,
        request: Request<pb::WatchEnvironmentsRequest>,
    ) -> Result<Response<Self::WatchEnvironmentsStream>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        let project = ProjectFilter::parse(&mut v, "project", &r.project);
        v.check(
            !known::<pb::EnvironmentType>(&r.types, 0),
            "types",
            "use PERMANENT or PREVIEW (ENVIRONMENT_TYPE_UNSPECIFIED is not a type); leave types empty for both",
        );
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        if let Some(ProjectFilter { namespace: Some(ns), .. }) = &project {
            sight.check_filter(ns)?;
        }
        let since = (!r.since_resource_version.is_empty()).then_some(r.since_resource_version);
        let api = typed::<Environment>(&self.client, Some(&namespace));
        let types = r.types;
        Ok(Response::new(follow(api, Selectors::default(), since, sight, move |c: Change<'_, Environment>| {
            if let Some(e) = c.object {
                let (ns, name) = environment_project(e);
                let wanted = project.as_ref().is_none_or(|f| f.matches(&ns, &name))
                    && (types.is_empty() || types.contains(&(convert::environment_type(&e.spec.kind) as i32)));
                if !wanted {
                    return None;
                }
            }
            Some(pb::WatchEnvironmentsResponse {
                r#type: c.kind as i32,
                environment: c.object.map(convert::environment),
                resource_version: c.version,
            })
        })))
    }

    async fn list_builds(
        &self,
        request: Request<pb::ListBuildsRequest>,
    ) -> Result<Response<pb::ListBuildsResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        let size = page_size(&mut v, r.page.as_ref());
        let project = ProjectFilter::parse(&mut v, "project", &r.project);
        let after = parse_build_token(&mut v, r.page.as_ref().map_or("", |p| p.page_token.as_str()));
        v.check(
            !known::<pb::BuildPhase>(&r.phases, 0),
            "phases",
            "use PENDING, RUNNING, SUCCEEDED or FAILED (BUILD_PHASE_UNSPECIFIED is not a phase); leave phases empty for every phase",
        );
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        if let Some(ProjectFilter { namespace: Some(ns), .. }) = &project {
            sight.check_filter(ns)?;
        }
        let Some(kpack) = self.kpack().await? else {
            // Without kpack nothing is built: no builds, at the API server's current version.
            let version = serving::version(typed::<Project>(&self.client, Some(&namespace))).await?;
            return Ok(Response::new(pb::ListBuildsResponse {
                builds: vec![],
                page: Some(PageResponse { next_page_token: String::new(), total_size: Some(0) }),
                resource_version: version,
            }));
        };
        let mut items: Vec<(BuildOrder, Arc<DynamicObject>)> = kpack
            .images
            .state()
            .into_iter()
            .filter(|i| namespace.is_empty() || i.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|i| sight.sees(&i.namespace().unwrap_or_default()))
            .filter(|i| {
                project.as_ref().is_none_or(|f| {
                    let (ns, name) = image_project(i);
                    f.matches(&ns, &name)
                })
            })
            .filter(|i| r.branch.is_empty() || of_branch(i, &r.branch))
            .filter(|i| r.phases.is_empty() || r.phases.contains(&(convert::build_phase(i) as i32)))
            .map(|i| (build_order(&i), i))
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let (page, page_response) =
            paginate(items, size, |(o, _)| after.as_ref().is_none_or(|a| o > a), |(o, _)| build_token(o));
        let version = serving::version(dynamic(&self.client, &namespace, &kpack.resource)).await?;
        Ok(Response::new(pb::ListBuildsResponse {
            builds: page.iter().map(|(_, i)| convert::build(i, self.strategy_of(i))).collect(),
            page: Some(page_response),
            resource_version: version,
        }))
    }

    async fn get_build(&self, request: Request<pb::GetBuildRequest>) -> Result<Response<pb::GetBuildResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        v.check(
            r.namespace.is_empty(),
            "namespace",
            "required: the project's namespace (<Project namespace>-<Project name>), where its builds live",
        );
        v.check(r.name.is_empty(), "name", "required (build-<branch slug>)");
        v.finish()?;
        self.scope(&r.namespace)?;
        self.ready().await?;
        let Some(kpack) = self.kpack().await? else {
            return Err(ApiError::NotFound(format!(
                "Build {}/{} (kpack is not installed here, so nothing is built)",
                r.namespace, r.name
            ))
            .into());
        };
        let found = kpack.images.get(&ObjectRef::new_with(&r.name, kpack.resource.clone()).within(&r.namespace));
        let i = found
            .filter(|_| sight.sees(&r.namespace))
            .ok_or_else(|| ApiError::NotFound(format!("Build {}/{}", r.namespace, r.name)))?;
        Ok(Response::new(pb::GetBuildResponse { build: Some(convert::build(&i, self.strategy_of(&i))) }))
    }

    type WatchBuildsStream = Events<pb::WatchBuildsResponse>;

    async fn watch_builds(
        &self,
        request: Request<pb::WatchBuildsRequest>,
    ) -> Result<Response<Self::WatchBuildsStream>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = Violations::new();
        let project = ProjectFilter::parse(&mut v, "project", &r.project);
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        if let Some(ProjectFilter { namespace: Some(ns), .. }) = &project {
            sight.check_filter(ns)?;
        }
        let since = (!r.since_resource_version.is_empty()).then_some(r.since_resource_version);
        let Some(kpack) = self.kpack().await? else {
            // Without kpack: an empty snapshot (its BOOKMARK), then nothing.
            let bookmark = match since {
                Some(_) => None,
                None => Some(pb::WatchBuildsResponse {
                    r#type: WatchEventType::Bookmark as i32,
                    build: None,
                    resource_version: serving::version(typed::<Project>(&self.client, Some(&namespace))).await?,
                }),
            };
            let events = futures::stream::iter(bookmark.map(Ok)).chain(futures::stream::pending());
            return Ok(Response::new(Box::pin(events)));
        };
        let api = dynamic(&self.client, &namespace, &kpack.resource);
        // The Project controller's Images only, as the cache holds them.
        let labels = match &project {
            None => LABEL_PROJECT.to_owned(),
            Some(ProjectFilter { namespace: None, name }) => format!("{LABEL_PROJECT}={name}"),
            Some(ProjectFilter { namespace: Some(ns), name }) => {
                format!("{LABEL_PROJECT}={name},{LABEL_PROJECT_NAMESPACE}={ns}")
            }
        };
        let selectors = Selectors { labels: Some(labels), ..Selectors::default() };
        let this = self.clone();
        Ok(Response::new(follow(api, selectors, since, sight, move |c: Change<'_, DynamicObject>| {
            Some(pb::WatchBuildsResponse {
                r#type: c.kind as i32,
                build: c.object.map(|i| convert::build(i, this.strategy_of(i))),
                resource_version: c.version,
            })
        })))
    }
}
