//! `persys watch workloads|nodes`, and the resumable watch loop `workload run --wait` shares:
//! when a stream breaks it reconnects (with backoff) from the last revision it saw, so no
//! change is missed or repeated.

use std::{future::Future, ops::ControlFlow};

use clap::Subcommand;
use futures::Stream;
use persys_client::watch::Revisioned;
use persys_proto::scheduler::v1::{
    WatchNodesRequest, WatchNodesResponse, WatchWorkloadsRequest, WatchWorkloadsResponse,
};
use serde::Serialize;
use tonic::Status;

use crate::{
    client::{Global, Session},
    error::fail,
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

/// Follows a watch from `since` with [`persys_client::watch::resumable`]: reconnections are
/// told on standard error, and failures become [`crate::error::Failure`]s with their exit codes.
pub async fn resumable<R, S, F, Fut>(
    server: &str,
    since: R::Cursor,
    open: F,
    on_event: impl FnMut(R) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()>
where
    R: Revisioned,
    S: Stream<Item = Result<R, Status>> + Unpin,
    F: FnMut(R::Cursor) -> Fut,
    Fut: Future<Output = Result<S, persys_client::Error>>,
{
    persys_client::watch::resumable(server, since, open, on_event, |line| eprintln!("watch: {line}")).await.map_err(
        |e: anyhow::Error| match e.downcast::<persys_client::Error>() {
            Ok(e) => fail(e, server).into(),
            Err(e) => e,
        },
    )
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
    let session = Session::open(global)?;
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
            let session = &session;
            let open = move |since| async move {
                session
                    .client()
                    .call(|c| async move {
                        let request = WatchWorkloadsRequest { since_revision: since, ..request.clone() };
                        c.scheduler().watch_workloads(request).await
                    })
                    .await
            };
            resumable(&session.server, since, open, |e: WatchWorkloadsResponse| {
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
            let session = &session;
            let open = move |since| async move {
                session
                    .client()
                    .call(
                        |c| async move { c.scheduler().watch_nodes(WatchNodesRequest { since_revision: since }).await },
                    )
                    .await
            };
            resumable(&session.server, since, open, |e: WatchNodesResponse| {
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

    #[tokio::test]
    async fn refusals_become_failures_with_their_exit_code() {
        let open = |_| async {
            Ok::<_, persys_client::Error>(futures::stream::iter(vec![Err::<WatchNodesResponse, _>(
                Status::permission_denied("viewers may not"),
            )]))
        };
        let result = resumable("http://gw", 0, open, |_: WatchNodesResponse| Ok(ControlFlow::Continue(()))).await;
        let failure = result.unwrap_err().downcast::<crate::error::Failure>().unwrap();
        assert_eq!(failure.exit, crate::error::Exit::Auth);
        assert_eq!(failure.message, "permission denied: viewers may not");
    }
}
