//! ArgoCD on the real API server: with the Application CRD installed (a stand-in with ArgoCD's
//! group, version, kind, names and scope, and an open schema), an Application written as
//! ArgoCD writes it shows in the persona's status.argoCD, follows its changes, and survives the
//! persona controller's own status writes (separate field managers).

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use persys_crds::persona::ApplicationPersona;
use persys_kit::shutdown;
use persys_reconciler::{argocd, persona};
use serde_json::json;

mod common;

#[tokio::test]
async fn application_status_reaches_the_persona_and_stays() {
    let Some(kubeconfig) =
        persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")
    else {
        return;
    };
    let client = persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap();
    common::install_crds(&client, vec![common::argocd_application_crd()]).await;
    let resource = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(r) = argocd::application_resource(&client).await {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("discovery serves the Application kind once its CRD is Established");

    let pid = std::process::id();
    let (apps_ns, argo_ns) = (format!("argo-apps-{pid}"), format!("argocd-{pid}"));
    for ns in [&apps_ns, &argo_ns] {
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
            .await
            .unwrap();
    }
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &apps_ns);
    let p = json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": "shop"},
        "spec": {"name": "shop", "type": "api"}});
    personas.patch("shop", &PatchParams::apply("persys-tests"), &Patch::Apply(&p)).await.unwrap();

    // Both controllers run: the persona's own status and argoCD side by side.
    let (_stop, stop) = shutdown::channel();
    let options = persona::Options { namespace: Some(apps_ns.clone()), ..persona::Options::default() };
    let cache = persys_reconciler::cache::Personas::start(client.clone(), Some(&apps_ns), stop.clone());
    tokio::spawn(persona::run(client.clone(), options, cache, stop.clone()));
    tokio::spawn(argocd::run(client.clone(), Duration::from_millis(200), None, stop));

    let applications = Api::<DynamicObject>::namespaced_with(client.clone(), &argo_ns, &resource);
    let write = |sync: &str, health: &str, revision: &str| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop-prod", "labels": {"app.kubernetes.io/name": "shop"}},
            "spec": {"project": "default", "destination": {"namespace": apps_ns, "server": "https://kubernetes.default.svc"},
                "source": {"repoURL": "https://git.example/shop.git", "path": "deploy", "targetRevision": "main"}},
            "status": {"sync": {"status": sync, "revision": revision}, "health": {"status": health},
                "operationState": {"phase": "Succeeded", "finishedAt": "2026-12-04T09:00:00Z"}}})
    };
    // ArgoCD writes the status with the rest of the object (no status subresource).
    applications
        .patch(
            "shop-prod",
            &PatchParams::apply("argocd-controller").force(),
            &Patch::Apply(&write("Synced", "Healthy", "abc123")),
        )
        .await
        .unwrap();

    let wait = |want: serde_json::Value| {
        let personas = personas.clone();
        async move {
            let cond = move |p: Option<&ApplicationPersona>| {
                p.and_then(|p| p.status.as_ref()).and_then(|s| s.argo_cd.as_ref()).is_some_and(|a| {
                    let v = serde_json::to_value(a).unwrap();
                    want.as_object().unwrap().iter().all(|(k, w)| &v[k] == w)
                })
            };
            tokio::time::timeout(Duration::from_secs(30), await_condition(personas, "shop", cond))
                .await
                .expect("argoCD reflected in time")
                .unwrap()
                .unwrap()
        }
    };
    let got = wait(json!({"syncStatus": "Synced", "healthStatus": "Healthy", "revision": "abc123"})).await;
    let status = got.status.unwrap();
    let argo = status.argo_cd.unwrap();
    assert_eq!((argo.application_name.as_str(), argo.application_namespace.as_str()), ("shop-prod", argo_ns.as_str()));
    assert_eq!(argo.last_sync_time.as_deref(), Some("2026-12-04T09:00:00Z"));

    // A failed sync is followed.
    applications
        .patch(
            "shop-prod",
            &PatchParams::apply("argocd-controller").force(),
            &Patch::Apply(&write("OutOfSync", "Degraded", "def456")),
        )
        .await
        .unwrap();
    wait(json!({"syncStatus": "OutOfSync", "healthStatus": "Degraded", "revision": "def456"})).await;

    // The persona controller writes its status (a spec change makes it reconcile): argoCD stays.
    let p2 = json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": "shop"},
        "spec": {"name": "shop", "type": "web"}});
    let changed = personas.patch("shop", &PatchParams::apply("persys-tests"), &Patch::Apply(&p2)).await.unwrap();
    let generation = changed.metadata.generation;
    let cond = move |p: Option<&ApplicationPersona>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| s.observed_generation == generation)
    };
    let after = tokio::time::timeout(Duration::from_secs(30), await_condition(personas.clone(), "shop", cond))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let status = after.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"), "no workload: the persona controller wrote its part");
    assert_eq!(status.argo_cd.map(|a| a.revision), Some("def456".into()), "and left argoCD alone");

    for ns in [&apps_ns, &argo_ns] {
        Api::<Namespace>::all(client.clone()).delete(ns, &Default::default()).await.unwrap();
    }
}
