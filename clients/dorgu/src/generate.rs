//! `dorgu generate` and `dorgu persona generate`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use persys_analyzer::{appconfig, model::dns_label, persona, tree::SourceTree};
use persys_proto::analyzer::v1::{AnalysisResult, AnalyzeMetadata, AnalyzeOptions, LlmProvider};

use crate::{
    cli::{AnalyzeArgs, Format, GenerateArgs, PersonaGenerateArgs},
    config, llm, output, remote,
};

/// Builds the request metadata from the flags, the global config and the directory, so the
/// library and the service get exactly the same request.
pub fn metadata(args: &AnalyzeArgs, tree: &SourceTree, skip: (bool, bool, bool)) -> anyhow::Result<AnalyzeMetadata> {
    let global = config::load()?;
    let app_named = tree
        .text(appconfig::FILE)
        .and_then(|t| appconfig::parse(t, appconfig::FILE).ok())
        .is_some_and(|c| !c.app.name.is_empty());
    let name = match &args.name {
        Some(n) => n.clone(),
        None if app_named => String::new(),
        None => {
            let abs = std::fs::canonicalize(&args.path).unwrap_or_else(|_| args.path.clone());
            let base = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dns_label(&base, "app")
        }
    };
    let namespace =
        args.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| global.defaults.namespace.clone());
    Ok(AnalyzeMetadata {
        name,
        namespace,
        host: args.host.clone().unwrap_or_default(),
        options: Some(AnalyzeOptions {
            environment: args.environment.clone().unwrap_or_default(),
            registry: args.registry.clone().unwrap_or_else(|| global.defaults.registry.clone()),
            ingress_class: args.ingress_class.clone().unwrap_or_default(),
            tls_enabled: args.tls,
            cluster_issuer: args.cluster_issuer.clone().unwrap_or_default(),
            skip_argocd: skip.0,
            skip_persona: skip.1,
            skip_validation: skip.2,
            // With --server, UNSPECIFIED asks the analyzer for its configured model.
            llm_provider: if args.llm.llm { LlmProvider::Unspecified } else { LlmProvider::None } as i32,
            ..AnalyzeOptions::default()
        }),
    })
}

/// Reads the application directory.
pub fn read_tree(path: &Path) -> anyhow::Result<SourceTree> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    SourceTree::from_dir(path).with_context(|| format!("reading {}", path.display()))
}

/// Analyses the application, offline or through the service.
pub async fn analyze(args: &AnalyzeArgs, skip: (bool, bool, bool)) -> anyhow::Result<AnalysisResult> {
    let tree = read_tree(&args.path)?;
    let meta = metadata(args, &tree, skip)?;
    let failed = |e| anyhow::anyhow!("{}: {e}", args.path.display());
    let mut result = match (&args.remote.server, args.llm.llm) {
        (Some(url), _) => remote::analyze(url, args, meta, &tree).await?,
        (None, false) => persys_analyzer::analyze_tree(&tree, &meta).map_err(failed)?,
        (None, true) => match llm::client(&args.llm, &config::load()?) {
            Ok(client) => persys_analyzer::analyze_tree_with(&tree, &meta, Some(&client)).await.map_err(failed)?,
            Err(reason) => {
                let mut result = persys_analyzer::analyze_tree(&tree, &meta).map_err(failed)?;
                if let Some(f) = result.facts.as_mut() {
                    f.warnings.push(llm::not_used(&reason));
                }
                result
            }
        },
    };
    // The analyzer behind --server may have no model, which it does not report.
    if let Some(f) = result.facts.as_mut().filter(|f| args.llm.llm && !f.llm_enhanced)
        && !f.warnings.iter().any(|w| w.starts_with("language model not used"))
    {
        f.warnings.push(llm::not_used("the analyzer has no language model configured"));
    }
    Ok(result)
}

fn to_json(content: &str) -> anyhow::Result<String> {
    let value: serde_json::Value = persys_analyzer::yaml::from_str(content)?;
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// Returns the file's content in `format` (PERSONA.md stays Markdown).
pub fn render(kind: &str, content: &str, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Json if kind != "Markdown" => to_json(content),
        _ => Ok(content.to_owned()),
    }
}

/// Writes files under `dir`, creating directories; returns the paths written.
pub fn write_files(dir: &Path, files: &[(String, String)]) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, content) in files {
        // Paths come from the analyzer; refuse anything that would leave the output directory.
        let rel = persys_analyzer::tree::normalize_path(path)
            .map_err(|e| anyhow::anyhow!("refusing to write {path}: {e}"))?;
        let target = dir.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, content).with_context(|| format!("writing {}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}

/// `dorgu generate`.
pub async fn generate(args: GenerateArgs, json: bool) -> anyhow::Result<()> {
    let result = analyze(&args.analyze, (args.skip_argocd, args.skip_persona, args.skip_validation)).await?;
    let files: Vec<(String, String)> = result
        .manifests
        .iter()
        .map(|m| Ok((m.path.clone(), render(&m.kind, &m.content, args.format)?)))
        .collect::<anyhow::Result<_>>()?;
    if args.dry_run {
        if json {
            let list: Vec<_> = files.iter().map(|(p, c)| serde_json::json!({"path": p, "content": c})).collect();
            println!("{}", serde_json::json!({"files": list, "result": output::result_json(&result)}));
        } else {
            for (p, c) in &files {
                println!("--- {p} ---");
                print!("{c}");
                if !c.ends_with('\n') {
                    println!();
                }
            }
            eprint!("{}", output::summary(&args.analyze.path, &result));
        }
        return Ok(());
    }
    let written = write_files(&args.output, &files)?;
    if json {
        println!("{}", serde_json::json!({"written": written, "result": output::result_json(&result)}));
    } else {
        print!("{}", output::summary(&args.analyze.path, &result));
        println!("wrote {} files to {}", written.len(), args.output.display());
    }
    Ok(())
}

/// `dorgu persona generate`.
pub async fn persona_generate(args: PersonaGenerateArgs, json: bool) -> anyhow::Result<()> {
    let result = analyze(&args.analyze, (true, false, true)).await?;
    let persona = result
        .manifests
        .iter()
        .find(|m| m.kind == "ApplicationPersona" && !m.path.contains('/'))
        .or_else(|| {
            let primary = result.persona.as_ref()?.name.clone();
            result
                .manifests
                .iter()
                .find(|m| m.kind == "ApplicationPersona" && m.path.starts_with(&format!("{primary}/")))
        })
        .context("the analysis produced no persona")?;
    // Check it reads back as a persona before handing it out.
    persona::parse_manifest(&persona.content).map_err(|e| anyhow::anyhow!("generated persona does not parse: {e}"))?;
    if args.dry_run {
        print!("{}", persona.content);
        return Ok(());
    }
    let written = write_files(&args.output, &[("persona.yaml".into(), persona.content.clone())])?;
    if json {
        println!("{}", serde_json::json!({"written": written}));
    } else {
        println!("wrote {}", written[0].display());
    }
    Ok(())
}
