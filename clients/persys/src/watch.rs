//! `persys watch workloads|nodes`, and the resumable watch loop `workload run --wait` shares:
//! when a stream breaks it reconnects (with backoff) from the last revision it saw, so no
//! change is missed or repeated.

use std::{future::Future, ops::ControlFlow, time::Duration};

use clap::Subcommand;
use futures::{Stream, StreamExt};
use persys_proto::scheduler::v1::{
    WatchNodesRequest, WatchNodesResponse, WatchWorkloadsRequest, WatchWorkloadsResponse,
};
use serde::Serialize;
use tonic::{Code, Status};

use crate::{
    client::{Global, Session},
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
/// `open(revision)` opens the stream after a revision; whenever the stream fails or ends it is
/// opened again after the last revision seen (with backoff), so nothing is missed or repeated.
pub async fn resumable<R, S, F, Fut>(
    server: &str,
    mut since: i64,
    mut open: F,
    mut on_event: impl FnMut(R) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()>
where
    R: Revisioned,
    S: Stream<Item = Result<R, Status>> + Unpin,
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = anyhow::Result<S>>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        match open(since).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(event)) => {
                        since = since.max(event.revision());
                        backoff = Duration::from_millis(250);
                        if on_event(event)?.is_break() {
                            return Ok(());
                        }
                    }
                    None => {
                        eprintln!("watch: the stream ended; reconnecting from revision {since}");
                        break;
                    }
                    Some(Err(status)) if status.code() == Code::OutOfRange => {
                        eprintln!("watch: revision {since} is no longer kept; starting again from a snapshot");
                        since = 0;
                        break;
                    }
                    Some(Err(status)) if !transient(status.code()) => return Err(describe(&status, server).into()),
                    Some(Err(status)) => {
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
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Ev(i64);

    impl Revisioned for Ev {
        fn revision(&self) -> i64 {
            self.0
        }
    }

    type Script = Vec<anyhow::Result<Vec<Result<Ev, Status>>>>;

    /// Plays one scripted stream per open and records the revisions it was opened from.
    async fn play(script: Script, stop_at: i64) -> (anyhow::Result<()>, Vec<i64>, Vec<i64>) {
        let opened = Arc::new(Mutex::new(Vec::new()));
        let mut script = script.into_iter();
        let log = opened.clone();
        let open = move |since| {
            log.lock().unwrap().push(since);
            let next = script.next().expect("opened more often than scripted");
            async move { next.map(futures::stream::iter) }
        };
        let mut seen = Vec::new();
        let result = resumable("http://gw", 0, open, |e: Ev| {
            seen.push(e.0);
            Ok(if e.0 >= stop_at { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await;
        let opened = opened.lock().unwrap().clone();
        (result, seen, opened)
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_watch_resumes_after_the_last_revision_seen() {
        let script: Script = vec![
            Ok(vec![Ok(Ev(3)), Ok(Ev(4)), Err(Status::unknown("h2 protocol error"))]),
            Err(crate::error::describe(&Status::unavailable("connection refused"), "http://gw").into()),
            Ok(vec![Ok(Ev(7))]),
            Ok(vec![Ok(Ev(9))]),
        ];
        let (result, seen, opened) = play(script, 9).await;
        result.unwrap();
        assert_eq!(seen, [3, 4, 7, 9]);
        // Broken mid-stream, refused once, ended cleanly: each time from the last revision.
        assert_eq!(opened, [0, 4, 4, 7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_compacted_revision_starts_over_and_refusals_stop() {
        let script: Script = vec![Ok(vec![Ok(Ev(5)), Err(Status::out_of_range("compacted"))]), Ok(vec![Ok(Ev(8))])];
        let (result, _, opened) = play(script, 8).await;
        result.unwrap();
        assert_eq!(opened, [0, 0]);

        let script: Script = vec![Ok(vec![Ok(Ev(1)), Err(Status::permission_denied("viewers may not"))])];
        let (result, _, opened) = play(script, 99).await;
        let failure = result.unwrap_err().downcast::<Failure>().unwrap();
        assert_eq!(failure.exit, crate::error::Exit::Auth);
        assert_eq!(opened, [0]);
    }

    #[test]
    fn only_broken_streams_are_retried() {
        assert!(transient(Code::Unavailable));
        assert!(transient(Code::Internal));
        assert!(transient(Code::Unknown));
        assert!(!transient(Code::PermissionDenied));
        assert!(!transient(Code::InvalidArgument));
    }
}
