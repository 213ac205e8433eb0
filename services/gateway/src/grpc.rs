//! The one place the gateway's servers are assembled: the public port (users, gRPC-web,
//! forwarding) and the internal mTLS port (other services).

use std::{collections::HashMap, sync::Arc};

use persys_kit::{
    Identity,
    client::{ClientOptions, mtls_channel_to},
    identity::{AuthorizeLayer, Matcher, Policy},
    metrics::Metrics,
    server::{GrpcWeb, Health, ServeError, base_routes},
    tls::Tls,
};
use persys_proto::gateway::v1::{
    api_key_service_server::ApiKeyServiceServer, auth_service_server::AuthServiceServer,
    user_service_server::UserServiceServer,
};
use tonic::service::Routes;

use crate::{
    accounts::Accounts,
    api::{api_keys::ApiKeysApi, auth::AuthApi, users::UsersApi},
    authn::AuthnLayer,
    error::GatewayError,
    proxy::{Proxy, Upstream},
    store::Store,
};

/// Builds the public routes: the gateway's own services, then forwarding for everything else,
/// all behind user authentication.
pub fn public_routes<S: Store>(
    accounts: Arc<Accounts<S>>,
    proxy: Proxy,
    max_message_bytes: usize,
) -> Result<(Routes, Health), ServeError> {
    let (routes, health) = base_routes(&[])?;
    let routes = routes
        .add_service(
            AuthServiceServer::new(AuthApi::new(accounts.clone())).max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            UserServiceServer::new(UsersApi::new(accounts.clone())).max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            ApiKeyServiceServer::new(ApiKeysApi::new(accounts.clone())).max_decoding_message_size(max_message_bytes),
        );
    let forward = tower::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { proxy.call(request).await }
    });
    let router = routes.into_axum_router().fallback_service(forward).layer(AuthnLayer::new(accounts));
    Ok((Routes::from(router), health))
}

/// Builds the internal routes: health and reflection for any Persys service identity.
pub fn internal_routes() -> Result<(Routes, Health, AuthorizeLayer), ServeError> {
    let (routes, health) = base_routes(&[])?;
    let policy = Policy::new().allow("/persys.gateway.v1.", [Matcher::Any]);
    Ok((routes, health, AuthorizeLayer::new(policy)))
}

/// Returns the identity an upstream's certificate must name: `spiffe://persys/<service>`, the
/// same word as the upstream key and the proto package (one name per service).
pub fn upstream_identity(service: &str) -> Identity {
    Identity::Service(service.into())
}

/// Opens a channel to every configured upstream; each accepts only its own service's
/// certificate, so no other holder of a CA certificate can pose as it and read users' calls.
pub fn upstream_channels(
    upstreams: &HashMap<String, String>,
    tls: &Arc<Tls>,
    metrics: &Metrics,
) -> Result<HashMap<String, Upstream>, GatewayError> {
    let options = ClientOptions { metrics: Some(metrics.clone()), ..ClientOptions::default() };
    upstreams
        .iter()
        .map(|(service, url)| {
            let channel = mtls_channel_to(url, tls, upstream_identity(service), &options)?;
            Ok((service.clone(), Upstream { channel, address: url.clone() }))
        })
        .collect()
}

/// Returns the gRPC-web settings of the public port.
pub fn grpc_web(origins: &[String]) -> GrpcWeb {
    GrpcWeb { allowed_origins: origins.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstream_must_present_its_own_services_identity() {
        assert_eq!(upstream_identity("scheduler").uri(), "spiffe://persys/scheduler");
        assert_eq!(upstream_identity("analyzer").uri(), "spiffe://persys/analyzer");
        assert_eq!(upstream_identity("metrics").uri(), "spiffe://persys/metrics");
    }
}
