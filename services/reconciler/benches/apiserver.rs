//! The reconciler on a real kube-apiserver (`PERSYS_TEST_KUBECONFIG`; `scripts/bench
//! persona_apiserver` starts one), run as its own process as deployed (`reconciler run
//! --namespace --listen`: the controller and PersonaService over mTLS): its
//! RSS with N personas and their Deployments in its caches (default 5,000;
//! `PERSYS_BENCH_PERSONAS`), against the same process once it leads with empty caches; and the
//! time from a Deployment change to the persona status that reflects it (timed from sending the
//! patch), beside the API server's own watch delay for the Deployment in the same run. Prints
//! figures; asserts nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::{apps::v1::Deployment, coordination::v1::Lease, core::v1::Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, conditions, wait::await_condition, watcher},
};
use persys_crds::persona::ApplicationPersona;
use serde_json::json;

/// A `/proc/<pid>/status` figure (`VmRSS`, `VmHWM`) in MiB.
fn mem_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn deployment(i: usize, replicas: i32) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("app-{i}"), "labels": {"app.kubernetes.io/name": format!("app-{i}")}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"pod": format!("app-{i}")}},
            "template": {"metadata": {"labels": {"pod": format!("app-{i}")}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
}

#[tokio::main]
async fn main() {
    let Ok(kubeconfig) = std::env::var("PERSYS_TEST_KUBECONFIG") else {
        eprintln!("PERSYS_TEST_KUBECONFIG is not set: run it through scripts/bench persona_apiserver");
        std::process::exit(2);
    };
    let n: usize = std::env::var("PERSYS_BENCH_PERSONAS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let client = persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in persys_crds::all() {
        crds.patch(&crd.name_any(), &PatchParams::apply("persys-bench").force(), &Patch::Apply(&crd)).await.unwrap();
        await_condition(crds.clone(), &crd.name_any(), conditions::is_crd_established()).await.unwrap();
    }
    let ns = format!("bench-{}", std::process::id());
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    // The reconciler process as deployed (PersonaService on, over mTLS), restricted to the
    // namespace; it leads once its Lease names it.
    let tls = tempfile::tempdir().unwrap();
    let ca = persys_kit::pki::Ca::generate("bench", Duration::from_secs(3600)).unwrap();
    let leaf = ca
        .issue(&persys_kit::pki::LeafRequest {
            identity: persys_kit::Identity::Service("reconciler".into()),
            dns_names: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Duration::from_secs(3600),
        })
        .unwrap();
    let file = |name: &str, pem: &str| {
        let path = tls.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_pem, cert_pem, key_pem) =
        (file("ca.pem", ca.cert_pem()), file("reconciler.pem", &leaf.cert_pem), file("reconciler.key", &leaf.key_pem));
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut reconciler = std::process::Command::new(env!("CARGO_BIN_EXE_reconciler"))
        .args(["run", "--kubeconfig", &kubeconfig, "--namespace", &ns, "--lease-namespace", &ns])
        .args(["--listen", "127.0.0.1:0", "--tls-ca", &ca_pem, "--tls-cert", &cert_pem, "--tls-key", &key_pem])
        .args(["--identity", "bench"])
        .env("PERSYS_LOG", "warn")
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = reconciler.id();
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    loop {
        if let Some(status) = reconciler.try_wait().unwrap() {
            panic!("the reconciler exited ({status}): {}", std::fs::read_to_string(log.path()).unwrap_or_default());
        }
        let holder = leases.get_opt("persys-reconciler").await.unwrap().and_then(|l| l.spec?.holder_identity);
        if holder.as_deref() == Some("bench") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = mem_mib(pid, "VmRSS:");

    // Zero replicas: the Deployment controller makes a ReplicaSet each and no pods.
    let t = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let (personas, deployments) = (personas.clone(), deployments.clone());
            async move {
                let p = json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": format!("app-{i}")},
                    "spec": {"name": format!("app-{i}"), "type": "api", "scaling": {"minReplicas": 0, "maxReplicas": 3}}});
                personas.patch(&format!("app-{i}"), &PatchParams::apply("persys-bench"), &Patch::Apply(&p)).await.unwrap();
                deployments
                    .patch(&format!("app-{i}"), &PatchParams::apply("persys-bench"), &Patch::Apply(&deployment(i, 0)))
                    .await
                    .unwrap();
            }
        })
        .await;
    let created = t.elapsed();
    // Wait until every persona has a status for its Deployment.
    loop {
        let list = personas.list(&Default::default()).await.unwrap();
        let done = list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.workload.as_ref()).is_some()).count();
        if done == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settle = t.elapsed();
    let after = mem_mib(pid, "VmRSS:");

    // Latency: scale one Deployment at a time above the persona's maximum (a new warning) and
    // back, and time each patch's response to (a) the Deployment's own watch event and (b) the
    // persona status that shows the change.
    let seen_deploy: Arc<Mutex<HashMap<String, (i32, Instant)>>> = Arc::default();
    let seen_persona: Arc<Mutex<HashMap<String, (usize, Instant)>>> = Arc::default();
    {
        let seen = seen_deploy.clone();
        let d = deployments.clone();
        tokio::spawn(async move {
            let mut s = watcher(d, watcher::Config::default()).applied_objects().boxed();
            while let Ok(Some(o)) = s.try_next().await {
                seen.lock().unwrap().insert(o.name_any(), (o.spec.replicas.unwrap_or(0), Instant::now()));
            }
        });
        let seen = seen_persona.clone();
        let p = personas.clone();
        tokio::spawn(async move {
            let mut s = watcher(p, watcher::Config::default()).applied_objects().boxed();
            while let Ok(Some(o)) = s.try_next().await {
                let warnings = o.status.as_ref().and_then(|s| s.validation.as_ref()).map_or(0, |v| v.issues.len());
                seen.lock().unwrap().insert(o.name_any(), (warnings, Instant::now()));
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rounds = 200.min(n);
    let (mut watch_delay, mut status_delay) = (Vec::new(), Vec::new());
    for k in 0..rounds {
        let name = format!("app-{}", (k * 7919) % n);
        let base = seen_persona.lock().unwrap().get(&name).map_or(0, |(w, _)| *w);
        let t0 = Instant::now();
        let patch = json!({"spec": {"replicas": 5}});
        deployments.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut d_at, mut p_at) = (None, None);
        while (d_at.is_none() || p_at.is_none()) && Instant::now() < deadline {
            if d_at.is_none()
                && let Some((5, at)) = seen_deploy.lock().unwrap().get(&name).copied()
            {
                d_at = Some(at);
            }
            if p_at.is_none()
                && let Some((w, at)) = seen_persona.lock().unwrap().get(&name).copied()
                && w > base
            {
                p_at = Some(at);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let (Some(d), Some(p)) = (d_at, p_at) {
            watch_delay.push(d.saturating_duration_since(t0));
            status_delay.push(p.saturating_duration_since(t0));
        }
        deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 0}})))
            .await
            .unwrap();
    }
    watch_delay.sort();
    status_delay.sort();
    println!("persona controller on a real kube-apiserver, {n} personas + Deployments in one namespace");
    println!(
        "  reconciler RSS: {before:.1} MiB leading with empty caches, {after:.1} MiB with {n} personas and Deployments cached \
         (+{:.1} MiB); peak {:.1} MiB",
        after - before,
        mem_mib(pid, "VmHWM:")
    );
    println!(
        "  created in {:.1}s; every persona had its status {:.1}s after the first was sent",
        created.as_secs_f64(),
        settle.as_secs_f64()
    );
    println!("  {:<52} {:>8} {:>8} {:>8}", "from sending the patch, ms", "p50", "p99", "max");
    println!(
        "  {:<52} {:>8.1} {:>8.1} {:>8.1}",
        "baseline: the Deployment's own watch event",
        pct(&watch_delay, 0.5),
        pct(&watch_delay, 0.99),
        pct(&watch_delay, 1.0)
    );
    println!(
        "  {:<52} {:>8.1} {:>8.1} {:>8.1}",
        "the persona's status showing the change",
        pct(&status_delay, 0.5),
        pct(&status_delay, 0.99),
        pct(&status_delay, 1.0)
    );
    println!("  {} of {rounds} changes measured", status_delay.len());
    reconciler.kill().unwrap();
    reconciler.wait().unwrap();
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}
