//! The Registry controller against the test bench's real kube-apiserver and real registries:
//! Debian's `docker-registry` (distribution 2.8), one anonymous and one behind htpasswd
//! (Basic) authentication.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use persys_crds::kapsa::Registry;
use persys_kit::shutdown;
use persys_reconciler::registry;
use serde_json::json;

const MANAGER: &str = "persys-tests";
mod common;

use common::{WAIT, client};
const USER: &str = "tester";
const PASSWORD: &str = "pass-word-1";
/// bcrypt of PASSWORD (cost 4), the only hash format distribution's htpasswd accepts.
const PASSWORD_BCRYPT: &str = "$2b$04$8Zn/duqT4cQARc4hTwxLcegrd2fgFAxgMpKMu5GOuS2v/Xw6LZhMW";

/// A `docker-registry serve` on loopback, with htpasswd authentication or none.
struct RegistryServer {
    url: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn registry_server(program: &str, htpasswd: bool) -> RegistryServer {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let auth = if htpasswd {
        std::fs::write(dir.path().join("htpasswd"), format!("{USER}:{PASSWORD_BCRYPT}\n")).unwrap();
        format!("auth: {{htpasswd: {{realm: persys-test, path: {}}}}}\n", dir.path().join("htpasswd").display())
    } else {
        String::new()
    };
    let config = format!(
        "version: 0.1\nlog: {{level: info}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: \"{addr}\"}}\n{auth}",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let mut command = tokio::process::Command::new(program);
    command.arg("serve").arg(dir.path().join("config.yml"));
    let child = common::spawn_until(command, "listening on").await;
    RegistryServer { url: format!("http://{addr}"), _child: child, _dir: dir }
}

async fn ready(api: &Api<Registry>, name: &str, reason: &str) -> serde_json::Value {
    let want = reason.to_owned();
    let cond = move |r: Option<&Registry>| {
        r.and_then(|r| r.status.as_ref()).and_then(|s| s.conditions.first()).is_some_and(|c| c.reason == want)
    };
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(r))) => serde_json::to_value(r.status).unwrap(),
        _ => {
            let now = api.get(name).await.map(|r| serde_json::to_value(r.status).unwrap());
            panic!("registry {name}: Ready reason {reason} not reached; status now: {now:#?}")
        }
    }
}

#[tokio::test]
async fn registries_are_verified_against_real_registries_with_and_without_auth() {
    let Some(client) = client().await else { return };
    let Some(program) =
        persys_kit::testing::require_env("PERSYS_TEST_DOCKER_REGISTRY", "Debian's docker-registry (distribution)")
    else {
        return;
    };
    let open = registry_server(&program, false).await;
    let locked = registry_server(&program, true).await;

    common::install_crds(&client, Vec::new()).await;
    let id = std::process::id();
    let ns = format!("reconciler-registry-{id}");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let secret = |name: &str, type_: &str, data: serde_json::Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": type_, "stringData": data});
    let host = locked.url.trim_start_matches("http://").to_owned();
    let dockercfg = json!({"auths": {host.clone(): {"username": USER, "password": PASSWORD}}}).to_string();
    for s in [
        secret("good", "kubernetes.io/basic-auth", json!({"username": USER, "password": PASSWORD})),
        secret("bad", "kubernetes.io/basic-auth", json!({"username": USER, "password": "not-the-password"})),
        secret("dockercfg", "kubernetes.io/dockerconfigjson", json!({".dockerconfigjson": dockercfg})),
    ] {
        secrets.create(&PostParams::default(), &serde_json::from_value(s).unwrap()).await.unwrap();
    }

    let (_trigger, stop) = shutdown::channel();
    let options = registry::Options {
        // Far beyond WAIT: a re-check the test waits for must come from a watch.
        interval: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
        ..registry::Options::new(ns.clone())
    };
    tokio::spawn(registry::run(client.clone(), options, stop));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let api = Api::<Registry>::all(client.clone());
    let cases: Vec<(String, serde_json::Value, &str)> = vec![
        (format!("open-{id}"), json!({"endpoint": open.url}), "Verified"),
        (format!("locked-anonymous-{id}"), json!({"endpoint": locked.url}), "CredentialsRequired"),
        (
            format!("locked-good-{id}"),
            json!({"endpoint": locked.url, "auth": {"secretRef": {"name": "good"}}}),
            "Verified",
        ),
        (
            format!("locked-dockercfg-{id}"),
            json!({"endpoint": locked.url, "auth": {"secretRef": {"name": "dockercfg", "namespace": ns}}}),
            "Verified",
        ),
        (
            format!("locked-bad-{id}"),
            json!({"endpoint": locked.url, "auth": {"secretRef": {"name": "bad"}}}),
            "Unauthorized",
        ),
        (
            format!("missing-secret-{id}"),
            json!({"endpoint": locked.url, "auth": {"secretRef": {"name": "nope"}}}),
            "SecretNotFound",
        ),
        (
            format!("elsewhere-{id}"),
            json!({"endpoint": locked.url, "auth": {"secretRef": {"name": "good", "namespace": "kube-system"}}}),
            "SecretNotPermitted",
        ),
        (format!("down-{id}"), json!({"endpoint": format!("http://{closed}")}), "Unreachable"),
    ];
    for (name, spec, _) in &cases {
        let mut spec = spec.clone();
        spec["type"] = json!("docker");
        let r = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Registry", "metadata": {"name": name}, "spec": spec});
        api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&r)).await.expect("Registry applied");
    }
    let mut seen = std::collections::BTreeMap::new();
    for (name, _, reason) in &cases {
        let s = ready(&api, name, reason).await;
        assert_eq!(s["verified"], json!(*reason == "Verified"), "{name}: {s:#}");
        assert!(s["lastVerified"].is_string(), "{name}: {s:#}");
        seen.insert(name.clone(), s["conditions"][0]["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(seen[&format!("locked-good-{id}")].contains("authenticated as `tester` (Basic)"), "{seen:#?}");
    let refused = &seen[&format!("locked-bad-{id}")];
    assert!(refused.contains(&format!("{ns}/bad")) && refused.contains("`tester`"), "{refused}");
    assert!(!refused.contains("not-the-password"), "a password never reaches the status: {refused}");
    assert!(seen[&format!("elsewhere-{id}")].contains(&format!("only from namespace {ns}")), "{seen:#?}");

    // Fixing the Secret re-checks the Registry that uses it at once (the Secret watch; the
    // interval is an hour).
    secrets
        .patch(
            "bad",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&secret("bad", "kubernetes.io/basic-auth", json!({"username": USER, "password": PASSWORD}))),
        )
        .await
        .unwrap();
    let s = ready(&api, &format!("locked-bad-{id}"), "Verified").await;
    assert_eq!(s["verified"], true);

    // Pointing a Registry elsewhere (a spec change) checks it again.
    api.patch(
        &format!("open-{id}"),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Registry", "metadata": {"name": format!("open-{id}")},
            "spec": {"type": "docker", "endpoint": format!("http://{closed}")}})),
    )
    .await
    .unwrap();
    ready(&api, &format!("open-{id}"), "Unreachable").await;

    for (name, _, _) in &cases {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
    let _ = Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await;
}
