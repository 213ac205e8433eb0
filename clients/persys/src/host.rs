//! `persys exec-host` and `persys host ...` (admins): commands and Docker actions on a node,
//! its containers and the command history, through the gateway to the metrics pipeline,
//! which relays them to the node's agent through the scheduler.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use persys_proto::{
    common::v1::PageRequest,
    metrics::v1::{
        CommandRecord, CommandStatus, ContainerMetrics, DockerActionRequest, DockerActionType,
        ListCommandHistoryRequest, ListContainersRequest, RunCommandRequest, docker_action_response,
        run_command_response,
    },
};
use serde::Serialize;

use crate::{
    client::{Global, Session},
    error::{Exit, Failure, describe},
    output::{Table, age, dash, emit, enum_name, now_secs, rfc3339, short},
    streams::write_chunk,
};

/// Arguments of `persys exec-host`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  persys exec-host 0f3c... -- df -h /var/lib
  persys exec-host 0f3c... --shell 'journalctl -u docker | tail -n 50'

The node's agent runs only the executables it allows (agent flag --host-commands), and shell
command lines only with --host-shell; nothing runs until its operator lists it. The command
runs as an unprivileged user, in its own process group, killed with the group at the timeout.
Exits with the command's exit code.")]
pub struct ExecHostArgs {
    /// Node id (see `persys node list`).
    node: String,
    /// Executable and arguments (after `--`), run without a shell.
    #[arg(last = true, required_unless_present = "shell", conflicts_with = "shell")]
    command: Vec<String>,
    /// A command line for /bin/sh -c instead (only where the node allows shell commands).
    #[arg(long)]
    shell: Option<String>,
    /// Kill the command (and its process group) after this long: at most 10m.
    #[arg(long, default_value = "30s", value_parser = persys_kit::config::parse_duration)]
    command_timeout: Duration,
    /// Working directory on the node (absolute); default the command user's home.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
}

/// An action on a container.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DockerVerb {
    /// Start a stopped container.
    Start,
    /// Stop a running container.
    Stop,
    /// Restart a container.
    Restart,
    /// Print the container's output.
    Logs,
}

/// `persys host ...`
#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// The node's containers, as of its latest metrics sample.
    Containers {
        /// Node id.
        node: String,
    },
    /// Start, stop, restart a container of the node or print its output. Containers of Persys
    /// workloads can only be read: act on their workload instead.
    #[command(
        after_help = "Examples:\n  persys host docker restart 0f3c... nginx\n  persys host docker logs 0f3c... nginx --tail 100 -f"
    )]
    Docker {
        /// What to do.
        #[arg(value_enum)]
        action: DockerVerb,
        /// Node id.
        node: String,
        /// Container name, id, or 12 or more characters of its id.
        container: String,
        /// For stop and restart: time between SIGTERM and SIGKILL (default 10s, at most 5m).
        #[arg(long, value_parser = persys_kit::config::parse_duration)]
        grace: Option<Duration>,
        /// For logs: only the last N lines (default 500).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
        tail: Option<i32>,
        /// For logs: keep printing new output until interrupted (at most an hour).
        #[arg(short, long)]
        follow: bool,
    },
    /// Commands and container actions run on nodes, newest first: who, where, what, how they
    /// ended.
    History {
        /// Only on this node.
        #[arg(long)]
        node: Option<String>,
        /// Only by this user id.
        #[arg(long)]
        user: Option<String>,
        /// Most records to show.
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
}

fn status_name(s: i32) -> String {
    CommandStatus::try_from(s).map_or("-".into(), |s| enum_name(s.as_str_name(), "COMMAND_STATUS_"))
}

/// A history record for `-o json|yaml`.
#[derive(Serialize)]
struct RecordView {
    id: String,
    node_id: String,
    user_id: String,
    username: String,
    command: String,
    shell: bool,
    working_dir: String,
    status: String,
    exit_code: Option<i32>,
    output_bytes: i64,
    output_tail: String,
    output_truncated: bool,
    started_at: Option<String>,
    completed_at: Option<String>,
    duration_ms: Option<i64>,
    error: String,
}

impl From<&CommandRecord> for RecordView {
    fn from(r: &CommandRecord) -> Self {
        Self {
            id: r.id.clone(),
            node_id: r.node_id.clone(),
            user_id: r.user_id.clone(),
            username: r.username.clone(),
            command: r.command.clone(),
            shell: r.shell,
            working_dir: r.working_dir.clone(),
            status: status_name(r.status),
            exit_code: r.exit_code,
            output_bytes: r.output_bytes,
            output_tail: r.output_tail.clone(),
            output_truncated: r.output_truncated,
            started_at: rfc3339(r.started_at.as_ref()),
            completed_at: rfc3339(r.completed_at.as_ref()),
            duration_ms: r.duration.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
            error: r.error_message.clone(),
        }
    }
}

/// A container for `-o json|yaml`.
#[derive(Serialize)]
struct ContainerView {
    id: String,
    name: String,
    image: String,
    state: String,
    workload_id: String,
    cpu_percent: f64,
    memory_bytes: i64,
    memory_limit_bytes: i64,
}

impl From<&ContainerMetrics> for ContainerView {
    fn from(c: &ContainerMetrics) -> Self {
        Self {
            id: c.container_id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            state: c.state.clone(),
            workload_id: c.workload_id.clone(),
            cpu_percent: c.cpu_percent,
            memory_bytes: c.memory_usage_bytes,
            memory_limit_bytes: c.memory_limit_bytes,
        }
    }
}

/// Runs a command on a node; exits with its exit code.
pub async fn exec_host(global: &Global, args: ExecHostArgs) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    let request = &RunCommandRequest {
        node_id: args.node,
        argv: args.command,
        shell: args.shell.unwrap_or_default(),
        timeout: args.command_timeout.try_into().ok(),
        working_dir: args.workdir.unwrap_or_default(),
    };
    let mut stream = s.call(|c| async move { c.commands().run_command(request.clone()).await }).await?;
    while let Some(message) = stream.message().await.map_err(|e| describe(&e, &s.server))? {
        match message.payload {
            Some(run_command_response::Payload::Output(chunk)) => write_chunk(&chunk)?,
            Some(run_command_response::Payload::Started(_)) | None => {}
            Some(run_command_response::Payload::Finished(record)) => return finished(&record),
        }
    }
    Err(Failure::new(Exit::Error, "the command's stream ended without its final record; see `persys host history`")
        .into())
}

fn finished(record: &CommandRecord) -> anyhow::Result<()> {
    let status = CommandStatus::try_from(record.status).unwrap_or(CommandStatus::Unspecified);
    if record.output_truncated {
        eprintln!("persys: some output was dropped (over the node's cap)");
    }
    match status {
        CommandStatus::Completed => std::process::exit(record.exit_code.map_or(1, |c| if c < 0 { 1 } else { c })),
        CommandStatus::TimedOut => {
            Err(Failure::new(Exit::Timeout, format!("the command was killed: {}", record.error_message)).into())
        }
        CommandStatus::Rejected => {
            Err(Failure::new(Exit::Auth, format!("refused: {} (command {})", record.error_message, record.id)).into())
        }
        _ => Err(Failure::new(
            Exit::Error,
            format!("the command did not run to its end: {} (command {})", dash(&record.error_message), record.id),
        )
        .into()),
    }
}

/// Runs `persys host ...`.
pub async fn run(global: &Global, command: HostCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        HostCommand::Containers { node } => {
            let req = &ListContainersRequest {
                node_id: node,
                page: Some(PageRequest { page_size: 1000, page_token: String::new() }),
            };
            let list = s.call(|c| async move { c.commands().list_containers(req.clone()).await }).await?;
            let view: Vec<ContainerView> = list.containers.iter().map(ContainerView::from).collect();
            emit(global.output, &view, || {
                let mut t = Table::new(&["NAME", "ID", "IMAGE", "STATE", "WORKLOAD", "CPU", "MEMORY"]);
                for c in &list.containers {
                    t.row(vec![
                        c.name.clone(),
                        c.container_id.chars().take(12).collect(),
                        c.image.clone(),
                        dash(&c.state),
                        dash(&short(&c.workload_id)),
                        format!("{:.1}%", c.cpu_percent),
                        format!("{} MiB", c.memory_usage_bytes / (1 << 20)),
                    ]);
                }
                let mut out = t.to_string();
                if let Some(at) = &list.sampled_at {
                    out.push_str(&format!("(as of {} ago)\n", age(Some(at), now_secs())));
                }
                out
            })
        }
        HostCommand::Docker { action, node, container, grace, tail, follow } => {
            let action = match action {
                DockerVerb::Start => DockerActionType::Start,
                DockerVerb::Stop => DockerActionType::Stop,
                DockerVerb::Restart => DockerActionType::Restart,
                DockerVerb::Logs => DockerActionType::Logs,
            };
            let req = &DockerActionRequest {
                node_id: node,
                container_id: container,
                action: action as i32,
                grace_period: grace.and_then(|g| g.try_into().ok()),
                tail_lines: tail,
                follow,
            };
            let mut stream = s.call(|c| async move { c.commands().docker_action(req.clone()).await }).await?;
            while let Some(message) = stream.message().await.map_err(|e| describe(&e, &s.server))? {
                match message.payload {
                    Some(docker_action_response::Payload::Output(chunk)) => write_chunk(&chunk)?,
                    Some(docker_action_response::Payload::Result(r)) => {
                        if action != DockerActionType::Logs {
                            #[derive(Serialize)]
                            struct Done {
                                container_id: String,
                                state: String,
                            }
                            let done = Done { container_id: r.container_id.clone(), state: r.state.clone() };
                            emit(global.output, &done, || {
                                format!("container {} is {}\n", short_id(&r.container_id), r.state)
                            })?;
                        }
                        return Ok(());
                    }
                    None => {}
                }
            }
            Err(Failure::new(Exit::Error, "the action's stream ended without its result; see `persys host history`")
                .into())
        }
        HostCommand::History { node, user, limit } => {
            let req = &ListCommandHistoryRequest {
                page: Some(PageRequest { page_size: limit, page_token: String::new() }),
                node_id: node.unwrap_or_default(),
                user_id: user.unwrap_or_default(),
            };
            let list = s.call(|c| async move { c.commands().list_command_history(req.clone()).await }).await?.commands;
            let view: Vec<RecordView> = list.iter().map(RecordView::from).collect();
            emit(global.output, &view, || {
                let now = now_secs();
                let mut t = Table::new(&["ID", "AGE", "NODE", "USER", "STATUS", "EXIT", "COMMAND"]);
                for r in &list {
                    t.row(vec![
                        short(&r.id),
                        age(r.started_at.as_ref(), now),
                        short(&r.node_id),
                        dash(if r.username.is_empty() { &r.user_id } else { &r.username }),
                        status_name(r.status),
                        r.exit_code.map_or("-".into(), |c| c.to_string()),
                        r.command.clone(),
                    ]);
                }
                t.to_string()
            })
        }
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}
