//! Kapsa's Project and Environment controllers against the test bench's real kube-apiserver
//! and kube-controller-manager (garbage collector, namespace controller), a real git
//! repository served by `git http-backend` over smart HTTP with Basic authentication, and
//! kpack's Image kind (a stand-in CRD with kpack's group, version, kind and status
//! subresource: kpack itself is not available here). The test plays kpack: it writes each
//! Image's status as kpack does when a build succeeds or fails.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, Secret, Service},
    networking::v1::Ingress,
};
use kube::{
    Api, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use persys_crds::kapsa::{DomainPool, Environment, Project};
use persys_kit::shutdown;
use persys_reconciler::{domainpool, environment, project};
use serde_json::json;

mod common;

use common::{WAIT, client, git::GitServer, pods, set_pod};

const MANAGER: &str = "persys-tests";
const USER: &str = "dev";
const PASSWORD: &str = "git-pass-1";

/// Polls `check` every 200 ms until it returns `Some`, or fails with `what` and the last
/// state it saw.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + WAIT;
    loop {
        let last = match check().await {
            Ok(v) => {
                eprintln!("{what}: {:?}", start.elapsed());
                return v;
            }
            Err(state) => state,
        };
        assert!(tokio::time::Instant::now() < deadline, "{what}: not reached in {WAIT:?}; last seen: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Plays kpack: the Image's status for its current generation and revision.
async fn finish_build(images: &Api<DynamicObject>, name: &str, ok: bool, latest: &str) {
    let image = images.get(name).await.unwrap();
    let ready = if ok {
        json!({"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"})
    } else {
        json!({"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "build step exited 1",
            "lastTransitionTime": "2026-12-01T00:00:00Z"})
    };
    let mut status = json!({"observedGeneration": image.metadata.generation, "conditions": [ready],
        "latestBuildReason": "COMMIT", "buildCounter": 1});
    if ok {
        status["latestImage"] = json!(latest);
    }
    let patch = json!({"status": status});
    images.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn refresh(projects: &Api<Project>, name: &str, n: u32) {
    let patch = json!({"metadata": {"annotations": {project::REFRESH: n.to_string()}}});
    projects.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn a_project_builds_its_branches_runs_environments_and_cleans_up_through_gc() {
    let Some(client) = client().await else { return };
    common::install_crds(&client, vec![common::kpack_crd()]).await;

    // The repository: main, develop, a feature branch (previewed) and a WIP one (excluded).
    let git = GitServer::start(Some((USER, PASSWORD))).await;
    let repo = git.create_repo("app.git");
    let main1 = repo.commit("main", "first");
    let develop1 = repo.commit("develop", "develop work");
    let login1 = repo.commit("feature/login", "login page");
    repo.commit("feature/wip-x", "not yet");

    let id = std::process::id();
    let ns = format!("kapsa-{id}");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git"},
        "type": "kubernetes.io/basic-auth", "stringData": {"username": USER, "password": PASSWORD}});
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &serde_json::from_value(secret).unwrap())
        .await
        .unwrap();
    let (registry, pool) = (format!("reg-{id}"), format!("pool-{id}"));
    let base = format!("apps-{id}.example.com");
    let reg = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Registry", "metadata": {"name": registry},
        "spec": {"type": "docker", "endpoint": "http://127.0.0.1:5999"}});
    Api::<persys_crds::kapsa::Registry>::all(client.clone())
        .patch(&registry, &PatchParams::apply(MANAGER), &Patch::Apply(&reg))
        .await
        .unwrap();
    let dp = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "DomainPool", "metadata": {"name": pool},
        "spec": {"baseDomains": [base], "certManager": {"issuerRef": {"name": "letsencrypt"}},
            "allocationPolicy": {"reservedSubdomains": ["www"]}}});
    let pools = Api::<DomainPool>::all(client.clone());
    pools.patch(&pool, &PatchParams::apply(MANAGER), &Patch::Apply(&dp)).await.unwrap();

    let (_trigger, stop) = shutdown::channel();
    tokio::spawn(project::run(client.clone(), project::Options::default(), stop.clone()));
    tokio::spawn(environment::run(client.clone(), environment::Options::default(), stop.clone()));
    tokio::spawn(domainpool::run(client.clone(), domainpool::Options::default(), stop));

    let projects = Api::<Project>::namespaced(client.clone(), &ns);
    let proj = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project", "metadata": {"name": "api"},
        "spec": {
            "repository": {"url": git.url("app.git"), "branch": "main", "pollInterval": 3600,
                "credentials": {"secretRef": {"name": "git"}}},
            "build": {"strategy": "buildpack", "env": [{"name": "BP_JVM_VERSION", "value": "21"}]},
            "registry": {"name": registry, "imageRepository": "team/api"},
            "domain": {"subdomain": "api", "domainPoolRef": pool},
            "environments": [{"name": "prod", "autoSync": true}, {"name": "staging", "branch": "develop"}],
            "previewEnvironments": {"enabled": true, "ttl": "1h",
                "branches": {"include": ["feature/*"], "exclude": ["feature/wip-*"]}}}});
    projects.patch("api", &PatchParams::apply(MANAGER), &Patch::Apply(&proj)).await.unwrap();

    let pns = format!("{ns}-api");
    let kpack = ApiResource::from_gvk_with_plural(&project::kpack_image(), "images");
    let images = Api::<DynamicObject>::namespaced_with(client.clone(), &pns, &kpack);
    let envs = Api::<Environment>::namespaced(client.clone(), &pns);

    // Every tracked branch is built at its head, tagged in the registry repository.
    let want_builds: BTreeMap<String, (String, String)> = [
        ("build-main", &main1, format!("127.0.0.1:5999/team/api:{}", &main1[..7])),
        ("build-develop", &develop1, format!("127.0.0.1:5999/team/api:{}", &develop1[..7])),
        ("build-feature-login", &login1, format!("127.0.0.1:5999/team/api:feature-login-{}", &login1[..7])),
    ]
    .into_iter()
    .map(|(n, c, t)| (n.to_owned(), (c.clone(), t)))
    .collect();
    until("kpack Images for main, develop and feature/login", || async {
        let list = images.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let got: BTreeMap<String, (String, String)> = list
            .items
            .iter()
            .map(|i| {
                let rev = i.data["spec"]["source"]["git"]["revision"].as_str().unwrap_or_default().to_owned();
                (i.name_any(), (rev, i.data["spec"]["tag"].as_str().unwrap_or_default().to_owned()))
            })
            .collect();
        if got == want_builds { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    let main_image = images.get("build-main").await.unwrap();
    assert_eq!(main_image.data["spec"]["serviceAccountName"], "kapsa-build");
    assert_eq!(main_image.data["spec"]["build"]["env"][0]["name"], "BP_JVM_VERSION");

    // Environments with host names from the pool, before any image exists.
    until("prod, staging and the feature/login preview, building", || async {
        let list = envs.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let got: BTreeMap<String, (String, Option<String>, Option<String>)> = list
            .items
            .iter()
            .map(|e| {
                let st = e.status.clone().unwrap_or_default();
                (e.name_any(), (e.spec.kind.clone(), e.spec.ingress.host.clone(), st.phase))
            })
            .collect();
        let want: BTreeMap<String, (String, Option<String>, Option<String>)> = [
            ("preview-feature-login", "preview", format!("feature-login.api.{base}")),
            ("prod", "permanent", format!("api.{base}")),
            ("staging", "permanent", format!("staging.api.{base}")),
        ]
        .into_iter()
        .map(|(n, k, h)| (n.to_owned(), (k.to_owned(), Some(h), Some("Building".to_owned()))))
        .collect();
        if got == want { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;
    let allocations = pools.get(&pool).await.unwrap().status.unwrap_or_default().allocations;
    assert_eq!(allocations.len(), 3, "{allocations:?}");
    let project_key = format!("{ns}/api");
    assert!(allocations.iter().all(|a| a.project == project_key && a.base_domain == base), "{allocations:?}");
    let preview = envs.get("preview-feature-login").await.unwrap();
    assert!(preview.annotations().contains_key(project::EXPIRES_AT), "a preview carries its expiry");

    // kpack builds main: prod rolls to it, with a Deployment, Service and TLS Ingress it owns.
    let good = "127.0.0.1:5999/team/api@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    finish_build(&images, "build-main", true, good).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &pns);
    let prod = until("prod's Deployment running the built image", || async {
        let d = deployments.get_opt("prod").await.map_err(|e| e.to_string())?.ok_or("no Deployment yet")?;
        let image = d.spec.template.spec.as_ref().map(|p| p.containers[0].image.clone());
        if image == Some(Some(good.to_owned())) { Ok(d) } else { Err(format!("image {image:?}")) }
    })
    .await;
    let prod_env = envs.get("prod").await.unwrap();
    let owner = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        refs.len() == 1 && refs[0].uid == prod_env.uid().unwrap() && refs[0].controller == Some(true)
    };
    assert!(owner(prod.owner_references()), "{:?}", prod.owner_references());
    let service = Api::<Service>::namespaced(client.clone(), &pns).get("prod").await.unwrap();
    assert!(owner(service.owner_references()));
    let ingress = Api::<Ingress>::namespaced(client.clone(), &pns).get("prod").await.unwrap();
    assert!(owner(ingress.owner_references()));
    let ispec = ingress.spec.clone().unwrap();
    assert_eq!(ispec.rules.unwrap()[0].host.as_deref(), Some(format!("api.{base}").as_str()));
    assert_eq!(ispec.tls.unwrap()[0].hosts, Some(vec![format!("api.{base}")]));
    assert_eq!(ingress.annotations().get("cert-manager.io/cluster-issuer").map(String::as_str), Some("letsencrypt"));
    // A kubelet reports prod's pod ready: the Environment is Running, and the Project says so.
    let pod_api = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &pns);
    for pod in pods(&pod_api, "kapsa-project.io/environment=prod", 1).await {
        set_pod(&pod_api, &pod, true).await;
    }
    until("prod Running", || async {
        let st = envs.get("prod").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if st.phase.as_deref() == Some("Running") && st.urls == vec![format!("https://api.{base}")] {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await;
    until("the project's latest image", || async {
        let st = projects.get("api").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let prod_ready = st.environments.iter().any(|e| e.name == "prod" && e.ready);
        if st.latest_image.as_deref() == Some(good) && st.latest_commit.as_deref() == Some(main1.as_str()) && prod_ready
        {
            Ok(())
        } else {
            Err(format!("{st:?}"))
        }
    })
    .await;

    // A new commit on main builds again; the build fails: BuildSucceeded=False, prod stays
    // on the last good image, and the failed commit is not built again.
    let main2 = repo.commit("main", "second");
    refresh(&projects, "api", 1).await;
    until("build-main at the new commit", || async {
        let i = images.get("build-main").await.map_err(|e| e.to_string())?;
        let rev = i.data["spec"]["source"]["git"]["revision"].as_str().unwrap_or_default().to_owned();
        if rev == main2 { Ok(()) } else { Err(rev) }
    })
    .await;
    finish_build(&images, "build-main", false, "").await;
    until("BuildSucceeded=False with kpack's reason", || async {
        let st = projects.get("api").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let c = st.conditions.iter().find(|c| c.type_ == "BuildSucceeded").cloned();
        match c {
            Some(c)
                if c.status == "False" && c.reason == "BuildFailed" && c.message.contains("build step exited 1") =>
            {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let generation = images.get("build-main").await.unwrap().metadata.generation;
    refresh(&projects, "api", 2).await;
    until("the refresh polled", || async {
        let st = projects.get("api").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if st.last_refresh.as_deref() == Some("2") { Ok(()) } else { Err(format!("{:?}", st.last_refresh)) }
    })
    .await;
    assert_eq!(
        images.get("build-main").await.unwrap().metadata.generation,
        generation,
        "a failed commit is not rebuilt"
    );
    let d = deployments.get("prod").await.unwrap();
    assert_eq!(d.spec.template.spec.unwrap().containers[0].image.as_deref(), Some(good), "last good image");

    // The feature branch goes: its preview goes, the garbage collector removes what it owned,
    // and its host name is released.
    repo.delete_branch("feature/login");
    refresh(&projects, "api", 3).await;
    until("the preview, its Service and Ingress deleted", || async {
        let e = envs.get_opt("preview-feature-login").await.map_err(|e| e.to_string())?;
        let s = Api::<Service>::namespaced(client.clone(), &pns)
            .get_opt("preview-feature-login")
            .await
            .map_err(|e| e.to_string())?;
        let i = Api::<Ingress>::namespaced(client.clone(), &pns)
            .get_opt("preview-feature-login")
            .await
            .map_err(|e| e.to_string())?;
        match (e, s, i) {
            (None, None, None) => Ok(()),
            (e, s, i) => Err(format!("env {} service {} ingress {}", e.is_some(), s.is_some(), i.is_some())),
        }
    })
    .await;
    until("the preview's host released", || async {
        let a = pools.get(&pool).await.map_err(|e| e.to_string())?.status.unwrap_or_default().allocations;
        if a.len() == 2 && !a.iter().any(|a| a.environment == "preview-feature-login") {
            Ok(())
        } else {
            Err(format!("{a:?}"))
        }
    })
    .await;
    assert!(deployments.get_opt("prod").await.unwrap().is_some(), "prod is untouched");

    // The project goes: its namespace goes (with everything in it), its hosts are released.
    projects.delete("api", &DeleteParams::default()).await.unwrap();
    until("the project, its namespace and its host names gone", || async {
        let p = projects.get_opt("api").await.map_err(|e| e.to_string())?;
        let n = Api::<Namespace>::all(client.clone()).get_opt(&pns).await.map_err(|e| e.to_string())?;
        let terminating = n.as_ref().is_none_or(|n| n.metadata.deletion_timestamp.is_some());
        let a = pools.get(&pool).await.map_err(|e| e.to_string())?.status.unwrap_or_default().allocations;
        if p.is_none() && terminating && a.is_empty() {
            Ok(())
        } else {
            Err(format!("project {} namespace terminating {terminating} allocations {a:?}", p.is_some()))
        }
    })
    .await;
    // The pool is Ready (no cert-manager here: its issuer is not checked, and it says so), and
    // a host name held by a Project that no longer exists (deleted while no reconciler ran) is
    // released.
    let mut dp = pools.get(&pool).await.unwrap();
    let ready = dp.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
    assert!(ready.as_ref().is_some_and(|c| c.status == "True" && c.reason == "IssuerNotChecked"), "{ready:?}");
    let orphan = persys_crds::kapsa::Allocation {
        subdomain: "old".into(),
        base_domain: base.clone(),
        project: format!("{ns}/deleted-long-ago"),
        environment: "prod".into(),
    };
    dp.status.get_or_insert_with(Default::default).allocations.push(orphan);
    pools.replace_status(&pool, &PostParams::default(), &dp).await.unwrap();
    until("the orphaned host name released", || async {
        let a = pools.get(&pool).await.map_err(|e| e.to_string())?.status.unwrap_or_default().allocations;
        if a.is_empty() { Ok(()) } else { Err(format!("{a:?}")) }
    })
    .await;
    // Nothing of the project is left in any other namespace.
    let stray = Api::<Environment>::all(client.clone())
        .list(&ListParams::default().labels(&format!(
            "{}=api,{}={ns}",
            project::LABEL_PROJECT,
            project::LABEL_PROJECT_NAMESPACE
        )))
        .await
        .unwrap();
    assert!(stray.items.iter().all(|e| e.namespace().as_deref() == Some(pns.as_str())), "environments outside {pns}");

    // What the test made itself.
    pools.delete(&pool, &DeleteParams::default()).await.unwrap();
    Api::<persys_crds::kapsa::Registry>::all(client.clone()).delete(&registry, &DeleteParams::default()).await.unwrap();
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.unwrap();
}

/// The project's setup (namespace, credentials, ServiceAccounts, RoleBinding) is not redone on
/// every reconcile; a change of its Registry and a new generation redo it at once.
#[tokio::test]
async fn a_registry_change_and_a_new_generation_redo_the_setup() {
    let Some(client) = client().await else { return };
    common::install_crds(&client, vec![common::kpack_crd()]).await;
    let git = GitServer::start(None).await;
    let repo = git.create_repo("svc.git");
    let main1 = repo.commit("main", "first");

    let id = std::process::id();
    let ns = format!("kapsa-setup-{id}");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let (registry, pool) = (format!("reg-setup-{id}"), format!("pool-setup-{id}"));
    let registries = Api::<persys_crds::kapsa::Registry>::all(client.clone());
    let set_endpoint = |endpoint: &str| {
        json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Registry", "metadata": {"name": registry},
            "spec": {"type": "docker", "endpoint": endpoint}})
    };
    registries
        .patch(&registry, &PatchParams::apply(MANAGER), &Patch::Apply(&set_endpoint("http://127.0.0.1:5998")))
        .await
        .unwrap();
    let dp = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "DomainPool", "metadata": {"name": pool},
        "spec": {"baseDomains": [format!("setup-{id}.example.com")], "certManager": {"issuerRef": {"name": "letsencrypt"}}}});
    Api::<DomainPool>::all(client.clone())
        .patch(&pool, &PatchParams::apply(MANAGER), &Patch::Apply(&dp))
        .await
        .unwrap();

    let (_trigger, stop) = shutdown::channel();
    tokio::spawn(project::run(client.clone(), project::Options::default(), stop));
    let projects = Api::<Project>::namespaced(client.clone(), &ns);
    let proj = |poll: u32| {
        json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project", "metadata": {"name": "svc"},
        "spec": {
            "repository": {"url": git.url("svc.git"), "branch": "main", "pollInterval": poll},
            "build": {"strategy": "buildpack"},
            "registry": {"name": registry, "imageRepository": "team/svc"},
            "domain": {"subdomain": "svc", "domainPoolRef": pool},
            "environments": [{"name": "prod"}]}})
    };
    projects.patch("svc", &PatchParams::apply(MANAGER), &Patch::Apply(&proj(3600))).await.unwrap();
    let pns = format!("{ns}-svc");
    let kpack = ApiResource::from_gvk_with_plural(&project::kpack_image(), "images");
    let images = Api::<DynamicObject>::namespaced_with(client.clone(), &pns, &kpack);
    let tag = |images: Api<DynamicObject>| async move {
        let i = images.get_opt("build-main").await.map_err(|e| e.to_string())?.ok_or("no Image yet")?;
        Ok::<_, String>(i.data["spec"]["tag"].as_str().unwrap_or_default().to_owned())
    };
    let want = format!("127.0.0.1:5998/team/svc:{}", &main1[..7]);
    until("main built for the first registry", || async {
        let t = tag(images.clone()).await?;
        if t == want { Ok(()) } else { Err(t) }
    })
    .await;

    // The Registry moves: the project's builds follow without waiting for a resync or a poll.
    registries
        .patch(&registry, &PatchParams::apply(MANAGER), &Patch::Apply(&set_endpoint("http://127.0.0.1:5997")))
        .await
        .unwrap();
    let want = format!("127.0.0.1:5997/team/svc:{}", &main1[..7]);
    until("main's Image retagged for the moved registry", || async {
        let t = tag(images.clone()).await?;
        if t == want { Ok(()) } else { Err(t) }
    })
    .await;

    // Someone deletes the developers' RoleBinding; the next generation of the project puts it back.
    let bindings = Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), &pns);
    bindings.delete("kapsa-developers", &DeleteParams::default()).await.unwrap();
    projects.patch("svc", &PatchParams::apply(MANAGER), &Patch::Apply(&proj(3601))).await.unwrap();
    until("the RoleBinding restored by the new generation's setup", || async {
        match bindings.get_opt("kapsa-developers").await.map_err(|e| e.to_string())? {
            Some(b) if b.metadata.deletion_timestamp.is_none() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    projects.delete("svc", &DeleteParams::default()).await.unwrap();
    until("the project gone with its finalizer", || async {
        match projects.get_opt("svc").await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".into()),
        }
    })
    .await;
    registries.delete(&registry, &DeleteParams::default()).await.unwrap();
    Api::<DomainPool>::all(client.clone()).delete(&pool, &DeleteParams::default()).await.unwrap();
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn the_schema_rejects_bad_projects_and_environments_naming_the_field() {
    let Some(client) = client().await else { return };
    common::install_crds(&client, Vec::new()).await;
    let projects = Api::<Project>::namespaced(client.clone(), "default");
    let good = json!({
        "repository": {"url": "https://git.example.com/app.git"},
        "build": {"strategy": "buildpack"},
        "registry": {"name": "r", "imageRepository": "team/api"},
        "domain": {"subdomain": "api", "domainPoolRef": "pool"}});
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/repository/pollInterval", json!(10), "spec.repository.pollInterval"),
        ("/repository/url", json!("https://user:secret@git.example.com/app.git"), "spec.repository.url"),
        ("/repository/url", json!("git@github.com:o/app.git"), "spec.repository.url"),
        ("/domain/subdomain", json!("Not_A_Label"), "spec.domain.subdomain"),
        ("/build/strategy", json!("make"), "spec.build.strategy"),
        ("/previewEnvironments", json!({"enabled": true, "ttl": "a week"}), "spec.previewEnvironments.ttl"),
        ("/environments", json!([{"name": "Prod!"}]), "spec.environments[0].name"),
    ];
    for (i, (pointer, value, field)) in cases.into_iter().enumerate() {
        let mut spec = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = if parent.is_empty() { &mut spec } else { spec.pointer_mut(parent).unwrap() };
        target[key] = value;
        let name = format!("bad-{i}");
        let p = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project", "metadata": {"name": name}, "spec": spec});
        match projects.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&p)).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{field}: {e:?}");
                assert!(e.message.contains(field), "{field} not named: {}", e.message);
            }
            other => panic!("{field}: accepted: {other:?}"),
        }
    }
    let envs = Api::<Environment>::namespaced(client.clone(), "default");
    let bad = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment", "metadata": {"name": "bad-env"},
        "spec": {"projectRef": {"name": "p"}, "type": "permanent",
            "runtime": {"replicas": -1, "resources": {"limits": {"cpu": "lots"}}, "ports": [{"containerPort": 70000}]}}});
    match envs.patch("bad-env", &PatchParams::apply(MANAGER), &Patch::Apply(&bad)).await {
        Err(kube::Error::Api(e)) => {
            for field in
                ["spec.runtime.replicas", "spec.runtime.resources.limits.cpu", "spec.runtime.ports[0].containerPort"]
            {
                assert!(e.message.contains(field), "{field} not named: {}", e.message);
            }
        }
        other => panic!("a bad Environment was accepted: {other:?}"),
    }
    let pools = Api::<DomainPool>::all(client.clone());
    for (base, field) in [(json!([]), "spec.baseDomains"), (json!(["Apps Example"]), "spec.baseDomains[0]")] {
        let bad = json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "DomainPool", "metadata": {"name": "bad-pool"},
            "spec": {"baseDomains": base, "certManager": {"issuerRef": {"name": "x", "kind": "Acme"}}}});
        match pools.patch("bad-pool", &PatchParams::apply(MANAGER), &Patch::Apply(&bad)).await {
            Err(kube::Error::Api(e)) => {
                for field in [field, "spec.certManager.issuerRef.kind"] {
                    assert!(e.message.contains(field), "{field} not named: {}", e.message);
                }
            }
            other => panic!("a bad DomainPool was accepted: {other:?}"),
        }
    }
}
