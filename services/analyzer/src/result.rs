//! The one entry point both the gRPC service and the dorgu CLI call: files and request
//! metadata in, the contract's `AnalysisResult` out. Sharing it is what makes their output
//! byte-identical.

use std::collections::BTreeSet;

use persys_proto::{
    analyzer::v1::{
        AnalysisFacts, AnalysisResult, AnalyzeMetadata, AppType, ComposeService, DockerfileFacts, ManifestFile,
        PersonaPort,
    },
    common::v1::Protocol,
};

use crate::{
    analysis::{self, Analysis, AnalyzeError, Options},
    compose::HealthTest,
    generate,
    model::{AppKind, Probe, is_secret},
    persona,
    tree::SourceTree,
    validate,
};

/// Returns the analysis options of a request's metadata.
pub fn options(metadata: &AnalyzeMetadata) -> Options {
    let o = metadata.options.clone().unwrap_or_default();
    Options {
        name: metadata.name.clone(),
        namespace: metadata.namespace.clone(),
        host: metadata.host.clone(),
        environment: o.environment,
        registry: o.registry,
        ingress_class: o.ingress_class,
        ingress_domain_suffix: o.ingress_domain_suffix,
        tls_enabled: o.tls_enabled,
        cluster_issuer: o.cluster_issuer,
        skip_argocd: o.skip_argocd,
        skip_persona: o.skip_persona,
        skip_validation: o.skip_validation,
        argocd_project: o.argocd_project,
        instructions: o.instructions,
        manifests_path: o.manifests_path,
    }
}

fn port(port: u16, udp: bool, purpose: &str) -> PersonaPort {
    PersonaPort {
        port: i32::from(port),
        protocol: if udp { Protocol::Udp } else { Protocol::Tcp } as i32,
        purpose: purpose.to_owned(),
    }
}

fn app_type(kind: AppKind) -> i32 {
    let t = match kind {
        AppKind::Api => AppType::Api,
        AppKind::Web => AppType::Web,
        AppKind::Worker => AppType::Worker,
        AppKind::Cron => AppType::Cron,
        AppKind::Daemon => AppType::Daemon,
    };
    t as i32
}

fn facts(a: &Analysis) -> AnalysisFacts {
    let app = a.primary_app();
    let dockerfile = a.dockerfile.as_ref().map(|d| {
        let stage = d.final_stage();
        DockerfileFacts {
            path: d.path.clone(),
            base_image: d.base_image(),
            stages: d.stages.iter().map(|s| s.name.clone()).filter(|n| !n.is_empty()).collect(),
            exposed_ports: stage.exposed.iter().map(|e| port(e.port, e.udp, "")).collect(),
            env: stage
                .env
                .iter()
                .map(|(k, v)| (k.clone(), if is_secret(k, Some(v)) { String::new() } else { v.clone() }))
                .collect(),
            workdir: stage.workdir.clone(),
            entrypoint: stage.entrypoint.clone(),
            cmd: stage.cmd.clone(),
            user: stage.user.clone(),
            runs_as_root: d.runs_as_root(),
        }
    });
    let compose_services = a
        .compose
        .iter()
        .flat_map(|c| c.services.iter())
        .map(|(name, s)| ComposeService {
            name: name.clone(),
            image: s.image.clone().unwrap_or_default(),
            build_context: s.build.as_ref().map(|b| b.context.clone()).unwrap_or_default(),
            ports: s.ports.iter().map(|p| port(p.target, p.udp, "")).collect(),
            depends_on: s.depends_on.keys().cloned().collect(),
            env_names: s.environment.keys().cloned().collect(),
            healthcheck_path: s
                .healthcheck
                .as_ref()
                .and_then(|h| match &h.test {
                    HealthTest::Exec(c) => Some(c.join(" ")),
                    HealthTest::Shell(c) => Some(c.clone()),
                    HealthTest::None => None,
                })
                .and_then(|c| c.split_whitespace().find_map(|w| w.split_once("://").map(|(_, r)| r.to_owned())))
                .and_then(|r| r.find('/').map(|i| r[i..].trim_matches(['\'', '"']).to_owned()))
                .unwrap_or_default(),
        })
        .collect();
    let dependencies: BTreeSet<String> = app.backing.iter().map(|b| b.name.clone()).collect();
    let mut notes = Vec::new();
    for other in &a.apps {
        let prefix = if a.is_multi() { format!("{}: ", other.name) } else { String::new() };
        notes.extend(other.notes.iter().map(|n| format!("{prefix}{n}")));
    }
    AnalysisFacts {
        name: a.project.clone(),
        app_type: app_type(app.kind),
        language: app.language.clone(),
        framework: app.framework.clone(),
        dependencies: dependencies.into_iter().collect(),
        dockerfile,
        compose_services,
        health_path: match &app.probe {
            Probe::Http { path, .. } => path.clone(),
            _ => String::new(),
        },
        metrics_path: app.metrics_path.clone().unwrap_or_default(),
        ports: app.ports.iter().map(|p| port(p.port, p.udp, &p.purpose)).collect(),
        repository: a.repository.clone(),
        description: app.description.clone(),
        llm_enhanced: false,
        warnings: a.warnings.clone(),
        notes,
    }
}

/// Turns an analysis into the contract's result: facts, files, personas and findings.
pub fn render(a: &Analysis) -> AnalysisResult {
    let mut objects = Vec::new();
    let manifests: Vec<ManifestFile> = generate::generate(a)
        .into_iter()
        .map(|f| {
            if let Some(object) = f.object {
                objects.push((f.path.clone(), object));
            }
            ManifestFile { path: f.path, content: f.content, kind: f.kind }
        })
        .collect();
    let specs: Vec<_> = if a.options.skip_persona && a.options.skip_validation {
        Vec::new()
    } else {
        a.apps.iter().map(|app| persona::spec_for(a, app)).collect()
    };
    let mut findings = Vec::new();
    if !a.options.skip_validation {
        for (app, spec) in a.apps.iter().zip(&specs) {
            // The objects of the app's own files, as validate_files would read them back.
            let prefix = if a.is_multi() { format!("{}/", app.name) } else { String::new() };
            let own = objects
                .iter()
                .filter(|(path, _)| path.starts_with(&prefix) && (a.is_multi() || !path.contains('/')))
                .map(|(path, object)| (path.as_str(), object));
            findings.extend(validate::validate_objects(own, spec, &a.options.namespace));
        }
        validate::sort(&mut findings);
    }
    let personas = if a.options.skip_persona { Vec::new() } else { specs };
    let (errors, _, _) = validate::counts(&findings);
    AnalysisResult {
        facts: Some(facts(a)),
        manifests,
        persona: personas.get(a.primary).cloned(),
        findings,
        validation_passed: !a.options.skip_validation && errors == 0,
        personas,
    }
}

/// Analyses the files and renders the result, without a language model.
pub fn analyze_tree(tree: &SourceTree, metadata: &AnalyzeMetadata) -> Result<AnalysisResult, AnalyzeError> {
    let analysis = analysis::analyze(tree, &options(metadata))?;
    Ok(render(&analysis))
}

/// Analyses the files, lets the language model refine the analysis when one is configured
/// (falling back to the rules on any failure), and renders the result.
#[cfg(feature = "server")]
pub async fn analyze_tree_with(
    tree: &SourceTree,
    metadata: &AnalyzeMetadata,
    llm: Option<&crate::llm::Client>,
) -> Result<AnalysisResult, AnalyzeError> {
    let mut analysis = analysis::analyze(tree, &options(metadata))?;
    let enhanced = match llm {
        Some(client) => client.enhance(&mut analysis).await,
        None => false,
    };
    let mut result = render(&analysis);
    if let Some(f) = result.facts.as_mut() {
        f.llm_enhanced = enhanced;
    }
    Ok(result)
}
