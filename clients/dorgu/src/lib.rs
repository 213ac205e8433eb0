//! The dorgu CLI: analyse an application and generate its Kubernetes manifests and
//! `ApplicationPersona` (offline with the analyzer library, or through the analyzer service),
//! keep the app's `.dorgu.yaml` and the user's global config, validate manifests against a
//! persona, and apply personas and read their and the cluster's status through the Kubernetes API (kube, no
//! kubectl). It holds no analysis logic of its own: that is `persys-analyzer`.

pub mod cli;
pub mod config;
pub mod from_proto;
pub mod generate;
pub mod init;
pub mod kube_api;
pub mod llm;
pub mod output;
pub mod remote;
pub mod status;
pub mod validate;

use cli::{Cli, ClusterCommand, Command, ConfigCommand, PersonaCommand, WatchCommand};

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Generate(args) => generate::generate(args, json).await,
        Command::Init(args) => init::init(args, json),
        Command::Config { command } => match command {
            ConfigCommand::Get { key } => config::get(&key, json),
            ConfigCommand::Set { key, value } => config::set(&key, &value, json),
            ConfigCommand::List => config::list(json),
            ConfigCommand::Path => config::path_cmd(json),
        },
        Command::Persona { command } => match command {
            PersonaCommand::Generate(args) => generate::persona_generate(args, json).await,
            PersonaCommand::Apply(args) => kube_api::apply(args, json).await,
            PersonaCommand::Status(args) => kube_api::status(args, json).await,
        },
        Command::Cluster { command: ClusterCommand::Status(args) } => kube_api::cluster_status(args, json).await,
        Command::Watch { command } => match command {
            WatchCommand::Personas(args) => remote::watch_personas(args, json).await,
            WatchCommand::Cluster(args) => remote::watch_cluster(args, json).await,
        },
        Command::Validate(args) => validate::validate(args, json),
    }
}
