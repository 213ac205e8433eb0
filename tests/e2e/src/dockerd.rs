//! A private Docker engine for a test that must stop or restart the engine itself (the shared
//! one at `DOCKER_HOST` serves other tests at the same time): its own data root, exec root,
//! pid file and socket under a temporary directory, no bridge and no iptables, with the test
//! image imported from the static busybox as `scripts/lib/services.sh` does.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// A dockerd of the test's own (needs root).
pub struct Dockerd {
    dir: TempDir,
    child: Option<Child>,
}

impl Dockerd {
    /// Returns why no private engine can be started here (not root, no `dockerd`), if so.
    pub fn unavailable() -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        if !root {
            return Some("a private dockerd needs root".into());
        }
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("dockerd").is_file()));
        (!found).then(|| "no dockerd on PATH (apt-get install docker.io)".into())
    }

    /// Starts an engine and imports `image` (e.g. the value of `PERSYS_TEST_IMAGE`) into it.
    pub async fn start(image: &str) -> anyhow::Result<Self> {
        // Short paths: a unix socket path may not exceed 108 bytes.
        let dir = tempfile::Builder::new().prefix("pdk").tempdir_in("/tmp")?;
        let mut this = Self { dir, child: None };
        this.spawn().await?;
        this.import(image).await?;
        Ok(this)
    }

    /// Returns the engine's address (`unix:///...`), what `DOCKER_HOST` and `--docker-host` take.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    /// Returns whether the engine process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the engine with SIGTERM (its containers stop with it) and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the engine again on the same data (after [`Dockerd::stop`]) and waits until it
    /// answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("dockerd.log"))?;
        let arg = |p: &str| d.join(p).display().to_string();
        let mut child = Command::new("dockerd")
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"])
            .args(["--data-root", &arg("data"), "--exec-root", &arg("x"), "--pidfile", &arg("d.pid")])
            .args(["-H", &self.host(), "--shutdown-timeout", "1"])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting dockerd")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("dockerd exited ({status}):\n{}", self.log());
            }
            if self.docker(&["version", "--format", "{{.Server.Version}}"]).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("dockerd not answering after 60 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Returns the engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this engine and returns its stdout.
    pub async fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("docker").env("DOCKER_HOST", self.host()).args(args).output().await?;
        if !out.status.success() {
            bail!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes `image` from the static busybox with `docker import` (no registry).
    async fn import(&self, image: &str) -> anyhow::Result<()> {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("no busybox binary (apt-get install busybox-static)")?;
        let root = self.dir.path().join("img");
        for sub in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        std::fs::copy(&busybox, root.join("bin/busybox"))?;
        for applet in ["sh", "sleep", "echo", "cat", "ls", "true", "false", "env", "yes", "head", "seq"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
        let tar = std::process::Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&root)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        let status = std::process::Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .args(["import", "-c", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", "-c", "CMD [\"/bin/sh\"]", "-", image])
            .stdin(tar.stdout.context("tar stdout")?)
            .stdout(Stdio::null())
            .status()
            .context("running docker import")?;
        if !status.success() {
            bail!("docker import of {image} failed");
        }
        remove_dir(&root);
        Ok(())
    }
}

fn remove_dir(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let host = self.host();
        if let Some(child) = self.child.as_mut() {
            // Containers first, or the engine would give each one its stop timeout.
            let docker =
                |args: &[&str]| std::process::Command::new("docker").env("DOCKER_HOST", &host).args(args).output();
            if let Ok(out) = docker(&["ps", "-q"]) {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = docker(&["kill", id]);
                }
            }
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                for _ in 0..100 {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        // Unmount what the engine left mounted under its data root before removing it.
        let data = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> =
                mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|m| m.starts_with(&data)).collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for m in points {
                let _ = std::process::Command::new("umount").args(["-l", m]).status();
            }
        }
    }
}
