//! The persona controller's decisions per second, pure (no API server): for 5,000 personas,
//! each among its namespace's 20 Deployments, resolution + validation with the shared rules +
//! health + phase + conditions + recommendations (`decide_status`). Beside it, in the same run,
//! the baseline every reconcile that writes also pays: encoding the status as the JSON body of
//! its server-side apply. Prints figures; asserts nothing.
//!
//!   cargo bench -p persys-reconciler --bench decide

use std::time::Instant;

use k8s_openapi::{api::apps::v1::Deployment, jiff::Timestamp};
use persys_crds::persona::ApplicationPersona;
use persys_reconciler::persona::{Workload, decide_status};
use serde_json::json;

const PERSONAS: usize = 5_000;
const PER_NAMESPACE: usize = 20;

fn deployment(ns: usize, i: usize, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": format!("app-{i}"), "namespace": format!("ns-{ns}"), "generation": 1,
            "labels": {"app.kubernetes.io/name": format!("app-{i}")}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"pod": format!("app-{i}")}},
            "template": {"metadata": {"labels": {"pod": format!("app-{i}")}}, "spec": {
                "securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "app", "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false}}]}}},
        "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
    }))
    .unwrap()
}

fn persona(ns: usize, i: usize) -> ApplicationPersona {
    serde_json::from_value(json!({
        "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": format!("app-{i}"), "namespace": format!("ns-{ns}"), "generation": 1},
        "spec": {"name": format!("app-{i}"), "type": "api",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "scaling": {"minReplicas": 2, "maxReplicas": 6},
            "health": {"livenessPath": "/health", "readinessPath": "/ready", "port": 8080},
            "policies": {"security": {"runAsNonRoot": true, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false}}}
    }))
    .unwrap()
}

fn main() {
    let namespaces = PERSONAS / PER_NAMESPACE;
    let workloads: Vec<Vec<Workload>> = (0..namespaces)
        .map(|ns| {
            (0..PER_NAMESPACE)
                .map(|i| Workload::from_deployment(&deployment(ns, i, if i % 5 == 0 { 1 } else { 3 })))
                .collect()
        })
        .collect();
    let personas: Vec<ApplicationPersona> =
        (0..namespaces).flat_map(|ns| (0..PER_NAMESPACE).map(move |i| persona(ns, i))).collect();
    let now = Timestamp::now();

    // Warm up, then measure three rounds each and keep the best.
    let mut best_decide = f64::MAX;
    let mut best_encode = f64::MAX;
    let mut errors = 0;
    for round in 0..4 {
        let t = Instant::now();
        let statuses: Vec<_> = personas
            .iter()
            .enumerate()
            .map(|(k, p)| decide_status(p, &workloads[k / PER_NAMESPACE], Vec::new(), now))
            .collect();
        let decide = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let bytes: usize = statuses
            .iter()
            .map(|s| {
                serde_json::to_vec(&json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "status": s}))
                    .unwrap()
                    .len()
            })
            .sum();
        let encode = t.elapsed().as_secs_f64();
        std::hint::black_box(bytes);
        if round > 0 {
            best_decide = best_decide.min(decide);
            best_encode = best_encode.min(encode);
        }
        errors = statuses.iter().filter(|s| s.phase.as_deref() == Some("Degraded")).count();
    }
    let n = PERSONAS as f64;
    println!("persona decisions, {PERSONAS} personas x {PER_NAMESPACE} Deployments per namespace (best of 3)");
    println!("{:<44} {:>12} {:>14}", "", "per second", "per persona");
    println!(
        "{:<44} {:>12.0} {:>12.1}us",
        "decide_status (resolve+validate+health+phase)",
        n / best_decide,
        best_decide / n * 1e6
    );
    println!(
        "{:<44} {:>12.0} {:>12.1}us",
        "baseline: encode the status apply body (JSON)",
        n / best_encode,
        best_encode / n * 1e6
    );
    println!(
        "ratio decide/encode: {:.1}x; {errors} of {PERSONAS} personas Degraded (1 replica below minimum 2)",
        best_decide / best_encode
    );
}
