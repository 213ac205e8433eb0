//! The one place the analyzer's server is assembled: health, reflection and the
//! `AnalyzerService`, behind caller authorization.

use persys_kit::{
    identity::{AuthorizeLayer, Matcher, Policy},
    server::{Health, ServeError, base_routes},
};
use persys_proto::analyzer::v1::analyzer_service_server::AnalyzerServiceServer;
use tonic::service::Routes;

use crate::api::AnalyzerApi;

/// Builds the routes with the service mounted; the health handle is already SERVING for it.
pub async fn routes(api: AnalyzerApi, max_message_bytes: usize) -> Result<(Routes, Health), ServeError> {
    let (routes, health) = base_routes(&[])?;
    health.serving::<AnalyzerServiceServer<AnalyzerApi>>().await;
    let service = AnalyzerServiceServer::new(api)
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(64 * 1024 * 1024);
    Ok((routes.add_service(service), health))
}

/// Admits the listed services to `/persys.analyzer.v1.`.
pub fn authorize(callers: &[String]) -> AuthorizeLayer {
    let policy = Policy::new().allow("/persys.analyzer.v1.", callers.iter().map(|c| Matcher::Service(c.clone())));
    AuthorizeLayer::new(policy)
}
