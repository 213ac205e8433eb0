//! Talking to the gateway through `persys-client`: the global flags, and a session whose
//! failures come back as [`Failure`]s that say what to do.

use std::{future::Future, path::PathBuf, time::Duration};

use clap::Args;
use persys_client::{Client, Conn, Connection, Credential, store::Store};
use tonic::Status;

use crate::{
    error::{Failure, fail},
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

impl Global {
    /// Returns a connection to the gateway.
    pub fn connect(&self) -> Result<Connection, Failure> {
        Connection::new(&self.server, self.ca.as_deref()).map_err(|e| fail(e, &self.server))
    }

    /// Returns the credentials file.
    pub fn store(&self) -> Result<Store, Failure> {
        Store::default_location().map_err(|e| fail(e, &self.server))
    }
}

/// A logged-in connection to one gateway.
pub struct Session {
    /// The gateway address.
    pub server: String,
    client: Client,
}

impl Session {
    /// Opens a session with the API key given, or else the stored login for the server.
    pub fn open(global: &Global) -> anyhow::Result<Self> {
        let credential = match &global.token {
            Some(key) => Credential::ApiKey(key.clone()),
            None => Credential::Session(global.store()?),
        };
        let client = Client::new(global.connect()?, credential).map_err(|e| fail(e, &global.server))?;
        Ok(Self { server: global.server.clone(), client: client.timeout(global.timeout) })
    }

    /// Returns the SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one call, refreshing an expired login once and retrying. Failures come back as
    /// [`Failure`]s that say what to do.
    pub async fn call<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.client.call(f).await.map_err(|e| fail(e, &self.server).into())
    }
}
