//! Channels to Persys: to a public address (the gateway) or, with a service identity, to an
//! internal service over mTLS.

use std::{path::Path, sync::Arc, time::Duration};

use persys_kit::{
    client::{ClientError, ClientOptions, TracedChannel, mtls_channel_to, plain_channel, tls_channel},
    identity::Identity,
    tls::CertsDir,
};

use crate::Error;

/// A lazily connecting channel to one server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    server: String,
    channel: TracedChannel,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("server", &self.server).finish_non_exhaustive()
    }
}

fn options() -> ClientOptions {
    ClientOptions { connect_timeout: Duration::from_secs(5), ..ClientOptions::default() }
}

impl Connection {
    /// Connects to a public address: `http://HOST:PORT` (plaintext: loopback development) or
    /// `https://HOST[:PORT]`, whose certificate is verified against the PEM CA file `ca` or,
    /// without one, the system's trusted roots.
    pub fn new(server: &str, ca: Option<&Path>) -> Result<Self, Error> {
        Self::with_options(server, ca, &options())
    }

    /// Like [`Connection::new`], with the channel's timeouts and metrics.
    pub fn with_options(server: &str, ca: Option<&Path>, options: &ClientOptions) -> Result<Self, Error> {
        let bad = |_: ClientError| Error::Address(server.to_owned());
        let channel = match server.split_once("://").map(|(scheme, _)| scheme) {
            Some("http") => plain_channel(server, options).map_err(bad)?,
            Some("https") => tls_channel(server, public_tls(ca)?, options).map_err(bad)?,
            _ => return Err(Error::Address(server.to_owned())),
        };
        Ok(Self { server: server.to_owned(), channel })
    }

    /// Connects over mTLS to an internal service at `address` (`https://HOST:PORT`),
    /// presenting `me`'s certificate from `certs` and accepting only a server whose
    /// certificate names `spiffe://persys/<service>`. For services and tests; users go
    /// through the gateway with [`Connection::new`].
    pub fn internal(address: &str, certs: &CertsDir, me: &str, service: &str) -> Result<Self, Error> {
        let tls =
            certs.load(me).map_err(|e| Error::Certificate { path: certs.service_dir(me), reason: e.to_string() })?;
        let channel = mtls_channel_to(address, &tls, Identity::Service(service.to_owned()), &options())
            .map_err(|_| Error::Address(address.to_owned()))?;
        Ok(Self { server: address.to_owned(), channel })
    }

    /// Wraps a channel built elsewhere (e.g. with the kit's TLS material).
    pub fn from_channel(server: impl Into<String>, channel: TracedChannel) -> Self {
        Self { server: server.into(), channel }
    }

    /// Returns the address this connects to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Returns the channel, from which generated clients are made.
    pub fn channel(&self) -> TracedChannel {
        self.channel.clone()
    }
}

/// The TLS config of a public endpoint: verified against `ca` or the system's roots, no client
/// certificate, ALPN h2.
fn public_tls(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |reason: String| Error::Certificate { path: path.to_owned(), reason };
            let pem = std::fs::read(path).map_err(|source| Error::File {
                action: "reading",
                path: path.to_owned(),
                source,
            })?;
            for cert in persys_kit::tls::parse_certs(&pem, path).map_err(|e| bad(e.to_string()))? {
                roots.add(cert).map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
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
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Certificate { path: Default::default(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
