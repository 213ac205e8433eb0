//! The state directory: node id, private key (0600), certificate and CA bundle.
//!
//! A rotation writes `*.new` files first (the certificate last) and then renames them into
//! place, so a crash leaves either the old or the new pair usable: [`StateDir::open`] finishes
//! a rotation whose certificate was fully written and discards one that was not.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use persys_kit::{pki::write_private, tls::TlsPaths};

use crate::error::AgentError;

const NODE_ID: &str = "node-id";
const KEY: &str = "key.pem";
const CERT: &str = "cert.pem";
const CA: &str = "ca.pem";
const BATCH_SEQ: &str = "metrics-next-batch-seq";

/// The agent's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// Credentials to store: a key pair, its certificate and the CA bundle.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Private key, PEM.
    pub key_pem: String,
    /// Certificate chain, PEM, leaf first.
    pub cert_pem: String,
    /// Cluster CA bundle, PEM.
    pub ca_pem: String,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl Validity {
    /// Returns the certificate's validity read from the first certificate of a PEM chain.
    pub fn of_pem(pem: &str) -> Result<Self, AgentError> {
        let der = rustls_pem_first(pem).ok_or_else(|| AgentError::Certificate("no CERTIFICATE block".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| AgentError::Certificate(format!("unreadable certificate: {e}")))?;
        let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
        Ok(Self {
            not_before: at(cert.validity().not_before.timestamp()),
            not_after: at(cert.validity().not_after.timestamp()),
        })
    }

    /// Returns when to renew: after two thirds of the lifetime.
    pub fn renew_after(&self) -> SystemTime {
        let life = self.not_after.duration_since(self.not_before).unwrap_or_default();
        self.not_before + life * 2 / 3
    }
}

fn rustls_pem_first(pem: &str) -> Option<Vec<u8>> {
    let parsed = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()).next()?.ok()?;
    (parsed.label == "CERTIFICATE").then_some(parsed.contents)
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory and completes or discards an
    /// interrupted rotation.
    pub fn open(root: &Path) -> Result<Self, AgentError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let io = |source| AgentError::StateDir { path: root.to_owned(), source };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root).map_err(io)?;
        let meta = std::fs::metadata(root).map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let dir = Self { root: root.to_owned() };
        dir.recover()?;
        Ok(dir)
    }

    fn recover(&self) -> Result<(), AgentError> {
        let pending = |name: &str| self.root.join(format!("{name}.new"));
        if pending(CERT).exists() {
            for name in [CA, KEY, CERT] {
                if pending(name).exists() {
                    self.rename(&pending(name), &self.root.join(name))?;
                }
            }
            tracing::info!("completed a certificate rotation interrupted by a restart");
        } else {
            for name in [CA, KEY] {
                let _ = std::fs::remove_file(pending(name));
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), AgentError> {
        std::fs::rename(from, to).map_err(|source| AgentError::StateDir { path: to.to_owned(), source })
    }

    /// Returns the directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Returns where the TLS material lives, for [`persys_kit::tls::Tls::load`].
    pub fn tls_paths(&self) -> TlsPaths {
        TlsPaths { ca: self.root.join(CA), cert: self.root.join(CERT), key: self.root.join(KEY) }
    }

    /// Returns the stored node id, if the node has joined.
    pub fn node_id(&self) -> Result<Option<String>, AgentError> {
        let path = self.root.join(NODE_ID);
        match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() && self.root.join(CERT).exists() && self.root.join(KEY).exists() => {
                Ok(Some(id.trim().to_owned()))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AgentError::StateDir { path, source }),
        }
    }

    /// Returns the node id when the node has joined and its certificate has not expired: an
    /// identity it can connect with, without joining again.
    pub fn usable_identity(&self) -> Result<Option<String>, AgentError> {
        let Some(id) = self.node_id()? else { return Ok(None) };
        Ok((self.validity()?.not_after > SystemTime::now()).then_some(id))
    }

    /// Returns the validity of the stored certificate.
    pub fn validity(&self) -> Result<Validity, AgentError> {
        let path = self.root.join(CERT);
        let pem = std::fs::read_to_string(&path).map_err(|source| AgentError::StateDir { path, source })?;
        Validity::of_pem(&pem)
    }

    /// Stores the credentials of a freshly joined node, then its id (last, so a node id on
    /// disk always comes with its certificate).
    pub fn store_join(&self, node_id: &str, credentials: &Credentials) -> Result<(), AgentError> {
        self.store_credentials(credentials)?;
        let path = self.root.join(NODE_ID);
        let tmp = self.root.join(format!("{NODE_ID}.new"));
        std::fs::write(&tmp, format!("{node_id}\n"))
            .map_err(|source| AgentError::StateDir { path: tmp.clone(), source })?;
        self.rename(&tmp, &path)
    }

    /// Returns the next metrics `batch_seq` to use: 1 on the first start, else the number
    /// stored by [`StateDir::store_next_batch_seq`]. When the file is unreadable or corrupt
    /// the number cannot be known, so it returns the current Unix time in milliseconds × 1000,
    /// far above any number a node could have used at one batch per interval: batch numbers
    /// jump but never repeat one the pipeline already stored (which it would drop as a
    /// duplicate).
    pub fn next_batch_seq(&self) -> u64 {
        let path = self.root.join(BATCH_SEQ);
        match std::fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(next) if next > 0 => return next,
                _ => tracing::warn!(path = %path.display(), "unreadable metrics batch number; starting from the clock"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 1,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "metrics batch number unreadable; starting from the clock")
            }
        }
        let ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX / 1000).saturating_mul(1000).max(1)
    }

    /// Stores the next metrics `batch_seq` durably (written, synced, renamed into place, and
    /// the directory synced), so a number handed out is never handed out again after a crash
    /// or power loss.
    pub fn store_next_batch_seq(&self, next: u64) -> Result<(), AgentError> {
        use std::io::Write;
        let tmp = self.root.join(format!("{BATCH_SEQ}.new"));
        std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(format!("{next}\n").as_bytes()).and_then(|()| f.sync_all()))
            .map_err(|source| AgentError::StateDir { path: tmp.clone(), source })?;
        self.rename(&tmp, &self.root.join(BATCH_SEQ))?;
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| AgentError::StateDir { path: self.root.clone(), source })
    }

    /// Replaces key, certificate and CA bundle (see the module docs for crash safety).
    pub fn store_credentials(&self, credentials: &Credentials) -> Result<(), AgentError> {
        let pending = |name: &str| self.root.join(format!("{name}.new"));
        let pki = |e: persys_kit::pki::PkiError| AgentError::Certificate(e.to_string());
        write_private(&pending(KEY), credentials.key_pem.as_bytes()).map_err(pki)?;
        write_private(&pending(CA), credentials.ca_pem.as_bytes()).map_err(pki)?;
        // Written last: its presence marks a complete set.
        write_private(&pending(CERT), credentials.cert_pem.as_bytes()).map_err(pki)?;
        for name in [CA, KEY, CERT] {
            self.rename(&pending(name), &self.root.join(name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn credentials(tag: &str) -> Credentials {
        Credentials { key_pem: format!("key {tag}"), cert_pem: format!("cert {tag}"), ca_pem: format!("ca {tag}") }
    }

    #[test]
    fn join_stores_an_owner_only_key_and_the_node_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("state")).unwrap();
        assert_eq!(dir.node_id().unwrap(), None);
        dir.store_join("node-7", &credentials("a")).unwrap();
        assert_eq!(dir.node_id().unwrap().as_deref(), Some("node-7"));
        let mode = std::fs::metadata(dir.path().join(KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn an_interrupted_rotation_is_completed_or_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.store_join("n", &credentials("old")).unwrap();
        // Crash after writing every new file but before the renames: completed on open.
        for (name, body) in [(KEY, "key new"), (CA, "ca new"), (CERT, "cert new")] {
            std::fs::write(tmp.path().join(format!("{name}.new")), body).unwrap();
        }
        StateDir::open(tmp.path()).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join(KEY)).unwrap(), "key new");
        assert_eq!(std::fs::read_to_string(tmp.path().join(CERT)).unwrap(), "cert new");
        // Crash before the certificate was written: the old pair stays.
        std::fs::write(tmp.path().join("key.pem.new"), "key newer").unwrap();
        StateDir::open(tmp.path()).unwrap();
        assert_eq!(std::fs::read_to_string(tmp.path().join(KEY)).unwrap(), "key new");
        assert!(!tmp.path().join("key.pem.new").exists());
    }

    #[test]
    fn the_next_batch_seq_survives_a_reopen_and_never_goes_back_when_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert_eq!(dir.next_batch_seq(), 1);
        dir.store_next_batch_seq(42).unwrap();
        assert_eq!(StateDir::open(tmp.path()).unwrap().next_batch_seq(), 42);
        std::fs::write(tmp.path().join(BATCH_SEQ), "4x\n").unwrap();
        // Past any counter a node could have reached: 2020-01-01 in ms × 1000.
        assert!(dir.next_batch_seq() > 1_577_836_800_000_000);
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let v = Validity { not_before: start, not_after: start + Duration::from_secs(3000) };
        assert_eq!(v.renew_after(), start + Duration::from_secs(2000));
    }
}
