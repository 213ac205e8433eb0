//! The admission webhook: registered with the test bench's real kube-apiserver, which calls it
//! over HTTPS for Deployments and StatefulSets in the test's namespaces; and its answers to
//! requests it cannot read or cannot check, without a cluster.

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, apps::v1::Deployment, core::v1::Namespace,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use persys_crds::persona::ApplicationPersona;
use persys_kit::{
    identity::Identity,
    pki::{Ca, LeafRequest},
    shutdown,
    tls::{Tls, TlsPaths},
};
use persys_reconciler::{config::Mode, webhook::Webhook};
use serde_json::json;

mod common;

const MANAGER: &str = "persys-tests";

/// A client for a server that is not there: every call fails to connect.
fn dead_client() -> Client {
    Client::try_from(Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap()
}

fn review(kind: &str, object: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "0f5c7e2a-1111-4c3b-9d55-2a4d2f1e0001",
            "kind": {"group": "apps", "version": "v1", "kind": kind},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "shop", "namespace": "apps", "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": object, "dryRun": false,
        }
    }))
    .unwrap()
}

fn response(review: &kube::core::admission::AdmissionReview<kube::core::DynamicObject>) -> serde_json::Value {
    serde_json::to_value(review).unwrap()["response"].clone()
}

#[tokio::test]
async fn unreadable_requests_get_a_well_formed_denial() {
    let hook = Webhook::new(dead_client(), Mode::Enforcing, false);
    for body in [&b"not json"[..], b"{}", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, b"[1,2]"]
    {
        let r = response(&hook.review(body).await);
        assert_eq!(r["allowed"], false, "{r}");
        assert!(!r["status"]["message"].as_str().unwrap_or("").is_empty(), "a reason is given: {r}");
    }
    // A Deployment body that is not a Deployment is denied with the reason, uid kept.
    let r = response(&hook.review(&review("Deployment", json!({"spec": {"replicas": "two"}}))).await);
    assert_eq!(r["allowed"], false);
    assert_eq!(r["uid"], "0f5c7e2a-1111-4c3b-9d55-2a4d2f1e0001");
    assert!(r["status"]["message"].as_str().unwrap().contains("cannot be read"), "{r}");
}

#[tokio::test]
async fn a_failed_persona_lookup_follows_the_failure_policy() {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "shop", "namespace": "apps"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let open = response(
        &Webhook::new(dead_client(), Mode::Enforcing, true).review(&review("Deployment", deployment.clone())).await,
    );
    assert_eq!(open["allowed"], true, "{open}");
    assert!(open["warnings"][0].as_str().unwrap().contains("skipped"), "{open}");
    let closed =
        response(&Webhook::new(dead_client(), Mode::Enforcing, false).review(&review("Deployment", deployment)).await);
    assert_eq!(closed["allowed"], false, "{closed}");
    assert!(
        closed["status"]["message"].as_str().unwrap().contains("persona check of Deployment shop failed"),
        "{closed}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
    #[test]
    fn any_body_gets_an_answer(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt.block_on(async { response(&Webhook::new(dead_client(), Mode::Enforcing, false).review(&body).await) });
        proptest::prop_assert!(r.is_object());
        proptest::prop_assert!(r["allowed"].is_boolean());
    }
}

fn deployment(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"pod": name}},
            "template": {
                "metadata": {"labels": {"pod": name}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true},
                    "containers": [{"name": "app", "image": "registry.invalid/app:1",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]
                }
            }
        }
    })
}

fn persona(name: &str, annotations: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"name": name, "type": "api", "scaling": {"minReplicas": 2, "maxReplicas": 4}}})
}

async fn create(api: &Api<Deployment>, value: &serde_json::Value, dry_run: bool) -> Result<Deployment, kube::Error> {
    let params = PostParams { dry_run, ..PostParams::default() };
    api.create(&params, &serde_json::from_value(value.clone()).unwrap()).await
}

fn denial(result: Result<Deployment, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(status)) => status.message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn registered_with_the_api_server_it_denies_in_enforcing_mode_and_warns_in_advisory() {
    let Some(kubeconfig) =
        persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")
    else {
        return;
    };
    let Some(kubectl) = persys_kit::testing::require_env("PERSYS_TEST_KUBECTL", "kubectl from scripts/tools/build")
    else {
        return;
    };
    let client = persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap();
    common::install_crds(&client, vec![]).await;
    let pid = std::process::id();

    // The webhook's certificate, for 127.0.0.1, from a CA the registration names.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("webhook-test-ca", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue(&LeafRequest {
            identity: Identity::Service("reconciler".into()),
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    let paths =
        TlsPaths { ca: dir.path().join("ca.pem"), cert: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
    std::fs::write(&paths.ca, ca.cert_pem()).unwrap();
    std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&paths.key, &leaf.key_pem).unwrap();
    let tls: Arc<Tls> = Tls::load(paths).unwrap();
    let (_trigger, stop) = shutdown::channel();
    let (listener, addr) = persys_kit::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let router = Webhook::new(client.clone(), Mode::Advisory, false).router();
    tokio::spawn(async move { persys_kit::server::serve_https(listener, router, &tls, stop).await });

    // Two namespaces of this test: one enforcing by label, one left to the default (advisory).
    let namespaces = Api::<Namespace>::all(client.clone());
    let enforcing = format!("webhook-enforcing-{pid}");
    let advisory = format!("webhook-advisory-{pid}");
    for (ns, mode) in [(&enforcing, Some("enforcing")), (&advisory, None)] {
        let mut labels = json!({"persys-webhook-test": pid.to_string()});
        if let Some(mode) = mode {
            labels["dorgu.io/webhook-mode"] = json!(mode);
        }
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns, "labels": labels}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let name = format!("persys-webhook-test-{pid}");
    let registration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"persys-test": "reconciler-webhook"}},
        "webhooks": [{
            "name": "validate.persona.dorgu.io",
            "clientConfig": {
                "url": format!("https://{addr}/validate"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
            },
            "rules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments", "statefulsets"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"persys-webhook-test": pid.to_string()}},
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 10,
        }]
    });
    let hooks = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    // A run that failed half-way left its registration (and namespaces): remove them first.
    let stale = hooks.list(&kube::api::ListParams::default().labels("persys-test=reconciler-webhook")).await.unwrap();
    for old in stale.items {
        hooks.delete(&old.name_any(), &DeleteParams::default()).await.unwrap();
    }
    hooks.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&registration)).await.unwrap();

    let personas_enforcing = Api::<ApplicationPersona>::namespaced(client.clone(), &enforcing);
    personas_enforcing
        .patch("shop", &PatchParams::apply(MANAGER), &Patch::Apply(&persona("shop", json!({}))))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &enforcing);

    // The API server picks registrations up asynchronously: dry-run the violating Deployment
    // until the webhook answers it (a dry run has no effect, and the webhook has no side effects).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let message = loop {
        match create(&deployments, &deployment("shop", 1), true).await {
            Err(kube::Error::Api(status)) => break status.message,
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("the webhook never answered: {other:?}"),
        }
    };
    assert!(message.contains("violates ApplicationPersona shop") && message.contains("spec.replicas"), "{message}");

    // Enforcing: the violating Deployment is refused for real; a compliant one is admitted; an
    // update that breaks it is refused and the stored object keeps two replicas.
    let refused = denial(create(&deployments, &deployment("shop", 1), false).await);
    assert!(refused.contains("1 replica(s), below the persona's minimum 2"), "{refused}");
    assert!(deployments.get_opt("shop").await.unwrap().is_none(), "nothing was stored");
    create(&deployments, &deployment("shop", 2), false).await.expect("a compliant Deployment is admitted");
    let scale_down = Patch::Merge(json!({"spec": {"replicas": 1}}));
    let refused = match deployments.patch("shop", &PatchParams::default(), &scale_down).await {
        Err(kube::Error::Api(status)) => status.message,
        other => panic!("the update was not refused: {other:?}"),
    };
    assert!(refused.contains("violates ApplicationPersona shop"), "{refused}");
    assert_eq!(deployments.get("shop").await.unwrap().spec.replicas, Some(2));
    // No persona describes this one: admitted whatever it does.
    create(&deployments, &deployment("other", 1), false).await.expect("no persona, no check");

    // Advisory (the default here): admitted, with the error as a warning kubectl prints.
    let personas_advisory = Api::<ApplicationPersona>::namespaced(client.clone(), &advisory);
    personas_advisory
        .patch("shop", &PatchParams::apply(MANAGER), &Patch::Apply(&persona("shop", json!({}))))
        .await
        .unwrap();
    // tokio's process, not std's: the webhook answers on this test's runtime meanwhile.
    let mut child = tokio::process::Command::new(&kubectl)
        .args(["--kubeconfig", &kubeconfig, "-n", &advisory, "create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(deployment("shop", 1).to_string().as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "advisory admits it: {stderr}");
    assert!(stderr.contains("Warning: ApplicationPersona shop (error, advisory): spec.replicas"), "{stderr}");

    // The persona's annotation overrides the namespace: enforcing for this persona only.
    personas_advisory
        .patch(
            "strict",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&persona("strict", json!({"dorgu.io/webhook-mode": "enforcing"}))),
        )
        .await
        .unwrap();
    let advisory_deployments = Api::<Deployment>::namespaced(client.clone(), &advisory);
    let refused = denial(create(&advisory_deployments, &deployment("strict", 1), false).await);
    assert!(refused.contains("violates ApplicationPersona strict"), "{refused}");

    hooks.delete(&name, &DeleteParams::default()).await.unwrap();
    for ns in [&enforcing, &advisory] {
        namespaces.delete(ns, &DeleteParams::default()).await.unwrap();
    }
}
