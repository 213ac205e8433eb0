//! The credentials file: one session (access and refresh token) per server, in the user's
//! config directory (`$XDG_CONFIG_HOME/persys/credentials.json`, usually
//! `~/.config/persys/credentials.json`; `PERSYS_CONFIG_DIR` moves it), readable by the user
//! only. Refreshes happen under a file lock, so two processes never present the same refresh
//! token.

use std::{
    collections::BTreeMap,
    fs::{DirBuilder, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::Error;

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

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::File { action, path, source }
}

impl Store {
    /// Returns the store in the user's config directory (`PERSYS_CONFIG_DIR` overrides it).
    pub fn default_location() -> Result<Self, Error> {
        let dir = match std::env::var_os("PERSYS_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => dirs::config_dir().ok_or(Error::NoConfigDir)?.join("persys"),
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

    fn dir(&self) -> Result<&Path, Error> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io("creating", dir))?;
        Ok(dir)
    }

    fn read(&self) -> Result<CredentialsFile, Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| Error::CorruptCredentials { path: self.path.clone() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialsFile::default()),
            Err(e) => Err(io("reading", &self.path)(e)),
        }
    }

    fn write(&self, file: &CredentialsFile) -> Result<(), Error> {
        self.dir()?;
        // Write a private temp file and rename it, so a crash never leaves a torn file and the
        // secret is never readable by others, even for a moment.
        let tmp = self.path.with_extension(format!("json.tmp.{}", std::process::id()));
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("writing", &tmp))?;
        let bytes = serde_json::to_vec_pretty(file).expect("credentials serialize");
        out.write_all(&bytes).and_then(|()| out.sync_all()).map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io("writing", &self.path))
    }

    /// Returns the session stored for `server`.
    pub fn get(&self, server: &str) -> Result<Option<Credentials>, Error> {
        Ok(self.read()?.servers.remove(&server_key(server)))
    }

    /// Stores the session for `server`, replacing any previous one.
    pub fn put(&self, server: &str, credentials: Credentials) -> Result<(), Error> {
        let mut file = self.read()?;
        file.servers.insert(server_key(server), credentials);
        self.write(&file)
    }

    /// Removes the session for `server`; returns whether there was one.
    pub fn remove(&self, server: &str) -> Result<bool, Error> {
        let mut file = self.read()?;
        let removed = file.servers.remove(&server_key(server)).is_some();
        if removed {
            self.write(&file)?;
        }
        Ok(removed)
    }

    /// Takes an exclusive lock held until the guard drops, so that two processes never
    /// present the same refresh token (the gateway would treat the second use as theft and end
    /// the session).
    pub fn lock(&self) -> Result<File, Error> {
        self.dir()?;
        let path = self.path.with_extension("lock");
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("opening", &path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", &path)(e.into()))?;
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
