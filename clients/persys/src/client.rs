//! Talking to the gateway: the channel (plaintext or TLS), the bearer credentials on every
//! call, and transparent refresh: an expired access token is traded once for a new pair with
//! the stored refresh token, and the call is retried.

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use persys_kit::client::{ClientOptions, TracedChannel, plain_channel, tls_channel};
use persys_proto::{
    gateway::v1::{RefreshRequest, auth_service_client::AuthServiceClient},
    scheduler::v1::scheduler_service_client::SchedulerServiceClient,
};
use tonic::{Code, Status, codegen::InterceptedService, metadata::MetadataValue, service::Interceptor};

use crate::{
    config::{Credentials, Store},
    error::{Exit, Failure, describe},
    output::Format,
};

/// Flags every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Gateway address: http://HOST:PORT (plaintext, development) or https://HOST:PORT.
    #[arg(long, global = true, env = "PERSYS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// CA certificate (PEM) that signed the gateway's certificate, for https:// servers that
    /// use a private CA (e.g. `certs/ca.pem` from `persys certs init`). Without it the system's
    /// trusted roots are used.
    #[arg(long, global = true, env = "PERSYS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// An API key (psk_...) to use instead of the stored login session.
    #[arg(long, global = true, env = "PERSYS_TOKEN", hide_env_values = true, value_name = "KEY")]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Deadline of each request (streams: until they open), e.g. 10s, 1m.
    #[arg(long, global = true, default_value = "30s", value_parser = persys_kit::config::parse_duration)]
    pub timeout: Duration,
}

/// Returns a lazily connecting channel to `server`.
pub fn channel(server: &str, ca: Option<&std::path::Path>) -> anyhow::Result<TracedChannel> {
    let options = ClientOptions { connect_timeout: Duration::from_secs(5), ..ClientOptions::default() };
    let bad = || Failure::new(Exit::Usage, format!("--server `{server}` is not a URL like http://127.0.0.1:8080"));
    let uri: tonic::transport::Uri = server.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http") => Ok(plain_channel(server, &options).map_err(|_| bad())?),
        Some("https") => {
            let host = uri.host().ok_or_else(bad)?;
            // The TLS is done by the kit's connector, so the endpoint itself is `http`.
            let address = format!("http://{host}:{}", uri.port_u16().unwrap_or(443));
            Ok(tls_channel(&address, tls_config(ca)?, &options).map_err(|_| bad())?)
        }
        _ => Err(bad().into()),
    }
}

fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading --ca {}", path.display()))?;
            for cert in persys_kit::tls::parse_certs(&pem, path)? {
                roots.add(cert).with_context(|| format!("--ca {}: not a usable CA certificate", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // Skip the odd unparsable system root rather than failing every call.
                let _ = roots.add(cert);
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(persys_kit::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A channel with credentials, from which the generated clients are made.
#[derive(Clone)]
pub struct Conn {
    channel: TracedChannel,
    bearer: Bearer,
}

/// The channel type of every authenticated client.
pub type AuthChannel = InterceptedService<TracedChannel, Bearer>;

impl Conn {
    /// Returns a scheduler client (forwarded by the gateway).
    pub fn scheduler(self) -> SchedulerServiceClient<AuthChannel> {
        SchedulerServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns an auth client.
    pub fn auth(self) -> AuthServiceClient<AuthChannel> {
        AuthServiceClient::with_interceptor(self.channel, self.bearer)
    }
}

/// How the session authenticates.
#[derive(Clone)]
enum Auth {
    ApiKey(String),
    Login(Credentials),
}

/// A logged-in connection to one gateway.
pub struct Session {
    /// The gateway address.
    pub server: String,
    channel: TracedChannel,
    store: Store,
    // Replaced when a refresh rotates the tokens; never held across an await.
    auth: Mutex<Auth>,
    timeout: Duration,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn not_logged_in(server: &str) -> Failure {
    Failure::new(Exit::Auth, format!("not logged in to {server}: run `persys login --server {server}`"))
}

impl Session {
    /// Opens a session with the API key given, or else the stored login for the server.
    pub fn open(global: &Global) -> anyhow::Result<Self> {
        let store = Store::default_location()?;
        let auth = match &global.token {
            Some(key) => Auth::ApiKey(key.clone()),
            None => Auth::Login(store.get(&global.server)?.ok_or_else(|| not_logged_in(&global.server))?),
        };
        Ok(Self {
            server: global.server.clone(),
            channel: channel(&global.server, global.ca.as_deref())?,
            store,
            auth: Mutex::new(auth),
            timeout: global.timeout,
        })
    }

    fn auth(&self) -> Auth {
        self.auth.lock().expect("auth lock").clone()
    }

    fn set_auth(&self, auth: Auth) {
        *self.auth.lock().expect("auth lock") = auth;
    }

    fn conn(&self) -> anyhow::Result<Conn> {
        let token = match self.auth() {
            Auth::ApiKey(key) => key,
            Auth::Login(c) => c.access_token,
        };
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Failure::new(Exit::Auth, "the stored token is malformed: run `persys login`"))?;
        Ok(Conn { channel: self.channel.clone(), bearer: Bearer(value) })
    }

    /// Runs one call, refreshing an expired login once and retrying. Failures come back as
    /// [`Failure`]s that say what to do.
    pub async fn call<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if let Auth::Login(c) = self.auth()
            && c.access_expires_at != 0
            && c.access_expires_at <= now()
        {
            self.refresh().await?;
        }
        match self.attempt(&f).await {
            Err(status) if status.code() == Code::Unauthenticated && matches!(self.auth(), Auth::Login(_)) => {
                self.refresh().await?;
                self.attempt(&f).await.map_err(|s| describe(&s, &self.server).into())
            }
            result => result.map_err(|s| describe(&s, &self.server).into()),
        }
    }

    async fn attempt<T, F, Fut>(&self, f: &F) -> Result<T, Status>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let conn = self.conn().map_err(|e| Status::unauthenticated(e.to_string()))?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Trades the refresh token for a new pair and stores it; under the credentials lock, so
    /// a concurrent `persys` that refreshed first is noticed and its tokens reused.
    async fn refresh(&self) -> anyhow::Result<()> {
        let Auth::Login(current) = self.auth() else { return Ok(()) };
        let _lock = self.store.lock()?;
        if let Some(stored) = self.store.get(&self.server)?
            && stored.refresh_token != current.refresh_token
        {
            self.set_auth(Auth::Login(stored));
            return Ok(());
        }
        let mut client = AuthServiceClient::new(self.channel.clone());
        let request = RefreshRequest { refresh_token: current.refresh_token.clone() };
        let answer = tokio::time::timeout(self.timeout, client.refresh(request))
            .await
            .map_err(|_| Status::deadline_exceeded("refresh timed out"));
        let response = match answer.and_then(|r| r) {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == Code::Unauthenticated => {
                // The session is over (expired, revoked or logged out): forget it.
                self.store.remove(&self.server)?;
                return Err(Failure::new(
                    Exit::Auth,
                    format!("your session at {0} has ended: run `persys login --server {0}`", self.server),
                )
                .into());
            }
            Err(status) => return Err(describe(&status, &self.server).into()),
        };
        let fresh = Credentials {
            username: current.username.clone(),
            access_token: response.access_token,
            refresh_token: response.refresh_token,
            access_expires_at: response.access_expires_at.map_or(0, |t| t.seconds),
            refresh_expires_at: response.refresh_expires_at.map_or(0, |t| t.seconds),
        };
        self.store.put(&self.server, fresh.clone())?;
        self.set_auth(Auth::Login(fresh));
        Ok(())
    }
}
