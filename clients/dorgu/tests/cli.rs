//! The real dorgu binary against the analyzer's corpus: offline output equals the library's
//! byte for byte, the files written are the files generated, and config, init, validate and
//! persona behave as documented.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use persys_analyzer::{analyze_tree, tree::SourceTree};
use persys_e2e::kubectl::Kubectl;
use persys_proto::analyzer::v1::{AnalyzeMetadata, AnalyzeOptions, LlmProvider};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/analyzer/tests/fixtures")
}

fn dorgu(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dorgu"))
        .args(args)
        .env("DORGU_CONFIG_DIR", config_dir)
        .env_remove("KUBECONFIG")
        .output()
        .expect("dorgu runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_dir_files(dir: &Path) -> Vec<(String, String)> {
    let tree = SourceTree::from_dir(dir).unwrap();
    tree.files().map(|(p, c)| (p.to_owned(), String::from_utf8(c.to_vec()).unwrap())).collect()
}

#[test]
fn generate_writes_exactly_what_the_library_generates() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["compose-shop", "go-gin", "python-django", "ruby-rails", "dotnet-aspnet"] {
        let app = fixtures().join(name);
        let out_dir = tmp.path().join(name);
        ok(&dorgu(
            tmp.path(),
            &["generate", app.to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "-n", "apps", "--name", name],
        ));
        let meta = AnalyzeMetadata {
            name: name.into(),
            namespace: "apps".into(),
            host: String::new(),
            options: Some(AnalyzeOptions { llm_provider: LlmProvider::None as i32, ..AnalyzeOptions::default() }),
        };
        let expected = analyze_tree(&SourceTree::from_dir(&app).unwrap(), &meta).unwrap();
        let mut want: Vec<(String, String)> =
            expected.manifests.iter().map(|m| (m.path.clone(), m.content.clone())).collect();
        want.sort();
        assert_eq!(read_dir_files(&out_dir), want, "{name}");
    }
}

#[test]
fn dry_run_prints_and_json_is_parseable() {
    let tmp = tempfile::tempdir().unwrap();
    let app = fixtures().join("rust-axum");
    let text = ok(&dorgu(tmp.path(), &["generate", app.to_str().unwrap(), "--dry-run", "--name", "ledger"]));
    assert!(text.contains("--- deployment.yaml ---") && text.contains("kind: Deployment"), "{text}");
    assert!(!tmp.path().join("k8s").exists());
    let json = ok(&dorgu(
        tmp.path(),
        &["--json", "generate", app.to_str().unwrap(), "--dry-run", "--format", "json", "--name", "ledger"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["result"]["framework"], "axum");
    let deployment = v["files"].as_array().unwrap().iter().find(|f| f["path"] == "deployment.yaml").unwrap();
    let obj: serde_json::Value = serde_json::from_str(deployment["content"].as_str().unwrap()).unwrap();
    assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
}

#[test]
fn config_round_trips_and_masks_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    ok(&dorgu(tmp.path(), &["config", "set", "defaults.namespace", "shop"]));
    ok(&dorgu(tmp.path(), &["config", "set", "llm.api_key", "sk-abcdefghijklmnop"]));
    assert_eq!(ok(&dorgu(tmp.path(), &["config", "get", "defaults.namespace"])).trim(), "shop");
    let list = ok(&dorgu(tmp.path(), &["config", "list"]));
    assert!(list.contains("llm.api_key = sk-a****mnop") && !list.contains("sk-abcdefghijklmnop"), "{list}");
    assert_eq!(
        ok(&dorgu(tmp.path(), &["config", "path"])).trim(),
        tmp.path().join("config.yaml").display().to_string()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(tmp.path().join("config.yaml")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(!dorgu(tmp.path(), &["config", "set", "llm.provider", "skynet"]).status.success());
    // The model is reached over https:// or http://, nothing else.
    assert!(!dorgu(tmp.path(), &["config", "set", "llm.endpoint", "ftp://api.openai.com/v1"]).status.success());
    ok(&dorgu(tmp.path(), &["config", "set", "llm.endpoint", "https://api.openai.com/v1"]));
    ok(&dorgu(tmp.path(), &["config", "set", "llm.endpoint", "http://127.0.0.1:11434/v1/"]));
    assert_eq!(ok(&dorgu(tmp.path(), &["config", "get", "llm.endpoint"])).trim(), "http://127.0.0.1:11434/v1");
    assert!(!dorgu(tmp.path(), &["config", "get", "nope"]).status.success());
    // The namespace default reaches generation.
    let app = fixtures().join("go-echo");
    let text = ok(&dorgu(tmp.path(), &["generate", app.to_str().unwrap(), "--dry-run"]));
    assert!(text.contains("namespace: shop"), "{text}");
}

#[test]
fn init_writes_an_app_config_generation_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("notify");
    std::fs::create_dir(&app).unwrap();
    for f in ["go.mod", "server.go", "Dockerfile"] {
        std::fs::copy(fixtures().join("go-echo").join(f), app.join(f)).unwrap();
    }
    ok(&dorgu(tmp.path(), &["init", app.to_str().unwrap()]));
    let config = std::fs::read_to_string(app.join(".dorgu.yaml")).unwrap();
    assert!(config.contains("name: notify") && config.contains("path: /health"), "{config}");
    assert!(!dorgu(tmp.path(), &["init", app.to_str().unwrap()]).status.success(), "init must not overwrite");
    std::fs::write(app.join(".dorgu.yaml"), config.replace("tier: standard", "tier: critical")).unwrap();
    ok(&dorgu(tmp.path(), &["persona", "generate", app.to_str().unwrap(), "-o", tmp.path().to_str().unwrap()]));
    let persona = std::fs::read_to_string(tmp.path().join("persona.yaml")).unwrap();
    assert!(persona.contains("tier: critical") && persona.contains("kind: ApplicationPersona"), "{persona}");
}

#[test]
fn validate_passes_generated_manifests_and_fails_broken_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("k8s");
    ok(&dorgu(
        tmp.path(),
        &[
            "generate",
            fixtures().join("go-gin").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--registry",
            "ghcr.io/acme",
        ],
    ));
    let report = ok(&dorgu(tmp.path(), &["validate", out.to_str().unwrap()]));
    assert!(report.contains("passed against persona"), "{report}");
    let deployment = std::fs::read_to_string(out.join("deployment.yaml")).unwrap();
    std::fs::write(
        out.join("deployment.yaml"),
        deployment.replace("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"),
    )
    .unwrap();
    let failed = dorgu(tmp.path(), &["validate", out.to_str().unwrap()]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stdout).contains("security.privilege-escalation"));
}

#[test]
fn bad_input_names_what_was_looked_for_or_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = dorgu(tmp.path(), &["generate", empty.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile") && err.contains("compose.yaml") && err.contains("go.mod"), "{err}");
    std::fs::write(empty.join("Dockerfile"), "FROM alpine\nHEALTHCHECK --every=5s CMD true\n").unwrap();
    let err = String::from_utf8_lossy(&dorgu(tmp.path(), &["generate", empty.to_str().unwrap(), "--dry-run"]).stderr)
        .into_owned();
    assert!(err.contains("Dockerfile:2") && err.contains("unknown flag"), "{err}");
}

#[test]
fn persona_apply_and_status_against_a_real_cluster() {
    let Some(kubectl) = Kubectl::from_env() else { return };
    kubectl.install_crds();
    let namespace = format!("dorgu-cli-{}", std::process::id());
    kubectl.run(&["create", "namespace", &namespace], None);

    let tmp = tempfile::tempdir().unwrap();
    let app = fixtures().join("go-gin");
    let dorgu_kube = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dorgu"))
            .args(args)
            .args(["-n", &namespace, "--kubeconfig", &kubectl.kubeconfig])
            .env("DORGU_CONFIG_DIR", tmp.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };

    // Not there yet: a clear error and a failing exit code.
    let missing = dorgu_kube(&["persona", "status", "dorgu-e2e"]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains(&format!("ApplicationPersona {namespace}/dorgu-e2e")) && err.contains("not found"), "{err}");

    let applied = ok(&dorgu_kube(&["persona", "apply", app.to_str().unwrap(), "--name", "dorgu-e2e"]));
    assert!(applied.contains(&format!("applied ApplicationPersona {namespace}/dorgu-e2e")), "{applied}");

    // The object is the persona `dorgu generate` writes, owned by the field manager `dorgu`
    // through server-side apply.
    let object =
        kubectl.json(&["get", "applicationpersonas.dorgu.io", "dorgu-e2e", "-n", &namespace, "--show-managed-fields"]);
    let out = tmp.path().join("generated");
    ok(&dorgu(
        tmp.path(),
        &["generate", app.to_str().unwrap(), "-o", out.to_str().unwrap(), "--name", "dorgu-e2e", "-n", &namespace],
    ));
    let persona_file = walk(&out).into_iter().find(|p| p.ends_with("persona.yaml")).expect("persona.yaml written");
    let generated: serde_json::Value =
        persys_analyzer::yaml::from_str(&std::fs::read_to_string(persona_file).unwrap()).expect("persona.yaml parses");
    assert_eq!(object["spec"], generated["spec"], "the applied spec is the generated one");
    let managers: Vec<_> = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap_or(""), m["operation"].as_str().unwrap_or("")))
        .collect();
    assert!(managers.contains(&("dorgu", "Apply")), "managed fields: {managers:?}");

    // Applying the same persona again changes nothing on the server.
    let version = object["metadata"]["resourceVersion"].clone();
    ok(&dorgu_kube(&["persona", "apply", app.to_str().unwrap(), "--name", "dorgu-e2e"]));
    let again = kubectl.json(&["get", "applicationpersonas.dorgu.io", "dorgu-e2e", "-n", &namespace]);
    assert_eq!(again["metadata"]["resourceVersion"], version, "a no-op apply must not write");

    let status = ok(&dorgu_kube(&["persona", "status", "dorgu-e2e"]));
    assert!(status.contains(&format!("ApplicationPersona {namespace}/dorgu-e2e")), "{status}");
    assert!(status.contains("no status yet"), "{status}");

    // The status an operator writes through the status subresource is formatted.
    let written = serde_json::json!({"status": {
        "phase": "Degraded",
        "health": {"status": "Unhealthy", "message": "1/2 replicas ready"},
        "validation": {"passed": false, "issues": [
            {"severity": "error", "field": "spec.resources.limits.memory", "message": "no memory limit"}
        ]},
        "argoCD": {"syncStatus": "Synced", "healthStatus": "Degraded"}
    }});
    kubectl.run(
        &[
            "patch",
            "applicationpersonas.dorgu.io",
            "dorgu-e2e",
            "-n",
            &namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &written.to_string(),
        ],
        None,
    );
    let status = ok(&dorgu_kube(&["persona", "status", "dorgu-e2e"]));
    for want in [
        "phase:      Degraded",
        "health:     Unhealthy 1/2 replicas ready",
        "validation: failed",
        "spec.resources.limits.memory no memory limit",
        "argocd:     Synced / Degraded",
    ] {
        assert!(status.contains(want), "{want:?} missing from:\n{status}");
    }
    let json_out = Command::new(env!("CARGO_BIN_EXE_dorgu"))
        .args(["--json", "persona", "status", "dorgu-e2e", "-n", &namespace, "--kubeconfig", &kubectl.kubeconfig])
        .env("DORGU_CONFIG_DIR", tmp.path())
        .output()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&ok(&json_out)).unwrap();
    assert_eq!(parsed["status"]["phase"], "Degraded");

    // The cluster's persona, as the reconciler's discovery writes it, read by `dorgu cluster
    // status`; a name that does not exist is named in the error.
    let cluster = format!("dorgu-cli-{}", std::process::id());
    let dorgu_cluster = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dorgu"))
            .args(args)
            .args(["--kubeconfig", &kubectl.kubeconfig])
            .env("DORGU_CONFIG_DIR", tmp.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let absent = dorgu_cluster(&["cluster", "status", &cluster]);
    assert!(!absent.status.success());
    let err = String::from_utf8_lossy(&absent.stderr);
    assert!(err.contains(&format!("ClusterPersona {cluster}: not found")), "{err}");
    kubectl.apply(&serde_json::json!({"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona",
        "metadata": {"name": cluster}, "spec": {"name": cluster}}));
    let discovered = serde_json::json!({"status": {
        "phase": "Ready", "platform": "Kind", "kubernetesVersion": "v1.37.2", "applicationCount": 3,
        "nodes": [{"name": "worker-1", "role": "worker", "ready": false, "kubeletVersion": "v1.37.2",
            "taints": ["node.kubernetes.io/not-ready:NoSchedule"]}],
        "resourceSummary": {"nodeCount": 1, "allocatableCPU": "4", "usedCPU": "500m", "cpuUtilization": 12,
            "totalPods": 2, "runningPods": 1},
        "addons": [{"name": "argocd", "type": "gitops", "installed": true, "healthy": false, "version": "v3.1.0", "namespace": "argocd"},
            {"name": "istio", "type": "service-mesh", "installed": false}]
    }});
    kubectl.run(
        &[
            "patch",
            "clusterpersonas.dorgu.io",
            &cluster,
            "--subresource=status",
            "--type=merge",
            "-p",
            &discovered.to_string(),
        ],
        None,
    );
    let text = ok(&dorgu_cluster(&["cluster", "status", &cluster]));
    for want in [
        format!("ClusterPersona {cluster}"),
        "phase:      Ready".into(),
        "platform:   Kind".into(),
        "kubernetes: v1.37.2".into(),
        "personas:   3".into(),
        "pods:       1 running of 2".into(),
        "worker-1".into(),
        "NotReady".into(),
        "node.kubernetes.io/not-ready:NoSchedule".into(),
        "argocd".into(),
        "unhealthy".into(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains("istio"), "an add-on that is not installed is not listed:\n{text}");
    let json_out: serde_json::Value =
        serde_json::from_str(&ok(&dorgu_cluster(&["--json", "cluster", "status", &cluster]))).unwrap();
    assert_eq!(json_out["status"]["nodes"][0]["name"], "worker-1");
    assert_eq!(json_out["name"], cluster.as_str());
    kubectl.run(&["delete", "clusterpersonas.dorgu.io", &cluster], None);

    kubectl.run(&["delete", "namespace", &namespace, "--wait=false"], None);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
