//! `dorgu persona apply` and `status` through the Kubernetes API with kube (no kubectl):
//! server-side apply under the field manager `dorgu`, and a read of the status the operator
//! writes.

use anyhow::Context;
use kube::{
    Client, Config,
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    cli::{KubeArgs, PersonaApplyArgs, PersonaStatusArgs},
    config, generate,
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

fn explain(e: kube::Error, what: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(status)
            if status.code == 404 && status.message.contains("could not find the requested resource") =>
        {
            anyhow::anyhow!(
                "{what}: the ApplicationPersona CRD (applicationpersonas.dorgu.io) is not installed in this cluster"
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
        .map_err(|e| explain(e, &what))?;
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

/// Formats the status block the operator writes.
pub fn format_status(name: &str, namespace: &str, status: Option<&serde_json::Value>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "ApplicationPersona {namespace}/{name}");
    let Some(s) = status else {
        let _ = writeln!(out, "  no status yet: the operator has not reconciled it");
        return out;
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
    let _ = writeln!(out, "  phase:      {}", text(&s["phase"]));
    let _ = writeln!(
        out,
        "  health:     {} {}",
        text(&s["health"]["status"]),
        s["health"]["message"].as_str().unwrap_or("")
    );
    if let Some(image) = s["deployments"]["current"].as_str() {
        let _ = writeln!(out, "  deployed:   {image}");
    }
    if let Some(v) = s.get("validation") {
        let passed = v["passed"].as_bool().map_or("-", |p| if p { "passed" } else { "failed" });
        let _ = writeln!(out, "  validation: {passed}");
        for issue in v["issues"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    {:<7} {} {}",
                text(&issue["severity"]),
                text(&issue["field"]),
                text(&issue["message"])
            );
        }
    }
    if let Some(argo) = s.get("argoCD") {
        let _ = writeln!(out, "  argocd:     {} / {}", text(&argo["syncStatus"]), text(&argo["healthStatus"]));
    }
    if let Some(b) = s.get("learned").and_then(|l| l.get("resourceBaseline")) {
        let _ = writeln!(
            out,
            "  baseline:   cpu avg {} peak {}, memory avg {} peak {}",
            text(&b["avgCPU"]),
            text(&b["peakCPU"]),
            text(&b["avgMemory"]),
            text(&b["peakMemory"])
        );
    }
    out
}

/// `dorgu persona status`.
pub async fn status(args: PersonaStatusArgs, json: bool) -> anyhow::Result<()> {
    let namespace = {
        let ns =
            args.namespace.clone().unwrap_or_else(|| config::load().map(|c| c.defaults.namespace).unwrap_or_default());
        if ns.is_empty() { "default".to_owned() } else { ns }
    };
    let client = client(&args.kube).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource());
    let what = format!("ApplicationPersona {namespace}/{}", args.name);
    let object = api.get(&args.name).await.map_err(|e| explain(e, &what))?;
    let status = object.data.get("status");
    if json {
        println!("{}", serde_json::json!({"name": args.name, "namespace": namespace, "status": status}));
    } else {
        print!("{}", format_status(&args.name, &namespace, status));
    }
    Ok(())
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

    #[test]
    fn status_is_formatted() {
        let s = serde_json::json!({"phase": "Degraded", "health": {"status": "Healthy"}, "validation": {"passed": false, "issues": [{"severity": "error", "field": "spec.replicas", "message": "below min"}]}});
        let text = format_status("orders", "shop", Some(&s));
        assert!(text.contains("phase:      Degraded") && text.contains("error   spec.replicas below min"), "{text}");
        assert!(format_status("x", "y", None).contains("no status yet"));
    }
}
