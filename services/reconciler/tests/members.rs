//! Member scoping by namespace in PersonaService and ProjectService, on the real API server:
//! a member reads the namespaces whose `persys.io/members` annotation names them and the
//! namespaces made for those namespaces' projects; another namespace's objects are left out of
//! lists and watches, read as NOT_FOUND, and a filter naming it is PERMISSION_DENIED. Viewers
//! and admins read everything. A membership change applies to a running watch. A reconciler
//! restricted to one namespace (`--namespace`) scopes the same way.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use persys_kit::{
    client::TracedChannel,
    identity::{Role, USER_ID_HEADER, USER_NAME_HEADER, USER_ROLE_HEADER},
    pki::Ca,
    shutdown::ShutdownTrigger,
};
use persys_proto::{
    common::v1::WatchEventType,
    reconciler::v1::{
        self as pb, persona_service_client::PersonaServiceClient, project_service_client::ProjectServiceClient,
    },
};
use persys_reconciler::{decide::access::MEMBERS_ANNOTATION, project};
use serde_json::json;
use tonic::{Code, Request, Status};

mod common;

const MANAGER: &str = "persys-tests";
const EVENT: Duration = Duration::from_secs(20);

/// A request as the gateway forwards it for `user` with `role`.
fn as_user<T>(message: T, user: &str, role: Role) -> Request<T> {
    let mut r = Request::new(message);
    let m = r.metadata_mut();
    m.insert(USER_ID_HEADER, format!("id-{user}").parse().unwrap());
    m.insert(USER_NAME_HEADER, user.parse().unwrap());
    m.insert(USER_ROLE_HEADER, role.as_str().parse().unwrap());
    r
}

async fn apply(client: &Client, object: serde_json::Value) {
    let ar = |kind: &str| match kind {
        "Namespace" => (None, kube::api::ApiResource::erase::<Namespace>(&())),
        "ApplicationPersona" => (
            object["metadata"]["namespace"].as_str(),
            kube::api::ApiResource::erase::<persys_crds::persona::ApplicationPersona>(&()),
        ),
        "Project" => (
            object["metadata"]["namespace"].as_str(),
            kube::api::ApiResource::erase::<persys_crds::kapsa::Project>(&()),
        ),
        "Environment" => (
            object["metadata"]["namespace"].as_str(),
            kube::api::ApiResource::erase::<persys_crds::kapsa::Environment>(&()),
        ),
        other => panic!("no kind {other}"),
    };
    let (ns, resource) = ar(object["kind"].as_str().unwrap());
    let api: Api<kube::api::DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object)).await.unwrap();
}

/// A namespace with `members` (none: no annotation), made by the Project controller for a
/// project of `parent` when given.
fn namespace(name: &str, members: Option<&str>, parent: Option<&str>) -> serde_json::Value {
    let mut meta = json!({"name": name});
    if let Some(m) = members {
        meta["annotations"] = json!({MEMBERS_ANNOTATION: m});
    }
    if let Some(p) = parent {
        meta["labels"] = json!({"app.kubernetes.io/managed-by": "persys-reconciler", project::LABEL_PROJECT: "api",
            project::LABEL_PROJECT_NAMESPACE: p});
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
}

fn persona(ns: &str, name: &str, tier: &str) -> serde_json::Value {
    json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": name, "namespace": ns},
        "spec": {"name": name, "type": "api", "tier": tier}})
}

fn project_object(ns: &str, tier: &str) -> serde_json::Value {
    json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Project",
        "metadata": {"name": "api", "namespace": ns, "labels": {"tier": tier}},
        "spec": {"repository": {"url": "https://git.example.com/api.git", "pollInterval": 120},
            "build": {"strategy": "buildpack"}, "registry": {"name": "harbor", "imageRepository": "team/api"},
            "domain": {"subdomain": "api", "domainPoolRef": "apps"}, "environments": [{"name": "dev"}]}})
}

fn environment(ns: &str, project_ns: &str) -> serde_json::Value {
    json!({"apiVersion": "kapsa-project.io/v1alpha1", "kind": "Environment",
        "metadata": {"name": "dev", "namespace": ns,
            "labels": {project::LABEL_PROJECT: "api", project::LABEL_PROJECT_NAMESPACE: project_ns}},
        "spec": {"projectRef": {"name": "api", "namespace": project_ns}, "type": "permanent", "branch": "main"}})
}

struct Clients {
    personas: PersonaServiceClient<TracedChannel>,
    projects: ProjectServiceClient<TracedChannel>,
}

async fn serve(
    client: &Client,
    namespace: Option<String>,
    dir: &std::path::Path,
    ca: &Ca,
) -> (Clients, ShutdownTrigger) {
    let (channel, trigger) = common::serve(client, project::kpack_image(), namespace, dir, ca).await;
    (
        Clients { personas: PersonaServiceClient::new(channel.clone()), projects: ProjectServiceClient::new(channel) },
        trigger,
    )
}

/// `namespace/name` of each persona `user` lists across every namespace, among `ours`.
async fn personas_of(c: &mut Clients, user: &str, role: Role, ours: &[&str]) -> Result<Vec<String>, Status> {
    let r = c
        .personas
        .list_application_personas(as_user(pb::ListApplicationPersonasRequest::default(), user, role))
        .await?;
    Ok(r.into_inner()
        .personas
        .iter()
        .filter_map(|p| p.metadata.as_ref())
        .filter(|m| ours.contains(&m.namespace.as_str()))
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .collect())
}

/// Polls `f` until it returns `want` (the namespace cache follows a watch).
async fn eventually<F, Fut>(what: &str, want: Vec<String>, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        let got = f().await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {got:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn next_name<S, T>(events: &mut S, name: impl Fn(&T) -> Option<(String, String)>) -> (String, String)
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    loop {
        let e =
            tokio::time::timeout(EVENT, events.next()).await.expect("an event in time").expect("the stream goes on");
        if let Some(n) = name(&e.expect("an event, not an error")) {
            return n;
        }
    }
}

fn persona_event(e: &pb::WatchPersonaEventsResponse) -> Option<(String, String)> {
    match &e.object {
        Some(pb::watch_persona_events_response::Object::ApplicationPersona(p)) => {
            p.metadata.as_ref().map(|m| (m.namespace.clone(), m.name.clone()))
        }
        _ => None,
    }
}

#[tokio::test]
async fn members_read_only_the_namespaces_that_name_them() {
    let Some(client) = common::client().await else { return };
    common::install_crds(&client, vec![]).await;
    let id = std::process::id();
    let (team, other) = (format!("members-{id}"), format!("members2-{id}"));
    let (team_api, other_api) = (format!("{team}-api"), format!("{other}-api"));
    apply(&client, namespace(&team, Some("alice, carol"), None)).await;
    apply(&client, namespace(&other, None, None)).await;
    apply(&client, namespace(&team_api, None, Some(&team))).await;
    apply(&client, namespace(&other_api, None, Some(&other))).await;
    for ns in [&team, &other] {
        apply(&client, persona(ns, "shop", "standard")).await;
        apply(&client, project_object(ns, "backend")).await;
    }
    apply(&client, environment(&team_api, &team)).await;
    apply(&client, environment(&other_api, &other)).await;
    let ours = [team.as_str(), other.as_str(), team_api.as_str(), other_api.as_str()];

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("members-test", Duration::from_secs(3600)).unwrap();
    let (mut c, _stop) = serve(&client, None, dir.path(), &ca).await;

    // Lists: alice (a member of team) reads team's persona only; bob (a member of nothing)
    // none; a viewer and an admin both.
    let (t, o) = (format!("{team}/shop"), format!("{other}/shop"));
    assert_eq!(personas_of(&mut c, "alice", Role::Member, &ours).await.unwrap(), [t.as_str()]);
    assert_eq!(personas_of(&mut c, "bob", Role::Member, &ours).await.unwrap(), Vec::<String>::new());
    for (user, role) in [("vera", Role::Viewer), ("ada", Role::Admin)] {
        assert_eq!(personas_of(&mut c, user, role, &ours).await.unwrap(), [t.clone(), o.clone()], "{user}");
    }
    // Gets: another namespace's persona reads as missing; a filter naming it is refused.
    let get = |ns: &str| pb::GetApplicationPersonaRequest { namespace: ns.into(), name: "shop".into() };
    c.personas.get_application_persona(as_user(get(&team), "alice", Role::Member)).await.unwrap();
    let hidden = c.personas.get_application_persona(as_user(get(&other), "alice", Role::Member)).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    let missing = c.personas.get_application_persona(as_user(get(&other), "ada", Role::Admin)).await;
    assert!(missing.is_ok(), "an admin reads it: {missing:?}");
    let filtered = pb::ListApplicationPersonasRequest { namespace: other.clone(), ..Default::default() };
    let denied = c.personas.list_application_personas(as_user(filtered, "alice", Role::Member)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains(MEMBERS_ANNOTATION), "says how to get in: {}", denied.message());

    // Projects in team, and the environment in team's project namespace (<team>-api).
    let projects = c.projects.list_projects(as_user(pb::ListProjectsRequest::default(), "alice", Role::Member)).await;
    let names: Vec<String> = projects
        .unwrap()
        .into_inner()
        .projects
        .iter()
        .filter_map(|p| p.metadata.as_ref())
        .filter(|m| ours.contains(&m.namespace.as_str()))
        .map(|m| m.namespace.clone())
        .collect();
    assert_eq!(names, [team.as_str()]);
    let envs =
        c.projects.list_environments(as_user(pb::ListEnvironmentsRequest::default(), "alice", Role::Member)).await;
    let env_ns: Vec<String> = envs
        .unwrap()
        .into_inner()
        .environments
        .iter()
        .filter_map(|e| e.metadata.as_ref())
        .filter(|m| ours.contains(&m.namespace.as_str()))
        .map(|m| m.namespace.clone())
        .collect();
    assert_eq!(env_ns, [team_api.as_str()], "the project namespace of team's project, not other's");
    let get_env = |ns: &str| pb::GetEnvironmentRequest { namespace: ns.into(), name: "dev".into() };
    c.projects.get_environment(as_user(get_env(&team_api), "alice", Role::Member)).await.unwrap();
    let hidden = c.projects.get_environment(as_user(get_env(&other_api), "alice", Role::Member)).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");
    let by_project = pb::ListEnvironmentsRequest { project: format!("{other}/api"), ..Default::default() };
    let denied = c.projects.list_environments(as_user(by_project, "alice", Role::Member)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "a project filter naming another namespace: {denied:?}");
    let get_project = pb::GetProjectRequest { namespace: other.clone(), name: "api".into() };
    let hidden = c.projects.get_project(as_user(get_project, "alice", Role::Member)).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "{hidden:?}");

    // A watch across namespaces: the snapshot holds team's persona only; a change in other is
    // not sent; once other names alice, its changes are.
    let watch =
        pb::WatchPersonaEventsRequest { kinds: vec![pb::PersonaKind::Application as i32], ..Default::default() };
    let mut events = c.personas.watch_persona_events(as_user(watch, "alice", Role::Member)).await.unwrap().into_inner();
    let mut snapshot = Vec::new();
    loop {
        let e = tokio::time::timeout(EVENT, events.next()).await.unwrap().unwrap().unwrap();
        if e.r#type == WatchEventType::Bookmark as i32 {
            break;
        }
        if let Some((ns, name)) = persona_event(&e).filter(|(ns, _)| ours.contains(&ns.as_str())) {
            snapshot.push(format!("{ns}/{name}"));
        }
    }
    assert_eq!(snapshot, [t.as_str()]);
    apply(&client, persona(&other, "shop", "critical")).await;
    apply(&client, persona(&team, "shop", "critical")).await;
    let first = next_name(&mut events, |e| persona_event(e).filter(|(ns, _)| ours.contains(&ns.as_str()))).await;
    assert_eq!(first, (team.clone(), "shop".into()), "other's change is not sent to alice");
    apply(&client, namespace(&other, Some("alice"), None)).await;
    eventually("alice reads other once it names her", vec![t.clone(), o.clone()], || {
        let mut c = Clients { personas: c.personas.clone(), projects: c.projects.clone() };
        async move { personas_of(&mut c, "alice", Role::Member, &ours).await.unwrap() }
    })
    .await;
    apply(&client, persona(&other, "shop", "standard")).await;
    let next = next_name(&mut events, |e| persona_event(e).filter(|(ns, _)| ours.contains(&ns.as_str()))).await;
    assert_eq!(next, (other.clone(), "shop".into()), "the running watch follows the new membership");

    // Restricted to team (`--namespace`): alice reads it; bob lists nothing and is refused a
    // filter naming it.
    let (mut one, _stop_one) = serve(&client, Some(team.clone()), dir.path(), &ca).await;
    assert_eq!(personas_of(&mut one, "alice", Role::Member, &ours).await.unwrap(), [t.as_str()]);
    assert_eq!(personas_of(&mut one, "bob", Role::Member, &ours).await.unwrap(), Vec::<String>::new());
    let filtered = pb::ListApplicationPersonasRequest { namespace: team.clone(), ..Default::default() };
    let denied = one.personas.list_application_personas(as_user(filtered, "bob", Role::Member)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    for ns in ours {
        Api::<Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await.unwrap();
    }
}
