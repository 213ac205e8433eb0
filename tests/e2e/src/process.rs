//! Child processes of the real binaries: started with their flags, ready when they print their
//! `{"event":"ready",...}` line, stopped with SIGTERM (or signalled, or killed).

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, process::Stdio, time::Duration};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// A running binary.
pub struct Service {
    name: String,
    child: Child,
    /// Addresses from the ready line, by name (e.g. `public`, `internal`, `grpc`).
    pub addrs: HashMap<String, SocketAddr>,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` with `args` and `env`, logging stderr to `log_dir/<name>.log`, and waits
    /// up to `timeout` for its ready line.
    pub async fn start(
        name: &str,
        binary: PathBuf,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_expecting(name, None, binary, args, env, log_dir, timeout).await
    }

    /// Like [`Service::start`], for a process that prints several ready lines (the all-in-one
    /// stack): waits for the one whose `service` is `expect`.
    pub async fn start_expecting(
        name: &str,
        expect: Option<&str>,
        binary: PathBuf,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &std::path::Path,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        // Appended to: a process started again under the same name adds to its first log.
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).context("creating log")?;
        let mut command = Command::new(&binary);
        command.args(args).stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true);
        command.env("PERSYS_ADMIN_LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["event"] == "ready"
                    && expect.is_none_or(|e| v["service"] == e)
                {
                    return Ok::<_, anyhow::Error>(Some(v));
                }
            }
            Ok(None)
        })
        .await;
        let log_tail = || std::fs::read_to_string(&log).unwrap_or_default();
        let value = match ready {
            Ok(Ok(Some(v))) => v,
            Ok(Ok(None)) => bail!("{name} exited before it was ready:\n{}", log_tail()),
            Ok(Err(e)) => bail!("{name}: reading stdout: {e}\n{}", log_tail()),
            Err(_) => bail!("{name} was not ready within {timeout:?}:\n{}", log_tail()),
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let addrs = value
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.parse().ok()?)))
            .collect();
        Ok(Self { name: name.to_owned(), child, addrs, log })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().with_context(|| format!("{} has exited", self.name))?;
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Returns a named address from the ready line.
    pub fn addr(&self, name: &str) -> SocketAddr {
        *self.addrs.get(name).unwrap_or_else(|| panic!("{} announced no `{name}` address", self.name))
    }

    /// Returns what the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it to be gone.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the exit, returning whether it exited cleanly.
    pub async fn stop(mut self) -> anyhow::Result<bool> {
        if let Some(pid) = self.child.id() {
            let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
            if !status.success() {
                bail!("kill -TERM {pid} failed");
            }
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("process did not exit within 30 s of SIGTERM")??;
        Ok(status.success())
    }
}
