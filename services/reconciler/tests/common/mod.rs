//! What the reconciler's tests share: the test bench's API server, and third-party servers
//! (Prometheus, docker-registry) started as child processes.

#![allow(dead_code)] // each test binary uses a part

pub mod git;

use std::time::Duration;

use kube::Client;
use tokio::io::AsyncBufReadExt;

/// How long a test waits for anything.
pub const WAIT: Duration = Duration::from_secs(60);

/// A client of the test bench's kube-apiserver (`PERSYS_TEST_KUBECONFIG`).
pub async fn client() -> Option<Client> {
    let kubeconfig = persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")?;
    Some(persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.expect("a client"))
}

/// Spawns `command` (killed when dropped) and waits until it writes a stderr line containing
/// `ready` (its own announcement that it serves); fails with everything it wrote otherwise.
/// Its stderr is drained afterwards, so it never blocks on a full pipe.
pub async fn spawn_until(mut command: tokio::process::Command, ready: &str) -> tokio::process::Child {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the program starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains(ready);
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "{command:?} did not say `{ready}`:\n{}", seen.join("\n"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}
