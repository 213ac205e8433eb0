//! What the reconciler's tests share: the test bench's API server, and third-party servers
//! (Prometheus, docker-registry) started as child processes.

#![allow(dead_code)] // each test binary uses a part

pub mod git;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::WatchStreamExt,
};
use serde_json::json;
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

/// Waits until exactly `n` live pods match `selector`, as the ReplicaSet controller makes
/// them, and returns them.
pub async fn pods(api: &Api<Pod>, selector: &str, n: usize) -> Vec<Pod> {
    let (store, writer) = kube::runtime::reflector::store();
    let mut events = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default().labels(selector))
        .default_backoff()
        .reflect(writer)
        .boxed();
    let live = |store: &kube::runtime::reflector::Store<Pod>| -> Vec<Pod> {
        store.state().iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| (**p).clone()).collect()
    };
    let result = tokio::time::timeout(WAIT, async {
        loop {
            // The store swaps in the initial list whole, so a partial list is never seen.
            if live(&store).len() == n {
                return live(&store);
            }
            // Every event, the end of the initial list included, is a moment to look again.
            events.next().await.expect("pod watch ended").expect("pod watch");
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("{n} pods with {selector}: have {}", live(&store).len()))
}

/// Writes a pod's status as a kubelet would: running and ready, or crash-looping.
pub async fn set_pod(api: &Api<Pod>, pod: &Pod, ready: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let image = pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
    let flag = if ready { "True" } else { "False" };
    let state = if ready {
        json!({"running": {"startedAt": now}})
    } else {
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}})
    };
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": flag, "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": "app", "image": image, "imageID": "", "ready": ready, "restartCount": if ready { 0 } else { 3 },
            "started": ready, "state": state,
        }],
    }});
    api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status written");
}

/// kpack's Image kind as a stand-in CRD (kpack cannot be installed on the bench): the one file
/// every test that needs it reads (`persys_e2e::kubectl::KPACK_STANDIN_CRD`).
pub fn kpack_crd() -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_json::from_str(include_str!("../../../../tests/e2e/fixtures/kpack-image-crd.json")).expect("the stand-in CRD")
}

/// A stand-in for ArgoCD's `Application` CRD (its group, version, kind and names; any fields).
pub fn argocd_application_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"kind": "Application", "listKind": "ApplicationList", "plural": "applications", "singular": "application",
                "shortNames": ["app", "apps"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("the stand-in CRD")
}

/// Applies the reconciler's CRDs and `extra` (server-side, as the tests' field manager) and
/// waits until the API server serves each of them.
pub async fn install_crds(
    client: &Client,
    extra: Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::{conditions, wait::await_condition};
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in persys_crds::all().into_iter().chain(extra) {
        crds.patch(&crd.name_any(), &PatchParams::apply("persys-tests").force(), &Patch::Apply(&crd))
            .await
            .expect("CRD applied");
        tokio::time::timeout(WAIT, await_condition(crds.clone(), &crd.name_any(), conditions::is_crd_established()))
            .await
            .expect("CRD established")
            .expect("CRD watch");
    }
}

/// mTLS material for `identity` issued by `ca` (for localhost), written under `dir` as
/// `<name>.pem`/`<name>.key` beside `ca.pem`, and loaded.
pub fn tls(
    ca: &persys_kit::pki::Ca,
    dir: &std::path::Path,
    name: &str,
    identity: persys_kit::Identity,
) -> std::sync::Arc<persys_kit::tls::Tls> {
    let leaf = ca
        .issue(&persys_kit::pki::LeafRequest {
            identity,
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().expect("an address")],
            validity: Duration::from_secs(3600),
        })
        .expect("a leaf certificate");
    let paths = persys_kit::tls::TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&paths.ca, ca.cert_pem()).expect("ca written");
    std::fs::write(&paths.cert, leaf.cert_pem).expect("cert written");
    std::fs::write(&paths.key, leaf.key_pem).expect("key written");
    persys_kit::tls::Tls::load(paths).expect("tls loads")
}

/// PersonaService and ProjectService (builds read from `builds`; restricted to `namespace`, if
/// given) served over mTLS as the reconciler serves them, and a channel to them as the
/// gateway; they stop when the trigger is dropped.
pub async fn serve(
    client: &Client,
    builds: kube::api::GroupVersionKind,
    namespace: Option<String>,
    dir: &std::path::Path,
    ca: &persys_kit::pki::Ca,
) -> (persys_kit::client::TracedChannel, persys_kit::shutdown::ShutdownTrigger) {
    use persys_kit::{Identity, client::ClientOptions};
    use persys_reconciler::{access::Namespaces, grpc::Personas, projects_grpc::Projects};
    let server_tls = tls(ca, dir, "reconciler", Identity::Service("reconciler".into()));
    let (trigger, stop) = persys_kit::shutdown::channel();
    let (listener, addr) = persys_kit::server::bind("127.0.0.1:0".parse().expect("an address")).await.expect("bound");
    let namespaces = Namespaces::start(client.clone(), namespace.clone(), stop.clone());
    let cache = persys_reconciler::cache::Personas::start(client.clone(), namespace.as_deref(), stop.clone());
    let personas = Personas::start(client.clone(), &cache, namespace.clone(), namespaces.clone(), stop.clone());
    let projects = Projects::start_with(client.clone(), builds, namespace, namespaces, stop.clone());
    persys_reconciler::serve_personas(personas, Some(projects), listener, &server_tls, &["gateway".into()], stop)
        .await
        .expect("serving");
    let gateway = tls(ca, dir, "gateway", Identity::Service("gateway".into()));
    let channel = persys_kit::client::mtls_channel(
        &format!("https://localhost:{}", addr.port()),
        &gateway,
        &ClientOptions::default(),
    )
    .expect("a channel");
    (channel, trigger)
}
