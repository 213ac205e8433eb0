//! `--server`: the same request sent to the Persys analyzer through the gateway, as a
//! client-streamed upload (`Analyze`), with the user's `persys login` session or an API key,
//! like every user-facing client.

use anyhow::Context;
use persys_analyzer::{tree::SourceTree, upload};
use persys_client::{Client, Connection, Credential, Error, store::Store};
use persys_proto::analyzer::v1::{AnalysisResult, AnalyzeMetadata};

use crate::cli::AnalyzeArgs;

/// Returns what a user should read when `--server` fails.
fn explain(e: Error, server: &str) -> anyhow::Error {
    let hint = match &e {
        Error::NotLoggedIn { .. } | Error::SessionEnded { .. } => {
            format!("\n  log in with `persys login --server {server}`, or pass --token with an API key")
        }
        Error::Call(c) if c.code() == tonic::Code::Unauthenticated => {
            format!("\n  log in again with `persys login --server {server}`, or check --token")
        }
        Error::Call(c) if c.unreachable() => "\n  is the gateway running? check --server".to_owned(),
        _ => String::new(),
    };
    anyhow::anyhow!("analyzer through {server}: {e}{hint}")
}

/// Analyses through the gateway at `server`.
pub async fn analyze(
    server: &str,
    args: &AnalyzeArgs,
    meta: AnalyzeMetadata,
    tree: &SourceTree,
) -> anyhow::Result<AnalysisResult> {
    let connection = Connection::new(server, args.ca.as_deref()).map_err(|e| explain(e, server))?;
    let credential = match &args.token {
        Some(key) => Credential::ApiKey(key.clone()),
        None => Credential::Session(Store::default_location().map_err(|e| explain(e, server))?),
    };
    let client = Client::new(connection, credential).map_err(|e| explain(e, server))?;
    let requests = upload::to_requests(meta, tree, upload::MAX_CHUNK_BYTES);
    let response = client
        .call(|c| {
            let requests = requests.clone();
            async move { c.analyzer().analyze(tokio_stream::iter(requests)).await }
        })
        .await
        .map_err(|e| explain(e, server))?;
    response.result.context("the analyzer returned no result")
}
