//! The process driver: runs an instance as a process on the host, for machines without
//! Docker (e.g. the all-in-one stack). Off unless `--drivers` lists `process`.
//!
//! A RunInstance belongs to this driver when its image is empty or starts with `process://`.
//! The program is the path after `process://` when there is one, followed by the spec's
//! command and args; with a bare `process://` or an empty image, `command[0]` is the program.
//!
//! Host processes run code on the node itself, so only workloads of admins are run (the
//! scheduler refuses others' at validation; this driver refuses them again). An agent running
//! as root starts them as the spec's `user` or else as `--process-user` (default `nobody`),
//! never as root unless an admin's spec asks for it; an agent that is not root runs them as its
//! own user. Each runs in its own process group, with the spec's env and working directory
//! (default: the instance's directory under `--process-dir`, outside the state directory that
//! holds the node's key, and owned by the process's user); stdout and stderr go to files there.
//! A stop sends SIGTERM to the group and SIGKILL after the grace period. Resource limits,
//! ports and volumes are not applied. Processes do not outlive the agent: they are stopped
//! when it exits.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use persys_proto::{
    common::v1::{OutputStream, Role},
    scheduler::v1::{FetchLogs, InstanceStatus, RunInstance, WorkloadPhase, WorkloadStatusEvent},
};
use rustix::process::{Pid, Signal, kill_process_group};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{EXIT_TAIL, Output, PROCESS_SCHEME, bare_status, container, event, now, tail, timestamp_ms};
use crate::{error::CommandError, outbox::Outbox};

struct Proc {
    run: RunInstance,
    status: Mutex<InstanceStatus>,
    pid: Mutex<Option<u32>>,
    stop_requested: AtomicBool,
    /// `true` once the current process has exited.
    exited: watch::Sender<bool>,
    /// When the output files grew: the sizes of stdout and stderr at each time, so output can
    /// be read back with the (approximate, to [`MARK_EVERY`]) time it was written, the same on
    /// every read. Its length is the watch's value.
    marks: watch::Sender<Marks>,
    /// Set once the files have been marked after the current process exited.
    final_marked: AtomicBool,
}

/// The kept marks of an instance, oldest first, numbered from `first` (older ones dropped past
/// [`MAX_MARKS`] leave their sizes in `floor`, where the oldest kept mark's output starts).
#[derive(Default)]
struct Marks {
    first: usize,
    floor: [u64; 2],
    list: Vec<Mark>,
}

impl Marks {
    /// Number of the next mark to be recorded.
    fn end(&self) -> usize {
        self.first + self.list.len()
    }

    /// The marks from number `from` on, each with the sizes before it.
    fn since(&self, from: usize) -> Vec<(Mark, [u64; 2])> {
        let skip = from.saturating_sub(self.first).min(self.list.len());
        (skip..self.list.len())
            .map(|i| (self.list[i], if i == 0 { self.floor } else { self.list[i - 1].sizes }))
            .collect()
    }
}

/// The output files' sizes (stdout, stderr) as seen at `time`.
#[derive(Clone, Copy, Debug)]
struct Mark {
    time: prost_types::Timestamp,
    sizes: [u64; 2],
}

/// How often a running process's output files are looked at.
const MARK_EVERY: Duration = Duration::from_millis(200);
/// Marks kept per instance (at most one per [`MARK_EVERY`] with new output: 2.7 h of constant
/// output); output before the oldest kept mark has no time and is left out of reads `since`.
const MAX_MARKS: usize = 50_000;

const OUTPUT_FILES: [(OutputStream, &str); 2] =
    [(OutputStream::Stdout, "stdout.log"), (OutputStream::Stderr, "stderr.log")];

/// Host processes (see the module docs).
pub struct ProcessDriver {
    dir: PathBuf,
    node_id: String,
    /// User processes run as when their spec names none (agents running as root only).
    default_user: String,
    outbox: Arc<Outbox>,
    procs: Mutex<HashMap<String, Arc<Proc>>>,
}

impl std::fmt::Debug for ProcessDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessDriver").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Returns the program and its arguments for a spec (see the module docs).
pub fn argv(image: &str, command: &[String], args: &[String]) -> Result<(String, Vec<String>), CommandError> {
    let path = image.strip_prefix(PROCESS_SCHEME).unwrap_or("");
    let mut all: Vec<String> = command.iter().chain(args).cloned().collect();
    let program = if path.is_empty() {
        if all.is_empty() {
            return Err(CommandError::new(
                "InvalidArgument",
                "a process instance needs a program: process:///path or a command",
            ));
        }
        all.remove(0)
    } else {
        path.to_owned()
    };
    Ok((program, all))
}

/// Returns the UID and GID a process switches to, or `None` to run as the agent's own user:
/// the spec's user, else `default_user`, when the agent (effective UID `agent_uid`) is root; an
/// agent that is not root cannot switch and refuses a spec naming another user.
pub fn target_user(spec_user: &str, default_user: &str, agent_uid: u32) -> Result<Option<(u32, u32)>, CommandError> {
    if agent_uid != 0 {
        if spec_user.is_empty() || lookup_user(spec_user)?.0 == agent_uid {
            return Ok(None);
        }
        return Err(CommandError::new(
            "NotAllowed",
            format!("the agent does not run as root: host processes run as its own user, not `{spec_user}`"),
        ));
    }
    let wanted = if spec_user.is_empty() { default_user } else { spec_user };
    lookup_user(wanted).map(Some)
}

/// Returns the UID and GID of `USER[:GROUP]`, each a name (from `/etc/passwd`, `/etc/group`) or
/// a number; without a group, the user's primary group (or the UID's number when the user is
/// only a number not in `/etc/passwd`).
pub fn lookup_user(spec: &str) -> Result<(u32, u32), CommandError> {
    let unknown =
        |what: &str, name: &str| CommandError::new("InvalidArgument", format!("no {what} `{name}` on this node"));
    let find = |file: &str, name: &str| -> Option<Vec<String>> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && (f[0] == name || f[2] == name))
    };
    let (user, group) = spec.split_once(':').map_or((spec, None), |(u, g)| (u, Some(g)));
    let entry = find("/etc/passwd", user);
    let (uid, primary) = match (user.parse::<u32>(), &entry) {
        (Ok(uid), entry) => (uid, entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(uid)),
        (Err(_), Some(f)) => {
            (f[2].parse().map_err(|_| unknown("user", user))?, f[3].parse().map_err(|_| unknown("user", user))?)
        }
        (Err(_), None) => return Err(unknown("user", user)),
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => find("/etc/group", g).and_then(|f| f[2].parse().ok()).ok_or_else(|| unknown("group", g))?,
        },
    };
    Ok((uid, gid))
}

impl ProcessDriver {
    /// Returns a driver keeping its files under `dir`, running processes as `nobody` when the
    /// agent is root.
    pub fn new(dir: PathBuf, node_id: String, outbox: Arc<Outbox>) -> Self {
        Self { dir, node_id, default_user: "nobody".into(), outbox, procs: Mutex::default() }
    }

    /// Returns the driver running processes whose spec names no user as `user` (a name or
    /// UID[:GID]) when the agent is root.
    #[must_use]
    pub fn run_as(self, user: &str) -> Self {
        Self { default_user: user.trim().to_owned(), ..self }
    }

    fn get(&self, instance_id: &str) -> Result<Arc<Proc>, CommandError> {
        self.procs
            .lock()
            .expect("procs lock")
            .get(instance_id)
            .cloned()
            .ok_or_else(|| CommandError::new("ContainerNotFound", format!("no process instance `{instance_id}`")))
    }

    /// Returns whether this driver runs the instance.
    pub fn has(&self, instance_id: &str) -> bool {
        self.procs.lock().expect("procs lock").contains_key(instance_id)
    }

    fn report(&self, proc: &Proc, removed: bool) {
        let status = proc.status.lock().expect("status lock").clone();
        self.outbox.push(event(&proc.run.workload_id, status, removed));
    }

    fn instance_dir(&self, instance_id: &str) -> PathBuf {
        self.dir.join(instance_id)
    }

    /// Starts an instance; an instance that already runs is left alone and reported.
    pub async fn run(self: &Arc<Self>, run: &RunInstance) -> Result<(), CommandError> {
        let result = self.run_once(run).await;
        // Refused or failed before the process started (not an admin's workload, no such user,
        // no program, its directory): the instance is Failed with the reason, never left
        // waiting. A failed spawn has reported itself.
        if let Err(e) = &result
            && e.reason != "StartFailed"
        {
            let status = bare_status(run, &self.node_id, WorkloadPhase::Failed, e.reason, &e.message);
            self.outbox.push(event(&run.workload_id, status, false));
        }
        result
    }

    async fn run_once(self: &Arc<Self>, run: &RunInstance) -> Result<(), CommandError> {
        let spec = run.spec.as_ref().ok_or_else(|| CommandError::new("InvalidArgument", "run without a spec"))?;
        if run.owner_role() != Role::Admin {
            return Err(CommandError::new(
                "NotAllowed",
                "host processes run code on the node itself; only workloads of admins may use them",
            ));
        }
        let user = target_user(spec.user.trim(), &self.default_user, rustix::process::geteuid().as_raw())?;
        let existing = self.procs.lock().expect("procs lock").get(&run.instance_id).cloned();
        if let Some(proc) = &existing
            && !*proc.exited.borrow()
        {
            self.report(proc, false);
            return Ok(());
        }
        let (program, args) = argv(&spec.image, &spec.command, &spec.args)?;
        let dir = self.instance_dir(&run.instance_id);
        let io = |e: std::io::Error| CommandError::new("PrepareFailed", format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        if let Some((uid, gid)) = user {
            // The process may write its working directory, and nothing else of the agent's.
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io)?;
        }
        let open = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).map_err(io);
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
            .envs(spec.env.iter().map(|e| (e.name.clone(), e.value.clone())))
            .current_dir(if spec.working_dir.is_empty() { dir.clone() } else { PathBuf::from(&spec.working_dir) })
            .stdin(Stdio::null())
            .stdout(open("stdout.log")?)
            .stderr(open("stderr.log")?)
            .process_group(0)
            .kill_on_drop(false);
        if let Some((uid, gid)) = user {
            // From root, std also drops the supplementary groups.
            cmd.uid(uid).gid(gid);
        }
        let proc = existing.unwrap_or_else(|| {
            Arc::new(Proc {
                run: run.clone(),
                status: Mutex::new(bare_status(run, &self.node_id, WorkloadPhase::Starting, "", "")),
                pid: Mutex::new(None),
                stop_requested: AtomicBool::new(false),
                exited: watch::channel(true).0,
                marks: watch::channel(Marks::default()).0,
                final_marked: AtomicBool::new(false),
            })
        });
        self.procs.lock().expect("procs lock").insert(run.instance_id.clone(), proc.clone());
        proc.stop_requested.store(false, Ordering::Relaxed);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let message = format!("starting `{program}`: {e}");
                {
                    let mut status = proc.status.lock().expect("status lock");
                    status.phase = WorkloadPhase::Failed as i32;
                    status.reason = "StartFailed".into();
                    status.message = message.clone();
                }
                self.report(&proc, false);
                return Err(CommandError::new("StartFailed", message));
            }
        };
        let pid = child.id();
        *proc.pid.lock().expect("pid lock") = pid;
        proc.exited.send_replace(false);
        {
            let mut status = proc.status.lock().expect("status lock");
            status.phase = WorkloadPhase::Running as i32;
            status.reason.clear();
            status.message.clear();
            status.container_id = pid.map(|p| format!("pid:{p}")).unwrap_or_default();
            status.started_at = Some(now());
            status.finished_at = None;
        }
        self.report(&proc, false);
        proc.final_marked.store(false, Ordering::SeqCst);
        tokio::spawn(mark_output(proc.clone(), dir.clone()));
        let driver = self.clone();
        tokio::spawn(async move {
            let result = child.wait().await;
            let code = match &result {
                Ok(s) => s.code().unwrap_or_else(|| {
                    use std::os::unix::process::ExitStatusExt;
                    128 + s.signal().unwrap_or(0)
                }),
                Err(_) => -1,
            };
            let output = driver.exit_tail(&proc.run.instance_id);
            {
                let mut status = proc.status.lock().expect("status lock");
                let (phase, reason) = if proc.stop_requested.load(Ordering::Relaxed) {
                    (WorkloadPhase::Stopped, "Stopped")
                } else if code == 0 {
                    (WorkloadPhase::Succeeded, "Completed")
                } else {
                    (WorkloadPhase::Failed, "Error")
                };
                status.phase = phase as i32;
                status.reason = reason.into();
                status.exit_code = Some(code);
                status.finished_at = Some(now());
                status.message = output;
            }
            *proc.pid.lock().expect("pid lock") = None;
            driver.report(&proc, false);
            proc.exited.send_replace(true);
        });
        Ok(())
    }

    fn exit_tail(&self, instance_id: &str) -> String {
        let dir = self.instance_dir(instance_id);
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
        };
        let stderr = read("stderr.log");
        let text = if stderr.trim().is_empty() { read("stdout.log") } else { stderr };
        tail(&text, EXIT_TAIL.0, EXIT_TAIL.1)
    }

    /// Stops an instance: SIGTERM to its process group, SIGKILL after `grace` (default 10 s).
    pub async fn stop(&self, instance_id: &str, grace: Option<Duration>) -> Result<(), CommandError> {
        let proc = self.get(instance_id)?;
        proc.stop_requested.store(true, Ordering::Relaxed);
        let Some(pid) = *proc.pid.lock().expect("pid lock") else { return Ok(()) };
        let Some(group) = Pid::from_raw(pid as i32) else { return Ok(()) };
        let _ = kill_process_group(group, Signal::TERM);
        let mut exited = proc.exited.subscribe();
        let grace = grace.unwrap_or(container::DEFAULT_STOP_TIMEOUT);
        if tokio::time::timeout(grace, exited.wait_for(|e| *e)).await.is_err() {
            let _ = kill_process_group(group, Signal::KILL);
            let _ = exited.wait_for(|e| *e).await;
        }
        Ok(())
    }

    /// Stops and forgets an instance, deleting its files; an unknown instance counts as removed.
    pub async fn remove(&self, instance_id: &str, grace: Option<Duration>) -> Result<(), CommandError> {
        let Ok(proc) = self.get(instance_id) else { return Ok(()) };
        self.stop(instance_id, grace).await?;
        self.procs.lock().expect("procs lock").remove(instance_id);
        let _ = std::fs::remove_dir_all(self.instance_dir(instance_id));
        self.report(&proc, true);
        Ok(())
    }

    /// Stops and starts an instance again.
    pub async fn restart(self: &Arc<Self>, instance_id: &str, grace: Option<Duration>) -> Result<(), CommandError> {
        let proc = self.get(instance_id)?;
        self.stop(instance_id, grace).await?;
        proc.status.lock().expect("status lock").restart_count += 1;
        self.run(&proc.run).await
    }

    /// Sends an instance's captured output; with `follow`, keeps sending what is appended
    /// until the process exits or the command is canceled. Output is sent as it was marked
    /// (see [`Proc::marks`]), each piece stamped with its mark's time, so `since` (inclusive)
    /// picks up where a reader left off. With `tail_lines`, the last lines of stdout and then
    /// stderr, stamped now.
    pub async fn logs(&self, req: &FetchLogs, output: &Output, cancel: &CancellationToken) -> Result<(), CommandError> {
        let proc = self.get(&req.instance_id)?;
        let dir = self.instance_dir(&req.instance_id);
        if let Some(n) = req.tail_lines {
            for (stream, name) in OUTPUT_FILES {
                let data = std::fs::read(dir.join(name)).unwrap_or_default();
                let shown =
                    if n <= 0 { String::new() } else { tail(&String::from_utf8_lossy(&data), n as usize, usize::MAX) };
                if !shown.is_empty() {
                    output.chunk(stream, Bytes::from(shown)).await?;
                }
            }
            if !req.follow {
                return Ok(());
            }
        }
        let since_ms = req.since.as_ref().map(timestamp_ms);
        let mut marks = proc.marks.subscribe();
        // Everything written so far is read now, not at the next periodic mark.
        mark(&proc, &dir);
        // With a tail, following starts from the marks seen now.
        let mut sent = if req.tail_lines.is_some() { marks.borrow().end() } else { 0 };
        loop {
            let (done, new) = {
                // Read before the marks: once set, the marks read next include the last one.
                let done = proc.final_marked.load(Ordering::SeqCst);
                let all = marks.borrow_and_update();
                let new = all.since(sent);
                sent = all.end();
                (done, new)
            };
            for (mark, before) in new {
                if since_ms.is_some_and(|since| timestamp_ms(&mark.time) < since) {
                    continue;
                }
                for (i, (stream, name)) in OUTPUT_FILES.iter().enumerate() {
                    if mark.sizes[i] > before[i] {
                        let data = read_range(&dir.join(name), before[i], mark.sizes[i]);
                        if !data.is_empty() {
                            output.chunk_at(*stream, Bytes::from(data), mark.time).await?;
                        }
                    }
                }
            }
            if !req.follow || done {
                return Ok(());
            }
            tokio::select! {
                changed = marks.changed() => if changed.is_err() { return Ok(()) },
                _ = cancel.cancelled() => return Err(CommandError::canceled()),
            }
        }
    }

    /// Returns the status of every process instance.
    pub fn inventory(&self) -> Vec<WorkloadStatusEvent> {
        self.procs
            .lock()
            .expect("procs lock")
            .values()
            .map(|p| event(&p.run.workload_id, p.status.lock().expect("status lock").clone(), false))
            .collect()
    }

    /// Stops every process (the agent is exiting).
    pub async fn stop_all(&self, grace: Duration) {
        let ids: Vec<String> = self.procs.lock().expect("procs lock").keys().cloned().collect();
        for id in ids {
            let _ = self.stop(&id, Some(grace)).await;
        }
    }
}

/// Reads bytes `start..end` of a file (fewer if it is shorter; none if it cannot be read).
fn read_range(path: &std::path::Path, start: u64, end: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut data = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = f.take(end.saturating_sub(start)).read_to_end(&mut data);
    }
    data
}

/// Records the output files' sizes now, if they grew since the last mark.
fn mark(proc: &Proc, dir: &std::path::Path) {
    let sizes = OUTPUT_FILES.map(|(_, name)| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len()));
    proc.marks.send_if_modified(|marks| {
        let grew = marks.list.last().is_none_or(|m| sizes.iter().zip(m.sizes).any(|(now, was)| *now > was));
        if grew {
            // The time is taken under the lock, so marks stay in time order.
            marks.list.push(Mark { time: now(), sizes });
            if marks.list.len() > MAX_MARKS {
                let dropped = marks.list.len() - MAX_MARKS;
                marks.floor = marks.list[dropped - 1].sizes;
                marks.first += dropped;
                marks.list.drain(..dropped);
            }
        }
        grew
    });
}

/// Marks `proc`'s output files every [`MARK_EVERY`] while its process runs, and once more
/// after it exits (so nothing it wrote is left unmarked).
async fn mark_output(proc: Arc<Proc>, dir: PathBuf) {
    let mut exited = proc.exited.subscribe();
    loop {
        let done = *exited.borrow_and_update();
        mark(&proc, &dir);
        if done {
            proc.final_marked.store(true, Ordering::SeqCst);
            // Wake followers, who end once they have sent the last mark's output.
            proc.marks.send_modify(|_| {});
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(MARK_EVERY) => {}
            _ = exited.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_marks_leave_where_the_kept_ones_start() {
        let mark = |n: u64| Mark { time: prost_types::Timestamp { seconds: n as i64, nanos: 0 }, sizes: [n * 10, 0] };
        let m = Marks { first: 5, floor: [40, 0], list: vec![mark(5), mark(6), mark(7)] };
        assert_eq!(m.end(), 8);
        let from_start: Vec<_> = m.since(0).iter().map(|(k, before)| (k.sizes[0], before[0])).collect();
        assert_eq!(from_start, [(50, 40), (60, 50), (70, 60)], "the first kept mark starts at the floor");
        assert_eq!(m.since(7).len(), 1);
        assert!(m.since(8).is_empty() && m.since(100).is_empty());
    }

    #[test]
    fn the_program_comes_from_the_image_path_or_the_command() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(argv("process:///bin/sleep", &[], &s(&["5"])).unwrap(), ("/bin/sleep".into(), s(&["5"])));
        assert_eq!(argv("", &s(&["sh", "-c"]), &s(&["exit 3"])).unwrap(), ("sh".into(), s(&["-c", "exit 3"])));
        assert_eq!(argv("process://", &s(&["true"]), &[]).unwrap(), ("true".into(), vec![]));
        assert!(argv("process://", &[], &[]).is_err());
    }

    #[test]
    fn users_are_names_or_numbers_with_an_optional_group() {
        assert_eq!(lookup_user("root").unwrap(), (0, 0));
        assert_eq!(lookup_user("0").unwrap(), (0, 0));
        assert_eq!(lookup_user("1234:5678").unwrap(), (1234, 5678));
        assert_eq!(lookup_user("root:0").unwrap(), (0, 0));
        let (nobody, _) = lookup_user("nobody").unwrap();
        assert_ne!(nobody, 0);
        assert_eq!(lookup_user("no-such-user").unwrap_err().reason, "InvalidArgument");
        assert_eq!(lookup_user("root:no-such-group").unwrap_err().reason, "InvalidArgument");
    }

    #[test]
    fn processes_never_run_as_root_unless_a_spec_asks() {
        // An agent running as root: the default user, or the spec's (root only when asked).
        let (nobody, nogroup) = lookup_user("nobody").unwrap();
        assert_eq!(target_user("", "nobody", 0).unwrap(), Some((nobody, nogroup)));
        assert_eq!(target_user("root", "nobody", 0).unwrap(), Some((0, 0)));
        assert_eq!(target_user("", "4321:4321", 0).unwrap(), Some((4321, 4321)));
        // An agent that is not root cannot switch: its own user only.
        assert_eq!(target_user("", "nobody", 1000).unwrap(), None);
        assert_eq!(target_user("1000", "nobody", 1000).unwrap(), None);
        assert_eq!(target_user("root", "nobody", 1000).unwrap_err().reason, "NotAllowed");
    }
}
