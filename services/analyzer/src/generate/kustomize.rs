//! kustomization.yaml and the ArgoCD Application (plain serde structs: neither is a Kubernetes
//! built-in type).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Manifest, to_yaml};
use crate::{analysis::Analysis, model::App};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization<'a> {
    api_version: &'static str,
    kind: &'static str,
    namespace: &'a str,
    resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<Image>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    name: String,
    new_name: String,
    new_tag: String,
}

/// A kustomization listing `resources`; the images of the built apps among `apps` get an
/// `images` entry so CI can pin a tag with `kustomize edit set image`.
pub fn kustomization(analysis: &Analysis, resources: Vec<String>, apps: &[&App]) -> Manifest {
    let images = apps
        .iter()
        .filter(|a| a.built)
        .map(|a| {
            let (name, tag) = a.image.rsplit_once(':').unwrap_or((&a.image, "latest"));
            Image { name: name.to_owned(), new_name: name.to_owned(), new_tag: tag.to_owned() }
        })
        .collect();
    let k = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        namespace: &analysis.options.namespace,
        resources,
        images,
    };
    Manifest { path: "kustomization.yaml".into(), content: to_yaml(&k), kind: "Kustomization".into(), object: None }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Application<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    spec: AppSpec<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    namespace: &'static str,
    labels: BTreeMap<&'static str, &'a str>,
    finalizers: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppSpec<'a> {
    project: &'a str,
    source: Source<'a>,
    destination: Destination<'a>,
    sync_policy: SyncPolicy,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source<'a> {
    #[serde(rename = "repoURL")]
    repo_url: &'a str,
    path: &'a str,
    target_revision: &'static str,
}

#[derive(Serialize)]
struct Destination<'a> {
    server: &'static str,
    namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SyncPolicy {
    automated: Automated,
    sync_options: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Automated {
    prune: bool,
    self_heal: bool,
}

/// The ArgoCD Application syncing the manifests from the repository, when the repository is
/// known and it was not skipped.
pub fn argocd(analysis: &Analysis) -> Option<Manifest> {
    if analysis.options.skip_argocd || analysis.repository.is_empty() {
        return None;
    }
    let project = if analysis.options.argocd_project.is_empty() { "default" } else { &analysis.options.argocd_project };
    let app = Application {
        api_version: "argoproj.io/v1alpha1",
        kind: "Application",
        metadata: Metadata {
            name: &analysis.project,
            namespace: "argocd",
            labels: BTreeMap::from([
                ("app.kubernetes.io/managed-by", "dorgu"),
                ("app.kubernetes.io/part-of", analysis.project.as_str()),
            ]),
            // Deleting the Application deletes what it deployed, instead of orphaning it.
            finalizers: vec!["resources-finalizer.argocd.argoproj.io"],
        },
        spec: AppSpec {
            project,
            source: Source {
                repo_url: &analysis.repository,
                path: &analysis.options.manifests_path,
                target_revision: "HEAD",
            },
            destination: Destination {
                server: "https://kubernetes.default.svc",
                namespace: &analysis.options.namespace,
            },
            sync_policy: SyncPolicy {
                automated: Automated { prune: true, self_heal: true },
                sync_options: vec!["CreateNamespace=true"],
            },
        },
    };
    Some(Manifest {
        path: "argocd/application.yaml".into(),
        content: to_yaml(&app),
        kind: "Application".into(),
        object: None,
    })
}
