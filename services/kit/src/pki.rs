//! A small certificate authority: the cluster CA, service certificates with SPIFFE URI SANs,
//! and private files written 0600. Used by `persys certs`, the dev stack and (for agents'
//! certificate requests) the scheduler.

use std::{io::Write, net::IpAddr, path::Path, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::OffsetDateTime;

use crate::identity::Identity;

/// Errors issuing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters or input.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

pub use crate::identity::JOIN_OU_PREFIX;

/// What a leaf certificate is for.
#[derive(Clone, Debug)]
pub struct LeafRequest {
    /// The workload identity (URI SAN).
    pub identity: Identity,
    /// DNS names the certificate is valid for (servers).
    pub dns_names: Vec<String>,
    /// IP addresses the certificate is valid for.
    pub ips: Vec<IpAddr>,
    /// How long it is valid.
    pub validity: Duration,
}

/// The cluster certificate authority.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca(..)")
    }
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    // Allow for clocks a few minutes behind ours.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::seconds(valid_for.as_secs() as i64);
}

impl Ca {
    /// Creates a new CA named `name`, valid for `valid_for`.
    pub fn generate(name: &str, valid_for: Duration) -> Result<Self, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "Persys");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, valid_for);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self { cert_pem: cert.pem(), key_pem, issuer: Issuer::new(params, key) })
    }

    /// Loads a CA from its PEM certificate and key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), issuer })
    }

    /// Loads a CA from `dir/ca.pem` and `dir/ca-key.pem`.
    pub fn load_dir(dir: &Path) -> Result<Self, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| PkiError::Io { path: path.display().to_string(), source })
        };
        Self::load(&read("ca.pem")?, &read("ca-key.pem")?)
    }

    /// Returns the CA certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Returns the CA private key.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a leaf certificate usable as both TLS server and client.
    pub fn issue(&self, request: &LeafRequest) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let cert = self.sign(request, &key)?;
        Ok(Issued { cert_pem: cert, key_pem: key.serialize_pem() })
    }

    /// Signs the public key of a PEM certificate signing request for `request`'s identity and
    /// names; whatever names the CSR itself asks for are ignored.
    pub fn sign_csr(&self, csr_pem: &str, request: &LeafRequest) -> Result<String, PkiError> {
        self.sign_node_csr(csr_pem, request, None)
    }

    /// Signs a CSR like [`Ca::sign_csr`], naming the join it belongs to (a node's, see
    /// [`crate::identity::join_id_from_der`]) in the subject's OU as `join:<id>`.
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        request: &LeafRequest,
        join_id: Option<&str>,
    ) -> Result<String, PkiError> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = self.leaf_params(request)?;
        if let Some(join) = join_id {
            params.distinguished_name.push(DnType::OrganizationalUnitName, format!("{JOIN_OU_PREFIX}{join}"));
        }
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(cert.pem())
    }

    fn leaf_params(&self, request: &LeafRequest) -> Result<CertificateParams, PkiError> {
        let mut params = CertificateParams::new(request.dns_names.clone())?;
        params.distinguished_name.push(DnType::CommonName, request.identity.uri());
        params.subject_alt_names.push(SanType::URI(request.identity.uri().try_into()?));
        for ip in &request.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, request.validity);
        Ok(params)
    }

    fn sign(&self, request: &LeafRequest, key: &KeyPair) -> Result<String, PkiError> {
        Ok(self.leaf_params(request)?.signed_by(key, &self.issuer)?.pem())
    }
}

/// Checks that `csr_pem` is a PEM PKCS#10 request whose signature verifies.
pub fn check_csr(csr_pem: &str) -> Result<(), PkiError> {
    rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    Ok(())
}

/// Returns the DNS names a service answers to: loopback, compose and Kubernetes service names.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        "localhost".into(),
        service.into(),
        format!("persys-{service}"),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("persys-{service}.{namespace}.svc"),
        format!("persys-{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Writes `contents` to `path` readable by the owner only (0600), replacing any file.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Io { path: path.display().to_string(), source };
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Writes a public file (certificates), mode 0644.
pub fn write_public(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Io { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_identity_and_chain_to_the_ca() {
        let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
        let leaf = ca
            .issue(&LeafRequest {
                identity: Identity::Service("scheduler".into()),
                dns_names: service_dns_names("scheduler", "persys"),
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: Duration::from_secs(600),
            })
            .unwrap();
        let der = rustls_pemfile::certs(&mut leaf.cert_pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(Identity::from_der(&der), Some(Identity::Service("scheduler".into())));

        // The leaf verifies against the CA with webpki, as a server for its DNS names.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pemfile::certs(&mut ca.cert_pem().as_bytes()).next().unwrap().unwrap()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls::pki_types::ServerName::try_from("scheduler.persys.svc").unwrap();
        verifier.verify_server_cert(&der, &[], &name, &[], rustls::pki_types::UnixTime::now()).unwrap();
        let wrong = rustls::pki_types::ServerName::try_from("gateway").unwrap();
        assert!(verifier.verify_server_cert(&der, &[], &wrong, &[], rustls::pki_types::UnixTime::now()).is_err());
    }

    #[test]
    fn a_reloaded_ca_signs_csrs_for_the_identity_it_is_told() {
        let ca = Ca::generate("test", Duration::from_secs(3600)).unwrap();
        let again = Ca::load(ca.cert_pem(), ca.key_pem()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil".into()]).unwrap();
        asked.subject_alt_names.push(SanType::URI("spiffe://persys/gateway".try_into().unwrap()));
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let pem = again
            .sign_csr(
                &csr,
                &LeafRequest {
                    identity: Identity::Agent("node-1".into()),
                    dns_names: vec![],
                    ips: vec![],
                    validity: Duration::from_secs(600),
                },
            )
            .unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
        assert_eq!(Identity::from_der(&der), Some(Identity::Agent("node-1".into())));
    }

    #[test]
    fn private_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write_private(&path, b"secret").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
