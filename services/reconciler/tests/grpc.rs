//! PersonaService over mutual TLS, on the real API server's personas: list with filters and
//! pages, get, the cluster persona, a watch that sees a phase change with a summary and
//! resumes from a resource version, and callers refused by identity.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use persys_crds::persona::ApplicationPersona;
use persys_kit::{
    Identity,
    client::{ClientOptions, mtls_channel},
    pki::Ca,
    shutdown,
    tls::Tls,
};
use persys_proto::{
    common::v1::{LabelSelector, LabelSelectorOperator, LabelSelectorRequirement, PageRequest, WatchEventType},
    reconciler::v1::{
        GetApplicationPersonaRequest, GetClusterPersonaRequest, ListApplicationPersonasRequest, PersonaKind,
        PersonaPhase, WatchPersonaEventsRequest, persona_service_client::PersonaServiceClient,
        watch_persona_events_response::Object,
    },
};
use persys_reconciler::{access::Namespaces, grpc::Personas};
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

mod common;

async fn status(personas: &Api<ApplicationPersona>, name: &str, phase: &str) {
    let patch = json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "status": {"phase": phase}});
    personas.patch_status(name, &PatchParams::apply("persys-tests").force(), &Patch::Apply(&patch)).await.unwrap();
}

#[tokio::test]
async fn persona_service_lists_gets_and_watches_over_mtls() {
    let Some(kubeconfig) =
        persys_kit::testing::require_env("PERSYS_TEST_KUBECONFIG", "the test bench's kube-apiserver")
    else {
        return;
    };
    let client: Client = persys_reconciler::client(Some(std::path::Path::new(&kubeconfig))).await.unwrap();
    common::install_crds(&client, vec![]).await;
    let ns = format!("grpc-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .unwrap();
    let personas = Api::<ApplicationPersona>::namespaced(client.clone(), &ns);
    for (name, tier) in [("alpha", "critical"), ("beta", "standard"), ("gamma", "critical")] {
        let p = json!({"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
            "metadata": {"name": name, "labels": {"tier": tier}}, "spec": {"name": name, "type": "api", "tier": tier}});
        personas.patch(name, &PatchParams::apply("persys-tests"), &Patch::Apply(&p)).await.unwrap();
    }
    status(&personas, "alpha", "Active").await;
    status(&personas, "beta", "Degraded").await;

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("grpc-test", Duration::from_secs(3600)).unwrap();
    let server_tls = common::tls(&ca, dir.path(), "reconciler", Identity::Service("reconciler".into()));
    let (_trigger, stop) = shutdown::channel();
    let (listener, addr) = persys_kit::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let namespaces = Namespaces::start(client.clone(), None, stop.clone());
    let cache = persys_reconciler::cache::Personas::start(client.clone(), None, stop.clone());
    let service = Personas::start(client.clone(), &cache, None, namespaces, stop.clone());
    persys_reconciler::serve_personas(service, None, listener, &server_tls, &["gateway".into()], stop).await.unwrap();
    let connect = |tls: Arc<Tls>| {
        PersonaServiceClient::new(
            mtls_channel(&format!("https://localhost:{}", addr.port()), &tls, &ClientOptions::default()).unwrap(),
        )
    };
    let mut gateway = connect(common::tls(&ca, dir.path(), "gateway", Identity::Service("gateway".into())));

    // List: this namespace, two per page, in name order; then by phase; then by label.
    let list = |page: Option<PageRequest>, phases: Vec<i32>, labels: Option<LabelSelector>| {
        ListApplicationPersonasRequest { page, namespace: ns.clone(), phases, label_selector: labels }
    };
    let first = gateway
        .list_application_personas(list(Some(PageRequest { page_size: 2, page_token: String::new() }), vec![], None))
        .await
        .unwrap()
        .into_inner();
    let names = |ps: &[persys_proto::reconciler::v1::ApplicationPersona]| -> Vec<String> {
        ps.iter().map(|p| p.metadata.as_ref().unwrap().name.clone()).collect()
    };
    assert_eq!(names(&first.personas), ["alpha", "beta"]);
    let page = first.page.unwrap();
    assert_eq!(page.total_size, Some(3));
    let second = gateway
        .list_application_personas(list(
            Some(PageRequest { page_size: 2, page_token: page.next_page_token }),
            vec![],
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&second.personas), ["gamma"]);
    assert!(second.page.unwrap().next_page_token.is_empty());
    let active = gateway
        .list_application_personas(list(None, vec![PersonaPhase::Active as i32], None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&active.personas), ["alpha"]);
    let critical =
        LabelSelector { match_labels: [("tier".to_owned(), "critical".to_owned())].into(), ..Default::default() };
    let by_label = gateway.list_application_personas(list(None, vec![], Some(critical))).await.unwrap().into_inner();
    assert_eq!(names(&by_label.personas), ["alpha", "gamma"]);
    assert!(!first.resource_version.is_empty());
    // A selector Kubernetes would refuse (IN without values) is refused, naming the field.
    let bad = LabelSelector {
        match_expressions: vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: LabelSelectorOperator::In as i32,
            values: vec![],
        }],
        ..Default::default()
    };
    let refused = gateway.list_application_personas(list(None, vec![], Some(bad))).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let fields: Vec<String> = refused
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    assert_eq!(fields, ["label_selector.match_expressions[0].values"]);

    // Get, and a clear NOT_FOUND.
    let got = gateway
        .get_application_persona(GetApplicationPersonaRequest { namespace: ns.clone(), name: "beta".into() })
        .await
        .unwrap()
        .into_inner()
        .persona
        .unwrap();
    assert_eq!(got.status.unwrap().phase, PersonaPhase::Degraded as i32);
    assert_eq!(got.spec.unwrap().name, "beta");
    let missing = gateway
        .get_application_persona(GetApplicationPersonaRequest { namespace: ns.clone(), name: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains(&format!("{ns}/nope")), "{}", missing.message());
    let invalid = gateway.get_application_persona(GetApplicationPersonaRequest::default()).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);

    // Watch one persona from a snapshot: ADDED, the BOOKMARK ending the snapshot, then a phase
    // change with its summary.
    let watch = |since: String| WatchPersonaEventsRequest {
        since_resource_version: since,
        kinds: vec![PersonaKind::Application as i32],
        namespace: ns.clone(),
        name: "alpha".into(),
    };
    let mut events = gateway.watch_persona_events(watch(String::new())).await.unwrap().into_inner();
    let added = events.next().await.unwrap().unwrap();
    assert_eq!(added.r#type, WatchEventType::Added as i32);
    let end = events.next().await.unwrap().unwrap();
    assert_eq!(end.r#type, WatchEventType::Bookmark as i32, "the snapshot ends with a BOOKMARK: {end:?}");
    assert!(end.object.is_none() && !end.resource_version.is_empty());
    status(&personas, "alpha", "Failed").await;
    let changed = tokio::time::timeout(Duration::from_secs(20), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(changed.r#type, WatchEventType::Modified as i32);
    assert_eq!(changed.summary, "phase ACTIVE -> FAILED");
    let Some(Object::ApplicationPersona(p)) = changed.object else { panic!("an application persona") };
    assert_eq!(p.status.unwrap().phase, PersonaPhase::Failed as i32);
    drop(events);

    // Resumed from the version of the ADDED event: the change is delivered again, no snapshot.
    let mut resumed = gateway.watch_persona_events(watch(added.resource_version.clone())).await.unwrap().into_inner();
    let again = tokio::time::timeout(Duration::from_secs(20), resumed.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(again.resource_version, changed.resource_version);
    assert_eq!(again.r#type, WatchEventType::Modified as i32, "a change after the resumed version is not a new object");

    // A name without a namespace is a field violation; only the gateway's identity may call.
    let bad = WatchPersonaEventsRequest { name: "alpha".into(), ..Default::default() };
    assert_eq!(gateway.watch_persona_events(bad).await.unwrap_err().code(), Code::InvalidArgument);
    let mut scheduler = connect(common::tls(&ca, dir.path(), "scheduler", Identity::Service("scheduler".into())));
    let refused = scheduler.list_application_personas(list(None, vec![], None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Restricted to the namespace (`--namespace`, the chart's reconciler.namespace): that one
    // only, whatever the caller asks, and no ClusterPersona (its RBAC reads nothing cluster-wide).
    let (listener, addr) = persys_kit::server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (_trigger2, stop2) = shutdown::channel();
    let namespaces = Namespaces::start(client.clone(), Some(ns.clone()), stop2.clone());
    let cache = persys_reconciler::cache::Personas::start(client.clone(), Some(&ns), stop2.clone());
    let restricted = Personas::start(client.clone(), &cache, Some(ns.clone()), namespaces, stop2.clone());
    persys_reconciler::serve_personas(restricted, None, listener, &server_tls, &["gateway".into()], stop2)
        .await
        .unwrap();
    let mut one = PersonaServiceClient::new(
        mtls_channel(
            &format!("https://localhost:{}", addr.port()),
            &common::tls(&ca, dir.path(), "gateway", Identity::Service("gateway".into())),
            &ClientOptions::default(),
        )
        .unwrap(),
    );
    let every = ListApplicationPersonasRequest::default();
    let served = one.list_application_personas(every.clone()).await.unwrap().into_inner();
    assert_eq!(names(&served.personas), ["alpha", "beta", "gamma"], "its namespace's personas, none of another");
    let elsewhere = ListApplicationPersonasRequest { namespace: "kube-system".into(), ..every };
    let refused = one.list_application_personas(elsewhere).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&format!("serves namespace {ns} only")), "{}", refused.message());
    let no_cluster = one.get_cluster_persona(GetClusterPersonaRequest::default()).await.unwrap_err();
    assert_eq!(no_cluster.code(), Code::FailedPrecondition, "{no_cluster:?}");

    Api::<Namespace>::all(client.clone()).delete(&ns, &Default::default()).await.unwrap();
}
