//! `dorgu init`: writes the application's `.dorgu.yaml` from what the analysis detects, for
//! the owner to complete (team, owner, on-call...). Non-interactive, so it scripts.

use anyhow::{Context, bail};
use persys_analyzer::{
    analysis::{self, Options},
    appconfig::{self, AppConfig, AppSection, HealthSection, OperationsSection, ProbeSection, ScalingSection},
    model::{Probe, dns_label},
};

use crate::{cli::InitArgs, generate::read_tree};

/// `dorgu init`.
pub fn init(args: InitArgs, json: bool) -> anyhow::Result<()> {
    let target = args.path.join(appconfig::FILE);
    if target.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", target.display());
    }
    let tree = read_tree(&args.path)?;
    let abs = std::fs::canonicalize(&args.path).unwrap_or_else(|_| args.path.clone());
    let name = dns_label(&abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), "app");
    let a = analysis::analyze(&tree, &Options { name: name.clone(), ..Options::default() })
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.path.display()))?;
    let app = a.primary_app();
    let health = match &app.probe {
        Probe::Http { path, readiness, port } => Some(HealthSection {
            liveness: Some(ProbeSection { path: path.clone(), port: Some(i32::from(*port)) }),
            readiness: Some(ProbeSection { path: readiness.clone(), port: Some(i32::from(*port)) }),
            startup_grace_period: format!("{}s", app.startup_secs),
        }),
        _ => None,
    };
    let config = AppConfig {
        version: "1".into(),
        app: AppSection {
            name: app.name.clone(),
            description: app.description.clone(),
            kind: app.kind.as_str().into(),
            tier: "standard".into(),
            repository: a.repository.clone(),
            ..AppSection::default()
        },
        scaling: app.autoscale.map(|(min, max, cpu)| ScalingSection {
            min_replicas: Some(min),
            max_replicas: Some(max),
            target_cpu: Some(cpu),
            target_memory: None,
            behavior: "balanced".into(),
        }),
        health,
        operations: Some(OperationsSection::default()),
        ..AppConfig::default()
    };
    let body = format!(
        "# dorgu app config: read by `dorgu generate`; flags win over it.\n# Fill in app.team, app.owner and operations so the persona says who to call.\n{}",
        persys_analyzer::yaml::to_string(&config)?
    );
    std::fs::write(&target, body).with_context(|| format!("writing {}", target.display()))?;
    if json {
        println!("{}", serde_json::json!({"written": target}));
    } else {
        println!("wrote {} for `{}` ({} {})", target.display(), app.name, app.language, app.kind.as_str());
    }
    Ok(())
}
