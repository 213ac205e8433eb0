//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// dorgu: from an application's source to production-grade Kubernetes manifests and its
/// ApplicationPersona.
#[derive(Parser, Debug)]
#[command(name = "dorgu", version, about, long_about = None)]
pub struct Cli {
    /// Machine-readable JSON output instead of the human summary.
    #[arg(long, global = true, env = "DORGU_JSON")]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Analyse an application and write its manifests, persona and PERSONA.md.
    Generate(GenerateArgs),
    /// Write the application's .dorgu.yaml from what the analysis detects.
    Init(InitArgs),
    /// Read and change the global config (in the user config directory).
    Config {
        /// What to do with it.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate, apply and inspect ApplicationPersonas.
    Persona {
        /// What to do.
        #[command(subcommand)]
        command: PersonaCommand,
    },
    /// Show what the reconciler discovered about the cluster (its ClusterPersona).
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Follow personas live through a Persys gateway (the reconciler's PersonaService).
    Watch {
        /// What to follow.
        #[command(subcommand)]
        command: WatchCommand,
    },
    /// Validate manifests against a persona, offline.
    Validate(ValidateArgs),
}

/// `dorgu watch`: one line per change (JSON lines with --json) until interrupted; a broken
/// stream is reopened from the last resource version seen, so no change is missed.
#[derive(Subcommand, Debug)]
pub enum WatchCommand {
    /// ApplicationPersonas: the current ones first, then every change (phase changes summarised).
    Personas(WatchPersonasArgs),
    /// The ClusterPersona: its current state, then every change discovery makes.
    Cluster(WatchClusterArgs),
}

/// The Persys gateway to go through.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Gateway URL, e.g. https://persys.example.com:8080. Uses the session of
    /// `persys login --server URL`, or --token.
    #[arg(long, env = "DORGU_SERVER")]
    pub server: String,
    /// CA certificate (PEM) of the gateway's certificate, for https:// gateways with a private CA
    /// (default: the system's trusted roots).
    #[arg(long, env = "PERSYS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A Persys API key (psk_...) to use instead of the stored `persys login` session.
    #[arg(long, env = "PERSYS_TOKEN", hide_env_values = true, value_name = "KEY")]
    pub token: Option<String>,
}

/// A gateway to go through instead of working locally: `dorgu analyze`/`generate`/`persona
/// generate` analyse with its analyzer instead of the built-in library, `dorgu persona status`
/// and `dorgu cluster status` read from its reconciler instead of the cluster's API server.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Go through the Persys gateway at this URL (e.g. https://persys.example.com:8080): analyses
    /// by its analyzer instead of the built-in library; `persona status` and `cluster status`
    /// read its reconciler instead of the cluster's API server. Uses the session of
    /// `persys login --server URL`, or --token.
    #[arg(long, env = "DORGU_SERVER")]
    pub server: Option<String>,
    /// CA certificate (PEM) of the gateway's certificate, for https:// gateways with a private CA
    /// (with --server; default: the system's trusted roots).
    #[arg(long, env = "PERSYS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A Persys API key (psk_...) to use instead of the stored `persys login` session (with --server).
    #[arg(long, env = "PERSYS_TOKEN", hide_env_values = true, value_name = "KEY")]
    pub token: Option<String>,
}

/// `dorgu watch personas`.
#[derive(Args, Debug)]
pub struct WatchPersonasArgs {
    /// Only this persona (with --namespace).
    pub name: Option<String>,
    /// Only this namespace; every namespace by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// How to follow.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `dorgu watch cluster`.
#[derive(Args, Debug)]
pub struct WatchClusterArgs {
    /// How to follow.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// What every `dorgu watch` takes.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Resume after this resource version (as printed by an earlier watch with --json)
    /// instead of starting with the current state.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop after this many events (e.g. 1 to wait for the next change); never by default.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Where the gateway is.
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// `dorgu cluster`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Show the ClusterPersona's status: platform, version, nodes, resources, add-ons.
    Status(ClusterStatusArgs),
}

/// `dorgu cluster status`.
#[derive(Args, Debug)]
pub struct ClusterStatusArgs {
    /// ClusterPersona name; default: the cluster's only (or oldest) ClusterPersona.
    pub name: Option<String>,
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Or the gateway.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Manifest serialization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// YAML, as generated.
    #[default]
    Yaml,
    /// JSON (one object per file).
    Json,
}

/// What is analysed and how.
#[derive(Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// Application directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Application name (DNS-1123); default: .dorgu.yaml, then the directory name.
    #[arg(long)]
    pub name: Option<String>,
    /// Target namespace; default: the global config's defaults.namespace, then `default`.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Ingress host; without it no Ingress is generated.
    #[arg(long)]
    pub host: Option<String>,
    /// Image registry, e.g. ghcr.io/acme; default: the global config's defaults.registry.
    #[arg(long)]
    pub registry: Option<String>,
    /// Environment label, e.g. production.
    #[arg(long)]
    pub environment: Option<String>,
    /// TLS on the Ingress.
    #[arg(long)]
    pub tls: bool,
    /// cert-manager ClusterIssuer for the Ingress certificate.
    #[arg(long)]
    pub cluster_issuer: Option<String>,
    /// Ingress class.
    #[arg(long)]
    pub ingress_class: Option<String>,
    /// Through a gateway, or locally.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The optional language model.
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// The optional language model: off unless `--llm` is given.
#[derive(Args, Debug, Clone, Default)]
pub struct LlmArgs {
    /// Let a language model refine the description, type, tier and scaling (an OpenAI-compatible
    /// chat completions endpoint, answering a strict JSON schema). Any failure keeps the static
    /// analysis and says so. With --server, the analyzer's own model is used.
    #[arg(long, env = "DORGU_LLM")]
    pub llm: bool,
    /// Its endpoint, up to `/chat/completions`, e.g. https://api.openai.com/v1 or
    /// http://127.0.0.1:11434/v1 (default: the global config's llm.endpoint, then Ollama's local
    /// address for llm.provider ollama). With an API key, http:// only to this machine.
    #[arg(long, env = "DORGU_LLM_ENDPOINT", value_name = "URL")]
    pub llm_endpoint: Option<String>,
    /// The model (default: the global config's llm.model).
    #[arg(long, env = "DORGU_LLM_MODEL", value_name = "NAME")]
    pub llm_model: Option<String>,
    /// API key sent as a bearer token (default: the global config's llm.api_key).
    #[arg(long, env = "DORGU_LLM_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub llm_api_key: Option<String>,
    /// PEM file of the CA behind an https:// endpoint with a private CA (default: the global
    /// config's llm.ca_file, then the system's roots).
    #[arg(long, env = "DORGU_LLM_CA_FILE", value_name = "FILE")]
    pub llm_ca_file: Option<PathBuf>,
    /// Seconds to wait for the model's answer.
    #[arg(long, env = "DORGU_LLM_TIMEOUT", value_name = "SECONDS", default_value_t = 60)]
    pub llm_timeout: u64,
}

/// `dorgu generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The application.
    #[command(flatten)]
    pub analyze: AnalyzeArgs,
    /// Output directory.
    #[arg(short = 'o', long = "output", default_value = "k8s")]
    pub output: PathBuf,
    /// Print the files to stdout instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Manifest format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// No ArgoCD Application.
    #[arg(long)]
    pub skip_argocd: bool,
    /// No persona and PERSONA.md.
    #[arg(long)]
    pub skip_persona: bool,
    /// No validation of the generated manifests.
    #[arg(long)]
    pub skip_validation: bool,
}

/// `dorgu init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Application directory.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Replace an existing .dorgu.yaml.
    #[arg(long)]
    pub force: bool,
}

/// `dorgu config`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print one value.
    Get {
        /// Key, e.g. defaults.namespace.
        key: String,
    },
    /// Set one value (an empty value unsets it).
    Set {
        /// Key, e.g. defaults.registry.
        key: String,
        /// Value.
        value: String,
    },
    /// Print every value (secrets masked).
    List,
    /// Print the config file's path.
    Path,
}

/// `dorgu persona`.
#[derive(Subcommand, Debug)]
pub enum PersonaCommand {
    /// Write persona.yaml for the application.
    Generate(PersonaGenerateArgs),
    /// Generate the persona and apply it to the cluster (server-side apply).
    Apply(PersonaApplyArgs),
    /// Show a persona's status as the operator reports it.
    Status(PersonaStatusArgs),
}

/// `dorgu persona generate`.
#[derive(Args, Debug)]
pub struct PersonaGenerateArgs {
    /// The application.
    #[command(flatten)]
    pub analyze: AnalyzeArgs,
    /// Directory to write persona.yaml to.
    #[arg(short = 'o', long = "output", default_value = ".")]
    pub output: PathBuf,
    /// Print it instead of writing it.
    #[arg(long)]
    pub dry_run: bool,
}

/// Where the cluster is.
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Kubeconfig file; default: KUBECONFIG, then ~/.kube/config, then in-cluster.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[arg(long)]
    pub context: Option<String>,
}

/// `dorgu persona apply`.
#[derive(Args, Debug)]
pub struct PersonaApplyArgs {
    /// The application.
    #[command(flatten)]
    pub analyze: AnalyzeArgs,
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// `dorgu persona status`.
#[derive(Args, Debug)]
pub struct PersonaStatusArgs {
    /// Persona name.
    pub name: String,
    /// Namespace; default: the global config's defaults.namespace, then `default`.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Or the gateway.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `dorgu validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Manifest files or directories (YAML, several documents per file allowed).
    #[arg(default_value = "k8s")]
    pub paths: Vec<PathBuf>,
    /// The persona (an ApplicationPersona manifest); default: persona.yaml among the paths.
    #[arg(long)]
    pub persona: Option<PathBuf>,
    /// Namespace assumed for resources that set none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}
