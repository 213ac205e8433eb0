//! `dorgu watch`, `dorgu persona status` and `dorgu cluster status` through a real gateway to a
//! real reconciler (PersonaService over mTLS) on the test bench's kube-apiserver: the user's
//! `persys login` session, the snapshot, a live change a later watch resumes into, and statuses
//! that read the same through the gateway as from the API server.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use persys_client::{Connection, store::Store};
use persys_e2e::kubectl::Kubectl;
use persys_e2e::{
    cluster::{Cluster, ClusterOptions, ReconcilerOptions},
    stack::{ADMIN, ADMIN_PASSWORD},
};
use serde_json::Value;

fn dorgu(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dorgu"))
        .args(args)
        .env("PERSYS_CONFIG_DIR", config_dir)
        .env("DORGU_CONFIG_DIR", config_dir)
        .env_remove("PERSYS_TOKEN")
        .env_remove("DORGU_SERVER")
        .output()
        .unwrap()
}

/// A child process killed when dropped, so a failing assertion leaks no watch.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "dorgu failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[tokio::test]
async fn watch_personas_through_the_gateway_from_a_snapshot_and_live() {
    let Some(kube) = Kubectl::from_env() else { return };
    kube.install_crds();
    let namespace = format!("dorgu-watch-{}", std::process::id());
    kube.run(&["create", "namespace", &namespace], None);

    let cluster = Cluster::start(ClusterOptions {
        reconciler: Some(ReconcilerOptions {
            kubeconfig: kube.kubeconfig.clone(),
            namespace: namespace.clone(),
            projects_follower: false,
        }),
        ..Default::default()
    })
    .await
    .expect("scheduler, reconciler and gateway start");
    let server = cluster.url();
    let home = tempfile::tempdir().unwrap();

    // Not logged in: the CLI says how to log in, and fails.
    let anonymous = dorgu(home.path(), &["watch", "personas", "-n", &namespace, "--server", &server, "--limit", "1"]);
    assert!(!anonymous.status.success());
    let err = String::from_utf8_lossy(&anonymous.stderr);
    assert!(err.contains("persys login --server"), "{err}");

    let store = Store::at(home.path().join("credentials.json"));
    persys_client::login(&Connection::new(&server, None).unwrap(), &store, ADMIN, ADMIN_PASSWORD).await.unwrap();

    // A persona allowing at most 3 replicas and its Deployment; the reconciler reports on it.
    let persona = serde_json::json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"name": "web", "type": "api", "scaling": {"minReplicas": 1, "maxReplicas": 3}}});
    let deployment = |replicas: i32| {
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"pod": "web"}},
                "template": {"metadata": {"labels": {"pod": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/web:1"}]}}}})
        .to_string()
    };
    let apply =
        |body: &str| kube.run(&["apply", "--server-side", "--field-manager=persys-tests", "-f", "-"], Some(body));
    apply(&persona.to_string());
    apply(&deployment(1));
    kube.run(
        &[
            "wait",
            "-n",
            &namespace,
            "--for=jsonpath={.status.workload.name}=web",
            "--timeout=60s",
            "applicationpersonas.dorgu.io/web",
        ],
        None,
    );

    // The snapshot: the persona as it is, with the resource version to resume from.
    let snapshot = json_lines(&dorgu(
        home.path(),
        &["--json", "watch", "personas", "-n", &namespace, "--server", &server, "--limit", "1"],
    ));
    assert_eq!(snapshot.len(), 1, "{snapshot:?}");
    let first = &snapshot[0];
    assert_eq!(
        (first["type"].as_str(), first["kind"].as_str()),
        (Some("ADDED"), Some("ApplicationPersona")),
        "{first}"
    );
    assert_eq!((first["namespace"].as_str(), first["name"].as_str()), (Some(namespace.as_str()), Some("web")));
    let issues_before = first["validationIssues"].as_u64().unwrap();
    let since = first["resourceVersion"].as_str().unwrap().to_owned();
    assert!(!since.is_empty());

    // Resumed from there, the watch sees the change the reconciler reports when the Deployment
    // goes above the persona's maximum, and nothing is printed twice.
    let mut follower = Killed(
        Command::new(env!("CARGO_BIN_EXE_dorgu"))
            .args(["--json", "watch", "personas", "web", "-n", &namespace, "--server", &server, "--since", &since])
            .env("PERSYS_CONFIG_DIR", home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (lines_tx, lines) = mpsc::channel();
    let stdout = follower.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    apply(&deployment(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let changed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no change within 60 s; saw {seen:?}"));
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["name"], "web", "{event}");
        assert_ne!(event["resourceVersion"].as_str(), Some(since.as_str()), "an event before --since was repeated");
        if event["validationIssues"].as_u64().unwrap() > issues_before {
            break event;
        }
        seen.push(event);
    };
    assert_eq!(changed["type"], "MODIFIED", "{changed}");
    drop(follower);

    // The human form: one aligned line per persona.
    let text = dorgu(home.path(), &["watch", "personas", "-n", &namespace, "--server", &server, "--limit", "1"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.starts_with("ADDED     ApplicationPersona  "), "{text}");
    assert!(text.contains(&format!("{namespace}/web")), "{text}");

    kube.run(&["delete", "namespace", &namespace, "--wait=false"], None);
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "dorgu failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn persona_and_cluster_status_read_the_same_through_the_gateway_as_from_the_api_server() {
    let Some(kube) = Kubectl::from_env() else { return };
    kube.install_crds();
    let namespace = format!("dorgu-status-{}", std::process::id());
    let cluster_name = format!("dorgu-status-{}", std::process::id());
    kube.run(&["create", "namespace", &namespace], None);
    let apply = |body: serde_json::Value| kube.apply(&body);
    let write_status = |resource: &str, namespaced: bool, status: serde_json::Value| {
        let patch = serde_json::json!({ "status": status }).to_string();
        let mut args = vec!["patch", resource, "--subresource=status", "--type=merge", "-p", &patch];
        if namespaced {
            args.extend(["-n", &namespace]);
        }
        kube.run(&args, None);
    };

    // A cluster-wide reconciler serving from its caches as a follower (another replica holds
    // its Lease), so no controller rewrites the statuses written here.
    let reconciler = ReconcilerOptions::follower(&kube, &namespace);

    // Every part of a persona's status the formatter prints. Not `workload.matchedBy`: the
    // contract does not carry it (the one difference, checked below).
    apply(serde_json::json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": "shop", "namespace": namespace}, "spec": {"name": "shop", "type": "api"}}));
    write_status(
        "applicationpersonas.dorgu.io/shop",
        true,
        serde_json::json!({
            "phase": "Degraded", "lastUpdated": "2026-12-06T10:00:00Z", "observedGeneration": 1,
            "workload": {"kind": "Deployment", "name": "shop"},
            "deployments": {"current": "shop:2", "lastSuccessful": "shop:1", "lastFailed": "shop:0"},
            "health": {"status": "Unhealthy", "lastCheck": "2026-12-06T09:59:00Z", "message": "1/3 replicas ready",
                "readyReplicas": 1, "desiredReplicas": 3,
                "podFailures": [{"podName": "shop-1", "container": "app", "reason": "CrashLoopBackOff", "message": "exit 1"}]},
            "validation": {"passed": false, "lastChecked": "2026-12-06T09:58:00Z", "issues": [
                {"severity": "error", "rule": "resources", "field": "spec.replicas", "message": "5 replicas exceed the maximum 3",
                    "suggestion": "scale to at most 3"},
                {"severity": "warning", "rule": "probes", "message": "no readiness probe"}]},
            "learned": {"resourceBaseline": {"avgCPU": "250m", "peakCPU": "500m", "avgMemory": "258Mi", "peakMemory": "512Mi"},
                "lastLearned": "2026-12-06T09:00:00Z"},
            "recommendations": [{"type": "resource", "priority": "high", "message": "peak memory 512Mi is 200% of the limit",
                "action": "raise resources.limits.memory to at least 640Mi"}],
            "argoCD": {"syncStatus": "OutOfSync", "healthStatus": "Progressing", "lastSyncTime": "2026-12-06T09:30:00Z",
                "revision": "0123456789abcdef0123456789abcdef01234567", "applicationName": "shop", "applicationNamespace": "argocd"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "ValidationFailed", "message": "1 error",
                "lastTransitionTime": "2026-12-06T09:58:00Z", "observedGeneration": 1}]
        }),
    );
    apply(serde_json::json!({"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona",
        "metadata": {"name": cluster_name}, "spec": {"name": cluster_name}}));
    write_status(
        &format!("clusterpersonas.dorgu.io/{cluster_name}"),
        false,
        serde_json::json!({
            "phase": "Ready", "lastDiscovery": "2026-12-06T10:00:00Z", "platform": "Kind",
            "kubernetesVersion": "v1.37.2", "applicationCount": 3,
            "nodes": [{"name": "worker-1", "role": "worker", "ready": false, "kubeletVersion": "v1.37.2",
                "containerRuntime": "containerd://2.1.0", "taints": ["node.kubernetes.io/not-ready:NoSchedule"],
                "labels": {"kubernetes.io/hostname": "worker-1"},
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"}}],
            "resourceSummary": {"nodeCount": 1, "totalCPU": "4", "allocatableCPU": "3800m", "usedCPU": "500m",
                "cpuUtilization": 13, "memoryUtilization": 40, "totalMemory": "8Gi", "allocatableMemory": "7Gi",
                "usedMemory": "2800Mi", "totalPods": 2, "runningPods": 1},
            "namespaces": {"total": 5, "active": 4, "withPersonas": 2},
            "addons": [{"name": "argocd", "type": "gitops", "installed": true, "healthy": false, "version": "v3.1.0", "namespace": "argocd"},
                {"name": "istio", "type": "service-mesh", "installed": false}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Discovered", "message": "",
                "lastTransitionTime": "2026-12-06T10:00:00Z"}]
        }),
    );

    let cluster = Cluster::start(ClusterOptions { reconciler: Some(reconciler), ..Default::default() })
        .await
        .expect("scheduler, reconciler and gateway start");
    let server = cluster.url();
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path().join("credentials.json"));
    persys_client::login(&Connection::new(&server, None).unwrap(), &store, ADMIN, ADMIN_PASSWORD).await.unwrap();
    let via_gateway = |args: &[&str]| dorgu(home.path(), &[args, &["--server", server.as_str()][..]].concat());
    let via_api_server =
        |args: &[&str]| dorgu(home.path(), &[args, &["--kubeconfig", kube.kubeconfig.as_str()][..]].concat());

    let persona = ["persona", "status", "shop", "-n", namespace.as_str()];
    let text = stdout(&via_gateway(&persona));
    assert_eq!(text, stdout(&via_api_server(&persona)), "the same persona status both ways");
    for want in [
        "phase:      Degraded",
        "workload:   Deployment/shop\n",
        "health:     Unhealthy 1/3 replicas ready (1/3 ready)",
        "shop-1/app: CrashLoopBackOff exit 1",
        "validation: failed",
        "fix: scale to at most 3",
        "argocd:     OutOfSync / Progressing at 0123456789ab, synced 2026-12-06T09:30:00Z (Application argocd/shop)",
        "baseline:   cpu avg 250m peak 500m, memory avg 258Mi peak 512Mi",
        "[high] resource: peak memory 512Mi is 200% of the limit",
        "ValidationFailed",
        "updated:    2026-12-06T10:00:00Z",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let json_of = |out: &Output| -> Value { serde_json::from_str(&stdout(out)).unwrap() };
    let persona_json = [&["--json"][..], &persona[..]].concat();
    assert_eq!(json_of(&via_gateway(&persona_json)), json_of(&via_api_server(&persona_json)));

    // The one difference: which label matched is not in the contract.
    write_status(
        "applicationpersonas.dorgu.io/shop",
        true,
        serde_json::json!({"workload": {"kind": "Deployment", "name": "shop", "matchedBy": "app.kubernetes.io/name"}}),
    );
    assert!(stdout(&via_api_server(&persona)).contains("Deployment/shop (matched by app.kubernetes.io/name)"));

    let cluster_status = ["cluster", "status", cluster_name.as_str()];
    let text = stdout(&via_gateway(&cluster_status));
    assert_eq!(text, stdout(&via_api_server(&cluster_status)), "the same cluster status both ways");
    for want in ["platform:   Kind", "cpu:        500m requested of 3800m allocatable (13%)", "worker-1", "argocd"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("istio"), "{text}");
    let cluster_json = [&["--json"][..], &cluster_status[..]].concat();
    assert_eq!(json_of(&via_gateway(&cluster_json)), json_of(&via_api_server(&cluster_json)));

    // What does not exist is named, through the gateway as from the API server.
    let missing = via_gateway(&["persona", "status", "nope", "-n", namespace.as_str()]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains(&format!("ApplicationPersona {namespace}/nope")) && err.contains(&server), "{err}");

    kube.run(&["delete", "clusterpersonas.dorgu.io", &cluster_name], None);
    kube.run(&["delete", "namespace", &namespace, "--wait=false"], None);
}
