//! `persys project`, `persys env` and `persys build` as a user runs them: the real binary,
//! through the real gateway, to the real reconciler's ProjectService (mTLS), reading Kapsa
//! objects from the test bench's kube-apiserver. The test writes the objects and their statuses
//! as the controllers and kpack would (the controllers themselves are tested in the
//! reconciler's `tests/kapsa.rs`).

use std::time::Duration;

use persys_e2e::{
    cluster::{Cluster, ClusterOptions, ReconcilerOptions},
    kubectl::Kubectl,
    stack::{ADMIN, ADMIN_PASSWORD},
};
use serde_json::{Value, json};

mod common;

use common::{Persys, code, text};

fn status(kube: &Kubectl, ns: &str, resource: &str, status: &Value) {
    let patch = json!({"status": status}).to_string();
    kube.run(&["patch", "-n", ns, resource, "--subresource=status", "--type=merge", "-p", &patch], None);
}

#[tokio::test]
async fn projects_environments_and_builds_list_get_and_watch_through_the_gateway() {
    let Some(kube) = Kubectl::from_env() else { return };
    kube.install_crds();
    kube.install_kpack_standin();
    let ns = format!("persys-projects-{}", std::process::id());
    kube.run(&["create", "namespace", &ns], None);

    // The reconciler serves, cluster-wide, as a follower: another replica holds its Lease.
    let reconciler = ReconcilerOptions::follower(&kube, &ns);
    // What the controllers would have written: a project, its environments, its builds.
    kube.apply(&json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project", "metadata": {"name": "api", "namespace": ns},
        "spec": {"repository": {"url": "https://git.example.com/api.git", "pollInterval": 120},
            "build": {"strategy": "buildpack"}, "registry": {"name": "harbor", "imageRepository": "team/api"},
            "domain": {"subdomain": "api", "domainPoolRef": "apps"},
            "environments": [{"name": "prod", "autoSync": true}],
            "previewEnvironments": {"enabled": true, "ttl": "24h", "branches": {"include": ["feature/*"]}}}}),
    );
    let good = "registry.example.com/team/api@sha256:aaaa";
    status(
        &kube,
        &ns,
        "projects.kapsa-project.io/api",
        &json!({"latestCommit": "0123456789abcdef0123456789abcdef01234567", "latestImage": good,
            "namespace": format!("{ns}-api"),
            "branches": [{"name": "feature/x", "commit": "89abcdef0123456789abcdef0123456789abcdef", "slug": "feature-x",
                "failedCommit": "89abcdef0123456789abcdef0123456789abcdef"}],
            "environments": [{"name": "prod", "ready": true, "url": "https://api.apps.example.com", "type": "permanent"},
                {"name": "preview-feature-x", "ready": false, "type": "preview"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "1/2 environment(s) running",
                "lastTransitionTime": "2026-12-01T00:00:00Z"},
                {"type": "BuildSucceeded", "status": "False", "reason": "BuildFailed", "message": "feature/x at 89abcde: build step exited 1",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]}),
    );
    let env = |name: &str, kind: &str, branch: &str| {
        json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment",
            "metadata": {"name": name, "namespace": ns, "labels": {"kapsa-project.io/project": "api", "kapsa-project.io/project-namespace": ns}},
            "spec": {"projectRef": {"name": "api", "namespace": ns}, "type": kind, "branch": branch}})
    };
    kube.apply(&env("prod", "permanent", "main"));
    kube.apply(&env("preview-feature-x", "preview", "feature/x"));
    status(
        &kube,
        &ns,
        "environments.kapsa-project.io/prod",
        &json!({"phase": "Running", "image": good, "urls": ["https://api.apps.example.com"],
            "resources": {"deploymentName": "prod", "serviceName": "prod", "ingressName": "prod"}}),
    );
    status(&kube, &ns, "environments.kapsa-project.io/preview-feature-x", &json!({"phase": "Building"}));
    let image = |name: &str, branch: &str, commit: &str| {
        json!({"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"kapsa-project.io/project": "api", "kapsa-project.io/project-namespace": ns},
                "annotations": {"kapsa-project.io/branch-name": branch, "kapsa-project.io/commit": commit}},
            "spec": {"tag": "registry.example.com/team/api:x", "source": {"git": {"url": "https://git.example.com/api.git", "revision": commit}}}})
    };
    kube.apply(&image("build-main", "main", "0123456789abcdef0123456789abcdef01234567"));
    kube.apply(&image("build-feature-x", "feature/x", "89abcdef0123456789abcdef0123456789abcdef"));
    status(
        &kube,
        &ns,
        "images.kpack.io/build-main",
        &json!({"observedGeneration": 1, "latestImage": good, "buildCounter": 3,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}),
    );
    status(
        &kube,
        &ns,
        "images.kpack.io/build-feature-x",
        &json!({"observedGeneration": 1, "buildCounter": 1,
            "conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "build step exited 1",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]}),
    );

    let cluster = Cluster::start(ClusterOptions { reconciler: Some(reconciler), ..Default::default() })
        .await
        .expect("scheduler, reconciler and gateway start");
    let cli = Persys::new(cluster.url());

    // Not logged in: refused, saying how to log in.
    let anonymous = cli.run(&["project", "list"]).await;
    assert_ne!(code(&anonymous), 0);
    assert!(text(&anonymous.stderr).contains("persys login"), "{}", text(&anonymous.stderr));
    cli.login(ADMIN, ADMIN_PASSWORD).await;

    // Projects: the table, and every field as JSON.
    let table = cli.ok(&["project", "list", "-n", &ns]).await;
    let row = table.lines().find(|l| l.contains(" api ")).unwrap_or_else(|| panic!("no api row:\n{table}"));
    for cell in ["https://git.example.com/api.git", "True", "1/2", good] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    let projects = cli.json(&["project", "list", "-n", &ns]).await;
    assert_eq!(projects.as_array().map(Vec::len), Some(1), "{projects}");
    let p = &projects[0];
    assert_eq!(p["metadata"]["name"], "api");
    assert_eq!(p["poll_interval_seconds"], 120);
    assert_eq!(p["latest_image"], good);
    assert_eq!(p["previews"]["include"], json!(["feature/*"]));
    assert_eq!(p["environments_namespace"], format!("{ns}-api"));
    assert_eq!(p["branches"][0]["slug"], "feature-x");
    let described = cli.ok(&["project", "get", "api", "-n", &ns]).await;
    for text in ["BuildSucceeded", "BuildFailed", "feature/x at 89abcde", "https://api.apps.example.com", "team/api"] {
        assert!(described.contains(text), "{text} not in:\n{described}");
    }
    let branch = described.lines().find(|l| l.trim_start().starts_with("feature/x ")).unwrap_or_default();
    assert!(
        branch.contains("89abcde") && branch.contains("build failed"),
        "no failed feature/x branch row:\n{described}"
    );
    assert!(described.contains(&format!("{ns}-api")), "the project's namespace is not shown:\n{described}");
    let missing = cli.run(&["project", "get", "nope", "-n", &ns]).await;
    assert_ne!(code(&missing), 0);
    assert!(text(&missing.stderr).contains("nope"), "{}", text(&missing.stderr));

    // Environments: filtered by type.
    let previews = cli.json(&["env", "list", "-n", &ns, "--type", "preview"]).await;
    let names: Vec<&str> = previews.as_array().unwrap().iter().filter_map(|e| e["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["preview-feature-x"]);
    assert_eq!(previews[0]["phase"], "Building");
    let prod = cli.json(&["env", "get", "prod", "-n", &ns]).await;
    assert_eq!((prod["phase"].as_str(), prod["image"].as_str()), (Some("Running"), Some(good)));
    assert_eq!(prod["urls"], json!(["https://api.apps.example.com"]));

    // Builds: the failed one with kpack's reason.
    let builds = cli.json(&["build", "list", "-n", &ns]).await;
    let failed = builds
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["metadata"]["name"] == "build-feature-x")
        .unwrap_or_else(|| panic!("{builds}"));
    assert_eq!((failed["phase"].as_str(), failed["branch"].as_str()), (Some("Failed"), Some("feature/x")));
    assert!(failed["message"].as_str().unwrap_or_default().contains("build step exited 1"), "{failed}");
    let built = cli.json(&["build", "get", "build-main", "-n", &ns]).await;
    assert_eq!((built["phase"].as_str(), built["image"].as_str()), (Some("Succeeded"), Some(good)));

    // Watch: the snapshot, then a change as it happens.
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_persys"))
        .args(["env", "watch", "-n", &ns, "-o", "json"])
        .env("HOME", cli.home.path())
        .env("XDG_CONFIG_HOME", cli.home.path().join(".config"))
        .env("PERSYS_SERVER", &cli.server)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let mut snapshot = Vec::new();
    while snapshot.len() < 2 {
        let e = next().await;
        if let Some(name) = e["object"]["metadata"]["name"].as_str() {
            assert_eq!(e["type"], "Added", "{e}");
            snapshot.push(name.to_owned());
        }
    }
    snapshot.sort();
    assert_eq!(snapshot, ["preview-feature-x", "prod"]);
    status(&kube, &ns, "environments.kapsa-project.io/preview-feature-x", &json!({"phase": "Running"}));
    loop {
        let e = next().await;
        if e["object"]["metadata"]["name"] == "preview-feature-x" && e["object"]["phase"] == "Running" {
            assert_eq!(e["type"], "Modified", "{e}");
            break;
        }
    }
    watch.kill().await.unwrap();
    kube.run(&["delete", "namespace", &ns, "--wait=false"], None);
}
