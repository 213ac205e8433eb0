//! A connection with credentials: every call carries `authorization: Bearer ...`; a login
//! session whose access token expired is refreshed once (under the credentials file's lock)
//! and the call retried.

use std::{future::Future, sync::Mutex, time::Duration};

use persys_kit::client::TracedChannel;
use persys_proto::{
    analyzer::v1::analyzer_service_client::AnalyzerServiceClient,
    gateway::v1::{
        ChangePasswordRequest, LoginRequest, LoginResponse, RefreshRequest,
        api_key_service_client::ApiKeyServiceClient, auth_service_client::AuthServiceClient,
        user_service_client::UserServiceClient,
    },
    metrics::v1::{alert_service_client::AlertServiceClient, metrics_query_service_client::MetricsQueryServiceClient},
    reconciler::v1::{persona_service_client::PersonaServiceClient, project_service_client::ProjectServiceClient},
    scheduler::v1::scheduler_service_client::SchedulerServiceClient,
};
use tonic::{
    Code, Status,
    codegen::InterceptedService,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
};

use crate::{
    CallError, Connection, Error,
    store::{Credentials, Store},
};

/// Adds `authorization: Bearer TOKEN` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(..)")
    }
}

impl Bearer {
    /// Returns the interceptor for `token` (an access token or an API key); `None` when the
    /// token cannot be sent as metadata.
    pub fn new(token: &str) -> Option<Self> {
        MetadataValue::try_from(format!("Bearer {token}")).ok().map(Self)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The channel type of every authenticated client.
pub type AuthChannel = InterceptedService<TracedChannel, Bearer>;

/// A channel with credentials, from which the typed clients are made. Each goes through the
/// gateway, which routes by the service's package.
#[derive(Clone, Debug)]
pub struct Conn {
    channel: TracedChannel,
    bearer: Bearer,
}

impl Conn {
    /// Returns a channel with `bearer` on every call.
    pub fn new(connection: &Connection, bearer: Bearer) -> Self {
        Self { channel: connection.channel(), bearer }
    }

    /// Returns a scheduler client: workloads, nodes, join tokens, logs, exec, watches.
    pub fn scheduler(self) -> SchedulerServiceClient<AuthChannel> {
        SchedulerServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns an auth client: log in, refresh, who am I.
    pub fn auth(self) -> AuthServiceClient<AuthChannel> {
        AuthServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns a user management client (admins).
    pub fn users(self) -> UserServiceClient<AuthChannel> {
        UserServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns an API key client.
    pub fn api_keys(self) -> ApiKeyServiceClient<AuthChannel> {
        ApiKeyServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns a metrics query client: host metrics over time, each node's newest sample, live
    /// watches (admins).
    pub fn metrics(self) -> MetricsQueryServiceClient<AuthChannel> {
        MetricsQueryServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns an alert client: rules, alerts, acknowledgements, live alerts (admins).
    pub fn metrics_alerts(self) -> AlertServiceClient<AuthChannel> {
        AlertServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns a DORA client: deployments and the four keys (every role reads; admins record
    /// and retry DevLake pushes).
    pub fn dora(self) -> persys_proto::metrics::v1::dora_service_client::DoraServiceClient<AuthChannel> {
        persys_proto::metrics::v1::dora_service_client::DoraServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns a server command client (ChatOps, admins): commands and Docker actions on a
    /// node, its containers, the command history.
    pub fn commands(self) -> persys_proto::metrics::v1::command_service_client::CommandServiceClient<AuthChannel> {
        persys_proto::metrics::v1::command_service_client::CommandServiceClient::with_interceptor(
            self.channel,
            self.bearer,
        )
    }

    /// Returns a persona client (the reconciler): ApplicationPersonas, the ClusterPersona,
    /// their live changes.
    pub fn personas(self) -> PersonaServiceClient<AuthChannel> {
        PersonaServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns a Kapsa project client (the reconciler): projects, their environments and
    /// builds, their live changes.
    pub fn projects(self) -> ProjectServiceClient<AuthChannel> {
        ProjectServiceClient::with_interceptor(self.channel, self.bearer)
    }

    /// Returns an analyzer client: app analysis, manifests, personas.
    pub fn analyzer(self) -> AnalyzerServiceClient<AuthChannel> {
        AnalyzerServiceClient::with_interceptor(self.channel, self.bearer).max_decoding_message_size(64 << 20)
    }
}

/// How a client proves who it is.
#[derive(Clone, Debug)]
pub enum Credential {
    /// An API key (`psk_...`): sent as is, never refreshed.
    ApiKey(String),
    /// A login session kept in a credentials store, refreshed when its access token expires.
    Session(Store),
}

#[derive(Clone)]
enum Current {
    ApiKey(String),
    Login(Credentials),
}

/// A connection with credentials. Calls go through [`Client::call`], which refreshes an
/// expired session once and retries.
pub struct Client {
    connection: Connection,
    store: Option<Store>,
    // Replaced when a refresh rotates the tokens; never held across an await.
    current: Mutex<Current>,
    timeout: Option<Duration>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Returns the stored form of a login or refresh answer.
fn credentials(username: &str, access: String, refresh: String, access_exp: i64, refresh_exp: i64) -> Credentials {
    Credentials {
        username: username.to_owned(),
        access_token: access,
        refresh_token: refresh,
        access_expires_at: access_exp,
        refresh_expires_at: refresh_exp,
    }
}

/// Logs in at `connection`'s server and keeps the session in `store`; returns the answer
/// (the user and the tokens).
pub async fn login(
    connection: &Connection,
    store: &Store,
    username: &str,
    password: &str,
) -> Result<LoginResponse, Error> {
    let mut client = AuthServiceClient::new(connection.channel());
    let request = LoginRequest { username: username.to_owned(), password: password.to_owned() };
    let response = client.login(request).await.map_err(|s| CallError::new(s, connection.server()))?.into_inner();
    // Under the lock, so a refresh by another process cannot interleave with this write.
    let _lock = store.lock()?;
    store.put(
        connection.server(),
        credentials(
            username,
            response.access_token.clone(),
            response.refresh_token.clone(),
            response.access_expires_at.map_or(0, |t| t.seconds),
            response.refresh_expires_at.map_or(0, |t| t.seconds),
        ),
    )?;
    Ok(response)
}

impl Client {
    /// Returns a client using `credential`: an API key, or the session stored for the
    /// server ([`Error::NotLoggedIn`] when there is none).
    pub fn new(connection: Connection, credential: Credential) -> Result<Self, Error> {
        let (store, current) = match credential {
            Credential::ApiKey(key) => (None, Current::ApiKey(key)),
            Credential::Session(store) => {
                let stored = store
                    .get(connection.server())?
                    .ok_or_else(|| Error::NotLoggedIn { server: connection.server().to_owned() })?;
                (Some(store), Current::Login(stored))
            }
        };
        Ok(Self { connection, store, current: Mutex::new(current), timeout: None })
    }

    /// Returns a client that sends `token` (an API key or an access token) as it is.
    pub fn with_token(connection: Connection, token: impl Into<String>) -> Self {
        Self { connection, store: None, current: Mutex::new(Current::ApiKey(token.into())), timeout: None }
    }

    /// Sets a deadline for each call (streams: until they open).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Returns the server address.
    pub fn server(&self) -> &str {
        self.connection.server()
    }

    /// Returns the connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    fn current(&self) -> Current {
        self.current.lock().expect("credentials lock").clone()
    }

    fn set_current(&self, current: Current) {
        *self.current.lock().expect("credentials lock") = current;
    }

    /// Returns the channel with the current credentials. Prefer [`Client::call`], which also
    /// refreshes an expired session.
    pub fn conn(&self) -> Result<Conn, Error> {
        let token = match self.current() {
            Current::ApiKey(key) => key,
            Current::Login(c) => c.access_token,
        };
        let bearer = Bearer::new(&token).ok_or_else(|| Error::MalformedToken { server: self.server().to_owned() })?;
        Ok(Conn::new(&self.connection, bearer))
    }

    /// Runs one call made by `f`: refreshes an expired session first, and once more (then
    /// retries) when the server says the access token is no longer valid.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if let Current::Login(c) = self.current()
            && c.access_expires_at != 0
            && c.access_expires_at <= now()
        {
            self.refresh().await?;
        }
        match self.attempt(&f).await {
            Err(Error::Call(e)) if e.code() == Code::Unauthenticated && matches!(self.current(), Current::Login(_)) => {
                self.refresh().await?;
                self.attempt(&f).await
            }
            result => result,
        }
    }

    async fn attempt<T, F, Fut>(&self, f: &F) -> Result<T, Error>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let conn = self.conn()?;
        let result = match self.timeout {
            Some(t) => tokio::time::timeout(t, f(conn))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded(format!("no answer within {t:?}")))),
            None => f(conn).await,
        };
        result.map(tonic::Response::into_inner).map_err(|s| CallError::new(s, self.server()).into())
    }

    /// Trades the refresh token for a new pair and stores it; under the credentials lock, so
    /// a concurrent process that refreshed first is noticed and its tokens reused.
    pub async fn refresh(&self) -> Result<(), Error> {
        let (Current::Login(current), Some(store)) = (self.current(), &self.store) else { return Ok(()) };
        let _lock = store.lock()?;
        if let Some(stored) = store.get(self.server())?
            && stored.refresh_token != current.refresh_token
        {
            self.set_current(Current::Login(stored));
            return Ok(());
        }
        let mut client = AuthServiceClient::new(self.connection.channel());
        let request = RefreshRequest { refresh_token: current.refresh_token.clone() };
        let answer = match self.timeout {
            Some(t) => tokio::time::timeout(t, client.refresh(request))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("refresh timed out"))),
            None => client.refresh(request).await,
        };
        let response = match answer {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == Code::Unauthenticated => {
                // The session is over (expired, revoked or logged out): forget it.
                store.remove(self.server())?;
                return Err(Error::SessionEnded { server: self.server().to_owned() });
            }
            Err(status) => return Err(CallError::new(status, self.server()).into()),
        };
        let tokens = (response.access_token, response.refresh_token);
        self.keep(store, &current.username, tokens, (response.access_expires_at, response.refresh_expires_at))
    }

    /// Stores a new session of `username` (access and refresh token, their expiries) for the
    /// server and uses it from now on; the caller holds the store's lock.
    fn keep(
        &self,
        store: &Store,
        username: &str,
        (access, refresh): (String, String),
        (access_exp, refresh_exp): (Option<prost_types::Timestamp>, Option<prost_types::Timestamp>),
    ) -> Result<(), Error> {
        let fresh = credentials(
            username,
            access,
            refresh,
            access_exp.map_or(0, |t| t.seconds),
            refresh_exp.map_or(0, |t| t.seconds),
        );
        store.put(self.server(), fresh.clone())?;
        self.set_current(Current::Login(fresh));
        Ok(())
    }

    /// Changes the logged-in user's password. Every session of the user ends at the server;
    /// the new one it answers with is kept in the store and used by this client from now on.
    pub async fn change_password(&self, current_password: &str, new_password: &str) -> Result<(), Error> {
        let request = ChangePasswordRequest {
            current_password: current_password.to_owned(),
            new_password: new_password.to_owned(),
        };
        let response = self
            .call(|c| {
                let request = request.clone();
                async move { c.auth().change_password(request).await }
            })
            .await?;
        if let (Current::Login(current), Some(store)) = (self.current(), &self.store) {
            let _lock = store.lock()?;
            let tokens = (response.access_token, response.refresh_token);
            self.keep(store, &current.username, tokens, (response.access_expires_at, response.refresh_expires_at))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("Client").field("server", &self.server()).finish_non_exhaustive()
    }
}
