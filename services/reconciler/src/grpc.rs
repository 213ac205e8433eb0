//! `PersonaService` over mTLS: personas and the ClusterPersona from this replica's own caches
//! (every replica serves, leader or not), and their changes as a resumable server stream.
//!
//! A watch resumes from a Kubernetes resource version. Both kinds live in the API server's one
//! store, so one version covers both; a version Kubernetes no longer holds is `OUT_OF_RANGE`
//! (list again). Without a version the watch starts with a snapshot (`ADDED` for each object).

use std::{collections::HashMap, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, WatchEvent, WatchParams},
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use persys_crds::{cluster::ClusterPersona, persona::ApplicationPersona};
use persys_kit::{error::ApiError, select, shutdown::Shutdown};
use persys_proto::{
    common::v1::{PageResponse, WatchEventType},
    reconciler::v1::{
        self as pb, PersonaKind,
        persona_service_server::{PersonaService, PersonaServiceServer},
        watch_persona_events_response::Object,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    access::{Namespaces, Sight},
    proto,
};

pub(crate) const DEFAULT_PAGE: usize = 100;
pub(crate) const MAX_PAGE: usize = 1000;
/// How long a call waits for the caches' first list after start.
pub(crate) const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The service and its caches.
#[derive(Clone)]
pub struct Personas {
    client: Client,
    personas: Store<ApplicationPersona>,
    /// `None` when restricted to a namespace (no ClusterPersona is read then).
    clusters: Option<Store<ClusterPersona>>,
    /// The one namespace served (`--namespace`), or every one.
    namespace: Option<String>,
    /// The namespaces' members, for member scoping.
    namespaces: Namespaces,
    /// The caches filled (see [`crate::cache`]).
    ready: crate::cache::Ready,
}

impl Personas {
    /// Starts the caches (watches of every ApplicationPersona and ClusterPersona) until
    /// `shutdown`; members read the namespaces `namespaces` says they may.
    pub fn start(client: Client, namespace: Option<String>, namespaces: Namespaces, shutdown: Shutdown) -> Self {
        let persona_api = match &namespace {
            Some(ns) => Api::<ApplicationPersona>::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (personas, writer) = reflector::store();
        let persona_events =
            watcher(persona_api, watcher::Config::default()).default_backoff().reflect(writer).for_each(|_| async {});
        // A reconciler restricted to a namespace reads nothing cluster-wide (its RBAC allows
        // none of it): no ClusterPersona cache then.
        let (clusters, cluster_events) = if namespace.is_none() {
            let (clusters, writer) = reflector::store();
            let events = watcher(Api::<ClusterPersona>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(|_| async {});
            (Some(clusters), Some(events))
        } else {
            (None, None)
        };
        tokio::spawn(async move {
            let clusters = async {
                if let Some(events) = cluster_events {
                    events.await;
                }
            };
            tokio::select! {
                _ = futures::future::join(persona_events, clusters) => {}
                _ = shutdown.wait() => {}
            }
        });
        let ready = {
            let (p, c, n) = (personas.clone(), clusters.clone(), namespaces.ready());
            crate::cache::ready(async move {
                let _ = p.wait_until_ready().await;
                if let Some(c) = c {
                    let _ = c.wait_until_ready().await;
                }
                n.await;
            })
        };
        Self { client, personas, clusters, namespace, namespaces, ready }
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

    /// The ClusterPersona cache; refused when restricted to a namespace.
    fn clusters(&self) -> Result<&Store<ClusterPersona>, Status> {
        self.clusters.as_ref().ok_or_else(|| {
            Status::failed_precondition(format!(
                "this reconciler serves namespace {} only (--namespace): it reads no ClusterPersona",
                self.namespace.as_deref().unwrap_or_default()
            ))
        })
    }

    /// The gRPC service.
    pub fn server(self) -> PersonaServiceServer<Self> {
        PersonaServiceServer::new(self)
    }

    async fn ready(&self) -> Result<(), Status> {
        tokio::time::timeout(CACHE_WAIT, self.ready.clone()).await.map_err(|_| {
            Status::unavailable("the reconciler's persona cache is not filled yet (is the API server reachable?)")
        })
    }
}

/// A Kubernetes error of a list or watch as the call's status: OUT_OF_RANGE for a resource
/// version too old, INVALID_ARGUMENT for an unreadable one, UNAVAILABLE otherwise.
pub(crate) fn kube_status(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) if s.code == 410 => Status::out_of_range(format!(
            "resource version too old: {}; list again and watch from the version it returns",
            s.message
        )),
        kube::Error::Api(s) if s.code == 400 && s.message.contains("resource version") => {
            Status::invalid_argument(format!("since_resource_version: {}", s.message))
        }
        other => Status::unavailable(format!("Kubernetes API: {other}")),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchPersonaEventsResponse, Status>> + Send>>;

/// What changed between two versions of a persona, for humans.
fn summary(before: Option<&pb::ApplicationPersona>, after: &pb::ApplicationPersona) -> String {
    let phase = |p: &pb::ApplicationPersona| p.status.as_ref().map_or(0, |s| s.phase);
    let name = |v: i32| {
        pb::PersonaPhase::try_from(v).map_or("?", |p| p.as_str_name()).trim_start_matches("PERSONA_PHASE_").to_owned()
    };
    match before {
        Some(b) if phase(b) != phase(after) => format!("phase {} -> {}", name(phase(b)), name(phase(after))),
        Some(_) => "status updated".into(),
        None => String::new(),
    }
}

fn cluster_summary(before: Option<&pb::ClusterPersona>, after: &pb::ClusterPersona) -> String {
    let nodes = |c: &pb::ClusterPersona| -> Vec<String> {
        c.status.as_ref().map(|s| s.nodes.iter().map(|n| n.name.clone()).collect()).unwrap_or_default()
    };
    let Some(b) = before else { return String::new() };
    let (old, new) = (nodes(b), nodes(after));
    let mut parts: Vec<String> = new.iter().filter(|n| !old.contains(n)).map(|n| format!("node {n} added")).collect();
    parts.extend(old.iter().filter(|n| !new.contains(n)).map(|n| format!("node {n} removed")));
    if parts.is_empty() { "status updated".into() } else { parts.join(", ") }
}

fn event(t: WatchEventType, object: Option<Object>, rv: String, summary: String) -> pb::WatchPersonaEventsResponse {
    pb::WatchPersonaEventsResponse { r#type: t as i32, object, resource_version: rv, summary }
}

/// A stream of one kind's events from `rv` (`None`: a snapshot of ADDED events first, closed by
/// a BOOKMARK; with both kinds followed, each kind's snapshot ends with its own), holding only
/// the objects `sight` sees (checked at each event, so a membership change applies at once).
fn follow<K, F>(api: Api<K>, fields: Option<String>, rv: Option<String>, sight: Sight, convert: F) -> EventStream
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(&K, Option<&K>) -> (Object, String) + Send + Sync + 'static,
{
    let stream = async_stream::try_stream! {
        let mut last: HashMap<String, K> = HashMap::new();
        let mut version = match rv {
            Some(v) => v,
            None => {
                let mut lp = ListParams::default();
                if let Some(f) = &fields { lp = lp.fields(f); }
                let list = api.list(&lp).await.map_err(kube_status)?;
                for item in list.items {
                    if !sight.sees(&item.namespace().unwrap_or_default()) { continue; }
                    let (object, _) = convert(&item, None);
                    let rv = item.resource_version().unwrap_or_default();
                    last.insert(item.name_any(), item);
                    yield event(WatchEventType::Added, Some(object), rv, String::new());
                }
                // The snapshot ends with a BOOKMARK at the list's version (persys.common.v1's
                // watch semantics: a client knows it has every object from here on).
                let version = list.metadata.resource_version.unwrap_or_default();
                yield event(WatchEventType::Bookmark, None, version.clone(), String::new());
                version
            }
        };
        loop {
            let mut wp = WatchParams::default().timeout(290);
            if let Some(f) = &fields { wp = wp.fields(f); }
            let mut events = api.watch(&wp, &version).await.map_err(kube_status)?.boxed();
            while let Some(e) = events.try_next().await.map_err(kube_status)? {
                // The API server's own type: a stream resumed from a version has seen no
                // earlier state, yet an object changed after it is MODIFIED, not new.
                let kind = if matches!(e, WatchEvent::Added(_)) { WatchEventType::Added } else { WatchEventType::Modified };
                match e {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)
                        if !sight.sees(&o.namespace().unwrap_or_default()) =>
                    {
                        version = o.resource_version().unwrap_or_default();
                    }
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        let name = o.name_any();
                        let before = last.get(&name);
                        let (object, summary) = convert(&o, before);
                        version = o.resource_version().unwrap_or_default();
                        yield event(kind, Some(object), version.clone(), summary);
                        last.insert(name, o);
                    }
                    WatchEvent::Deleted(o) => {
                        let (object, _) = convert(&o, None);
                        version = o.resource_version().unwrap_or_default();
                        last.remove(&o.name_any());
                        yield event(WatchEventType::Deleted, Some(object), version.clone(), String::new());
                    }
                    WatchEvent::Bookmark(b) => {
                        version = b.metadata.resource_version.clone();
                        yield event(WatchEventType::Bookmark, None, version.clone(), String::new());
                    }
                    WatchEvent::Error(e) => Err(kube_status(kube::Error::Api(e)))?,
                }
            }
            // The API server ends watches after their timeout; go on from the last version.
        }
    };
    Box::pin(stream)
}

#[tonic::async_trait]
impl PersonaService for Personas {
    async fn list_application_personas(
        &self,
        request: Request<pb::ListApplicationPersonasRequest>,
    ) -> Result<Response<pb::ListApplicationPersonasResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let size = r.page.as_ref().map_or(0, |p| p.page_size);
        if size < 0 {
            return Err(ApiError::invalid("page.page_size", "must not be negative").into());
        }
        let size = if size == 0 { DEFAULT_PAGE } else { (size as usize).min(MAX_PAGE) };
        let after = r.page.as_ref().map(|p| p.page_token.clone()).unwrap_or_default();
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        let key = |p: &ApplicationPersona| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
        let mut items: Vec<Arc<ApplicationPersona>> = self
            .personas
            .state()
            .into_iter()
            .filter(|p| namespace.is_empty() || p.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|p| sight.sees(&p.namespace().unwrap_or_default()))
            .filter(|p| {
                r.phases.is_empty()
                    || r.phases.contains(&(proto::phase(p.status.as_ref().and_then(|s| s.phase.as_deref())) as i32))
            })
            .filter(|p| r.label_selector.as_ref().is_none_or(|s| select::selector_matches(|k| p.labels().get(k), s)))
            .collect();
        items.sort_by_key(|p| key(p));
        let total = items.len() as i64;
        let mut page: Vec<Arc<ApplicationPersona>> =
            items.into_iter().filter(|p| after.is_empty() || key(p) > after).take(size + 1).collect();
        let next = if page.len() > size {
            page.truncate(size);
            page.last().map(|p| key(p)).unwrap_or_default()
        } else {
            String::new()
        };
        // The list's version, to watch from: the API server's current one.
        let api = match &self.namespace {
            Some(ns) => Api::<ApplicationPersona>::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let version = api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map_err(kube_status)?
            .metadata
            .resource_version
            .unwrap_or_default();
        Ok(Response::new(pb::ListApplicationPersonasResponse {
            personas: page.iter().map(|p| proto::application_persona(p)).collect(),
            page: Some(PageResponse { next_page_token: next, total_size: Some(total) }),
            resource_version: version,
        }))
    }

    async fn get_application_persona(
        &self,
        request: Request<pb::GetApplicationPersonaRequest>,
    ) -> Result<Response<pb::GetApplicationPersonaResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = persys_kit::error::Violations::new();
        v.check(r.namespace.is_empty(), "namespace", "required");
        v.check(r.name.is_empty(), "name", "required");
        v.finish()?;
        self.scope(&r.namespace)?;
        self.ready().await?;
        // Another member's persona reads as one that does not exist.
        let found = self.personas.get(&reflector::ObjectRef::new(&r.name).within(&r.namespace));
        let p = found
            .filter(|_| sight.sees(&r.namespace))
            .ok_or_else(|| ApiError::NotFound(format!("ApplicationPersona {}/{}", r.namespace, r.name)))?;
        Ok(Response::new(pb::GetApplicationPersonaResponse { persona: Some(proto::application_persona(&p)) }))
    }

    async fn get_cluster_persona(
        &self,
        request: Request<pb::GetClusterPersonaRequest>,
    ) -> Result<Response<pb::GetClusterPersonaResponse>, Status> {
        let r = request.into_inner();
        let clusters = self.clusters()?;
        self.ready().await?;
        let found = if r.name.is_empty() {
            let mut all = clusters.state();
            all.sort_by_key(|c| (c.metadata.creation_timestamp.clone().map(|t| t.0), c.name_any()));
            all.into_iter().next()
        } else {
            clusters.get(&reflector::ObjectRef::new(&r.name))
        };
        let c = found.ok_or_else(|| {
            ApiError::NotFound(if r.name.is_empty() {
                "ClusterPersona (the reconciler creates one at start)".into()
            } else {
                format!("ClusterPersona {}", r.name)
            })
        })?;
        Ok(Response::new(pb::GetClusterPersonaResponse { cluster_persona: Some(proto::cluster_persona(&c)) }))
    }

    type WatchPersonaEventsStream = EventStream;

    async fn watch_persona_events(
        &self,
        request: Request<pb::WatchPersonaEventsRequest>,
    ) -> Result<Response<Self::WatchPersonaEventsStream>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = persys_kit::error::Violations::new();
        v.check(!r.name.is_empty() && r.namespace.is_empty(), "namespace", "required when name is set");
        v.check(
            r.kinds
                .iter()
                .any(|k| PersonaKind::try_from(*k).unwrap_or(PersonaKind::Unspecified) == PersonaKind::Unspecified),
            "kinds",
            "PERSONA_KIND_UNSPECIFIED is not a kind; leave kinds empty for both",
        );
        v.finish()?;
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
        // Restricted to a namespace: no ClusterPersona, refused when asked for by name.
        if self.clusters.is_none() && r.kinds.contains(&(PersonaKind::Cluster as i32)) {
            self.clusters()?;
        }
        let cluster_wide = self.clusters.is_some();
        let wants = |k: PersonaKind| {
            (r.kinds.is_empty() || r.kinds.contains(&(k as i32))) && (k != PersonaKind::Cluster || cluster_wide)
        };
        let since = (!r.since_resource_version.is_empty()).then(|| r.since_resource_version.clone());
        let mut streams: Vec<EventStream> = Vec::new();
        if wants(PersonaKind::Application) {
            let api = if namespace.is_empty() {
                Api::<ApplicationPersona>::all(self.client.clone())
            } else {
                Api::namespaced(self.client.clone(), &namespace)
            };
            let fields = (!r.name.is_empty()).then(|| format!("metadata.name={}", r.name));
            streams.push(follow(api, fields, since.clone(), sight.clone(), |p: &ApplicationPersona, before| {
                let after = proto::application_persona(p);
                let summary = summary(before.map(proto::application_persona).as_ref(), &after);
                (Object::ApplicationPersona(after), summary)
            }));
        }
        if wants(PersonaKind::Cluster) {
            streams.push(follow(
                Api::<ClusterPersona>::all(self.client.clone()),
                None,
                since,
                sight,
                |c: &ClusterPersona, before| {
                    let after = proto::cluster_persona(c);
                    let summary = cluster_summary(before.map(proto::cluster_persona).as_ref(), &after);
                    (Object::ClusterPersona(after), summary)
                },
            ));
        }
        Ok(Response::new(Box::pin(futures::stream::select_all(streams))))
    }
}
