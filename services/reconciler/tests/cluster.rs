//! ClusterPersona discovery against the test bench's real API server: nodes registered as a
//! kubelet would register them, an add-on's pod, and the status the reconciler writes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use persys_crds::cluster::ClusterPersona;
use persys_kit::shutdown;
use persys_reconciler::cluster::{self, ClusterOptions};
use serde_json::json;

mod common;

async fn client() -> Option<Client> {
    let kubeconfig = persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")?;
    Some(persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap())
}

/// Registers a node and writes its status, as its kubelet would.
async fn register(nodes: &Api<Node>, name: &str, labels: serde_json::Value, provider: &str, ready: bool) {
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"providerID": provider}}))
            .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "v1.37.2", "containerRuntimeVersion": "containerd://2.1.0", "architecture": "amd64",
            "bootID": "b", "kernelVersion": "6", "kubeProxyVersion": "", "machineID": "m", "operatingSystem": "linux",
            "osImage": "Debian", "systemUUID": "u"},
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

#[tokio::test]
async fn discovery_reports_nodes_platform_usage_addons_and_follows_node_changes() {
    let Some(client) = client().await else { return };
    let pid = std::process::id();
    common::install_crds(&client, vec![]).await;
    let nodes = Api::<Node>::all(client.clone());
    let (cp_node, worker) = (format!("cp-{pid}"), format!("worker-{pid}"));
    register(
        &nodes,
        &cp_node,
        json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/os": "linux"}),
        "kind://docker/kind/cp",
        true,
    )
    .await;
    register(&nodes, &worker, json!({"kubernetes.io/os": "linux"}), "kind://docker/kind/worker", false).await;

    // An add-on, scheduled on the control-plane node, requesting one CPU.
    let ns = format!("argocd-{pid}");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    // The API server admits a pod only once its namespace's `default` ServiceAccount exists,
    // which kube-controller-manager creates a moment after the namespace.
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    tokio::time::timeout(
        Duration::from_secs(60),
        kube::runtime::wait::await_condition(accounts, "default", |a: Option<&ServiceAccount>| a.is_some()),
    )
    .await
    .expect("the namespace's default ServiceAccount in time")
    .unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "argocd-server-0", "labels": {"app.kubernetes.io/name": "argocd-server"}},
        "spec": {"nodeName": cp_node, "containers": [{"name": "server", "image": "quay.io/argoproj/argocd:v2.9.3",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let name = format!("cluster-{pid}");
    let (_stop, stop) = shutdown::channel();
    let options = ClusterOptions { interval: Duration::from_secs(300), create: Some(name.clone()) };
    // Another test run may have left a ClusterPersona: create ours explicitly too.
    let personas = Api::<ClusterPersona>::all(client.clone());
    let cp: ClusterPersona = serde_json::from_value(json!({"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona",
        "metadata": {"name": name}, "spec": {"name": name, "environment": "development"}}))
    .unwrap();
    personas.create(&PostParams::default(), &cp).await.unwrap();
    tokio::spawn(cluster::run(client.clone(), options, stop));

    let has = |f: fn(&serde_json::Value, &str, &str) -> bool, cp: String, w: String| {
        move |p: Option<&ClusterPersona>| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| f(&serde_json::to_value(s).unwrap(), &cp, &w))
        }
    };
    let seen = |s: &serde_json::Value, cp: &str, w: &str| {
        let names: Vec<&str> = s["nodes"].as_array().into_iter().flatten().filter_map(|n| n["name"].as_str()).collect();
        names.contains(&cp) && names.contains(&w)
    };
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(personas.clone(), &name, has(seen, cp_node.clone(), worker.clone())),
    )
    .await
    .expect("discovered in time")
    .unwrap()
    .unwrap();
    let s = serde_json::to_value(got.status.unwrap()).unwrap();
    let node = |n: &str| s["nodes"].as_array().unwrap().iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(node(&cp_node)["role"], "control-plane");
    assert_eq!(node(&cp_node)["ready"], true);
    assert_eq!(node(&worker)["ready"], false);
    assert_eq!(node(&cp_node)["kubeletVersion"], "v1.37.2");
    assert_eq!(s["platform"], "Kind", "{s:#}");
    assert!(s["kubernetesVersion"].as_str().unwrap().starts_with("v1."), "{s:#}");
    assert_eq!(s["phase"], "Degraded", "one node of ours is not ready");
    let argocd = s["addons"].as_array().unwrap().iter().find(|a| a["name"] == "argocd").unwrap().clone();
    // The add-on list looks in the `argocd` namespace; ours is argocd-<pid>, so the report must
    // say not installed there — the usage counts it either way.
    assert_eq!(argocd["installed"], false, "{argocd}");
    let used = s["resourceSummary"]["usedCPU"].as_str().unwrap();
    assert!(!used.is_empty(), "the scheduled pod's request counts: {s:#}");
    assert!(s["namespaces"]["total"].as_i64().unwrap() >= 1);

    // A node becoming ready is a change discovery follows without waiting for the interval.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes.patch_status(&worker, &PatchParams::default(), &Patch::Strategic(&ready)).await.unwrap();
    let ready_now = |s: &serde_json::Value, _: &str, w: &str| {
        s["nodes"].as_array().into_iter().flatten().any(|n| n["name"] == w && n["ready"] == true)
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(personas.clone(), &name, has(ready_now, cp_node.clone(), worker.clone())),
    )
    .await
    .expect("the readiness change was followed")
    .unwrap();

    personas.delete(&name, &DeleteParams::default()).await.unwrap();
    for n in [&cp_node, &worker] {
        nodes.delete(n, &DeleteParams::default()).await.unwrap();
    }
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.unwrap();
}
