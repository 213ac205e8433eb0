//! Member scoping by namespace for `PersonaService` and `ProjectService`: the namespaces'
//! metadata, cached, and who reads in one call. The rule itself is
//! [`crate::decide::access`].
//!
//! Cluster-wide, the namespaces' metadata come from a watch (a membership change applies at
//! once). Restricted to one namespace (`--namespace`), the reconciler may read only that
//! namespace (RBAC) and reads it again every [`ONE_NAMESPACE_REFRESH`].

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use persys_kit::{
    identity::{Caller, Role},
    shutdown::Shutdown,
};
use tonic::{Request, Status};

use crate::decide::access::{self, MEMBERS_ANNOTATION, Meta};

type NsMeta = PartialObjectMeta<Namespace>;

/// How often a reconciler restricted to one namespace reads that namespace's members again.
pub const ONE_NAMESPACE_REFRESH: Duration = Duration::from_secs(5);

/// The namespaces' labels and annotations, as this replica knows them.
#[derive(Clone)]
pub struct Namespaces {
    source: Source,
    ready: crate::cache::Ready,
}

#[derive(Clone)]
enum Source {
    /// Every namespace, from a watch.
    All(Store<NsMeta>),
    /// The one namespace served, read again and again (`None` until read, or when missing).
    One(Arc<Mutex<Option<Arc<NsMeta>>>>),
}

impl Namespaces {
    /// Follows every namespace's metadata, or only `namespace`'s, until `shutdown`.
    pub fn start(client: Client, namespace: Option<String>, shutdown: Shutdown) -> Self {
        let api = Api::<NsMeta>::all(client);
        match namespace {
            None => {
                let (store, writer) = reflector::store();
                let events =
                    watcher(api, watcher::Config::default()).default_backoff().reflect(writer).for_each(|_| async {});
                tokio::spawn(async move {
                    tokio::select! {
                        _ = events => {}
                        _ = shutdown.wait() => {}
                    }
                });
                let s = store.clone();
                let ready = crate::cache::ready(async move {
                    let _ = s.wait_until_ready().await;
                });
                Self { source: Source::All(store), ready }
            }
            Some(name) => {
                let slot = Arc::new(Mutex::new(None));
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let filled = slot.clone();
                tokio::spawn(async move {
                    let mut tx = Some(tx);
                    loop {
                        match api.get_opt(&name).await {
                            Ok(meta) => *filled.lock().unwrap_or_else(|p| p.into_inner()) = meta.map(Arc::new),
                            Err(error) => {
                                tracing::warn!(%error, namespace = %name, "reading the namespace's members (the last answer stays)")
                            }
                        }
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(ONE_NAMESPACE_REFRESH) => {}
                            _ = shutdown.clone().wait() => return,
                        }
                    }
                });
                let ready = crate::cache::ready(async move {
                    let _ = rx.await;
                });
                Self { source: Source::One(slot), ready }
            }
        }
    }

    /// Resolves once the namespaces were read (or listed) once.
    pub fn ready(&self) -> crate::cache::Ready {
        self.ready.clone()
    }

    fn get(&self, name: &str) -> Option<Arc<NsMeta>> {
        match &self.source {
            Source::All(store) => store.get(&ObjectRef::new(name)),
            Source::One(slot) => slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|m| m.metadata.name.as_deref() == Some(name)),
        }
    }

    /// Whether member `user` reads namespace `ns` ([`access::member_reads`]).
    fn member_reads(&self, user: &str, ns: &str) -> bool {
        let own = self.get(ns);
        let parent = own.as_deref().and_then(|m| access::parent(ns, meta(m).labels)).and_then(|p| self.get(p));
        access::member_reads(user, own.as_deref().map(meta), parent.as_deref().map(meta))
    }
}

static NONE: BTreeMap<String, String> = BTreeMap::new();

fn meta(m: &NsMeta) -> Meta<'_> {
    Meta {
        name: m.metadata.name.as_deref().unwrap_or_default(),
        labels: m.metadata.labels.as_ref().unwrap_or(&NONE),
        annotations: m.metadata.annotations.as_ref().unwrap_or(&NONE),
    }
}

/// Who reads, in one call: everything (admins, viewers, and services calling without a user),
/// or a member, who reads the namespaces that name them.
#[derive(Clone)]
pub struct Sight {
    member: Option<String>,
    namespaces: Namespaces,
}

impl Sight {
    /// The reader of `request`, from the user the gateway verified.
    pub fn of<T>(request: &Request<T>, namespaces: &Namespaces) -> Self {
        let member = Caller::of(request)
            .and_then(|c| c.user.as_ref())
            .filter(|u| u.role == Role::Member)
            .map(|u| u.name.clone());
        Self { member, namespaces: namespaces.clone() }
    }

    /// Whether this reader sees what is in namespace `ns`.
    pub fn sees(&self, ns: &str) -> bool {
        match &self.member {
            None => true,
            Some(user) => self.namespaces.member_reads(user, ns),
        }
    }

    /// `PERMISSION_DENIED` when the call asks for a namespace (`requested`, empty for every
    /// one) this reader may not read.
    pub fn check_filter(&self, requested: &str) -> Result<(), Status> {
        if requested.is_empty() || self.sees(requested) {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "namespace {requested}: you are not among its members (the namespace's {MEMBERS_ANNOTATION} \
             annotation, set by a cluster admin); leave the namespace empty for every namespace you may read"
        )))
    }
}
