//! Watches that survive broken streams: when a stream fails or ends it is opened again after
//! the last revision seen (with backoff), so no change is missed or repeated; a revision the
//! store no longer keeps starts again from a snapshot. [`wait_until`] follows one workload
//! until a condition holds.

use std::{future::Future, ops::ControlFlow, time::Duration};

use futures::{Stream, StreamExt};
use persys_proto::{
    reconciler::v1::{
        WatchBuildsResponse, WatchEnvironmentsResponse, WatchPersonaEventsResponse, WatchProjectsResponse,
    },
    scheduler::v1::{
        WatchNodesResponse, WatchWorkloadsRequest, WatchWorkloadsResponse, Workload,
        scheduler_service_client::SchedulerServiceClient,
    },
};
use tonic::{Code, Status, codegen::StdError};

use crate::{CallError, Client, Error};

/// Where a watch resumes: a store revision that only grows (the scheduler's), or an opaque
/// resource version passed back exactly as the server sent it (the reconciler's, from
/// Kubernetes). The default starts with a snapshot.
pub trait Cursor: Clone + Default + std::fmt::Display {
    /// Moves the cursor to resume after an event seen at `seen`.
    fn advance(&mut self, seen: Self);
}

impl Cursor for i64 {
    fn advance(&mut self, seen: i64) {
        *self = (*self).max(seen);
    }
}

impl Cursor for String {
    fn advance(&mut self, seen: String) {
        if !seen.is_empty() {
            *self = seen;
        }
    }
}

/// A watch event's position.
pub trait Revisioned {
    /// How positions are written.
    type Cursor: Cursor;
    /// Returns the position the event was produced at.
    fn revision(&self) -> Self::Cursor;
}

impl Revisioned for WatchWorkloadsResponse {
    type Cursor = i64;
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl Revisioned for WatchNodesResponse {
    type Cursor = i64;
    fn revision(&self) -> i64 {
        self.revision
    }
}

impl Revisioned for WatchPersonaEventsResponse {
    type Cursor = String;
    fn revision(&self) -> String {
        self.resource_version.clone()
    }
}

impl Revisioned for WatchProjectsResponse {
    type Cursor = String;
    fn revision(&self) -> String {
        self.resource_version.clone()
    }
}

impl Revisioned for WatchEnvironmentsResponse {
    type Cursor = String;
    fn revision(&self) -> String {
        self.resource_version.clone()
    }
}

impl Revisioned for WatchBuildsResponse {
    type Cursor = String;
    fn revision(&self) -> String {
        self.resource_version.clone()
    }
}

/// Whether a failed watch is worth reconnecting (the stream broke, the server restarted).
pub fn transient(code: Code) -> bool {
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
/// `open(revision)` opens the stream after a revision. When the stream fails or ends it is
/// opened again after the last revision seen, waiting 250 ms doubling to 10 s between tries;
/// `notice` hears why, in a line meant for people. Errors that retrying cannot fix (invalid,
/// not found, denied) end the watch.
pub async fn resumable<R, S, F, Fut, E>(
    server: &str,
    mut since: R::Cursor,
    mut open: F,
    mut on_event: impl FnMut(R) -> Result<ControlFlow<()>, E>,
    mut notice: impl FnMut(String),
) -> Result<(), E>
where
    R: Revisioned,
    S: Stream<Item = Result<R, Status>> + Unpin,
    F: FnMut(R::Cursor) -> Fut,
    Fut: Future<Output = Result<S, Error>>,
    E: From<Error>,
{
    let mut backoff = Duration::from_millis(250);
    loop {
        match open(since.clone()).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(event)) => {
                        since.advance(event.revision());
                        backoff = Duration::from_millis(250);
                        if on_event(event)?.is_break() {
                            return Ok(());
                        }
                    }
                    None => {
                        notice(format!("the stream ended; reconnecting from revision {since}"));
                        break;
                    }
                    Some(Err(status)) if status.code() == Code::OutOfRange => {
                        notice(format!("revision {since} is no longer kept; starting again from a snapshot"));
                        since = R::Cursor::default();
                        break;
                    }
                    Some(Err(status)) if !transient(status.code()) => {
                        return Err(Error::from(CallError::new(status, server)).into());
                    }
                    Some(Err(status)) => {
                        notice(format!("stream broken ({}); reconnecting from revision {since}", status.message()));
                        break;
                    }
                }
            },
            Err(e) => match e.code() {
                Some(Code::OutOfRange) => {
                    notice(format!("revision {since} is no longer kept; starting again from a snapshot"));
                    since = R::Cursor::default();
                }
                Some(code) if transient(code) => {
                    notice(format!("{}; retrying in {backoff:?}", e.to_string().lines().next().unwrap_or_default()));
                }
                _ => return Err(e.into()),
            },
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Follows workload `id` from revision `since` (0: from its current state) and returns the
/// first version for which `until` holds; `until` sees every version, so it can also show
/// progress. Fails with `NOT_FOUND` when the workload is deleted first. `open(revision)` opens
/// a watch of the workload after a revision; see [`Client::wait_until`] and [`wait_until_on`].
pub async fn wait_until<F, Fut, S>(
    server: &str,
    id: &str,
    since: i64,
    open: F,
    mut until: impl FnMut(&Workload) -> bool,
    notice: impl FnMut(String),
) -> Result<Workload, Error>
where
    S: Stream<Item = Result<WatchWorkloadsResponse, Status>> + Unpin,
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<S, Error>>,
{
    let mut found = None;
    let mut deleted = false;
    resumable(
        server,
        since,
        open,
        |event: WatchWorkloadsResponse| {
            let Some(w) = event.workload.filter(|w| w.id == id) else {
                return Ok::<_, Error>(ControlFlow::Continue(()));
            };
            if event.r#type == persys_proto::common::v1::WatchEventType::Deleted as i32 {
                deleted = true;
                return Ok(ControlFlow::Break(()));
            }
            if until(&w) {
                found = Some(w);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        },
        notice,
    )
    .await?;
    match found {
        Some(w) if !deleted => Ok(w),
        _ => Err(CallError::new(Status::not_found(format!("workload {id} was deleted while waiting")), server).into()),
    }
}

/// Returns the request that watches one workload after `since`.
pub fn watch_one(id: &str, since: i64) -> WatchWorkloadsRequest {
    WatchWorkloadsRequest { since_revision: since, workload_id: id.to_owned(), ..Default::default() }
}

impl Client {
    /// Follows workload `id` until `until` holds for it (see [`wait_until`]); the watch is
    /// reopened with fresh credentials when it breaks.
    pub async fn wait_until(
        &self,
        id: &str,
        since: i64,
        until: impl FnMut(&Workload) -> bool,
        notice: impl FnMut(String),
    ) -> Result<Workload, Error> {
        let open = |since| async move {
            self.call(|c| async move { c.scheduler().watch_workloads(watch_one(id, since)).await }).await
        };
        wait_until(self.server(), id, since, open, until, notice).await
    }
}

/// Follows workload `id` until `until` holds for it, through any scheduler client (e.g. one
/// acting as a user towards the scheduler itself, in tests).
pub async fn wait_until_on<T>(
    client: &SchedulerServiceClient<T>,
    server: &str,
    id: &str,
    until: impl FnMut(&Workload) -> bool,
) -> Result<Workload, Error>
where
    T: tonic::client::GrpcService<tonic::body::Body> + Clone,
    T::Error: Into<StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<StdError> + Send,
{
    let open = |since| {
        let mut client = client.clone();
        async move {
            client
                .watch_workloads(watch_one(id, since))
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| Error::from(CallError::new(s, server)))
        }
    };
    wait_until(server, id, 0, open, until, |line| tracing::debug!(%line, "watch")).await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Ev(i64);

    impl Revisioned for Ev {
        type Cursor = i64;
        fn revision(&self) -> i64 {
            self.0
        }
    }

    type Script = Vec<Result<Vec<Result<Ev, Status>>, Error>>;

    /// Plays one scripted stream per open and records the revisions it was opened from.
    async fn play(script: Script, stop_at: i64) -> (Result<(), Error>, Vec<i64>, Vec<i64>, Vec<String>) {
        let opened = Arc::new(Mutex::new(Vec::new()));
        let mut script = script.into_iter();
        let log = opened.clone();
        let open = move |since| {
            log.lock().unwrap().push(since);
            let next = script.next().expect("opened more often than scripted");
            async move { next.map(futures::stream::iter) }
        };
        let mut seen = Vec::new();
        let mut notices = Vec::new();
        let result = resumable(
            "http://gw",
            0,
            open,
            |e: Ev| {
                seen.push(e.0);
                Ok(if e.0 >= stop_at { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            },
            |line| notices.push(line),
        )
        .await;
        let opened = opened.lock().unwrap().clone();
        (result, seen, opened, notices)
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_watch_resumes_after_the_last_revision_seen() {
        let script: Script = vec![
            Ok(vec![Ok(Ev(3)), Ok(Ev(4)), Err(Status::unknown("h2 protocol error"))]),
            Err(CallError::new(Status::unavailable("connection refused"), "http://gw").into()),
            Ok(vec![Ok(Ev(7))]),
            Ok(vec![Ok(Ev(9))]),
        ];
        let (result, seen, opened, notices) = play(script, 9).await;
        result.unwrap();
        assert_eq!(seen, [3, 4, 7, 9]);
        // Broken mid-stream, refused once, ended cleanly: each time from the last revision.
        assert_eq!(opened, [0, 4, 4, 7]);
        assert_eq!(notices.len(), 3, "{notices:?}");
        assert!(notices[0].contains("reconnecting from revision 4"), "{notices:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_compacted_revision_starts_over_and_refusals_stop() {
        let script: Script = vec![Ok(vec![Ok(Ev(5)), Err(Status::out_of_range("compacted"))]), Ok(vec![Ok(Ev(8))])];
        let (result, _, opened, _) = play(script, 8).await;
        result.unwrap();
        assert_eq!(opened, [0, 0]);

        let script: Script = vec![Ok(vec![Ok(Ev(1)), Err(Status::permission_denied("viewers may not"))])];
        let (result, _, opened, _) = play(script, 99).await;
        assert_eq!(result.unwrap_err().code(), Some(Code::PermissionDenied));
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

    fn workload(id: &str, phase: i32) -> WatchWorkloadsResponse {
        use persys_proto::scheduler::v1::WorkloadStatus;
        WatchWorkloadsResponse {
            workload: Some(Workload {
                id: id.into(),
                status: Some(WorkloadStatus { phase, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_returns_the_first_version_that_holds_and_fails_on_deletion() {
        use persys_proto::{common::v1::WatchEventType, scheduler::v1::WorkloadPhase};
        let running = WorkloadPhase::Running as i32;
        let events = vec![
            Ok(workload("w1", WorkloadPhase::Pending as i32)),
            Ok(WatchWorkloadsResponse { revision: 5, ..workload("w1", running) }),
            Ok(workload("w1", WorkloadPhase::Failed as i32)),
        ];
        let open = |_| {
            let events = events.clone();
            async move { Ok(futures::stream::iter(events)) }
        };
        let mut seen = 0;
        let w = wait_until(
            "http://gw",
            "w1",
            0,
            open,
            |w| {
                seen += 1;
                w.status.as_ref().is_some_and(|s| s.phase == running)
            },
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((w.id.as_str(), seen), ("w1", 2));

        let deleted = WatchWorkloadsResponse { r#type: WatchEventType::Deleted as i32, ..workload("w1", running) };
        let open = |_| {
            let deleted = deleted.clone();
            async move { Ok(futures::stream::iter(vec![Ok(deleted)])) }
        };
        let e = wait_until("http://gw", "w1", 0, open, |_| false, |_| {}).await.unwrap_err();
        assert_eq!(e.code(), Some(Code::NotFound));
    }
}
