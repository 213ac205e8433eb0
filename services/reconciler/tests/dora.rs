//! ArgoCD syncs become DORA deployments: the reconciler's ArgoCD controller on the real API
//! server, with the Application CRD (a stand-in with ArgoCD's names and an open schema), records
//! each settled sync over mTLS in a real metrics pipeline on real PostgreSQL; a sync still
//! progressing is not recorded, a degraded one is recorded as a failure.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use persys_kit::{
    Identity,
    pki::{Ca, LeafRequest, service_dns_names},
    shutdown,
    tls::CertsDir,
};
use persys_proto::metrics::v1::{DeploymentEnvironment, DeploymentStatus};
use persys_reconciler::argocd;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, postgres::PgConnection};

mod common;

fn issue(ca: &Ca, dir: &std::path::Path, name: &str) {
    let leaf = ca
        .issue(&LeafRequest {
            identity: Identity::Service(name.into()),
            dns_names: service_dns_names(name, "persys"),
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("cert.pem"), leaf.cert_pem).unwrap();
    std::fs::write(dir.join(name).join("key.pem"), leaf.key_pem).unwrap();
}

#[tokio::test]
async fn settled_argocd_syncs_are_recorded_in_the_metrics_pipeline() {
    let Some(kubeconfig) =
        persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")
    else {
        return;
    };
    let Some(admin_url) =
        persys_kit::testing::require_env("PERSYS_TEST_PG_ADMIN_URL", "a PostgreSQL role that may CREATE DATABASE")
    else {
        return;
    };
    // A pipeline of its own, on a database of its own, with certificates for it and us.
    let db = format!("reconciler_dora_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{db}\""))).execute(&mut admin).await.unwrap();
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
    std::fs::write(certs.path().join("ca.pem"), ca.cert_pem()).unwrap();
    issue(&ca, certs.path(), "metrics");
    issue(&ca, certs.path(), "reconciler");
    let dir = CertsDir::new(certs.path());
    let mut args =
        persys_metrics_pipeline::config::ServeArgs::loopback(&dir, persys_kit::testing::database_url(&admin_url, &db));
    // No GitHub here: commit lookups fail fast and are given up after two attempts.
    args.github_api_url = "http://127.0.0.1:9".into();
    args.devlake_attempts = 2;
    args.devlake_backoff = Duration::from_millis(20);
    let (stop_pipeline, pipeline_handle) = shutdown::channel();
    let pipeline = persys_metrics_pipeline::start(args, pipeline_handle).await.expect("the pipeline starts");

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
    .expect("discovery serves the Application kind");
    let argo_ns = format!("argocd-dora-{}", std::process::id());
    // A name no persona has: the ArgoCD test running beside this one on the same API server
    // follows every Application too, and must find nothing of ours to write into its persona.
    let app = format!("dorashop{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": argo_ns}})).unwrap())
        .await
        .unwrap();

    // The reconciler's reporter, as `--metrics-pipeline` builds it.
    let tls = dir.load("reconciler").unwrap();
    let channel = persys_kit::client::mtls_channel_to(
        &format!("https://localhost:{}", pipeline.addr.port()),
        &tls,
        Identity::Service("metrics".into()),
        &persys_kit::client::ClientOptions::default(),
    )
    .unwrap();
    let dora = std::sync::Arc::new(argocd::Dora::new(channel, "east"));
    let (stop_controller, stop) = shutdown::channel();
    tokio::spawn(argocd::run(client.clone(), Duration::from_millis(200), Some(dora), stop));

    let applications = Api::<DynamicObject>::namespaced_with(client.clone(), &argo_ns, &resource);
    let history = json!([
        {"id": 1, "revision": "bbb2222", "deployedAt": "2026-12-01T10:00:00Z",
         "source": {"repoURL": "https://github.com/acme/infra", "path": "apps/shop/production"}}]);
    let write = |sync: &str, health: &str, revision: &str, history: &serde_json::Value| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": format!("{app}-east"), "labels": {"app.kubernetes.io/name": &app}},
            "spec": {"project": "default", "destination": {"namespace": "apps", "server": "https://kubernetes.default.svc"},
                "source": {"repoURL": "https://github.com/acme/infra", "path": "apps/shop/production", "targetRevision": "main"}},
            "status": {"sync": {"status": sync, "revision": revision}, "health": {"status": health},
                "summary": {"images": ["quay.io/acme/shop:3f9a1c2"]}, "history": history}})
    };
    let name = format!("{app}-east");
    let apply = |body: serde_json::Value| {
        let (applications, name) = (applications.clone(), name.clone());
        async move {
            applications
                .patch(&name, &PatchParams::apply("argocd-controller").force(), &Patch::Apply(&body))
                .await
                .unwrap();
        }
    };
    let deployments = pipeline.dora.deployments().clone();
    let wait_for = |id: String| {
        let deployments = deployments.clone();
        async move {
            let start = Instant::now();
            loop {
                if let Some(d) = deployments.get(&id).await.unwrap() {
                    return d;
                }
                assert!(start.elapsed() < Duration::from_secs(30), "deployment {id} not recorded in time");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    apply(write("Synced", "Healthy", "bbb2222", &history)).await;
    let ok = wait_for(format!("{app}:east:production:bbb2222")).await;
    assert_eq!(ok.status, DeploymentStatus::Success as i32);
    assert_eq!(ok.environment, DeploymentEnvironment::Production as i32);
    assert_eq!(
        (ok.application.as_str(), ok.argocd_namespace.as_str()),
        (format!("{app}-east").as_str(), argo_ns.as_str())
    );
    assert_eq!(ok.deployed_at.unwrap().seconds, 1_796_119_200, "ArgoCD's history time, not the time it was seen");
    assert_eq!(ok.images[0].commit_sha, "3f9a1c2");

    // A new sync in progress is not a deployment yet; once degraded it is a failed one.
    let mut longer = history.as_array().unwrap().clone();
    longer.push(json!({"id": 2, "revision": "ccc3333", "deployedAt": "2026-12-01T11:00:00Z",
        "source": {"repoURL": "https://github.com/acme/infra", "path": "apps/shop/production"}}));
    let longer = serde_json::Value::Array(longer);
    apply(write("Synced", "Progressing", "ccc3333", &longer)).await;
    apply(write("Synced", "Degraded", "ccc3333", &longer)).await;
    let failed = wait_for(format!("{app}:east:production:ccc3333")).await;
    assert_eq!(failed.status, DeploymentStatus::Failed as i32);
    assert_eq!(failed.health_status, "Degraded");

    // Exactly these two, however often the controller requeued.
    let (all, total) = deployments.list(&Default::default(), 0, 100).await.unwrap();
    assert_eq!(total, 2, "{:?}", all.iter().map(|d| &d.id).collect::<Vec<_>>());

    stop_controller.trigger();
    stop_pipeline.trigger();
    let _ = pipeline.served.await;
    pipeline.store.close().await;
    let _ = Api::<Namespace>::all(client).delete(&argo_ns, &Default::default()).await;
    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
