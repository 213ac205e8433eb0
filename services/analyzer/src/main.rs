//! `analyzer`: the Persys analyzer service (app source to manifests and personas) over mTLS.

use clap::Parser;
use persys_analyzer::config::Cli;
use persys_kit::{config::exit_on_error, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("analyzer", &cli.serve.telemetry)?;
    exit_on_error(persys_analyzer::run(cli.serve, shutdown::on_signals()).await);
    Ok(())
}
