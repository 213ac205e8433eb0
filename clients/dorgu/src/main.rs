//! `dorgu`: analyse an application and write its Kubernetes manifests and persona, offline or
//! with the Persys analyzer through the gateway; apply and inspect personas in a cluster.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = dorgu::cli::Cli::parse();
    let json = cli.json;
    if let Err(e) = dorgu::run(cli).await {
        if json {
            println!("{}", serde_json::json!({"error": format!("{e:#}")}));
        } else {
            eprintln!("error: {e:#}");
        }
        std::process::exit(1);
    }
}
