//! `dorgu watch` through a real gateway to a real reconciler (PersonaService over mTLS) on the
//! test bench's kube-apiserver: the user's `persys login` session, the snapshot, and a live
//! change a later watch resumes into.

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
