//! `--server`: the same request sent to the analyzer service over mTLS, as a client-streamed
//! upload (`Analyze`). The service only admits known identities, so the client presents a
//! certificate from the cluster CA (`persys certs issue --service dorgu`).

use anyhow::Context;
use persys_analyzer::{tree::SourceTree, upload};
use persys_kit::{
    client::{ClientOptions, mtls_channel},
    tls::{Tls, TlsPaths},
};
use persys_proto::analyzer::v1::{AnalysisResult, AnalyzeMetadata, analyzer_service_client::AnalyzerServiceClient};

use crate::cli::AnalyzeArgs;

/// Analyses through the service at `url`.
pub async fn analyze(
    url: &str,
    args: &AnalyzeArgs,
    meta: AnalyzeMetadata,
    tree: &SourceTree,
) -> anyhow::Result<AnalysisResult> {
    let (Some(ca), Some(cert), Some(key)) = (&args.tls_ca, &args.tls_cert, &args.tls_key) else {
        anyhow::bail!("--server needs --tls-ca, --tls-cert and --tls-key (or DORGU_TLS_CA/_CERT/_KEY)");
    };
    let tls = Tls::load(TlsPaths { ca: ca.clone(), cert: cert.clone(), key: key.clone() })
        .context("loading the client certificate")?;
    // Channels add TLS from the certificates; the scheme only says where.
    let address = url.replacen("https://", "http://", 1);
    let channel = mtls_channel(&address, &tls, &ClientOptions::default()).context("connecting to the analyzer")?;
    let mut client = AnalyzerServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let requests = upload::to_requests(meta, tree, upload::MAX_CHUNK_BYTES);
    let response = client
        .analyze(tokio_stream::iter(requests))
        .await
        .map_err(|s| anyhow::anyhow!("analyzer: {} ({:?})", s.message(), s.code()))?;
    response.into_inner().result.context("the analyzer returned no result")
}
