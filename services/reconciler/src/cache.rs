//! The reflector caches the reconciler shares, and waiting for them to hold their first full
//! list.
//!
//! kube-runtime 5's `Store::wait_until_ready` loses wake-ups when several tasks wait at once:
//! its `DelayedInit` polls one `futures` oneshot receiver, which keeps a single waker, so only
//! the waiter that polled last is woken and the others wait forever. The persona controller
//! met this whenever two personas started reconciling before the workload caches were filled
//! (one persona never got a status). [`Ready`] is polled by one shared future, which wakes
//! every waiter.

use std::sync::Arc;

use futures::{
    FutureExt, Stream, StreamExt,
    future::{BoxFuture, Shared},
    stream,
};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use persys_crds::persona::ApplicationPersona;
use persys_kit::shutdown::Shutdown;
use tokio::sync::broadcast::{self, error::RecvError};

/// Resolves (for every clone) once the caches it was made from are filled.
pub type Ready = Shared<BoxFuture<'static, ()>>;

/// A [`Ready`] from the waits of one or more stores, e.g.
/// `async move { let _ = a.wait_until_ready().await; let _ = b.wait_until_ready().await; }`.
pub fn ready(wait: impl Future<Output = ()> + Send + 'static) -> Ready {
    wait.boxed().shared()
}

/// The annotation client-side `kubectl apply` keeps a copy of the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Changes a slow reader may fall behind by before it is handed every persona again.
const CHANGES: usize = 1024;

/// The ApplicationPersonas of the served namespace (or of all), watched once per process:
/// PersonaService reads them on every replica, the persona controller on the leader. Cached
/// without their managedFields (kept by the API server for every field manager) and kubectl's
/// last-applied copy of the whole object (client-side `kubectl apply`, ArgoCD's default):
/// nothing reads those, and one copy of thousands of personas is what the process can afford.
#[derive(Clone)]
pub struct Personas {
    store: Store<ApplicationPersona>,
    changes: broadcast::Sender<Arc<ApplicationPersona>>,
    ready: Ready,
}

impl Personas {
    /// Starts the watch (of `namespace`, or of every namespace) until `shutdown`.
    pub fn start(client: Client, namespace: Option<&str>, shutdown: Shutdown) -> Self {
        let api = match namespace {
            Some(ns) => Api::<ApplicationPersona>::namespaced(client, ns),
            None => Api::all(client),
        };
        Self::from_events(watcher(api, watcher::Config::default()).default_backoff(), shutdown)
    }

    /// The cache of a watch's `events`, until `shutdown`.
    fn from_events(
        events: impl Stream<Item = Result<watcher::Event<ApplicationPersona>, watcher::Error>> + Send + 'static,
        shutdown: Shutdown,
    ) -> Self {
        let (store, writer) = reflector::store();
        let (changes, _) = broadcast::channel(CHANGES);
        let sender = changes.clone();
        let events = events
            .modify(|p| {
                p.managed_fields_mut().clear();
                p.annotations_mut().remove(LAST_APPLIED);
            })
            .reflect(writer)
            .applied_objects()
            .for_each(move |p| {
                // No receiver (no controller here, or not leading) is not an error.
                if let Ok(p) = p {
                    let _ = sender.send(Arc::new(p));
                }
                futures::future::ready(())
            });
        tokio::spawn(async move {
            tokio::select! {
                _ = events => {}
                _ = shutdown.wait() => {}
            }
        });
        let ready = {
            let store = store.clone();
            ready(async move {
                let _ = store.wait_until_ready().await;
            })
        };
        Self { store, changes, ready }
    }

    /// The cache.
    pub fn store(&self) -> &Store<ApplicationPersona> {
        &self.store
    }

    /// Resolves once the cache holds its first full list.
    pub fn ready(&self) -> Ready {
        self.ready.clone()
    }

    /// For a controller: every cached persona once the cache is filled, then each one that
    /// changes (as stored). A reader that falls more than [`CHANGES`] behind is handed every
    /// persona again instead of what it missed, so no change is lost to a slow reader; the
    /// watch itself never waits for one.
    pub fn changes(&self) -> impl Stream<Item = Arc<ApplicationPersona>> + Send + 'static {
        // Subscribed before the first snapshot: a change in between is seen twice, never lost.
        let receiver = self.changes.subscribe();
        let (store, ready) = (self.store.clone(), self.ready());
        let first = stream::once(async move {
            ready.await;
            store.state()
        });
        let store = self.store.clone();
        let next = stream::unfold((receiver, store), |(mut receiver, store)| async move {
            let batch = match receiver.recv().await {
                Ok(p) => vec![p],
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "persona changes overflowed: every persona again");
                    store.state()
                }
                Err(RecvError::Closed) => return None,
            };
            Some((batch, (receiver, store)))
        });
        first.chain(next).flat_map(stream::iter)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};

    use super::*;

    /// Two tasks wait on one store before it is filled: both go on once it is. (With
    /// `Store::wait_until_ready` awaited directly by each, the first waiter is never woken.)
    #[tokio::test]
    async fn every_waiter_is_woken() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let ready = ready(async move {
            let _ = store.wait_until_ready().await;
        });
        let first = tokio::spawn(ready.clone());
        let second = tokio::spawn(ready.clone());
        tokio::task::yield_now().await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in [first, second] {
            tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").unwrap();
        }
    }

    fn persona(name: &str, version: u32) -> ApplicationPersona {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
            "metadata": {"name": name, "namespace": "apps", "resourceVersion": version.to_string(),
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"name": name, "type": "api"}}))
        .unwrap()
    }

    fn names(batch: &[Arc<ApplicationPersona>]) -> Vec<String> {
        let mut names: Vec<String> = batch.iter().map(|p| p.name_any()).collect();
        names.sort();
        names
    }

    /// A controller's reader gets every cached persona once the cache is filled, then each
    /// change; a reader that fell more than the buffer behind gets every persona again (the
    /// newest of each), never a hole; the cache holds no managedFields or last-applied copy.
    #[tokio::test]
    async fn readers_get_the_snapshot_then_changes_and_everything_again_after_falling_behind() {
        let (events, rx) = futures::channel::mpsc::unbounded();
        let (_stop, shutdown) = persys_kit::shutdown::channel();
        let cache = Personas::from_events(rx, shutdown);
        let mut early = Box::pin(cache.changes());
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(persona("a", 1)),
            watcher::Event::InitApply(persona("b", 1)),
            watcher::Event::InitDone,
        ] {
            events.unbounded_send(Ok(e)).unwrap();
        }
        let wait = Duration::from_secs(5);
        let first: Vec<_> = tokio::time::timeout(wait, (&mut early).take(2).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        let cached = cache.store().get(&reflector::ObjectRef::new("a").within("apps")).unwrap();
        assert!(cached.managed_fields().is_empty());
        assert_eq!(cached.annotations().keys().collect::<Vec<_>>(), ["keep"]);

        // A reader starting late sees the snapshot too.
        let mut late = Box::pin(cache.changes());
        let snapshot: Vec<_> = tokio::time::timeout(wait, (&mut late).take(2).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(names(&snapshot), ["a", "b"]);

        // `early` subscribed before the list: it also gets the list's own events (a persona
        // seen twice is reconciled twice, harmless), then the next change, as does `late`.
        let again: Vec<_> = tokio::time::timeout(wait, (&mut early).take(2).collect::<Vec<_>>()).await.unwrap();
        assert_eq!(names(&again), ["a", "b"]);
        events.unbounded_send(Ok(watcher::Event::Apply(persona("c", 2)))).unwrap();
        for reader in [&mut early, &mut late] {
            let next = tokio::time::timeout(wait, reader.next()).await.unwrap().unwrap();
            assert_eq!(next.name_any(), "c");
        }
        // `late` is not read while more changes than the buffer holds go by (the watch does
        // not wait for it); then it reads every persona, at its newest version.
        let newest = (CHANGES as u32 + 9).to_string();
        for v in 3..=(CHANGES as u32 + 9) {
            events.unbounded_send(Ok(watcher::Event::Apply(persona("a", v)))).unwrap();
        }
        let a = reflector::ObjectRef::new("a").within("apps");
        tokio::time::timeout(wait, async {
            while cache.store().get(&a).and_then(|p| p.resource_version()).as_deref() != Some(&*newest) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let mut all = Vec::new();
        while all.len() < 3 {
            all.push(tokio::time::timeout(wait, late.next()).await.unwrap().unwrap());
        }
        assert_eq!(names(&all), ["a", "b", "c"], "after the overflow: every persona");
        let a = all.iter().find(|p| p.name_any() == "a").unwrap();
        assert_eq!(a.resource_version().as_deref(), Some(&*newest));
    }
}
