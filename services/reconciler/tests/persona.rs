//! The ApplicationPersona controller against the test bench's real kube-apiserver and
//! kube-controller-manager (`PERSYS_TEST_KUBECONFIG`). There is no kubelet: where a kubelet
//! would report pods ready or crashing, the test writes the pod status the same way, through
//! the status subresource, and the real ReplicaSet and Deployment controllers carry it up to
//! the Deployment's status that the reconciler reads.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::await_condition,
};
use persys_crds::persona::ApplicationPersona;
use persys_kit::shutdown;
use persys_reconciler::{baseline, persona};
use serde_json::json;

const MANAGER: &str = "persys-tests";
mod common;

use common::{WAIT, client, pods, set_pod};

/// A fresh namespace and a controller reconciling only it; the controller stops when the
/// returned trigger drops.
async fn setup(client: &Client, prefix: &str) -> (String, shutdown::ShutdownTrigger) {
    setup_with(client, &namespace(prefix), None).await
}

/// The namespace [`setup`] makes for `prefix`.
fn namespace(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// [`setup`] in namespace `ns`, learning baselines with `baseline`.
async fn setup_with(
    client: &Client,
    ns: &str,
    baseline: Option<Arc<baseline::Learner>>,
) -> (String, shutdown::ShutdownTrigger) {
    let _ = tracing_subscriber::fmt().with_env_filter("info,persys_reconciler=debug").with_test_writer().try_init();
    common::install_crds(client, vec![]).await;
    let ns = ns.to_owned();
    let namespaces = Api::<Namespace>::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .expect("namespace created");
    let (trigger, stop) = shutdown::channel();
    // Far beyond WAIT: every status change a test waits for must come from a watch trigger,
    // never from the periodic requeue (which would hide a missing trigger).
    let options = persona::Options {
        requeue: Duration::from_secs(3600),
        retry: Duration::from_millis(500),
        namespace: Some(ns.clone()),
        baseline,
    };
    let personas = persys_reconciler::cache::Personas::start(client.clone(), Some(&ns), stop.clone());
    tokio::spawn(persona::run(client.clone(), options, personas, stop));
    (ns, trigger)
}

async fn apply<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value)).await.expect("applied")
}

fn persona_json(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"name": name, "type": "api"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": name}, "spec": spec})
}

fn deployment_json(name: &str, labels: serde_json::Value, replicas: i32, non_root: bool) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"pod": name}},
            "template": {
                "metadata": {"labels": {"pod": name}},
                "spec": {
                    "securityContext": {"runAsNonRoot": non_root},
                    "containers": [{
                        "name": "app", "image": format!("registry.invalid/{name}:1"),
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false},
                    }]
                }
            }
        }
    })
}

/// Waits until the persona's status satisfies `ok`; on timeout, fails with the status seen.
async fn wait_status(
    api: &Api<ApplicationPersona>,
    name: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let ok = Arc::new(ok);
    let cond = {
        let ok = ok.clone();
        move |p: Option<&ApplicationPersona>| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| ok(&serde_json::to_value(s).unwrap()))
        }
    };
    match tokio::time::timeout(WAIT, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(p))) => serde_json::to_value(p.status).unwrap(),
        other => {
            let now = api.get(name).await.map(|p| serde_json::to_value(p.status).unwrap());
            panic!("persona {name}: {what}: not reached ({:?}); status now: {:#?}", other.map(|r| r.is_ok()), now)
        }
    }
}

fn condition<'a>(status: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&serde_json::Value::Null)
}

#[tokio::test]
async fn a_persona_follows_its_deployment_through_rollout_breakage_and_repair() {
    let Some(client) = client().await else { return };
    let (ns, _stop) = setup(&client, "reconciler-life").await;
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let pod_api = Api::<Pod>::namespaced(client.clone(), &ns);

    let spec = json!({
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
        "scaling": {"minReplicas": 2, "maxReplicas": 4},
        "policies": {"security": {"runAsNonRoot": true, "allowPrivilegeEscalation": false}},
    });
    let created = apply(&personas, persona_json("shop", spec)).await;

    // No workload yet: Pending, and Ready says what was tried.
    let s = wait_status(&personas, "shop", "Pending without a workload", |s| {
        s["phase"] == "Pending" && condition(s, "Ready")["reason"] == "NoWorkload"
    })
    .await;
    assert!(condition(&s, "Ready")["message"].as_str().unwrap().contains("app.kubernetes.io/name=shop"), "{s:#}");
    assert_eq!(condition(&s, "Validated")["reason"], "Skipped");
    assert_eq!(s["observedGeneration"], json!(created.metadata.generation));

    // The Deployment appears (labelled on the second rung); its pods are created but not ready.
    apply(&deployments, deployment_json("shop", json!({"app": "shop"}), 2, true)).await;
    let s = wait_status(&personas, "shop", "resolved and rolling out", |s| {
        s["workload"]["name"] == "shop" && condition(s, "Ready")["reason"] == "RollingOut"
    })
    .await;
    assert_eq!(s["workload"], json!({"kind": "Deployment", "name": "shop", "matchedBy": "app"}));
    assert_eq!(s["phase"], "Pending");
    assert_eq!(s["validation"]["passed"], true, "{s:#}");
    assert_eq!(s["deployments"]["current"], "registry.invalid/shop:1");

    // A kubelet reports both pods ready: the Deployment becomes available, the persona Active.
    for pod in pods(&pod_api, "pod=shop", 2).await {
        set_pod(&pod_api, &pod, true).await;
    }
    let s = wait_status(&personas, "shop", "Active", |s| s["phase"] == "Active").await;
    assert_eq!(s["health"]["status"], "Healthy");
    assert_eq!((s["health"]["readyReplicas"].clone(), s["health"]["desiredReplicas"].clone()), (json!(2), json!(2)));
    assert_eq!(condition(&s, "Ready")["status"], "True");
    assert_eq!(condition(&s, "Validated")["reason"], "Passed");
    assert_eq!(s["deployments"]["lastSuccessful"], "registry.invalid/shop:1");
    let active_since = condition(&s, "Ready")["lastTransitionTime"].clone();

    // Scaled below the persona's minimum: a validation error, so Degraded, with a
    // recommendation saying what to do.
    deployments
        .patch(
            "shop",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&deployment_json("shop", json!({"app": "shop"}), 1, true)),
        )
        .await
        .unwrap();
    let s = wait_status(&personas, "shop", "Degraded by a validation error", |s| {
        s["phase"] == "Degraded" && condition(s, "Validated")["status"] == "False"
    })
    .await;
    let issues = s["validation"]["issues"].as_array().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i["severity"] == "error" && i["rule"] == "replicas.below-min" && i["field"] == "spec.replicas"),
        "{s:#}"
    );
    assert!(s["recommendations"].as_array().unwrap().iter().any(|r| r["type"] == "scaling" && r["priority"] == "high"));
    assert_eq!(condition(&s, "Ready")["reason"], "ValidationFailed");
    assert_eq!(condition(&s, "Ready")["status"], "False");
    // Condition times have one-second resolution: the transition is no earlier than Active.
    assert!(condition(&s, "Ready")["lastTransitionTime"].as_str() >= active_since.as_str());

    // Back to two replicas, but the new pod crash-loops: Degraded by health, the failure named.
    apply(&deployments, deployment_json("shop", json!({"app": "shop"}), 2, true)).await;
    let all = pods(&pod_api, "pod=shop", 2).await;
    let fresh = all
        .iter()
        .find(|p| p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_none())
        .expect("a new pod");
    set_pod(&pod_api, fresh, false).await;
    let s = wait_status(&personas, "shop", "Degraded with a crash-looping pod", |s| {
        s["phase"] == "Degraded" && s["health"]["podFailures"].as_array().is_some_and(|f| !f.is_empty())
    })
    .await;
    assert_eq!(s["health"]["status"], "Degraded");
    assert_eq!(s["health"]["podFailures"][0]["reason"], "CrashLoopBackOff");
    assert_eq!(s["health"]["podFailures"][0]["podName"], json!(fresh.name_any()));
    assert_eq!(s["validation"]["passed"], true, "two replicas again: no error");

    // Every pod crash-loops: Failed.
    for pod in &all {
        set_pod(&pod_api, pod, false).await;
    }
    let s = wait_status(&personas, "shop", "Failed", |s| s["phase"] == "Failed").await;
    assert_eq!(s["health"]["status"], "Unhealthy");
    assert_eq!(s["health"]["podFailures"].as_array().unwrap().len(), 2);

    // Repaired: Active again.
    for pod in &all {
        set_pod(&pod_api, pod, true).await;
    }
    let s = wait_status(&personas, "shop", "Active again", |s| s["phase"] == "Active").await;
    assert!(s["health"]["podFailures"].is_null(), "{s:#}");

    // A spec change is seen: the minimum rises above the replicas.
    let raised = json!({"scaling": {"minReplicas": 3, "maxReplicas": 4}});
    let p = apply(&personas, persona_json("shop", raised)).await;
    let s = wait_status(&personas, "shop", "the new generation observed", |s| {
        s["observedGeneration"] == json!(p.metadata.generation) && s["phase"] == "Degraded"
    })
    .await;
    assert_eq!(condition(&s, "Validated")["observedGeneration"], json!(p.metadata.generation));

    // Deleted Deployment: back to Pending.
    deployments.delete("shop", &DeleteParams::foreground()).await.unwrap();
    wait_status(&personas, "shop", "Pending after the Deployment went", |s| s["phase"] == "Pending").await;
}

#[tokio::test]
async fn ambiguity_is_reported_and_statefulsets_resolve() {
    let Some(client) = client().await else { return };
    let (ns, _stop) = setup(&client, "reconciler-resolve").await;
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let statefulsets = Api::<StatefulSet>::namespaced(client.clone(), &ns);

    apply(&deployments, deployment_json("twin-a", json!({"app.kubernetes.io/name": "twin"}), 1, true)).await;
    apply(&deployments, deployment_json("twin-b", json!({"app.kubernetes.io/name": "twin"}), 1, true)).await;
    apply(&personas, persona_json("twin", json!({}))).await;
    let s =
        wait_status(&personas, "twin", "ambiguous", |s| condition(s, "Ready")["reason"] == "AmbiguousWorkload").await;
    let message = condition(&s, "Ready")["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Deployment/twin-a") && message.contains("Deployment/twin-b"), "{message}");
    assert!(s["workload"].is_null());

    // Relabelling one resolves it: a workload change wakes the persona.
    apply(&deployments, deployment_json("twin-b", json!({"app.kubernetes.io/name": "other"}), 1, true)).await;
    let s = wait_status(&personas, "twin", "resolved", |s| s["workload"]["name"] == "twin-a").await;
    assert_eq!(s["workload"]["matchedBy"], "app.kubernetes.io/name");

    // A StatefulSet found by its pod template's `app` label, validated by the same rules:
    // runAsNonRoot is required and the pod does not set it.
    let mut sts = deployment_json("db", json!({}), 1, false);
    sts["kind"] = json!("StatefulSet");
    sts["spec"]["template"]["metadata"]["labels"]["app"] = json!("db");
    sts["spec"]["serviceName"] = json!("db");
    apply(&statefulsets, sts).await;
    apply(&personas, persona_json("db", json!({"policies": {"security": {"runAsNonRoot": true}}}))).await;
    let s = wait_status(&personas, "db", "resolved to the StatefulSet", |s| {
        s["workload"]["kind"] == "StatefulSet" && s["validation"]["passed"] == false
    })
    .await;
    assert_eq!(s["workload"]["matchedBy"], "app");
    assert!(s["validation"]["issues"].as_array().unwrap().iter().any(|i| i["severity"] == "error"), "{s:#}");
}

#[tokio::test]
async fn the_schema_rejects_bad_personas_and_accepts_every_generated_one() {
    let Some(client) = client().await else { return };
    common::install_crds(&client, vec![]).await;
    let ns = format!("reconciler-schema-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);

    for (field, spec) in [
        ("spec.resources.limits.cpu", json!({"resources": {"limits": {"cpu": "lots"}}})),
        ("spec.type", json!({"type": "batch"})),
        ("spec.scaling.targetCPU", json!({"scaling": {"targetCPU": 150}})),
    ] {
        let err = personas
            .patch("bad", &PatchParams::apply(MANAGER), &Patch::Apply(&persona_json("bad", spec)))
            .await
            .expect_err("the API server rejects it");
        match err {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 422, "{status:?}");
                assert!(status.message.contains(field), "{field} not named in: {}", status.message);
            }
            other => panic!("{other}"),
        }
    }

    // Every persona in the analyzer's reviewed golden files (what `dorgu generate` writes).
    let snapshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../analyzer/tests/snapshots");
    let mut applied = 0;
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let Some(start) = text.find("=== persona.yaml (ApplicationPersona) ===\n") else { continue };
        let rest = &text[start..];
        let body = &rest[rest.find('\n').unwrap() + 1..];
        let body = &body[..body.find("\n=== ").unwrap_or(body.len())];
        let mut value: serde_json::Value = persys_kit::yaml::from_str(body).expect("a persona");
        value["metadata"]["namespace"] = json!(ns);
        let name = value["metadata"]["name"].as_str().unwrap().to_owned();
        let back: ApplicationPersona = personas
            .patch(&name, &PatchParams::apply("dorgu"), &Patch::Apply(&value))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(serde_json::to_value(&back.spec).unwrap(), value["spec"], "{name}: nothing pruned");
        applied += 1;
    }
    assert!(applied >= 20, "only {applied} personas found in {}", snapshots.display());
}

/// A real Prometheus holding the series a test backfilled with promtool: it learns nothing
/// else (no scrape jobs), so every figure it answers comes from those series.
struct Prometheus {
    url: String,
    addr: std::net::SocketAddr,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

/// Backfills `openmetrics` (OpenMetrics text, `# EOF` included) and starts Prometheus on it.
async fn prometheus(openmetrics: &str) -> Option<Prometheus> {
    let server = persys_kit::testing::require_env("PERSYS_TEST_PROMETHEUS", "Prometheus (scripts/tools/build)")?;
    let promtool = persys_kit::testing::require_env("PERSYS_TEST_PROMTOOL", "promtool (scripts/tools/build)")?;
    let dir = tempfile::tempdir().unwrap();
    let (input, data, config) =
        (dir.path().join("series.om"), dir.path().join("data"), dir.path().join("prometheus.yml"));
    std::fs::write(&input, openmetrics).unwrap();
    std::fs::write(&config, "global: {}\n").unwrap();
    let out = tokio::process::Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .await
        .expect("promtool runs");
    assert!(out.status.success(), "promtool backfill: {}", String::from_utf8_lossy(&out.stderr));
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut command = tokio::process::Command::new(&server);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={addr}"));
    let child = common::spawn_until(command, "Server is ready to receive web requests").await;
    Some(Prometheus { url: format!("http://{addr}"), addr, _child: child, _dir: dir })
}

impl Prometheus {
    /// How many instant queries it has answered, from its own `/metrics`.
    async fn queries_answered(&self) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: prometheus\r\n\r\n").await.unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).await.unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("prometheus_http_requests_total{")
                    && l.contains(r#"handler="/api/v1/query""#)
                    && l.contains(r#"code="200""#)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// Seventy minutes of cAdvisor series, a sample every 30 s up to now, for pod
/// `shop-7d4b9c8f6d-x2x7q` (container `app`) of namespace `ns`: CPU at 0.2 cores with a
/// ten-minute burst at 0.5, 256 MiB of memory with one sample at 512 MiB. Around it, series a
/// sloppy match would read: `shop-gateway`'s pod (a name `shop` prefixes), the pod's sandbox
/// (`POD`) and cgroup total (`""`), and the same pod name in another namespace.
fn cadvisor_series(ns: &str) -> String {
    const MI: f64 = 1024.0 * 1024.0;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let start = now - 70 * 60;
    let elsewhere = format!("{ns}-elsewhere");
    // (namespace, pod, container, CPU cores outside the burst, memory)
    let series: [(&str, &str, &str, f64, f64); 5] = [
        (ns, "shop-7d4b9c8f6d-x2x7q", "app", 0.2, 256.0 * MI),
        (ns, "shop-gateway-6d4cf56db6-bcdfg", "app", 2.0, 2048.0 * MI),
        (ns, "shop-7d4b9c8f6d-x2x7q", "POD", 0.9, 4096.0 * MI),
        (ns, "shop-7d4b9c8f6d-x2x7q", "", 1.5, 8192.0 * MI),
        (&elsewhere, "shop-7d4b9c8f6d-x2x7q", "app", 3.0, 3072.0 * MI),
    ];
    let mut cpu_lines = String::from("# TYPE container_cpu_usage_seconds_total counter\n");
    let mut mem_lines = String::from("# TYPE container_memory_working_set_bytes gauge\n");
    for (n, pod, container, cores, memory) in series {
        let labels = format!(r#"namespace="{n}",pod="{pod}",container="{container}""#);
        let mut used = 0.0;
        for t in (start..=now).step_by(30) {
            cpu_lines.push_str(&format!("container_cpu_usage_seconds_total{{{labels}}} {used} {t}\n"));
            let burst = (now - 40 * 60..now - 30 * 60).contains(&t);
            used += 30.0 * if burst { cores * 2.5 } else { cores };
            let spike = t == now - 20 * 60;
            mem_lines.push_str(&format!(
                "container_memory_working_set_bytes{{{labels}}} {} {t}\n",
                if spike { memory * 2.0 } else { memory }
            ));
        }
    }
    format!("{cpu_lines}{mem_lines}# EOF\n")
}

fn baseline_options(url: &str) -> baseline::Options {
    baseline::Options {
        interval: Duration::from_secs(3600),
        window: Duration::from_secs(3600),
        ..baseline::Options::new(url)
    }
}

#[tokio::test]
async fn a_baseline_is_learned_from_a_real_prometheus_once_per_interval_and_sizes_the_workload() {
    let Some(client) = client().await else { return };
    let ns = namespace("reconciler-baseline");
    let Some(prom) = prometheus(&cadvisor_series(&ns)).await else { return };
    let learner = Arc::new(baseline::Learner::new(baseline_options(&prom.url)).unwrap());
    let (ns, _stop) = setup_with(&client, &ns, Some(learner)).await;
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    // `cart` has no series at all: reported, not fatal.
    apply(&deployments, deployment_json("shop", json!({"app.kubernetes.io/name": "shop"}), 1, true)).await;
    apply(&deployments, deployment_json("cart", json!({"app.kubernetes.io/name": "cart"}), 1, true)).await;
    apply(&personas, persona_json("shop", json!({}))).await;
    apply(&personas, persona_json("cart", json!({}))).await;

    // Exactly the pod's `app` container in this namespace: 250m mean (0.2 for fifty minutes,
    // 0.5 for ten), 500m peak, 258Mi mean (one 512Mi sample among ~120 of 256Mi), 512Mi peak.
    // Any of the decoys matched would move a peak to 2 cores or gigabytes.
    let s = wait_status(&personas, "shop", "a baseline learned and turned into recommendations", |s| {
        s["learned"]["resourceBaseline"].is_object()
            && s["recommendations"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| r["message"].as_str().is_some_and(|m| m.starts_with("peak memory")))
            })
    })
    .await;
    assert_eq!(
        s["learned"]["resourceBaseline"],
        json!({"avgCPU": "250m", "peakCPU": "500m", "avgMemory": "258Mi", "peakMemory": "512Mi"}),
        "{s:#}"
    );
    assert!(s["learned"]["lastLearned"].is_string());
    let learned = condition(&s, "BaselineLearned");
    assert_eq!((learned["status"].as_str(), learned["reason"].as_str()), (Some("True"), Some("Learned")), "{s:#}");
    // The container asks for 100m/128Mi and may use 500m/256Mi: a peak of 512Mi is twice its
    // limit, the most urgent recommendation, first.
    let first = &s["recommendations"][0];
    assert_eq!((first["type"].as_str(), first["priority"].as_str()), (Some("resource"), Some("high")), "{s:#}");
    assert!(first["message"].as_str().unwrap().contains("peak memory 512Mi is 200% of the limit 256Mi"), "{s:#}");
    assert_eq!(first["action"], "raise resources.limits.memory to at least 640Mi");
    let actions: Vec<&str> =
        s["recommendations"].as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    for expected in [
        "raise resources.limits.cpu to at least 630m",
        "raise resources.requests.cpu to 630m",
        "raise resources.requests.memory to 640Mi",
    ] {
        assert!(actions.contains(&expected), "{expected}: {actions:?}");
    }
    // The persona controller's own conditions stand beside the baseline's.
    assert!(condition(&s, "Ready").is_object() && condition(&s, "Validated").is_object());

    let s =
        wait_status(&personas, "cart", "no data reported", |s| condition(s, "BaselineLearned")["reason"] == "NoData")
            .await;
    assert_eq!(condition(&s, "BaselineLearned")["status"], "False");
    assert!(s["learned"].is_null(), "nothing learned from no data: {s:#}");
    assert!(s["phase"].is_string() && condition(&s, "Ready").is_object(), "the persona is still reconciled: {s:#}");

    // Four queries per persona, once each. More reconciles of `shop` (each scale changes its
    // status) within the interval ask Prometheus nothing more and keep the baseline.
    assert_eq!(prom.queries_answered().await, 8);
    let learned_shop = wait_status(&personas, "shop", "learned", |s| s["learned"].is_object()).await["learned"].clone();
    for replicas in [2, 3] {
        deployments
            .patch("shop", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": replicas}})))
            .await
            .unwrap();
        let s = wait_status(&personas, "shop", "the new replica count", |s| s["health"]["desiredReplicas"] == replicas)
            .await;
        assert_eq!(s["learned"], learned_shop, "the baseline stays as learned");
    }
    assert_eq!(prom.queries_answered().await, 8, "a baseline is learned at most once per interval");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_reported_and_the_persona_still_reconciles() {
    let Some(client) = client().await else { return };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    let learner = Arc::new(baseline::Learner::new(baseline_options(&url)).unwrap());
    let (ns, _stop) = setup_with(&client, &namespace("reconciler-noprom"), Some(learner)).await;
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    apply(&deployments, deployment_json("web", json!({"app.kubernetes.io/name": "web"}), 1, true)).await;
    apply(&personas, persona_json("web", json!({}))).await;
    let s = wait_status(&personas, "web", "Prometheus reported unavailable", |s| {
        condition(s, "BaselineLearned")["reason"] == "PrometheusUnavailable"
    })
    .await;
    let c = condition(&s, "BaselineLearned");
    assert_eq!(c["status"], "False");
    assert!(c["message"].as_str().unwrap().contains(&url), "the message names the URL: {c:#}");
    assert_eq!(s["workload"]["name"], "web", "resolution and validation went on: {s:#}");
    assert!(s["learned"].is_null());
}
