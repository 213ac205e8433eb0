//! Waiting for reflector caches to hold their first full list.
//!
//! kube-runtime 5's `Store::wait_until_ready` loses wake-ups when several tasks wait at once:
//! its `DelayedInit` polls one `futures` oneshot receiver, which keeps a single waker, so only
//! the waiter that polled last is woken and the others wait forever. The persona controller
//! met this whenever two personas started reconciling before the workload caches were filled
//! (one persona never got a status). [`Ready`] is polled by one shared future, which wakes
//! every waiter.

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};

/// Resolves (for every clone) once the caches it was made from are filled.
pub type Ready = Shared<BoxFuture<'static, ()>>;

/// A [`Ready`] from the waits of one or more stores, e.g.
/// `async move { let _ = a.wait_until_ready().await; let _ = b.wait_until_ready().await; }`.
pub fn ready(wait: impl Future<Output = ()> + Send + 'static) -> Ready {
    wait.boxed().shared()
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
}
