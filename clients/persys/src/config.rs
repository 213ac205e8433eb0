//! The credentials file: one session (access and refresh token) per server, in the user's
//! config directory (`$XDG_CONFIG_HOME/persys/credentials.json`, usually
//! `~/.config/persys/credentials.json`), readable by the user only.

use std::{
    collections::BTreeMap,
    fs::{DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// One stored session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    /// Who logged in.
    pub username: String,
    /// JWT sent as `authorization: Bearer`.
    pub access_token: String,
    /// Single-use token traded for a new pair when the access token expires.
    pub refresh_token: String,
    /// Unix seconds when the access token expires (0 if unknown).
    #[serde(default)]
    pub access_expires_at: i64,
    /// Unix seconds when the refresh token expires (0 if unknown).
    #[serde(default)]
    pub refresh_expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    servers: BTreeMap<String, Credentials>,
}

/// The credentials file at a path.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

/// Returns the key a server's session is stored under (no trailing slash).
pub fn server_key(server: &str) -> String {
    server.trim_end_matches('/').to_owned()
}

impl Store {
    /// Returns the store in the user's config directory (`PERSYS_CONFIG_DIR` overrides it).
    pub fn default_location() -> anyhow::Result<Self> {
        let dir = match std::env::var_os("PERSYS_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::config_dir()
                .context("cannot find your config directory: set HOME, XDG_CONFIG_HOME or PERSYS_CONFIG_DIR")?
                .join("persys"),
        };
        Ok(Self::at(dir.join("credentials.json")))
    }

    /// Returns the store at `path`.
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> anyhow::Result<CredentialsFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a valid credentials file: delete it and log in again", self.path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialsFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, file: &CredentialsFile) -> anyhow::Result<()> {
        let dir = self.path.parent().context("credentials path has no directory")?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        // Write a private temp file and rename it, so a crash never leaves a torn file and the
        // secret is never readable by others, even for a moment.
        let tmp = self.path.with_extension(format!("json.tmp.{}", std::process::id()));
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        out.write_all(&serde_json::to_vec_pretty(file)?)?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }

    /// Returns the session stored for `server`.
    pub fn get(&self, server: &str) -> anyhow::Result<Option<Credentials>> {
        Ok(self.read()?.servers.remove(&server_key(server)))
    }

    /// Stores the session for `server`, replacing any previous one.
    pub fn put(&self, server: &str, credentials: Credentials) -> anyhow::Result<()> {
        let mut file = self.read()?;
        file.servers.insert(server_key(server), credentials);
        self.write(&file)
    }

    /// Removes the session for `server`; returns whether there was one.
    pub fn remove(&self, server: &str) -> anyhow::Result<bool> {
        let mut file = self.read()?;
        let removed = file.servers.remove(&server_key(server)).is_some();
        if removed {
            self.write(&file)?;
        }
        Ok(removed)
    }

    /// Takes an exclusive lock held until the guard drops, so that two `persys` processes never
    /// present the same refresh token (the gateway would treat the second use as theft and end
    /// the session).
    pub fn lock(&self) -> anyhow::Result<File> {
        let dir = self.path.parent().context("credentials path has no directory")?;
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.path.with_extension("lock"))
            .context("opening the credentials lock")?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).context("locking the credentials")?;
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn creds(token: &str) -> Credentials {
        Credentials {
            username: "ada".into(),
            access_token: token.into(),
            refresh_token: "r".into(),
            access_expires_at: 1,
            refresh_expires_at: 2,
        }
    }

    #[test]
    fn sessions_are_kept_per_server_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("persys").join("credentials.json"));
        assert_eq!(store.get("http://a:8080").unwrap(), None);
        store.put("http://a:8080/", creds("a")).unwrap();
        store.put("https://b", creds("b")).unwrap();
        assert_eq!(store.get("http://a:8080").unwrap(), Some(creds("a")));
        assert_eq!(store.get("https://b").unwrap().unwrap().access_token, "b");
        let mode = std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(store.path().parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(store.remove("http://a:8080").unwrap());
        assert!(!store.remove("http://a:8080").unwrap());
        assert_eq!(store.get("https://b").unwrap().unwrap().access_token, "b");
    }

    #[test]
    fn a_corrupt_file_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("credentials.json"));
        std::fs::write(store.path(), "{not json").unwrap();
        let e = store.get("x").unwrap_err().to_string();
        assert!(e.contains("delete it and log in again"), "{e}");
    }
}
