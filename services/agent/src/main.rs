//! `agent`: the Persys node agent, running the workloads the scheduler places on its machine.

use clap::Parser;
use persys_agent::config::Cli;
use persys_kit::{config::exit_on_error, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("agent", &cli.telemetry)?;
    exit_on_error(persys_agent::run(cli, shutdown::on_signals()).await);
    Ok(())
}
