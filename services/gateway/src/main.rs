//! `gateway`: the public entry of Persys (accounts, tokens, forwarding to the services).

use std::io::Read;

use anyhow::Context;
use clap::Parser;
use persys_gateway::config::{Cli, Command};
use persys_kit::{config::exit_on_error, identity::Role, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("gateway", &cli.serve.telemetry)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let result = persys_gateway::run(cli.serve, shutdown::on_signals()).await;
            exit_on_error(result);
        }
        Command::CreateAdmin { username } => {
            let mut password = String::new();
            std::io::stdin().read_to_string(&mut password).context("reading the password from stdin")?;
            let accounts = exit_on_error(persys_gateway::accounts(&cli.serve).await);
            let user = exit_on_error(
                accounts.create_user(&username, password.trim_end_matches(['\r', '\n']), Role::Admin).await,
            );
            accounts.audit(("", "cli"), "user.create", &user.username, true, "local", "create-admin").await;
            println!("created admin `{}` ({})", user.username, user.id);
        }
    }
    Ok(())
}
