//! `scheduler`: the Persys scheduler (workloads, nodes, placement on etcd, agent streams).

use clap::Parser;
use persys_kit::{config::exit_on_error, shutdown, telemetry};
use persys_scheduler::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("scheduler", &config.telemetry)?;
    exit_on_error(persys_scheduler::run(config, shutdown::on_signals()).await);
    Ok(())
}
