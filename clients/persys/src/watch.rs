//! `persys watch workloads|nodes`, and the resumable watch loop `workload run --wait` shares:
//! when a stream breaks it reconnects (with backoff) from the last revision it saw, so no
//! change is missed or repeated.

use std::{future::Future, ops::ControlFlow, time::Duration};

use clap::Subcommand;
use persys_proto::scheduler::v1::{
    WatchNodesRequest, WatchNodesResponse, WatchWorkloadsRequest, WatchWorkloadsResponse,
};
use serde::Serialize;
use tonic::{Code, Status, Streaming};

use crate::{
    client::{Conn, Global, Session},
    error::{Failure, describe},
    node,
    output::{Format, emit_line, line, now_secs},
    run, view, workload,
};

/// `persys watch ...`
#[derive(Subcommand, Debug)]
pub enum WatchCommand {
    /// Stream workload changes: the current workloads first, then every change.
    Workloads {
        /// Only this workload (id).
        #[arg(long)]
        workload: Option<String>,
        /// Only workloads with an instance on this node.
        #[arg(long)]
        node: Option<String>,
        /// Only workloads with this label (k=v, repeatable).
        #[arg(short = 'l', long = "label", value_parser = run::key_value)]
        labels: Vec<(String, String)>,
        /// Resume after this revision instead of starting with a snapshot.
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Stream node changes: the current nodes first, then every change.
    Nodes {
        /// Resume after this revision instead of starting with a snapshot.
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
}

/// A watch event's revision.
pub trait Revisioned {
    /// Returns the store revision the event was produced at.
    fn revision(&self) -> i64;
}

impl Revisioned for WatchWorkloadsResponse {
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl Revisioned for WatchNodesResponse {
    fn revision(&self) -> i64 {
        self.revision
    }
}

/// Whether a failed watch is worth reconnecting (the stream broke, the server restarted).
fn transient(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
            | Code::FailedPrecondition
    )
}

/// Follows a watch from `since`, handing each event to `on_event` until it breaks the loop.
/// Reconnects from the last revision seen whenever the stream fails or ends.
pub async fn resumable<R, F, Fut>(
    s: &mut Session,
    mut since: i64,
    open: F,
    mut on_event: impl FnMut(R) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()>
where
    R: Revisioned,
    F: Fn(Conn, i64) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Streaming<R>>, Status>>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        let open_from = since;
        match s.call(|c| open(c, open_from)).await {
            Ok(mut stream) => loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        since = since.max(event.revision());
                        backoff = Duration::from_millis(250);
                        if on_event(event)?.is_break() {
                            return Ok(());
                        }
                    }
                    Ok(None) => {
                        eprintln!("watch: the stream ended; reconnecting from revision {since}");
                        break;
                    }
                    Err(status) if status.code() == Code::OutOfRange => {
                        eprintln!("watch: revision {since} is no longer kept; starting again from a snapshot");
                        since = 0;
                        break;
                    }
                    Err(status) if !transient(status.code()) => return Err(describe(&status, &s.server).into()),
                    Err(status) => {
                        eprintln!("watch: stream broken ({}); reconnecting from revision {since}", status.message());
                        break;
                    }
                }
            },
            Err(e) => match e.downcast_ref::<Failure>() {
                Some(f) if f.code == Some(Code::OutOfRange) => {
                    eprintln!("watch: revision {since} is no longer kept; starting again from a snapshot");
                    since = 0;
                }
                Some(f) if f.code.is_some_and(transient) => {
                    eprintln!("watch: {}; retrying in {backoff:?}", f.message.lines().next().unwrap_or_default());
                }
                _ => return Err(e),
            },
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[derive(Serialize)]
struct Change<T> {
    r#type: String,
    revision: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<T>,
}

/// Runs a `watch` subcommand.
pub async fn run(global: &Global, command: WatchCommand) -> anyhow::Result<()> {
    let mut session = Session::open(global)?;
    let format = global.output;
    match command {
        WatchCommand::Workloads { workload, node, labels, since } => {
            let request = &WatchWorkloadsRequest {
                since_revision: since,
                workload_id: workload.unwrap_or_default(),
                node_id: node.unwrap_or_default(),
                label_selector: run::selector(labels),
                owner_id: String::new(),
            };
            let widths = [6, 8, 24, 10, 5, 8, 8, 4];
            if format == Format::Table {
                println!("{}", line(&["EVENT", "ID", "NAME", "PHASE", "READY", "NODE", "RESTARTS", "AGE"], &widths));
            }
            let open = |c: Conn, since| async move {
                c.scheduler().watch_workloads(WatchWorkloadsRequest { since_revision: since, ..request.clone() }).await
            };
            resumable(&mut session, since, open, |e: WatchWorkloadsResponse| {
                let kind = view::watch_type(e.r#type);
                if format == Format::Table {
                    if let Some(w) = &e.workload {
                        let mut cells = vec![kind];
                        cells.extend(workload::row(w, now_secs()));
                        println!("{}", line(&cells, &widths));
                    }
                } else {
                    let object = e.workload.as_ref().map(view::Workload::from);
                    emit_line(format, &Change { r#type: kind, revision: e.revision, object })?;
                }
                Ok(ControlFlow::Continue(()))
            })
            .await
        }
        WatchCommand::Nodes { since } => {
            let widths = [6, 8, 16, 9, 16, 18, 9, 9];
            if format == Format::Table {
                println!(
                    "{}",
                    line(&["EVENT", "ID", "HOSTNAME", "STATE", "CPU", "MEM", "INSTANCES", "HEARTBEAT"], &widths)
                );
            }
            let open = |c: Conn, since| async move {
                c.scheduler().watch_nodes(WatchNodesRequest { since_revision: since }).await
            };
            resumable(&mut session, since, open, |e: WatchNodesResponse| {
                let kind = view::watch_type(e.r#type);
                if format == Format::Table {
                    if let Some(n) = &e.node {
                        let mut cells = vec![kind];
                        cells.extend(node::row(n, now_secs()));
                        println!("{}", line(&cells, &widths));
                    }
                } else {
                    let object = e.node.as_ref().map(view::Node::from);
                    emit_line(format, &Change { r#type: kind, revision: e.revision, object })?;
                }
                Ok(ControlFlow::Continue(()))
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_broken_streams_are_retried() {
        assert!(transient(Code::Unavailable));
        assert!(transient(Code::Internal));
        assert!(transient(Code::Unknown));
        assert!(!transient(Code::PermissionDenied));
        assert!(!transient(Code::InvalidArgument));
    }
}
