//! `persys-stack`: gateway, scheduler and agent in one process, for a laptop.

use clap::Parser;
use persys_kit::{shutdown, telemetry};
use persys_stack::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _telemetry = telemetry::init("persys-stack", &config.telemetry)?;
    if let Err(error) = persys_stack::run(config, shutdown::on_signals()).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
    Ok(())
}
