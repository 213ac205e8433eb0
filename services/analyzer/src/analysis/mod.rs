//! From an application's files to the applications to deploy: find the compose file, the
//! Dockerfile(s), the source and the `.dorgu.yaml`, and combine what each says.

mod app;
mod health;
pub mod images;
pub(crate) mod ports;
mod units;

use std::collections::BTreeMap;

use crate::{
    appconfig::{self, AppConfig, AppConfigError},
    compose::{self, ComposeError, ComposeFile},
    detect::{self, SourceFacts},
    dockerfile::{self, Dockerfile, DockerfileError},
    model::{App, dns_label},
    tree::{SourceTree, TreeError},
};

pub use app::Input;

/// Compose file names, in the order the compose spec prefers them.
pub const COMPOSE_FILES: &[&str] = &["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];
/// Dockerfile names, in the order they are tried.
pub const DOCKERFILES: &[&str] = &["Dockerfile", "Containerfile", "dockerfile"];

/// Why an analysis could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Nothing to analyse was found.
    #[error(
        "nothing to analyse in {root}: looked for a Dockerfile ({dockerfiles}), a compose file ({compose}) and source markers ({markers})"
    )]
    NothingToAnalyze {
        /// Where it looked.
        root: String,
        /// Dockerfile names tried.
        dockerfiles: String,
        /// Compose names tried.
        compose: String,
        /// Source markers tried.
        markers: String,
    },
    /// A malformed Dockerfile.
    #[error("malformed Dockerfile: {0}")]
    Dockerfile(#[from] DockerfileError),
    /// A malformed compose file.
    #[error("malformed compose file: {0}")]
    Compose(#[from] ComposeError),
    /// A malformed `.dorgu.yaml`.
    #[error("malformed .dorgu.yaml: {0}")]
    AppConfig(#[from] AppConfigError),
    /// The files could not be read or broke a limit or a path rule.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// An option is invalid.
    #[error("{field}: {message}")]
    InvalidOption {
        /// The option.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// What steers an analysis (the request's metadata and options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Application name; empty means `.dorgu.yaml`, then `app`.
    pub name: String,
    /// Namespace; empty means `default`.
    pub namespace: String,
    /// Ingress host; empty means none unless a domain suffix or `.dorgu.yaml` asks for one.
    pub host: String,
    /// Environment label.
    pub environment: String,
    /// Image registry prefix.
    pub registry: String,
    /// Ingress class; empty means `nginx`.
    pub ingress_class: String,
    /// Suffix for derived ingress hosts.
    pub ingress_domain_suffix: String,
    /// TLS on the Ingress.
    pub tls_enabled: bool,
    /// cert-manager ClusterIssuer.
    pub cluster_issuer: String,
    /// No ArgoCD Application.
    pub skip_argocd: bool,
    /// No persona and PERSONA.md.
    pub skip_persona: bool,
    /// No validation.
    pub skip_validation: bool,
    /// ArgoCD project; empty means `default`.
    pub argocd_project: String,
    /// Owner instructions for the language model.
    pub instructions: String,
    /// Path of the manifests inside the repository (ArgoCD source path); empty means `k8s`.
    pub manifests_path: String,
}

/// The result of analysing an application's files.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// Resolved options.
    pub options: Options,
    /// Project name (`app.kubernetes.io/part-of`).
    pub project: String,
    /// Applications to deploy, sorted by name.
    pub apps: Vec<App>,
    /// Index of the primary application (the one the request names).
    pub primary: usize,
    /// The primary application's Dockerfile.
    pub dockerfile: Option<Dockerfile>,
    /// The compose file.
    pub compose: Option<ComposeFile>,
    /// The primary application's source facts.
    pub source: SourceFacts,
    /// Repository URL.
    pub repository: String,
    /// Problems that did not stop the analysis.
    pub warnings: Vec<String>,
    /// The `.dorgu.yaml`.
    pub config: AppConfig,
}

impl Analysis {
    /// Returns whether the analysis came from a compose file with several applications.
    pub fn is_multi(&self) -> bool {
        self.compose.is_some()
    }

    /// Returns the primary application.
    pub fn primary_app(&self) -> &App {
        &self.apps[self.primary]
    }
}

/// Reads `[remote "origin"] url` from `.git/config`, normalised to https without `.git`.
pub fn repository_from_git(tree: &SourceTree) -> Option<String> {
    let text = tree.text(".git/config")?;
    let mut in_origin = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_origin = line == "[remote \"origin\"]";
        } else if in_origin && let Some(url) = line.strip_prefix("url").map(str::trim).and_then(|l| l.strip_prefix('='))
        {
            return Some(normalize_repository(url.trim()));
        }
    }
    None
}

/// Normalises `git@host:org/repo.git` and `https://host/org/repo.git` to `https://host/org/repo`.
pub fn normalize_repository(url: &str) -> String {
    let url = url.trim().trim_end_matches('/').trim_end_matches(".git");
    if let Some(rest) = url.strip_prefix("git@")
        && let Some((host, path)) = rest.split_once(':')
    {
        return format!("https://{host}/{path}");
    }
    if let Some(rest) = url.strip_prefix("ssh://git@") {
        return format!("https://{}", rest.replacen(':', "/", 1));
    }
    url.to_owned()
}

fn find<'a>(tree: &SourceTree, names: &'a [&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| tree.contains(n))
}

fn text_of<'a>(tree: &'a SourceTree, path: &str) -> &'a str {
    tree.get(path).map(|b| std::str::from_utf8(b).unwrap_or("")).unwrap_or("")
}

/// Joins a path relative to a directory of the tree, refusing to climb above the root.
fn join(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// Analyses the files of one application.
pub fn analyze(tree: &SourceTree, options: &Options) -> Result<Analysis, AnalyzeError> {
    let mut options = options.clone();
    if options.namespace.is_empty() {
        options.namespace = "default".into();
    }
    if options.namespace != dns_label(&options.namespace, "") {
        return Err(AnalyzeError::InvalidOption {
            field: "namespace",
            message: format!("`{}` is not a DNS-1123 label", options.namespace),
        });
    }
    if !options.host.is_empty() && !valid_host(&options.host) {
        return Err(AnalyzeError::InvalidOption {
            field: "host",
            message: format!("`{}` is not a DNS host name", options.host),
        });
    }
    if options.ingress_class.is_empty() {
        options.ingress_class = "nginx".into();
    }
    if options.manifests_path.is_empty() {
        options.manifests_path = "k8s".into();
    }
    let config = match tree.text(appconfig::FILE) {
        Some(text) => appconfig::parse(text, appconfig::FILE)?,
        None => AppConfig::default(),
    };
    if options.environment.is_empty() {
        options.environment = config.environment.clone();
    }
    if options.instructions.is_empty() {
        options.instructions = config.app.instructions.clone();
    }
    let name_source = if !options.name.is_empty() { options.name.clone() } else { config.app.name.clone() };
    let project = dns_label(&name_source, "app");
    let mut warnings = Vec::new();
    if !name_source.is_empty() && project != name_source {
        warnings.push(format!("name `{name_source}` is not a DNS-1123 label; using `{project}`"));
    }
    let repository = if !config.app.repository.is_empty() {
        normalize_repository(&config.app.repository)
    } else {
        repository_from_git(tree).unwrap_or_default()
    };
    let host = if !options.host.is_empty() {
        Some(options.host.clone())
    } else if let Some(h) = config.ingress.as_ref().filter(|i| i.enabled && !i.host.is_empty()) {
        Some(h.host.clone())
    } else if !options.ingress_domain_suffix.is_empty() {
        Some(format!("{project}.{}", options.ingress_domain_suffix.trim_start_matches('.')))
    } else {
        None
    };

    if let Some(compose_path) = find(tree, COMPOSE_FILES) {
        let dotenv = tree.text(".env").map(compose::parse_dotenv).unwrap_or_default();
        let parsed = compose::parse(text_of(tree, compose_path), compose_path, dotenv)?;
        for var in &parsed.unset_variables {
            warnings.push(format!("{compose_path}: variable {var} is not set in .env; it became an empty string"));
        }
        return from_compose(tree, options, config, project, repository, host, parsed.file, warnings);
    }
    let dockerfile = match find(tree, DOCKERFILES) {
        Some(path) => Some(dockerfile::parse(text_of(tree, path), path)?),
        None => None,
    };
    let source = detect::detect(tree);
    if dockerfile.is_none() && !source.recognised() {
        return Err(AnalyzeError::NothingToAnalyze {
            root: "the application root".into(),
            dockerfiles: DOCKERFILES.join(", "),
            compose: COMPOSE_FILES.join(", "),
            markers: detect::MARKERS.join(", "),
        });
    }
    if dockerfile.is_none() {
        warnings.push(format!(
            "no Dockerfile: the manifests expect an image `{}` built from this source (for example with buildpacks)",
            image_name(&options.registry, &project)
        ));
    }
    let input = Input {
        name: project.clone(),
        project: project.clone(),
        service: None,
        dockerfile: dockerfile.as_ref(),
        source: Some(&source),
        image: image_name(&options.registry, &project),
        built: true,
        options: &options,
        config: Some(&config),
        env_files: BTreeMap::new(),
        host: host.clone(),
    };
    let mut app = app::build(input, &mut warnings);
    app.notes.splice(0..0, source.notes.iter().cloned());
    Ok(Analysis {
        options,
        project,
        apps: vec![app],
        primary: 0,
        dockerfile,
        compose: None,
        source,
        repository,
        warnings,
        config,
    })
}

fn valid_host(host: &str) -> bool {
    let host = host.strip_prefix("*.").unwrap_or(host);
    host.len() <= 253 && host.split('.').all(|l| !l.is_empty() && dns_label(l, "") == l)
}

/// Returns the image of an application built from source.
pub fn image_name(registry: &str, name: &str) -> String {
    let registry = registry.trim_end_matches('/');
    if registry.is_empty() { format!("{name}:latest") } else { format!("{registry}/{name}:latest") }
}

#[allow(clippy::too_many_arguments)]
fn from_compose(
    tree: &SourceTree,
    options: Options,
    config: AppConfig,
    project: String,
    repository: String,
    host: Option<String>,
    compose: ComposeFile,
    mut warnings: Vec<String>,
) -> Result<Analysis, AnalyzeError> {
    let compose_dir = compose.path.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
    let enabled: Vec<(&String, &compose::Service)> = compose
        .services
        .iter()
        .filter(|(name, s)| {
            if s.profiles.is_empty() {
                true
            } else {
                warnings.push(format!(
                    "service {name} skipped: it only runs with the profile(s) {}",
                    s.profiles.join(", ")
                ));
                false
            }
        })
        .collect();
    if enabled.is_empty() {
        return Err(AnalyzeError::Compose(ComposeError {
            file: compose.path.clone(),
            line: 1,
            column: 1,
            message: "no service runs without a profile; nothing to deploy".into(),
        }));
    }
    let context_of = |s: &compose::Service| s.build.as_ref().and_then(|b| join(&compose_dir, &b.context));
    // The primary service: built from the root, else built and published, else built, else
    // published, else the first.
    let published = |s: &compose::Service| s.ports.iter().any(|p| p.published.is_some());
    let primary_name = enabled
        .iter()
        .find(|(_, s)| context_of(s).is_some_and(|c| c.is_empty()))
        .or_else(|| enabled.iter().find(|(_, s)| s.build.is_some() && published(s)))
        .or_else(|| enabled.iter().find(|(_, s)| s.build.is_some()))
        .or_else(|| enabled.iter().find(|(_, s)| published(s)))
        .or_else(|| enabled.first())
        .map(|(n, _)| (*n).clone())
        .expect("at least one service");
    let mut apps = Vec::new();
    let mut env_file_vars = BTreeMap::new();
    let mut primary_dockerfile = None;
    let mut primary_source = SourceFacts::default();
    let mut names_seen = BTreeMap::new();
    for (name, service) in &enabled {
        let app_name = dns_label(name, "service");
        if let Some(other) = names_seen.insert(app_name.clone(), (*name).clone()) {
            return Err(AnalyzeError::Compose(ComposeError {
                file: compose.path.clone(),
                line: 1,
                column: 1,
                message: format!("services `{other}` and `{name}` both become the Kubernetes name `{app_name}`"),
            }));
        }
        if app_name != **name {
            warnings.push(format!("service {name} is named `{app_name}` in Kubernetes (DNS-1123)"));
        }
        for key in &service.ignored {
            warnings
                .push(format!("service {name}: `{key}` has no Kubernetes equivalent here and was not carried over"));
        }
        let (dockerfile, source, built) = match &service.build {
            Some(build) => {
                let context = join(&compose_dir, &build.context).ok_or_else(|| {
                    AnalyzeError::Tree(TreeError::BadPath {
                        path: build.context.clone(),
                        reason: "escapes the application root (`..`)",
                    })
                })?;
                let sub = tree.subtree(&context);
                let file = build.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
                let full = join(&context, &file).unwrap_or_default();
                let dockerfile = match tree.text(&full) {
                    Some(text) => Some(dockerfile::parse(text, &full)?),
                    None => {
                        warnings.push(format!("service {name}: {full} not found in the upload"));
                        None
                    }
                };
                (dockerfile, detect::detect(&sub), true)
            }
            None => (None, SourceFacts::default(), false),
        };
        let mut env_files = BTreeMap::new();
        let mut from_env_file = BTreeMap::new();
        for ef in &service.env_files {
            let path = join(&compose_dir, &ef.path).unwrap_or_default();
            match tree.text(&path) {
                Some(text) => {
                    let vars = compose::parse_dotenv(text);
                    from_env_file.extend(vars.keys().map(|k| (k.clone(), path.clone())));
                    env_files.extend(vars);
                }
                None if ef.required => {
                    warnings.push(format!("service {name}: env_file {} is missing; its variables are not set", ef.path))
                }
                None => {}
            }
        }
        let is_primary = **name == primary_name;
        let image = match (&service.image, built) {
            (Some(image), false) => image.clone(),
            _ => image_name(&options.registry, &app_name),
        };
        let input = Input {
            name: app_name.clone(),
            project: project.clone(),
            service: Some(service),
            dockerfile: dockerfile.as_ref(),
            source: built.then_some(&source),
            image,
            built,
            options: &options,
            config: is_primary.then_some(&config),
            env_files,
            host: if is_primary { host.clone() } else { None },
        };
        let mut app = app::build(input, &mut warnings);
        app.notes.splice(0..0, source.notes.iter().cloned());
        if is_primary {
            primary_dockerfile = dockerfile;
            primary_source = source;
        }
        env_file_vars.insert(app.name.clone(), from_env_file);
        apps.push(app);
    }
    app::wire(&mut apps, &compose, &names_seen, &env_file_vars, &mut warnings);
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let primary = apps.iter().position(|a| a.name == dns_label(&primary_name, "service")).unwrap_or(0);
    Ok(Analysis {
        options,
        project,
        apps,
        primary,
        dockerfile: primary_dockerfile,
        compose: Some(compose),
        source: primary_source,
        repository,
        warnings,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_normalised() {
        assert_eq!(normalize_repository("git@github.com:acme/shop.git"), "https://github.com/acme/shop");
        assert_eq!(normalize_repository("https://github.com/acme/shop.git"), "https://github.com/acme/shop");
        let mut tree = SourceTree::new();
        tree.insert(
            ".git/config",
            b"[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@gitlab.com:a/b.git\n".to_vec(),
        )
        .unwrap();
        assert_eq!(repository_from_git(&tree).as_deref(), Some("https://gitlab.com/a/b"));
    }

    #[test]
    fn joins_stay_inside_the_root() {
        assert_eq!(join("", "./api").as_deref(), Some("api"));
        assert_eq!(join("deploy", "../api").as_deref(), Some("api"));
        assert_eq!(join("", "../x"), None);
    }

    #[test]
    fn nothing_to_analyze_names_what_was_looked_for() {
        let err = analyze(&SourceTree::new(), &Options::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Dockerfile") && text.contains("compose.yaml") && text.contains("go.mod"), "{text}");
    }
}
