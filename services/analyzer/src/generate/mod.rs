//! Manifest generation from typed k8s-openapi structs: every app gets a ServiceAccount, a
//! ConfigMap for its plain settings, a hardened Deployment, a Service, an Ingress when a host is
//! given, an HPA, a PodDisruptionBudget when it runs several replicas, a deny-by-default
//! NetworkPolicy, PVCs for its volumes, a kustomization, and its persona with PERSONA.md.
//! Output is deterministic: sorted maps, fixed file order, no timestamps.

mod kustomize;
mod network;
mod scaling;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::{analysis::Analysis, model::App, persona, validate::Object};

/// One generated file.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Content.
    pub content: String,
    /// Main kind it holds.
    pub kind: String,
    /// The object it holds, when it is one the persona rules check: validation reads it
    /// instead of reading `content` back.
    pub object: Option<Object>,
}

/// Serializes one object to YAML that YAML 1.1 readers (kubectl, PyYAML) read back unchanged.
pub fn to_yaml<T: Serialize>(value: &T) -> String {
    crate::yaml::to_string(value).expect("manifests always serialize")
}

/// Labels every resource of an app carries.
pub fn labels(app: &App, environment: &str) -> BTreeMap<String, String> {
    let mut l = app.labels.clone();
    l.insert("app.kubernetes.io/name".into(), app.name.clone());
    l.insert("app.kubernetes.io/part-of".into(), app.part_of.clone());
    l.insert("app.kubernetes.io/component".into(), app.component.clone());
    l.insert("app.kubernetes.io/managed-by".into(), "dorgu".into());
    if !environment.is_empty() {
        l.insert("app.kubernetes.io/environment".into(), environment.into());
    }
    if !app.team.is_empty() {
        l.insert("dorgu.io/team".into(), app.team.clone());
    }
    l
}

/// The selector of an app's pods: its name label, which the persona controller matches on.
pub fn selector(app: &App) -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".to_owned(), app.name.clone())])
}

/// Metadata of a resource of `app`.
pub fn meta(app: &App, name: &str, namespace: &str, environment: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(app, environment)),
        ..ObjectMeta::default()
    }
}

/// Generates every file for the analysis, in a stable order.
pub fn generate(analysis: &Analysis) -> Vec<Manifest> {
    let multi = analysis.is_multi();
    let mut files = Vec::new();
    let mut top_resources = Vec::new();
    for app in &analysis.apps {
        let dir = if multi { format!("{}/", app.name) } else { String::new() };
        let mut app_files = app_manifests(analysis, app);
        let mut resources: Vec<String> =
            app_files.iter().filter(|f| f.kind != "Markdown").map(|f| f.path.clone()).collect();
        if multi {
            app_files.push(kustomize::kustomization(analysis, std::mem::take(&mut resources), &[app]));
            top_resources.push(app.name.clone());
        } else {
            top_resources.append(&mut resources);
        }
        for mut f in app_files {
            f.path = format!("{dir}{}", f.path);
            files.push(f);
        }
    }
    let claims = workload::claims(analysis);
    for claim in &claims {
        top_resources.push(claim.path.clone());
    }
    files.extend(claims);
    let apps: Vec<&App> = analysis.apps.iter().collect();
    let mut top = kustomize::kustomization(analysis, top_resources, &apps);
    if multi {
        top.path = "kustomization.yaml".into();
    }
    files.push(top);
    if let Some(app) = kustomize::argocd(analysis) {
        files.push(app);
    }
    if !multi {
        // PERSONA.md goes last so the manifests a reader scans come first.
        let md = files.iter().position(|f| f.kind == "Markdown");
        if let Some(i) = md {
            let f = files.remove(i);
            files.push(f);
        }
    }
    files
}

fn app_manifests(analysis: &Analysis, app: &App) -> Vec<Manifest> {
    let ns = analysis.options.namespace.as_str();
    let env = analysis.options.environment.as_str();
    let mut out = vec![workload::service_account(app, ns, env)];
    if let Some(cm) = workload::config_map(app, ns, env) {
        out.push(cm);
    }
    out.push(workload::deployment(app, ns, env));
    if let Some(s) = network::service(app, ns, env) {
        out.push(s);
    }
    if let Some(i) = network::ingress(analysis, app) {
        out.push(i);
    }
    if let Some(h) = scaling::hpa(app, ns, env) {
        out.push(h);
    }
    if let Some(p) = scaling::pdb(app, ns, env) {
        out.push(p);
    }
    out.push(network::network_policy(analysis, app));
    if !analysis.options.skip_persona {
        let spec = persona::spec_for(analysis, app);
        out.push(Manifest {
            path: "persona.yaml".into(),
            content: persona::to_manifest_yaml(&spec, ns),
            kind: "ApplicationPersona".into(),
            object: None,
        });
        out.push(Manifest {
            path: "PERSONA.md".into(),
            content: persona::markdown(analysis, app, &spec),
            kind: "Markdown".into(),
            object: None,
        });
    }
    out
}
