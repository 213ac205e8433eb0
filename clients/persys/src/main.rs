//! `persys`: the command-line interface of the Persys platform.

mod alerts;
mod auth;
mod certs;
mod client;
mod dora;
mod error;
mod host;
mod metrics;
mod node;
mod output;
mod project;
mod quantity;
mod run;
mod streams;
mod token;
mod view;
mod wait;
mod watch;
mod workload;

use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::error::{EXIT_CODES_HELP, Exit, Failure};

const EXAMPLES: &str = "\
Examples:
  persys login -u ada                          log in (asks for the password)
  persys workload run nginx:1.27 -p 8080:80 --wait
  persys workload list -o yaml
  persys workload logs web -f
  persys watch workloads
  persys token create --ttl 2h                 a single-use join token for a new machine (admin)
  persys --server https://persys.example.com:8080 --ca ca.pem whoami";

/// Persys: run and manage workloads on your machines.
#[derive(Parser, Debug)]
#[command(name = "persys", version, about, propagate_version = true)]
#[command(after_help = format!("{EXAMPLES}\n\n{EXIT_CODES_HELP}"))]
struct Cli {
    #[command(flatten)]
    global: client::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in to the gateway and keep the session (refreshed automatically).
    Login(auth::LoginArgs),
    /// End the session and forget it.
    Logout,
    /// Show who you are logged in as.
    Whoami,
    /// Change your password (ends your other sessions; this one goes on).
    Passwd(auth::PasswdArgs),
    /// Run, list, inspect and change workloads.
    #[command(subcommand, visible_alias = "w")]
    Workload(workload::WorkloadCommand),
    /// List and manage nodes.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Stream changes to workloads or nodes (resumes after a broken connection).
    #[command(subcommand)]
    Watch(watch::WatchCommand),
    /// Create, list and revoke join tokens for new nodes (admin).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Host metrics of the nodes: newest values and charts over time (admin).
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// Alerts raised by alert rules: list, acknowledge, watch (admin).
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Alert rules: create from a YAML file, list, delete (admin).
    #[command(subcommand)]
    Rules(alerts::RulesCommand),
    /// Run a command on a node (admin; only what the node's agent allows).
    ExecHost(host::ExecHostArgs),
    /// A node's containers, Docker actions on them, the command history (admin).
    #[command(subcommand)]
    Host(host::HostCommand),
    /// DORA metrics: the four keys, the deployments behind them, recording one from CI.
    #[command(subcommand)]
    Dora(dora::DoraCommand),
    /// Kapsa projects built from git: list, show, watch (through the reconciler).
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Environments of Kapsa projects, permanent and preview: list, show, watch.
    #[command(subcommand)]
    Env(project::EnvCommand),
    /// Image builds of Kapsa projects: list, show, watch.
    #[command(subcommand)]
    Build(project::BuildCommand),
    /// Create and issue mTLS certificates for a Persys cluster.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Print a shell completion script, e.g. `persys completions bash > /etc/bash_completion.d/persys`.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Login(args) => auth::login(global, args).await,
        Command::Logout => auth::logout(global).await,
        Command::Whoami => auth::whoami(global).await,
        Command::Passwd(args) => auth::passwd(global, args).await,
        Command::Workload(c) => workload::run(global, c).await,
        Command::Node(c) => node::run(global, c).await,
        Command::Watch(c) => watch::run(global, c).await,
        Command::Token(c) => token::run(global, c).await,
        Command::Metrics(c) => metrics::run(global, c).await,
        Command::Alerts(c) => alerts::run_alerts(global, c).await,
        Command::Rules(c) => alerts::run_rules(global, c).await,
        Command::ExecHost(args) => host::exec_host(global, args).await,
        Command::Host(c) => host::run(global, c).await,
        Command::Dora(c) => dora::run(global, c).await,
        Command::Project(c) => project::run_project(global, c).await,
        Command::Env(c) => project::run_env(global, c).await,
        Command::Build(c) => project::run_build(global, c).await,
        Command::Certs(c) => certs::run(c),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "persys", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(dispatch(cli)));
    if let Err(error) = result {
        let code = match error.downcast_ref::<Failure>() {
            Some(failure) => failure.exit,
            None => Exit::Error,
        };
        eprintln!("error: {error:#}");
        std::process::exit(code as i32);
    }
}
