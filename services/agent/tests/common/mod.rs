#![allow(dead_code)]

pub mod docker;
pub mod scheduler;

use std::path::Path;

use persys_agent::config::Cli;
use persys_kit::shutdown::{self, ShutdownTrigger};

/// A running in-process agent.
pub struct Agent {
    pub trigger: ShutdownTrigger,
    pub task: tokio::task::JoinHandle<Result<(), persys_agent::error::AgentError>>,
}

impl Agent {
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(20), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// Returns the agent's command line for a fake scheduler.
pub fn agent_cli(fake: &scheduler::FakeScheduler, state: &Path, docker_host: &str, extra: &[&str]) -> Cli {
    let scheduler = format!("https://localhost:{}", fake.mtls_addr.port());
    let bootstrap = format!("https://localhost:{}", fake.bootstrap_addr.port());
    let ca = fake.ca_file().display().to_string();
    let state = state.display().to_string();
    let mut args = vec![
        "agent",
        "--scheduler",
        &scheduler,
        "--bootstrap",
        &bootstrap,
        "--join-token",
        scheduler::TOKEN,
        "--ca-file",
        &ca,
        "--state-dir",
        &state,
        "--docker-host",
        docker_host,
        "--network-mode",
        "none",
        "--admin-api-listen",
        "off",
        "--admin-listen",
        "off",
        "--label",
        "zone=test",
    ];
    args.extend_from_slice(extra);
    <Cli as clap::Parser>::try_parse_from(args).unwrap()
}

pub fn start_agent(cli: Cli) -> Agent {
    let (trigger, handle) = shutdown::channel();
    let task = tokio::spawn(persys_agent::run(cli, handle));
    Agent { trigger, task }
}
