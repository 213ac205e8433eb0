//! `PersonaService` over mTLS: personas and the ClusterPersona from this replica's own caches
//! (every replica serves, leader or not), and their changes as a resumable server stream.
//!
//! A watch resumes from a Kubernetes resource version. Both kinds live in the API server's one
//! store, so one version covers both; a version Kubernetes no longer holds is `OUT_OF_RANGE`
//! (list again). Without a version the watch starts with a snapshot (`ADDED` for each object).

use std::sync::Arc;

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use persys_crds::{cluster::ClusterPersona, persona::ApplicationPersona};
use persys_kit::{error::ApiError, select, shutdown::Shutdown};
use persys_proto::{
    common::v1::WatchEventType,
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
    serving::{self, CACHE_WAIT, Change, Events, Selectors, check_selector, key, page_size, paginate},
};

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
    /// Serves the personas of `cache` (the process's one persona cache, of `namespace` or of
    /// every namespace) and starts a ClusterPersona cache until `shutdown`; members read the
    /// namespaces `namespaces` says they may.
    pub fn start(
        client: Client,
        cache: &crate::cache::Personas,
        namespace: Option<String>,
        namespaces: Namespaces,
        shutdown: Shutdown,
    ) -> Self {
        let personas = cache.store().clone();
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
        if let Some(events) = cluster_events {
            tokio::spawn(async move {
                tokio::select! {
                    _ = events => {}
                    _ = shutdown.wait() => {}
                }
            });
        }
        let ready = {
            let (p, c, n) = (cache.ready(), clusters.clone(), namespaces.ready());
            crate::cache::ready(async move {
                p.await;
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

type EventStream = Events<pb::WatchPersonaEventsResponse>;

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

/// A watch response: the object with the change's summary (empty for ADDED, DELETED and
/// BOOKMARK).
fn response(t: WatchEventType, object: Option<(Object, String)>, rv: String) -> pb::WatchPersonaEventsResponse {
    let (object, summary) = object.map_or((None, String::new()), |(o, s)| (Some(o), s));
    pb::WatchPersonaEventsResponse { r#type: t as i32, object, resource_version: rv, summary }
}

#[tonic::async_trait]
impl PersonaService for Personas {
    async fn list_application_personas(
        &self,
        request: Request<pb::ListApplicationPersonasRequest>,
    ) -> Result<Response<pb::ListApplicationPersonasResponse>, Status> {
        let sight = Sight::of(&request, &self.namespaces);
        let r = request.into_inner();
        let mut v = persys_kit::error::Violations::new();
        let size = page_size(&mut v, r.page.as_ref());
        check_selector(&mut v, r.label_selector.as_ref());
        v.finish()?;
        let after = r.page.as_ref().map(|p| p.page_token.clone()).unwrap_or_default();
        let namespace = self.scope(&r.namespace)?;
        self.ready().await?;
        sight.check_filter(&r.namespace)?;
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
        items.sort_by_cached_key(|p| key(&**p));
        let (page, page_response) = paginate(items, size, |p| after.is_empty() || key(&**p) > after, |p| key(&**p));
        // The list's version, to watch from: the API server's current one.
        let api = match &self.namespace {
            Some(ns) => Api::<ApplicationPersona>::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let version = serving::version(api).await?;
        Ok(Response::new(pb::ListApplicationPersonasResponse {
            personas: page.iter().map(|p| proto::application_persona(p)).collect(),
            page: Some(page_response),
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
            let selectors = Selectors {
                fields: (!r.name.is_empty()).then(|| format!("metadata.name={}", r.name)),
                labels: None,
                remember: true,
            };
            streams.push(serving::follow(
                api,
                selectors,
                since.clone(),
                sight.clone(),
                |c: Change<'_, ApplicationPersona>| {
                    let object = c.object.map(|p| {
                        let after = proto::application_persona(p);
                        let summary = summary(c.before.map(proto::application_persona).as_ref(), &after);
                        (Object::ApplicationPersona(after), summary)
                    });
                    Some(response(c.kind, object, c.version))
                },
            ));
        }
        if wants(PersonaKind::Cluster) {
            let selectors = Selectors { remember: true, ..Selectors::default() };
            let all = Api::<ClusterPersona>::all(self.client.clone());
            streams.push(serving::follow(all, selectors, since, sight, |c: Change<'_, ClusterPersona>| {
                let object = c.object.map(|p| {
                    let after = proto::cluster_persona(p);
                    let summary = cluster_summary(c.before.map(proto::cluster_persona).as_ref(), &after);
                    (Object::ClusterPersona(after), summary)
                });
                Some(response(c.kind, object, c.version))
            }));
        }
        Ok(Response::new(Box::pin(futures::stream::select_all(streams))))
    }
}
