//! `dorgu persona apply`, `persona status` and `cluster status` through the Kubernetes API
//! with kube (no kubectl): server-side apply under the field manager `dorgu`, and reads of
//! the statuses the reconciler writes (formatted by [`crate::status`]); with `--server`, the
//! statuses are read through the gateway instead ([`crate::remote`]).

use anyhow::Context;
use kube::{
    Client, Config, ResourceExt,
    api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use persys_crds::{ApplicationPersona, ClusterPersona};

use crate::{
    cli::{ClusterStatusArgs, KubeArgs, PersonaApplyArgs, PersonaStatusArgs},
    config, generate, remote, status,
};

/// The ApplicationPersona resource.
pub fn resource() -> ApiResource {
    ApiResource {
        group: "dorgu.io".into(),
        version: "v1".into(),
        api_version: "dorgu.io/v1".into(),
        kind: "ApplicationPersona".into(),
        plural: "applicationpersonas".into(),
    }
}

/// Connects to the cluster named by the flags (or KUBECONFIG, ~/.kube/config, in-cluster).
pub async fn client(args: &KubeArgs) -> anyhow::Result<Client> {
    let options = KubeConfigOptions { context: args.context.clone(), ..KubeConfigOptions::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options).await.context("loading the kubeconfig")?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options).await.context("loading the kubeconfig")?,
        None => Config::infer().await.context("finding a cluster (set KUBECONFIG or --kubeconfig)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// The CRDs a 404 on the collection means are missing.
const CRD_PERSONAS: &str = "the ApplicationPersona CRD (applicationpersonas.dorgu.io)";
const CRD_CLUSTERS: &str = "the ClusterPersona CRD (clusterpersonas.dorgu.io)";

fn explain(e: kube::Error, what: &str, crd: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(status)
            if status.code == 404 && status.message.contains("could not find the requested resource") =>
        {
            anyhow::anyhow!(
                "{what}: {crd} is not installed in this cluster: install the Persys chart, or `reconciler crds | kubectl apply -f -`"
            )
        }
        kube::Error::Api(status) if status.code == 404 => anyhow::anyhow!("{what}: not found"),
        kube::Error::Api(status) if status.code == 403 => anyhow::anyhow!("{what}: forbidden: {}", status.message),
        _ => anyhow::Error::new(e).context(what.to_owned()),
    }
}

/// `dorgu persona apply`.
pub async fn apply(args: PersonaApplyArgs, json: bool) -> anyhow::Result<()> {
    let result = generate::analyze(&args.analyze, (true, false, true)).await?;
    let spec = result.persona.context("the analysis produced no persona")?;
    let namespace = {
        let ns = args
            .analyze
            .namespace
            .clone()
            .unwrap_or_else(|| config::load().map(|c| c.defaults.namespace).unwrap_or_default());
        if ns.is_empty() { "default".to_owned() } else { ns }
    };
    let object = persona_object(&spec, &namespace)?;
    let client = client(&args.kube).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource());
    let what = format!("ApplicationPersona {namespace}/{}", spec.name);
    let applied = api
        .patch(&spec.name, &PatchParams::apply("dorgu").force(), &Patch::Apply(&object))
        .await
        .map_err(|e| explain(e, &what, CRD_PERSONAS))?;
    if json {
        println!("{}", serde_json::json!({"applied": what, "resourceVersion": applied.metadata.resource_version}));
    } else {
        println!("applied {what}");
    }
    Ok(())
}

/// Returns the persona `dorgu generate` writes, as the object to apply.
fn persona_object(
    spec: &persys_proto::analyzer::v1::ApplicationPersonaSpec,
    namespace: &str,
) -> anyhow::Result<DynamicObject> {
    let manifest = persys_analyzer::persona::to_manifest_yaml(spec, namespace);
    persys_analyzer::yaml::from_str(&manifest).context("reading the generated persona")
}

/// `dorgu persona status`.
pub async fn status(args: PersonaStatusArgs, json: bool) -> anyhow::Result<()> {
    let namespace = {
        let ns =
            args.namespace.clone().unwrap_or_else(|| config::load().map(|c| c.defaults.namespace).unwrap_or_default());
        if ns.is_empty() { "default".to_owned() } else { ns }
    };
    let reported = match &args.remote.server {
        Some(server) => remote::persona_status(server, &args.remote, &namespace, &args.name).await?,
        None => {
            let client = client(&args.kube).await?;
            let api: Api<ApplicationPersona> = Api::namespaced(client, &namespace);
            let what = format!("ApplicationPersona {namespace}/{}", args.name);
            api.get(&args.name).await.map_err(|e| explain(e, &what, CRD_PERSONAS))?.status
        }
    };
    if json {
        println!("{}", serde_json::json!({"name": args.name, "namespace": namespace, "status": reported}));
    } else {
        print!("{}", status::persona(&namespace, &args.name, reported.as_ref()));
    }
    Ok(())
}

/// `dorgu cluster status`: the named ClusterPersona, or the cluster's only one (the oldest
/// when there are several, as the reconciler's PersonaService answers).
pub async fn cluster_status(args: ClusterStatusArgs, json: bool) -> anyhow::Result<()> {
    let (name, reported) = match &args.remote.server {
        Some(server) => remote::cluster_status(server, &args.remote, args.name.as_deref()).await?,
        None => {
            let persona = cluster_persona(&args).await?;
            (persona.name_any(), persona.status)
        }
    };
    if json {
        println!("{}", serde_json::json!({"name": name, "status": reported}));
    } else {
        print!("{}", status::cluster(&name, reported.as_ref()));
    }
    Ok(())
}

/// The ClusterPersona `args` name, or the cluster's only (oldest) one, from the API server.
async fn cluster_persona(args: &ClusterStatusArgs) -> anyhow::Result<ClusterPersona> {
    let client = client(&args.kube).await?;
    let api: Api<ClusterPersona> = Api::all(client);
    let persona = match &args.name {
        Some(name) => api.get(name).await.map_err(|e| explain(e, &format!("ClusterPersona {name}"), CRD_CLUSTERS))?,
        None => {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| explain(e, "listing ClusterPersonas", CRD_CLUSTERS))?;
            list.items
                .into_iter()
                .min_by(|a, b| {
                    (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
                        .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
                })
                .context(
                    "this cluster has no ClusterPersona yet: the reconciler creates one when its cluster discovery \
                     runs (see docs/reconciler.md), or apply one yourself",
                )?
        }
    };
    Ok(persona)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_object_is_the_generated_persona() {
        let mut tree = persys_analyzer::tree::SourceTree::new();
        tree.insert("Dockerfile", b"FROM alpine\nUSER 1000\nEXPOSE 8080\n".to_vec()).unwrap();
        let meta = persys_proto::analyzer::v1::AnalyzeMetadata { name: "on".into(), ..Default::default() };
        let spec = persys_analyzer::analyze_tree(&tree, &meta).unwrap().persona.unwrap();
        let object = persona_object(&spec, "no").unwrap();
        // Names a YAML 1.1 reader would take for booleans stay strings all the way.
        assert_eq!((object.metadata.name.as_deref(), object.metadata.namespace.as_deref()), (Some("on"), Some("no")));
        assert_eq!(object.types.as_ref().map(|t| t.kind.as_str()), Some("ApplicationPersona"));
        assert_eq!(object.data["spec"]["name"], "on");
        assert_eq!(object.data["spec"]["networking"]["ports"][0]["port"], 8080);
    }
}
