//! Shutdown signalling: SIGTERM or SIGINT (or a test) flips one token that servers, streams and
//! background loops watch.

use tokio::sync::watch;

/// A cloneable handle that tells when shutdown has begun.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Starts shutdown when triggered or dropped.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// Returns a connected trigger and handle.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Begins shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Returns a handle watching this trigger.
    pub fn handle(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }
}

impl Shutdown {
    /// Returns a handle that never fires.
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Self { rx }
    }

    /// Returns whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes when shutdown begins.
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }
}

/// Returns a handle that fires on SIGTERM or SIGINT, and the task that listens for them.
pub fn on_signals() -> Shutdown {
    let (trigger, handle) = channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        trigger.trigger();
        // Keep the sender alive so handles do not see a closed channel as shutdown.
        std::future::pending::<()>().await;
    });
    handle
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
