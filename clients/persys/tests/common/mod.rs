//! What the CLI tests share: the real `persys` binary with a home directory of its own,
//! pointed at one gateway.

#![allow(dead_code)] // each test binary uses a part

use std::{
    path::PathBuf,
    process::{Output, Stdio},
    time::Duration,
};

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

/// The CLI with its own home directory, pointed at one gateway.
pub struct Persys {
    /// Its home directory.
    pub home: TempDir,
    /// The gateway.
    pub server: String,
}

impl Persys {
    pub fn new(server: String) -> Self {
        Self { home: tempfile::tempdir().unwrap(), server }
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.home.path().join(".config").join("persys").join("credentials.json")
    }

    pub async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_persys"))
            .args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("PERSYS_SERVER", &self.server)
            .env_remove("PERSYS_TOKEN")
            .env_remove("PERSYS_CA")
            .env_remove("PERSYS_CONFIG_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start persys");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("persys finished within 60 s")
            .unwrap()
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "").await
    }

    /// Runs and requires success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "persys {args:?} failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    pub async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args).await).expect("json output")
    }

    pub async fn login(&self, user: &str, password: &str) {
        let out = self.run_with_stdin(&["login", "-u", user, "--password-stdin"], &format!("{password}\n")).await;
        assert!(out.status.success(), "login failed: {}", text(&out.stderr));
    }

    pub fn credentials(&self) -> Value {
        let file: Value = serde_json::from_slice(&std::fs::read(self.credentials_path()).unwrap()).unwrap();
        file["servers"][&self.server].clone()
    }
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit code.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}
