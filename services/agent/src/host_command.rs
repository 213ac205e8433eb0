//! Commands on the machine itself (ChatOps "run a command on a server"), under the node's own
//! policy, whatever the scheduler or the pipeline allowed:
//!
//! - only executables the node allows (`--host-commands`) run, by argv and without a shell;
//!   a shell command line runs only when `--host-shell` is set. Both are off by default, so a
//!   node runs no host command until its operator says which;
//! - an allow-list entry is an absolute path or a bare name; a bare `argv[0]` is looked up
//!   in a fixed `PATH` (never the caller's), and the command runs by the resolved path;
//! - the process runs in its own process group, as the agent's own user, or, when the agent
//!   is root, as `--host-command-user` (default `nobody`), with an empty environment but for
//!   `PATH`, `HOME` and `LANG`: nothing of the agent's (its join token, say) reaches it;
//! - it is killed, with its whole group, when its timeout passes or the caller goes away, and
//!   whatever of its group is left when it exits is killed too;
//! - its output streams back as it comes, up to a cap; the rest is read and dropped, so the
//!   process never blocks on a full pipe.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use persys_proto::{
    common::v1::OutputStream,
    scheduler::v1::{ExecExit, HostCommand},
};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use crate::{
    driver::{Output, container::duration, process::lookup_user},
    error::CommandError,
};

/// The `PATH` bare names are looked up in, and host commands run with.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest timeout a host command may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Output cap when the command names none.
pub const DEFAULT_OUTPUT_CAP: i64 = 1 << 20;
/// Largest output cap a command may ask for.
pub const MAX_OUTPUT_CAP: i64 = 16 << 20;
/// Bytes read (and sent) at once: within the 64 KiB a chunk may carry.
const READ_SIZE: usize = 32 * 1024;

/// What this node lets host commands do.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allow: Vec<String>,
    shell: bool,
    /// UID and GID to switch to, when the agent is root.
    user: Option<(u32, u32)>,
    home: PathBuf,
}

impl HostPolicy {
    /// Returns the policy allowing the executables in `allow` (absolute paths or bare names),
    /// shell command lines when `shell`, run as `user` (a name or UID[:GID]) when the agent is
    /// root. An entry that is neither an absolute path nor a bare name is refused.
    pub fn new(allow: &[String], shell: bool, user: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for entry in allow.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry.contains('\0') || (!entry.starts_with('/') && entry.contains('/')) {
                return Err(format!(
                    "host command `{entry}`: give an absolute path (/usr/bin/df) or a bare name looked up in {SAFE_PATH}"
                ));
            }
            entries.push(entry.to_owned());
        }
        let root = rustix::process::geteuid().is_root();
        let (switch, home) = if root && (!entries.is_empty() || shell) {
            let (uid, gid) = lookup_user(user.trim()).map_err(|e| format!("--host-command-user: {}", e.message))?;
            (Some((uid, gid)), home_of(uid))
        } else {
            (None, std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/")))
        };
        let home = if home.is_dir() { home } else { PathBuf::from("/") };
        Ok(Self { allow: entries, shell, user: switch, home })
    }

    /// Returns whether any host command may run here.
    pub fn enabled(&self) -> bool {
        !self.allow.is_empty() || self.shell
    }

    /// Returns the program `command` runs (and its arguments), or why it may not run here.
    pub fn admit(&self, command: &HostCommand) -> Result<(PathBuf, Vec<String>), CommandError> {
        let not_allowed = |m: String| CommandError::new("NotAllowed", m);
        match (command.argv.is_empty(), command.shell.is_empty()) {
            (true, true) => return Err(CommandError::new("InvalidArgument", "a host command needs argv or shell")),
            (false, false) => {
                return Err(CommandError::new("InvalidArgument", "a host command has argv or shell, not both"));
            }
            _ => {}
        }
        if !self.enabled() {
            return Err(not_allowed(
                "host commands are disabled on this node: its agent allows none (--host-commands, --host-shell)".into(),
            ));
        }
        if !command.shell.is_empty() {
            if !self.shell {
                return Err(not_allowed(
                    "shell command lines are disabled on this node (--host-shell); give argv instead".into(),
                ));
            }
            return Ok((PathBuf::from("/bin/sh"), vec!["-c".into(), command.shell.clone()]));
        }
        let program = &command.argv[0];
        let path = resolve(program).ok_or_else(|| {
            not_allowed(format!("`{program}` is not an absolute path nor an executable found in {SAFE_PATH}"))
        })?;
        let wanted = same_file_key(&path);
        let allowed = self.allow.iter().any(|entry| {
            let listed = if entry.starts_with('/') { Some(PathBuf::from(entry)) } else { resolve(entry) };
            listed.is_some_and(|l| same_file_key(&l) == wanted)
        });
        if !allowed {
            return Err(not_allowed(format!(
                "`{}` is not in this node's allowed host commands ({})",
                path.display(),
                self.allow.join(", ")
            )));
        }
        Ok((path, command.argv[1..].to_vec()))
    }

    /// Runs `command`, streaming its output to `output`, until it exits, its timeout passes
    /// (killed, `timed_out`) or `cancel` fires (killed, `Canceled`).
    pub async fn run(
        &self,
        command: &HostCommand,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<ExecExit, CommandError> {
        let (program, args) = self.admit(command)?;
        let timeout = duration(&command.timeout)
            .filter(|t| !t.is_zero())
            .ok_or_else(|| CommandError::new("InvalidArgument", "a host command needs a timeout"))?;
        if timeout > MAX_TIMEOUT {
            return Err(CommandError::new("InvalidArgument", "a host command's timeout is at most 10 minutes"));
        }
        let cap = match command.max_output_bytes {
            0 => DEFAULT_OUTPUT_CAP,
            n if (1..=MAX_OUTPUT_CAP).contains(&n) => n,
            _ => return Err(CommandError::new("InvalidArgument", "max_output_bytes is between 1 and 16 MiB")),
        };
        let dir = if command.working_dir.is_empty() {
            self.home.clone()
        } else if command.working_dir.starts_with('/') {
            PathBuf::from(&command.working_dir)
        } else {
            return Err(CommandError::new("InvalidArgument", "working_dir must be an absolute path"));
        };
        let started = Instant::now();
        tracing::info!(audit = true, requested_by = %command.requested_by, program = %program.display(), args = ?args, "host command");
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| CommandError::new("StartFailed", format!("starting `{}`: {e}", program.display())))?;
        let group = child.id().and_then(|p| Pid::from_raw(p as i32));
        let kill_group = || {
            if let Some(pid) = group {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        };
        let budget = Arc::new(AtomicI64::new(cap));
        let truncated = Arc::new(AtomicBool::new(false));
        let stdout = child
            .stdout
            .take()
            .map(|r| tokio::spawn(pump(r, OutputStream::Stdout, output.clone(), budget.clone(), truncated.clone())));
        let stderr = child
            .stderr
            .take()
            .map(|r| tokio::spawn(pump(r, OutputStream::Stderr, output.clone(), budget.clone(), truncated.clone())));
        let (status, timed_out) = tokio::select! {
            status = child.wait() => (status.ok(), false),
            _ = tokio::time::sleep(timeout) => {
                kill_group();
                (child.wait().await.ok(), true)
            }
            _ = cancel.cancelled() => {
                kill_group();
                let _ = child.wait().await;
                return Err(CommandError::canceled());
            }
        };
        // What the command left running in its group dies with it (and so lets go of the pipes).
        kill_group();
        let mut delivered = true;
        for pump in [stdout, stderr].into_iter().flatten() {
            delivered &= pump.await.unwrap_or(false);
        }
        if !delivered {
            return Err(CommandError::new("Disconnected", "the stream to the scheduler closed"));
        }
        let exit = ExecExit {
            exit_code: status.and_then(|s| s.code()).unwrap_or(-1),
            timed_out,
            output_truncated: truncated.load(Ordering::Relaxed),
            duration: prost_types::Duration::try_from(started.elapsed()).ok(),
        };
        tracing::info!(
            audit = true,
            requested_by = %command.requested_by,
            program = %program.display(),
            exit_code = exit.exit_code,
            timed_out,
            duration_ms = started.elapsed().as_millis() as u64,
            "host command ended"
        );
        Ok(exit)
    }
}

/// Returns the executable `program` names: itself when absolute, else the first match in
/// [`SAFE_PATH`]; `None` for a relative path with a `/` or nothing found.
pub fn resolve(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.starts_with('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    if program.is_empty() || program.contains('/') {
        return None;
    }
    SAFE_PATH.split(':').map(|d| Path::new(d).join(program)).find(|p| executable(p))
}

/// A path with its directory's symlinks resolved (`/bin/ls` is `/usr/bin/ls` on merged-usr
/// systems) but not the file's own: a multi-call binary's links (busybox) stay different
/// programs, so allowing one does not allow them all.
fn same_file_key(path: &Path) -> PathBuf {
    match (path.parent().and_then(|d| d.canonicalize().ok()), path.file_name()) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

fn home_of(uid: u32) -> PathBuf {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 6 && f[2] == uid.to_string())
                .map(|f| PathBuf::from(f[5]))
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Sends what `reader` gives as chunks while `budget` lasts, then reads and drops the rest.
/// Returns `false` if the stream to the scheduler closed.
async fn pump(
    mut reader: impl AsyncRead + Unpin,
    stream: OutputStream,
    output: Output,
    budget: Arc<AtomicI64>,
    truncated: Arc<AtomicBool>,
) -> bool {
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => n,
        };
        let before = budget.fetch_sub(n as i64, Ordering::Relaxed);
        let keep = before.clamp(0, n as i64) as usize;
        if keep < n {
            truncated.store(true, Ordering::Relaxed);
        }
        if keep > 0 && output.chunk(stream, Bytes::copy_from_slice(&buf[..keep])).await.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::{ConnectRequest, connect_request::Payload};
    use tokio::sync::mpsc;

    use super::*;

    fn policy(allow: &[&str], shell: bool) -> HostPolicy {
        let allow: Vec<String> = allow.iter().map(|s| (*s).to_owned()).collect();
        // Tests may run as root: `nobody` exists on every Debian system.
        HostPolicy::new(&allow, shell, "nobody").unwrap()
    }

    fn argv(args: &[&str], timeout: Duration) -> HostCommand {
        HostCommand {
            argv: args.iter().map(|s| (*s).to_owned()).collect(),
            timeout: prost_types::Duration::try_from(timeout).ok(),
            requested_by: "u-test".into(),
            ..Default::default()
        }
    }

    async fn run(p: &HostPolicy, c: &HostCommand) -> (Result<ExecExit, CommandError>, Vec<u8>) {
        let (tx, mut rx) = mpsc::channel::<ConnectRequest>(1024);
        let output = Output::new("c1".into(), tx);
        let result = p.run(c, &output, &CancellationToken::new()).await;
        drop(output);
        let mut bytes = Vec::new();
        while let Some(m) = rx.recv().await {
            if let Some(Payload::LogChunk(l)) = m.payload {
                bytes.extend(l.chunk.unwrap().data);
            }
        }
        (result, bytes)
    }

    #[test]
    fn only_allowed_executables_pass_and_bare_names_resolve_in_the_fixed_path() {
        let p = policy(&["echo", "/bin/true"], false);
        // `/bin/true` and `true` (found as /usr/bin/true) are one program, merged /usr or not.
        assert!(p.admit(&argv(&["true"], Duration::from_secs(1))).is_ok());
        let (path, args) = p.admit(&argv(&["echo", "hi"], Duration::from_secs(1))).unwrap();
        assert_eq!(path, resolve("echo").unwrap());
        assert_eq!(args, ["hi"]);
        // The absolute path of an allowed bare name is the same program.
        assert!(p.admit(&argv(&[resolve("echo").unwrap().to_str().unwrap()], Duration::from_secs(1))).is_ok());
        for refused in [&["cat", "/etc/shadow"][..], &["./echo"], &["/tmp/echo"], &["sh", "-c", "echo"]] {
            let e = p.admit(&argv(refused, Duration::from_secs(1))).unwrap_err();
            assert_eq!(e.reason, "NotAllowed", "{refused:?}: {}", e.message);
        }
        let shell = HostCommand { shell: "echo hi".into(), ..argv(&[], Duration::from_secs(1)) };
        assert_eq!(p.admit(&shell).unwrap_err().reason, "NotAllowed");
        assert_eq!(policy(&[], true).admit(&shell).unwrap().0, PathBuf::from("/bin/sh"));
        let none = policy(&[], false);
        assert!(!none.enabled());
        let e = none.admit(&argv(&["echo"], Duration::from_secs(1))).unwrap_err();
        assert!(e.message.contains("--host-commands"), "{}", e.message);
        assert!(HostPolicy::new(&["bin/echo".into()], false, "nobody").is_err());
    }

    #[tokio::test]
    async fn a_command_runs_with_an_empty_environment_and_its_output_comes_back() {
        // Whatever the agent's environment holds (a join token, say) stays out.
        let p = policy(&["env"], false);
        let (result, out) = run(&p, &argv(&["env"], Duration::from_secs(10))).await;
        let exit = result.unwrap();
        assert_eq!(exit.exit_code, 0);
        assert!(!exit.timed_out && !exit.output_truncated);
        let text = String::from_utf8(out).unwrap();
        let mut names: Vec<&str> = text.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        names.sort_unstable();
        assert_eq!(names, ["HOME", "LANG", "PATH"], "{text}");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // Writable by `nobody`, whom a root agent runs the command as.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let pidfile = dir.path().join("pid");
        let p = policy(&[], true);
        // The shell leaves a grandchild in its group; both must die at the timeout.
        let script = format!("sleep 300 & echo $! > {}; echo started; wait", pidfile.display());
        let c = HostCommand { shell: script, ..argv(&[], Duration::from_millis(1500)) };
        let t0 = Instant::now();
        let (result, out) = run(&p, &c).await;
        let exit = result.unwrap();
        assert!(exit.timed_out, "{exit:?}");
        assert_eq!(exit.exit_code, -1, "killed by a signal");
        assert!(t0.elapsed() < Duration::from_secs(60));
        assert_eq!(String::from_utf8_lossy(&out), "started\n");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // SIGKILL takes effect when the process next runs: it is gone, or a zombie about to be
        // reaped by init, within moments (a sleep of 300 s would still be running).
        let alive = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state.split(") ").nth(1).is_some_and(|rest| !rest.starts_with('Z')).then_some(state)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(state) = alive() {
            assert!(Instant::now() < deadline, "the grandchild {pid} survived: {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn output_beyond_the_cap_is_dropped_and_said_so_and_the_exit_still_comes() {
        let p = policy(&["head"], false);
        let c = HostCommand {
            max_output_bytes: 1000,
            ..argv(&["head", "-c", "300000", "/dev/zero"], Duration::from_secs(30))
        };
        let (result, out) = run(&p, &c).await;
        let exit = result.unwrap();
        assert_eq!(exit.exit_code, 0);
        assert!(exit.output_truncated);
        assert_eq!(out.len(), 1000);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_anything_runs() {
        let p = policy(&["echo"], false);
        let no_timeout = HostCommand { timeout: None, ..argv(&["echo"], Duration::ZERO) };
        assert_eq!(run(&p, &no_timeout).await.0.unwrap_err().reason, "InvalidArgument");
        let long = argv(&["echo"], Duration::from_secs(601));
        assert_eq!(run(&p, &long).await.0.unwrap_err().reason, "InvalidArgument");
        let relative = HostCommand { working_dir: "tmp".into(), ..argv(&["echo"], Duration::from_secs(1)) };
        assert_eq!(run(&p, &relative).await.0.unwrap_err().reason, "InvalidArgument");
        let both = HostCommand { shell: "echo".into(), ..argv(&["echo"], Duration::from_secs(1)) };
        assert_eq!(run(&p, &both).await.0.unwrap_err().reason, "InvalidArgument");
    }
}
