//! mTLS material that reloads itself: a CA bundle, a certificate chain and its key, read from
//! PEM files and swapped atomically when the files change.
//!
//! Handshakes after a reload use the new material; established connections keep theirs, so a
//! rotation drops nothing. Server configs require and verify a client certificate from the CA;
//! client configs present ours and verify the server against the same CA and, with
//! [`Tls::client_config_for`], that the server is the service we meant to reach (its URI SAN):
//! any other certificate from the CA, e.g. a stolen agent's, is refused.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore, SignatureScheme,
    client::{
        ResolvesClientCert, WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file held no usable PEM item of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the material.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the PEM files live.
#[derive(Clone, Debug)]
pub struct TlsPaths {
    /// The CA bundle that peers must chain to.
    pub ca: PathBuf,
    /// Our certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of our certificate (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
}

/// A certificates directory as `persys certs init` and the stack lay it out:
/// `DIR/ca.pem` (the CA peers chain to) and `DIR/<service>/{cert.pem,key.pem}`. The one place
/// paths to certificates are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertsDir(PathBuf);

impl CertsDir {
    /// Returns the layout rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// Returns the directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Returns the CA bundle, `DIR/ca.pem`.
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca.pem")
    }

    /// Returns the CA's private key, `DIR/ca-key.pem` (only where certificates are issued).
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca-key.pem")
    }

    /// Returns the directory of `service`'s certificate and key.
    pub fn service_dir(&self, service: &str) -> PathBuf {
        self.0.join(service)
    }

    /// Returns the paths `service` presents and trusts.
    pub fn paths(&self, service: &str) -> TlsPaths {
        let dir = self.service_dir(service);
        TlsPaths { ca: self.ca(), cert: dir.join("cert.pem"), key: dir.join("key.pem") }
    }

    /// Returns the `--tls-ca`, `--tls-cert` and `--tls-key` flags of `service`, for a service
    /// started as a process.
    pub fn tls_flags(&self, service: &str) -> Vec<String> {
        let paths = self.paths(service);
        [("--tls-ca", paths.ca), ("--tls-cert", paths.cert), ("--tls-key", paths.key)]
            .into_iter()
            .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
            .collect()
    }

    /// Loads `service`'s TLS material.
    pub fn load(&self, service: &str) -> Result<Arc<Tls>, TlsError> {
        Tls::load(self.paths(service))
    }
}

struct Material {
    digest: [u8; 32],
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

/// TLS material shared by every server and client of a process, reloadable in place.
pub struct Tls {
    paths: TlsPaths,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("paths", &self.paths).finish_non_exhaustive()
    }
}

/// Returns the crypto provider every Persys TLS config uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Parses every certificate in a PEM document.
pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), what: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), what: "no CERTIFICATE block found".into() });
    }
    Ok(certs)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| TlsError::Pem { path: path.to_owned(), what: e.to_string() })?
        .ok_or_else(|| TlsError::Pem { path: path.to_owned(), what: "no PRIVATE KEY block found".into() })
}

impl Tls {
    /// Loads the material, failing with the file and the reason when any part is unusable.
    pub fn load(paths: TlsPaths) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let material = Self::read_material(&paths, &provider)?;
        Ok(Arc::new(Self { paths, provider, current: RwLock::new(Arc::new(material)) }))
    }

    fn read_material(paths: &TlsPaths, provider: &Arc<CryptoProvider>) -> Result<Material, TlsError> {
        let ca_pem = read(&paths.ca)?;
        let cert_pem = read(&paths.cert)?;
        let key_pem = read(&paths.key)?;
        let mut hasher = Sha256::new();
        for part in [&ca_pem, &cert_pem, &key_pem] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest: [u8; 32] = hasher.finalize().into();

        let mut roots = RootCertStore::empty();
        for ca in parse_certs(&ca_pem, &paths.ca)? {
            roots.add(ca).map_err(|e| TlsError::Pem { path: paths.ca.clone(), what: e.to_string() })?;
        }
        let roots = Arc::new(roots);
        let chain = parse_certs(&cert_pem, &paths.cert)?;
        let key = parse_key(&key_pem, &paths.key)?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Pem { path: paths.key.clone(), what: e.to_string() })?;
        let key = Arc::new(CertifiedKey::new(chain, signing));
        key.keys_match().map_err(|e| TlsError::Pem {
            path: paths.key.clone(),
            what: format!("key does not match {}: {e}", paths.cert.display()),
        })?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Pem { path: paths.ca.clone(), what: e.to_string() })?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Pem { path: paths.ca.clone(), what: e.to_string() })?;
        Ok(Material { digest, key, roots, client_verifier, server_verifier })
    }

    fn material(&self) -> Arc<Material> {
        self.current.read().expect("tls lock poisoned").clone()
    }

    /// Rereads the files; returns `true` when they changed and the new material is in use.
    /// On error the old material stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let fresh = Self::read_material(&self.paths, &self.provider)?;
        let mut current = self.current.write().expect("tls lock poisoned");
        if current.digest == fresh.digest {
            return Ok(false);
        }
        *current = Arc::new(fresh);
        Ok(true)
    }

    /// Polls the files every `interval` and reloads them when they change. Polling, rather
    /// than inotify, also catches Kubernetes' atomic symlink swaps of mounted secrets.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(tls) = tls.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => tracing::info!(cert = %tls.paths.cert.display(), "tls material reloaded"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "tls reload failed; keeping the current material"),
                }
            }
        })
    }

    /// Returns the CA roots currently trusted.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.material().roots.clone()
    }

    /// Returns our current certificate chain, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.material().key.cert.clone()
    }

    /// Returns a server config that requires a client certificate from the CA (mTLS).
    /// `alpn` lists the protocols offered, e.g. `h2` and `http/1.1`.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        self.server_config_with(alpn, true)
    }

    /// Returns a server config; `require_client_cert = false` serves TLS without mTLS (for
    /// bootstrap and public endpoints).
    pub fn server_config_with(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        require_client_cert: bool,
    ) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = if require_client_cert {
            builder.with_client_cert_verifier(Arc::new(ReloadingClientVerifier(self.clone())))
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Returns a client config that presents our certificate and verifies servers against the
    /// CA only: any Persys identity passes. Prefer [`Tls::client_config_for`].
    pub fn client_config(self: &Arc<Self>) -> Arc<rustls::ClientConfig> {
        self.client_config_with(Arc::new(ReloadingServerVerifier(self.clone())))
    }

    /// Returns a client config that presents our certificate and accepts only a server whose
    /// certificate chains to the CA and names `expected` in its URI SAN.
    pub fn client_config_for(self: &Arc<Self>, expected: Identity) -> Arc<rustls::ClientConfig> {
        let inner: Arc<dyn ServerCertVerifier> = Arc::new(ReloadingServerVerifier(self.clone()));
        self.client_config_with(Arc::new(ServerIdentityVerifier::new(inner, expected)))
    }

    fn client_config_with(self: &Arc<Self>, verifier: Arc<dyn ServerCertVerifier>) -> Arc<rustls::ClientConfig> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}

/// A server certificate that chains to the CA but names another identity.
#[derive(thiserror::Error)]
#[error("the server presented {found} but {expected} was expected")]
pub struct WrongServerIdentity {
    /// The identity the client meant to reach.
    pub expected: Identity,
    /// What the certificate names (`no Persys identity` when nothing).
    pub found: String,
}

// rustls formats the cause of a refused certificate with `Debug`: keep it readable in errors.
impl fmt::Debug for WrongServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Verifies a server certificate with an inner verifier (the chain to the CA, validity, the
/// name) and then requires the URI SAN to name one expected identity.
pub struct ServerIdentityVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    expected: Identity,
}

impl fmt::Debug for ServerIdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentityVerifier").field("expected", &self.expected).finish_non_exhaustive()
    }
}

impl ServerIdentityVerifier {
    /// Returns a verifier that accepts what `inner` accepts, from `expected` only.
    pub fn new(inner: Arc<dyn ServerCertVerifier>, expected: Identity) -> Self {
        Self { inner, expected }
    }

    /// Returns a verifier of servers chaining to `roots` that name `expected`, for clients
    /// without a certificate of their own (e.g. an agent joining).
    pub fn with_roots(roots: Arc<RootCertStore>, expected: Identity) -> Result<Self, rustls::Error> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        Ok(Self::new(inner, expected))
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        match Identity::from_der(end_entity) {
            Some(found) if found == self.expected => Ok(verified),
            found => {
                let found = found.map_or_else(|| "no Persys identity".to_owned(), |f| f.to_string());
                let error = WrongServerIdentity { expected: self.expected.clone(), found };
                tracing::warn!(%error, "server identity refused");
                Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error)))))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Serves our current certificate, as a server and as a client.
struct Resolver(Arc<Tls>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The handshake signature checks of a verifier over `Arc<Tls>`: the crypto provider's
/// algorithms, whichever certificates are in force.
macro_rules! signature_checks_of_the_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

/// Verifies client certificates against the CA in force at handshake time.
struct ReloadingClientVerifier(Arc<Tls>);

impl fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingClientVerifier")
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints borrow from the verifier, which a reload replaces; clients here hold exactly one
        // certificate, so sending no hints changes nothing.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.material().client_verifier.verify_client_cert(end_entity, intermediates, now)
    }

    signature_checks_of_the_provider!();
}

/// Verifies server certificates against the CA in force at handshake time.
struct ReloadingServerVerifier(Arc<Tls>);

impl fmt::Debug for ReloadingServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingServerVerifier")
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.material().server_verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    signature_checks_of_the_provider!();
}
