//! `metrics-pipeline`: the Persys metrics service (host metrics from agents, queries) over mTLS.

use clap::Parser;
use persys_kit::{config::exit_on_error, shutdown, telemetry};
use persys_metrics_pipeline::config::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("metrics-pipeline", &cli.serve.telemetry)?;
    exit_on_error(persys_metrics_pipeline::run(cli.serve, shutdown::on_signals()).await);
    Ok(())
}
