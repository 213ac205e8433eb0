use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{Container, PodSpec, PodTemplateSpec, SecurityContext, Service, ServicePort, ServiceSpec},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use persys_proto::analyzer::v1::{ApplicationPersonaSpec, ManifestFile, PersonaNetworking, PersonaPort};

use super::{Object, validate_files, validate_objects};
use crate::generate::to_yaml;

fn persona() -> ApplicationPersonaSpec {
    ApplicationPersonaSpec {
        name: "web".into(),
        networking: Some(PersonaNetworking {
            ports: vec![PersonaPort { port: 8080, ..PersonaPort::default() }],
            ingress: None,
        }),
        ..ApplicationPersonaSpec::default()
    }
}

fn meta(namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta { name: Some("web".into()), namespace: namespace.map(str::to_owned), ..ObjectMeta::default() }
}

/// A Deployment and a Service that break rules: privileged, no resources, an unpinned image, a
/// missing port.
fn objects() -> Vec<(&'static str, Object)> {
    let container = Container {
        name: "web".into(),
        image: Some("nginx".into()),
        security_context: Some(SecurityContext { privileged: Some(true), ..SecurityContext::default() }),
        ..Container::default()
    };
    let deployment = Deployment {
        metadata: meta(None),
        spec: DeploymentSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec { containers: vec![container], ..PodSpec::default() }),
                ..PodTemplateSpec::default()
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    };
    let service = Service {
        metadata: meta(Some("shop")),
        spec: Some(ServiceSpec {
            ports: Some(vec![ServicePort { port: 80, ..ServicePort::default() }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    vec![
        ("deployment.yaml", Object::Deployment(Box::new(deployment))),
        ("service.yaml", Object::Service(Box::new(service))),
    ]
}

#[test]
fn typed_objects_give_the_findings_of_their_yaml() {
    let objects = objects();
    let files: Vec<ManifestFile> = objects
        .iter()
        .map(|(path, o)| ManifestFile {
            path: (*path).into(),
            content: match o {
                Object::Deployment(d) => to_yaml(d),
                Object::Service(s) => to_yaml(s),
                _ => unreachable!(),
            },
            kind: String::new(),
        })
        .collect();
    let typed = validate_objects(objects.iter().map(|(p, o)| (*p, o)), &persona(), "apps");
    assert_eq!(typed, validate_files(&files, &persona(), "apps"));
    let rules: Vec<&str> = typed.iter().map(|f| f.rule_id.as_str()).collect();
    for rule in ["security.privileged", "resources.memory-limit-missing", "networking.port-not-exposed"] {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
    assert!(!rules.contains(&"metadata.no-deployment"), "{rules:?}");
    let privileged = typed.iter().find(|f| f.rule_id == "security.privileged").unwrap();
    let resource = privileged.resource.as_ref().unwrap();
    assert_eq!(
        (privileged.file.as_str(), resource.kind.as_str(), resource.namespace.as_str(), resource.name.as_str()),
        ("deployment.yaml", "Deployment", "apps", "web"),
        "a Deployment without a namespace is in the request's"
    );
    let port = typed.iter().find(|f| f.rule_id == "networking.port-not-exposed").unwrap();
    assert_eq!(port.resource.as_ref().unwrap().namespace, "shop");
}

#[test]
fn read_manifests_that_do_not_fit_are_schema_errors() {
    let file =
        |path: &str, content: &str| ManifestFile { path: path.into(), content: content.into(), kind: String::new() };
    let files = [
        file("bad.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: two\n"),
        file("broken.yaml", "a: [1\n"),
    ];
    let found = validate_files(&files, &persona(), "");
    let invalid = found.iter().find(|f| f.rule_id == "schema.invalid-object").expect("invalid object");
    let resource = invalid.resource.as_ref().unwrap();
    assert_eq!(
        (invalid.file.as_str(), resource.namespace.as_str(), resource.name.as_str()),
        ("bad.yaml", "default", "web")
    );
    assert!(found.iter().any(|f| f.rule_id == "schema.unparsable" && f.file == "broken.yaml"), "{found:?}");
    // An unreadable Deployment is still a Deployment among the manifests.
    assert!(!found.iter().any(|f| f.rule_id == "metadata.no-deployment"), "{found:?}");
    assert!(validate_objects([], &persona(), "").iter().any(|f| f.rule_id == "metadata.no-deployment"));
}
