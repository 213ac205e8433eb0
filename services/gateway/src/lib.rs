//! The Persys gateway: the one public entry of the platform.
//!
//! It owns users (argon2id passwords, roles), sessions (JWT access tokens and rotating refresh
//! tokens with reuse detection), API keys and the audit log, and forwards every other
//! `persys.<service>.v1.*` call to the service that owns it over mTLS, with the caller's
//! verified identity attached. gRPC and gRPC-web share the public port; other services reach
//! it on an internal mTLS port. It holds no state of other services.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod authn;
pub mod config;
pub mod error;
pub mod grpc;
pub mod proxy;
pub mod ratelimit;
pub mod store;
pub mod user_states;
pub mod web;

use std::sync::Arc;

use persys_kit::{
    metrics::Metrics,
    server::{ServerOptions, announce_ready, bind, serve, spawn_admin},
    shutdown::Shutdown,
};

use crate::{
    accounts::{Accounts, Policy},
    auth::TokenKeys,
    config::ServeArgs,
    error::GatewayError,
    ratelimit::Rate,
    store::SqlStore,
};

/// Builds the account flows from the configuration, running migrations.
pub async fn accounts(args: &ServeArgs) -> Result<Arc<Accounts<SqlStore>>, GatewayError> {
    let secret = args.jwt_secret()?;
    let store = Arc::new(SqlStore::connect(args.database_url.expose(), args.database_max_connections).await?);
    let minute = std::time::Duration::from_secs(60);
    let policy = Policy {
        access_ttl: args.access_ttl,
        refresh_ttl: args.refresh_ttl,
        login_per_user: Rate { burst: args.login_per_user.max(1), period: minute },
        login_per_peer: Rate { burst: args.login_per_peer.max(1), period: minute },
        ..Policy::default()
    };
    Ok(Arc::new(Accounts::new(store, TokenKeys::new(&secret), policy)))
}

/// Runs the gateway until `shutdown`, then drains.
pub async fn run(args: ServeArgs, shutdown: Shutdown) -> Result<(), GatewayError> {
    let upstreams = args.upstream_map()?;
    args.telemetry.admin_addr()?; // a bad admin address fails before anything starts
    let tls = args.tls.load()?;
    let accounts = accounts(&args).await?;
    if let (Some(username), Some(password)) = (&args.admin_username, &args.admin_password)
        && accounts.bootstrap_admin(username, password.expose()).await?
    {
        tracing::info!(%username, "created the first admin");
    }
    let metrics = Metrics::new();
    let admin = spawn_admin(&args.telemetry, &metrics, shutdown.clone()).await?;
    let sink: proxy::AuditSink = {
        let accounts = accounts.clone();
        Arc::new(move |a: proxy::Audited| {
            let accounts = accounts.clone();
            Box::pin(async move {
                let user = &a.principal.user;
                accounts.audit((&user.id, &user.name), a.action, &a.target, a.allowed, &a.peer, &a.detail).await;
            })
        })
    };
    let proxy =
        proxy::Proxy::new(grpc::upstream_channels(&upstreams, &tls, &metrics)?, args.max_message_bytes, Some(sink))
            .with_upload_limit(args.max_upload_bytes);
    let web = args.web_root.as_deref().map(web::WebRoot::new).transpose().map_err(persys_kit::config::ConfigError)?;
    let (public_routes, public_health) = grpc::public_routes(accounts, proxy, args.max_message_bytes)?;
    let (internal_routes, internal_health, authorize) = grpc::internal_routes()?;
    let (public, public_addr) = bind(args.listen).await?;
    let (internal, internal_addr) = bind(args.internal_listen).await?;
    let mut services: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    services.sort_unstable();
    tracing::info!(public = %public_addr, internal = %internal_addr, upstreams = ?services, "gateway ready");
    announce_ready("gateway", &[("public", Some(public_addr)), ("internal", Some(internal_addr)), ("admin", admin)]);

    let public_options = ServerOptions {
        tls: args.public_tls.then(|| tls.server_config_with(&[b"h2", b"http/1.1"], false)),
        grpc_web: Some(grpc::grpc_web(&args.cors_origins)),
        metrics: Some(metrics.clone()),
        drain_timeout: args.drain_timeout,
        plain_http: web.map(web::WebRoot::service),
        ..ServerOptions::default()
    };
    let internal_options = ServerOptions {
        tls: Some(tls.server_config(&[b"h2"])),
        authorize: Some(authorize),
        metrics: Some(metrics),
        drain_timeout: args.drain_timeout,
        ..ServerOptions::default()
    };
    tokio::try_join!(
        serve(public, public_routes, public_options, Some(public_health), shutdown.clone()),
        serve(internal, internal_routes, internal_options, Some(internal_health), shutdown),
    )?;
    Ok(())
}
