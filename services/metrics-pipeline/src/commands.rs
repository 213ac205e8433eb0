//! `CommandService` (ChatOps): commands and Docker actions on a node, for admins only, relayed
//! to the node's agent through the scheduler (`persys.scheduler.v1.NodeCommandService`), and
//! every one, run or refused, kept in the command history (PostgreSQL) with who asked, where,
//! what and how it ended.
//!
//! Three policies must all let a host command through: this service's (the caller is an
//! admin; with `--host-commands` set, `argv[0]` is one of those exactly and shell command lines
//! are refused), and the node's agent's own allow-list, shell switch and timeout, which it
//! applies whatever was asked (`--host-commands`, `--host-shell` on the agent; nothing runs
//! until the node lists it). Refusals end the stream with a REJECTED record.
//!
//! A caller that goes away cancels the command: the relay to the scheduler is dropped, the
//! scheduler cancels it on the agent, which kills its process group; the record says CANCELED.

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use persys_kit::{ApiError, UserClaims, client::TracedChannel, error::Violations, identity::Caller, identity::Role};
use persys_proto::{
    common::v1::PageResponse,
    metrics::v1::{
        CommandRecord, CommandStatus, DockerActionRequest, DockerActionResponse, DockerActionResult, DockerActionType,
        ListCommandHistoryRequest, ListCommandHistoryResponse, ListContainersRequest, ListContainersResponse,
        RunCommandRequest, RunCommandResponse, command_service_server::CommandService, docker_action_response,
        run_command_response,
    },
    scheduler::v1::{
        ContainerAction, ContainerOperation, HostCommand, RunContainerActionRequest, RunHostCommandRequest,
        node_command_service_client::NodeCommandServiceClient, run_container_action_response,
        run_host_command_response,
    },
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::{
    clock::{now_ms, timestamp},
    store::{Store, StoreError},
};

/// Timeout of a command that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest timeout a command may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Output kept in a history record.
pub const TAIL_BYTES: usize = 16 * 1024;
/// Longest grace period of a container stop or restart.
pub const MAX_GRACE: Duration = Duration::from_secs(300);

/// The command history in the pipeline's database.
#[derive(Clone)]
pub struct History {
    db: crate::db::Db,
}

fn decode(bytes: &[u8]) -> Result<CommandRecord, StoreError> {
    CommandRecord::decode(bytes).map_err(|e| StoreError::Corrupt(format!("command record: {e}")))
}

impl History {
    /// The history of `store`.
    pub fn new(store: &Store) -> Self {
        Self { db: store.db().clone() }
    }

    /// Writes `record`, replacing the one with its id.
    pub async fn put(&self, record: &CommandRecord) -> Result<(), StoreError> {
        let started = record.started_at.as_ref().map_or(0, crate::clock::millis);
        crate::on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO command_history (id, node_id, user_id, started_ms, payload) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload",
            )
            .bind(&record.id)
            .bind(&record.node_id)
            .bind(&record.user_id)
            .bind(started)
            .bind(record.encode_to_vec())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Returns one record.
    pub async fn get(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let row: Option<Vec<u8>> = crate::on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT payload FROM command_history WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        row.map(|b| decode(&b)).transpose()
    }

    /// Returns up to `limit` records, newest first, on `node` and by `user` when not empty,
    /// after the position `after` (started ms and id) when given.
    pub async fn list(
        &self,
        node: &str,
        user: &str,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let (after_ms, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let after_id = if after_id.is_empty() { "\u{10FFFF}".to_owned() } else { after_id };
        let rows: Vec<Vec<u8>> = crate::on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT payload FROM command_history WHERE ($1 = '' OR node_id = $1) AND ($2 = '' OR user_id = $2) \
                 AND (started_ms, id) < ($3, $4) ORDER BY started_ms DESC, id DESC LIMIT $5",
            )
            .bind(node)
            .bind(user)
            .bind(after_ms)
            .bind(&after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.iter().map(|b| decode(b)).collect()
    }
}

/// The service.
#[derive(Clone)]
pub struct Commands {
    store: Arc<Store>,
    history: History,
    scheduler: Option<TracedChannel>,
    allow: Arc<Vec<String>>,
}

/// Stream of a server-streaming rpc.
pub type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Commands {
    /// Commands relayed through the scheduler at `scheduler` (none run without one), with the
    /// cluster-wide allow-list `allow` (empty: the nodes' own lists decide).
    pub fn new(store: Arc<Store>, scheduler: Option<TracedChannel>, allow: Vec<String>) -> Self {
        let allow = allow.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
        Self { history: History::new(&store), store, scheduler, allow: Arc::new(allow) }
    }

    /// The history, for tests' invariants.
    pub fn history(&self) -> &History {
        &self.history
    }

    fn scheduler(&self) -> Result<NodeCommandServiceClient<TracedChannel>, String> {
        self.scheduler.clone().map(NodeCommandServiceClient::new).ok_or_else(|| {
            "this pipeline has no scheduler to relay commands through (--scheduler / PERSYS_METRICS_SCHEDULER)".into()
        })
    }

    /// Keeps `record` as refused, and returns the status saying why.
    async fn refuse(&self, mut record: CommandRecord, status: Status) -> Status {
        finish(&mut record, CommandStatus::Rejected, status.message());
        if let Err(e) = self.history.put(&record).await {
            tracing::error!(error = %e, "could not keep a refused command in the history");
        }
        status
    }
}

/// The user a call acts for; a service calling on its own has none and is refused.
fn who<T>(request: &Request<T>) -> Result<UserClaims, ApiError> {
    let caller = Caller::of(request).ok_or_else(|| ApiError::Unauthenticated("no caller identity".into()))?;
    caller.user.clone().ok_or_else(|| {
        ApiError::Unauthenticated("commands on servers are run by a user; call through the gateway".into())
    })
}

fn admin_only(user: &UserClaims, what: &str) -> Result<(), ApiError> {
    if user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!("{what} is for admins only, and {} is a {:?}", user.name, user.role)))
    }
}

fn duration_of(d: &Option<prost_types::Duration>) -> Option<Duration> {
    d.as_ref().map(|d| {
        if d.seconds < 0 || d.nanos < 0 { Duration::MAX } else { Duration::new(d.seconds as u64, d.nanos as u32) }
    })
}

/// `argv` joined with POSIX shell quoting, as the history shows it.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn finish(record: &mut CommandRecord, status: CommandStatus, error: &str) {
    let now = now_ms();
    record.status = status as i32;
    record.error_message = error.to_owned();
    record.completed_at = Some(timestamp(now));
    let started = record.started_at.as_ref().map_or(now, crate::clock::millis);
    record.duration = prost_types::Duration::try_from(Duration::from_millis((now - started).max(0) as u64)).ok();
}

/// The last [`TAIL_BYTES`] of a command's output.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    total: i64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as i64;
        let data = &data[data.len().saturating_sub(TAIL_BYTES)..];
        let excess = (self.bytes.len() + data.len()).saturating_sub(TAIL_BYTES);
        self.bytes.drain(..excess);
        self.bytes.extend(data);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.iter().copied().collect::<Vec<_>>()).into_owned()
    }
}

/// Validates a RunCommandRequest into the command for the agent and its timeout.
pub fn validate_run(r: &RunCommandRequest) -> Result<Duration, ApiError> {
    let mut v = Violations::new();
    v.check(r.node_id.is_empty(), "node_id", "required");
    v.check(r.argv.is_empty() && r.shell.is_empty(), "argv", "give argv (preferred) or shell");
    v.check(!r.argv.is_empty() && !r.shell.is_empty(), "shell", "give argv or shell, not both");
    v.check(r.argv.first().is_some_and(|a| a.is_empty()), "argv[0]", "the executable must not be empty");
    v.check(r.argv.iter().chain([&r.shell]).any(|a| a.contains('\0')), "argv", "must not contain NUL bytes");
    let timeout = duration_of(&r.timeout).unwrap_or(DEFAULT_TIMEOUT);
    v.check(timeout.is_zero() || timeout > MAX_TIMEOUT, "timeout", "between 1 ms and 10 minutes (unset: 30 s)");
    v.check(
        !r.working_dir.is_empty() && !r.working_dir.starts_with('/'),
        "working_dir",
        "an absolute path, or empty for the agent user's home",
    );
    v.finish()?;
    Ok(timeout)
}

#[tonic::async_trait]
impl CommandService for Commands {
    type RunCommandStream = Streamed<RunCommandResponse>;

    async fn run_command(
        &self,
        request: Request<RunCommandRequest>,
    ) -> Result<Response<Self::RunCommandStream>, Status> {
        let user = who(&request)?;
        let r = request.into_inner();
        let timeout = validate_run(&r)?;
        let shell = !r.shell.is_empty();
        let mut record = CommandRecord {
            id: uuid::Uuid::now_v7().to_string(),
            node_id: r.node_id.clone(),
            user_id: user.id.clone(),
            username: user.name.clone(),
            command: if shell { r.shell.clone() } else { shell_join(&r.argv) },
            shell,
            working_dir: r.working_dir.clone(),
            status: CommandStatus::Running as i32,
            started_at: Some(timestamp(now_ms())),
            ..Default::default()
        };
        tracing::info!(audit = true, id = %record.id, user = %user.name, node = %r.node_id, command = %record.command, shell, "run command");
        if let Err(e) = admin_only(&user, "running commands on servers") {
            return Err(self.refuse(record, e.into()).await);
        }
        let (tx, rx) = mpsc::channel(64);
        let started = |rec: &CommandRecord| RunCommandResponse {
            payload: Some(run_command_response::Payload::Started(rec.clone())),
        };
        let finished =
            |rec: CommandRecord| RunCommandResponse { payload: Some(run_command_response::Payload::Finished(rec)) };
        let refusal = if !self.allow.is_empty() && shell {
            Some(
                "shell command lines are refused while the cluster allows only listed commands (--host-commands)"
                    .to_owned(),
            )
        } else if !self.allow.is_empty() && !self.allow.contains(&r.argv[0]) {
            Some(format!(
                "`{}` is not among the cluster's allowed host commands ({})",
                r.argv[0],
                self.allow.join(", ")
            ))
        } else {
            None
        };
        let scheduler = self.scheduler();
        if let Some(why) = refusal.or_else(|| scheduler.as_ref().err().cloned()) {
            let status = if scheduler.is_err() { CommandStatus::Failed } else { CommandStatus::Rejected };
            let _ = tx.try_send(Ok(started(&record)));
            finish(&mut record, status, &why);
            self.history.put(&record).await.map_err(ApiError::internal)?;
            let _ = tx.try_send(Ok(finished(record)));
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        let mut scheduler = scheduler.expect("checked above");
        self.history.put(&record).await.map_err(ApiError::internal)?;
        let _ = tx.try_send(Ok(started(&record)));
        let command = HostCommand {
            argv: r.argv,
            shell: r.shell,
            timeout: prost_types::Duration::try_from(timeout).ok(),
            working_dir: r.working_dir,
            max_output_bytes: 0,
            requested_by: user.id.clone(),
        };
        let history = self.history.clone();
        tokio::spawn(async move {
            let relay = scheduler
                .run_host_command(RunHostCommandRequest { node_id: record.node_id.clone(), command: Some(command) });
            let mut tail = Tail::default();
            let (status, error, exit) = tokio::select! {
                outcome = async {
                    let mut stream = match relay.await {
                        Ok(s) => s.into_inner(),
                        Err(status) => return Err(status),
                    };
                    while let Some(message) = stream.next().await {
                        match message?.payload {
                            Some(run_host_command_response::Payload::Output(chunk)) => {
                                tail.push(&chunk.data);
                                if tx.send(Ok(RunCommandResponse { payload: Some(run_command_response::Payload::Output(chunk)) })).await.is_err() {
                                    return Err(Status::cancelled("the caller went away"));
                                }
                            }
                            Some(run_host_command_response::Payload::Exit(exit)) => return Ok(exit),
                            None => {}
                        }
                    }
                    Err(Status::unavailable("the relay ended without the command's exit"))
                } => match outcome {
                    Ok(exit) if exit.timed_out => (CommandStatus::TimedOut, format!("killed after {timeout:?}"), Some(exit)),
                    Ok(exit) => (CommandStatus::Completed, String::new(), Some(exit)),
                    Err(s) => (status_of_relay(&s), s.message().to_owned(), None),
                },
                _ = tx.closed() => (CommandStatus::Canceled, "the caller went away".to_owned(), None),
            };
            record.output_bytes = tail.total;
            record.output_tail = tail.text();
            if let Some(exit) = &exit {
                record.exit_code = Some(exit.exit_code);
                record.output_truncated = exit.output_truncated;
            }
            finish(&mut record, status, &error);
            tracing::info!(audit = true, id = %record.id, node = %record.node_id, status = ?status, exit_code = ?record.exit_code, "command ended");
            if let Err(e) = history.put(&record).await {
                tracing::error!(error = %e, id = %record.id, "could not keep a command's end in the history");
            }
            let _ = tx.send(Ok(finished(record))).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type DockerActionStream = Streamed<DockerActionResponse>;

    async fn docker_action(
        &self,
        request: Request<DockerActionRequest>,
    ) -> Result<Response<Self::DockerActionStream>, Status> {
        let user = who(&request)?;
        let r = request.into_inner();
        let action = DockerActionType::try_from(r.action).unwrap_or(DockerActionType::Unspecified);
        let mut v = Violations::new();
        v.check(r.node_id.is_empty(), "node_id", "required");
        v.check(
            r.container_id.trim().is_empty(),
            "container_id",
            "required: the container's name, id or 12+ characters of its id",
        );
        v.check(action == DockerActionType::Unspecified, "action", "one of START, STOP, RESTART, LOGS");
        v.check(duration_of(&r.grace_period).is_some_and(|g| g > MAX_GRACE), "grace_period", "at most 5 minutes");
        v.check(r.tail_lines.is_some_and(|n| n < 0), "tail_lines", "must not be negative");
        v.finish()?;
        let verb = match action {
            DockerActionType::Start => "start",
            DockerActionType::Stop => "stop",
            DockerActionType::Restart => "restart",
            _ => "logs",
        };
        let mut record = CommandRecord {
            id: uuid::Uuid::now_v7().to_string(),
            node_id: r.node_id.clone(),
            user_id: user.id.clone(),
            username: user.name.clone(),
            command: format!("docker {verb} {}", shell_join(std::slice::from_ref(&r.container_id))),
            status: CommandStatus::Running as i32,
            started_at: Some(timestamp(now_ms())),
            ..Default::default()
        };
        tracing::info!(audit = true, id = %record.id, user = %user.name, node = %r.node_id, command = %record.command, "docker action");
        if let Err(e) = admin_only(&user, "acting on a server's containers") {
            return Err(self.refuse(record, e.into()).await);
        }
        let mut scheduler = match self.scheduler() {
            Ok(s) => s,
            Err(why) => {
                finish(&mut record, CommandStatus::Failed, &why);
                self.history.put(&record).await.map_err(ApiError::internal)?;
                return Err(Status::unavailable(why));
            }
        };
        let operation = match action {
            DockerActionType::Start => ContainerOperation::Start,
            DockerActionType::Stop => ContainerOperation::Stop,
            DockerActionType::Restart => ContainerOperation::Restart,
            _ => ContainerOperation::Logs,
        };
        let request = RunContainerActionRequest {
            node_id: r.node_id.clone(),
            action: Some(ContainerAction {
                container_id: r.container_id.trim().to_owned(),
                operation: operation as i32,
                grace_period: r.grace_period,
                tail_lines: r.tail_lines,
                follow: r.follow,
                requested_by: user.id.clone(),
            }),
        };
        self.history.put(&record).await.map_err(ApiError::internal)?;
        let mut stream = match scheduler.run_container_action(request).await {
            Ok(s) => s.into_inner(),
            Err(status) => {
                finish(&mut record, status_of_relay(&status), status.message());
                self.history.put(&record).await.map_err(ApiError::internal)?;
                return Err(status);
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let history = self.history.clone();
        tokio::spawn(async move {
            let mut tail = Tail::default();
            let outcome = tokio::select! {
                outcome = async {
                    while let Some(message) = stream.next().await {
                        match message?.payload {
                            Some(run_container_action_response::Payload::Output(chunk)) => {
                                tail.push(&chunk.data);
                                let out = DockerActionResponse { payload: Some(docker_action_response::Payload::Output(chunk)) };
                                if tx.send(Ok(out)).await.is_err() {
                                    return Err(Status::cancelled("the caller went away"));
                                }
                            }
                            Some(run_container_action_response::Payload::Result(result)) => return Ok(result),
                            None => {}
                        }
                    }
                    Err(Status::unavailable("the relay ended without the action's result"))
                } => outcome,
                _ = tx.closed() => Err(Status::cancelled("the caller went away")),
            };
            record.output_bytes = tail.total;
            record.output_tail = tail.text();
            let reply = match outcome {
                Ok(result) => {
                    finish(&mut record, CommandStatus::Completed, "");
                    record.exit_code = Some(0);
                    Ok(DockerActionResponse {
                        payload: Some(docker_action_response::Payload::Result(DockerActionResult {
                            container_id: result.container_id,
                            state: result.state,
                        })),
                    })
                }
                Err(status) => {
                    finish(&mut record, status_of_relay(&status), status.message());
                    Err(status)
                }
            };
            if let Err(e) = history.put(&record).await {
                tracing::error!(error = %e, id = %record.id, "could not keep a docker action's end in the history");
            }
            let _ = tx.send(reply).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let user = who(&request)?;
        admin_only(&user, "listing a server's containers")?;
        let r = request.into_inner();
        if r.node_id.is_empty() {
            return Err(ApiError::invalid("node_id", "required").into());
        }
        let page = r.page.unwrap_or_default();
        let size = if page.page_size <= 0 { 50 } else { page.page_size.min(1000) as usize };
        let rows = self.store.latest(std::slice::from_ref(&r.node_id), "", 1).await.map_err(ApiError::internal)?;
        let Some((_, payload)) = rows.into_iter().next() else {
            return Err(ApiError::invalid(
                "node_id",
                format!(
                    "no metrics from node `{}` yet: is its agent shipping metrics (--metrics-pipeline)?",
                    r.node_id
                ),
            )
            .into());
        };
        let sample = persys_proto::metrics::v1::HostMetrics::decode(payload.as_slice()).map_err(ApiError::internal)?;
        let mut containers = sample.containers;
        containers.sort_by(|a, b| (&a.name, &a.container_id).cmp(&(&b.name, &b.container_id)));
        let after = page.page_token;
        let mut rest: Vec<_> = containers.into_iter().filter(|c| after.is_empty() || c.name > after).collect();
        let more = rest.len() > size;
        rest.truncate(size);
        let next_page_token =
            if more { rest.last().map(|c| c.name.clone()).unwrap_or_default() } else { String::new() };
        Ok(Response::new(ListContainersResponse {
            containers: rest,
            page: Some(PageResponse { next_page_token, total_size: None }),
            sampled_at: sample.time,
        }))
    }

    async fn list_command_history(
        &self,
        request: Request<ListCommandHistoryRequest>,
    ) -> Result<Response<ListCommandHistoryResponse>, Status> {
        let user = who(&request)?;
        admin_only(&user, "the command history")?;
        let r = request.into_inner();
        let page = r.page.unwrap_or_default();
        let size = if page.page_size <= 0 { 50 } else { i64::from(page.page_size.min(1000)) };
        let after = if page.page_token.is_empty() {
            None
        } else {
            let bad = || ApiError::invalid("page.page_token", "not a token from this list");
            let (ms, id) = page.page_token.split_once('/').ok_or_else(bad)?;
            Some((ms.parse::<i64>().map_err(|_| bad())?, id.to_owned()))
        };
        let mut commands =
            self.history.list(&r.node_id, &r.user_id, after, size + 1).await.map_err(ApiError::internal)?;
        let more = commands.len() as i64 > size;
        commands.truncate(size as usize);
        let next_page_token = match commands.last() {
            Some(c) if more => format!("{}/{}", c.started_at.as_ref().map_or(0, crate::clock::millis), c.id),
            _ => String::new(),
        };
        Ok(Response::new(ListCommandHistoryResponse {
            commands,
            page: Some(PageResponse { next_page_token, total_size: None }),
        }))
    }
}

/// How a command the relay ended with `status` stands.
fn status_of_relay(status: &Status) -> CommandStatus {
    match status.code() {
        Code::PermissionDenied | Code::FailedPrecondition => CommandStatus::Rejected,
        Code::Cancelled => CommandStatus::Canceled,
        _ => CommandStatus::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_shown_with_shell_quoting() {
        let argv: Vec<String> = ["df", "-h", "/var/lib", "it's here", ""].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(shell_join(&argv), r"df -h /var/lib 'it'\''s here' ''");
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_and_counts_them_all() {
        let mut t = Tail::default();
        t.push(&vec![b'a'; TAIL_BYTES - 1]);
        t.push(b"bc");
        assert_eq!(t.total, TAIL_BYTES as i64 + 1);
        let text = t.text();
        assert_eq!(text.len(), TAIL_BYTES);
        assert!(text.ends_with("abc") && text.starts_with('a'));
        t.push(&vec![b'z'; 3 * TAIL_BYTES]);
        assert_eq!(t.text(), "z".repeat(TAIL_BYTES));
    }

    #[test]
    fn bad_run_requests_name_their_fields() {
        let fields = |r: RunCommandRequest| match validate_run(&r) {
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        };
        assert_eq!(fields(RunCommandRequest::default()), ["node_id", "argv"]);
        let both =
            RunCommandRequest { node_id: "n".into(), argv: vec!["a".into()], shell: "b".into(), ..Default::default() };
        assert_eq!(fields(both), ["shell"]);
        let long = RunCommandRequest {
            node_id: "n".into(),
            argv: vec!["uptime".into()],
            timeout: Some(prost_types::Duration { seconds: 601, nanos: 0 }),
            working_dir: "tmp".into(),
            ..Default::default()
        };
        assert_eq!(fields(long), ["timeout", "working_dir"]);
        let ok = RunCommandRequest { node_id: "n".into(), argv: vec!["uptime".into()], ..Default::default() };
        assert_eq!(validate_run(&ok).unwrap(), DEFAULT_TIMEOUT);
    }
}
