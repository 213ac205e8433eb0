//! `persys`: the command-line interface of the Persys platform.

mod certs;

use clap::{Parser, Subcommand};

/// Persys: run and manage workloads on your machines.
#[derive(Parser, Debug)]
#[command(name = "persys", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create and issue mTLS certificates for a Persys cluster.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(c) => certs::run(c),
    };
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
