//! `reconciler`: the Persys Kubernetes operator (`reconciler run`), and its CRDs (`reconciler crds`).

use clap::Parser;
use persys_kit::{config::exit_on_error, shutdown, telemetry};
use persys_reconciler::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", persys_reconciler::crds_yaml()?),
        Command::Run(args) => {
            let _telemetry = telemetry::init("reconciler", &args.telemetry)?;
            exit_on_error(persys_reconciler::run(*args, shutdown::on_signals()).await);
        }
    }
    Ok(())
}
