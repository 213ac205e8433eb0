//! The platform's watch semantics (persys.common.v1) for the pipeline's live streams: the
//! snapshot as ADDED events closed by one BOOKMARK, then live changes, and a BOOKMARK after
//! every minute without one, so clients can tell an idle stream from a dead one.
//!
//! Revisions count events within one stream: the pipeline keeps no change log to resume from,
//! so a watch asked to resume (`since_revision` > 0) is refused with OUT_OF_RANGE, which tells
//! clients to start over from a fresh snapshot (as after a compacted history).

use std::time::Duration;

use persys_proto::common::v1::WatchEventType;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Longest a stream stays silent: a BOOKMARK is sent after this long without an event.
pub const KEEPALIVE: Duration = Duration::from_secs(60);

/// How many events a reader may fall behind before it is dropped.
const BUFFER: usize = 64;

/// A `Watch*Response`.
pub trait Event: Send + 'static {
    /// The object an event carries.
    type Item: Send + 'static;
    /// Builds an event; `item` is `None` for a BOOKMARK.
    fn new(kind: WatchEventType, item: Option<Self::Item>, revision: i64) -> Self;
}

/// Refuses to resume: there is no history to resume from (see the module's documentation).
pub fn check_since(since_revision: i64) -> Result<(), Status> {
    if since_revision > 0 {
        return Err(Status::out_of_range(format!(
            "revision {since_revision} cannot be resumed from (this stream keeps no history): watch again from 0 for a fresh snapshot"
        )));
    }
    Ok(())
}

/// Streams `snapshot`, a BOOKMARK, then what `next` makes of each live message (`None` skips
/// it), with keep-alive BOOKMARKs. A reader that falls behind is dropped with
/// RESOURCE_EXHAUSTED, saying what fell behind (`what`), rather than slowing the others.
pub fn spawn<E: Event, L: Clone + Send + 'static>(
    snapshot: Vec<E::Item>,
    mut live: broadcast::Receiver<L>,
    what: &'static str,
    mut next: impl FnMut(L) -> Option<(WatchEventType, E::Item)> + Send + 'static,
) -> ReceiverStream<Result<E, Status>> {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let mut revision = 0i64;
        for item in snapshot {
            revision += 1;
            if tx.send(Ok(E::new(WatchEventType::Added, Some(item), revision))).await.is_err() {
                return;
            }
        }
        if tx.send(Ok(E::new(WatchEventType::Bookmark, None, revision))).await.is_err() {
            return;
        }
        let mut quiet = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let event = tokio::select! {
                message = live.recv() => match message {
                    Ok(m) => match next(m) {
                        Some((kind, item)) => {
                            revision += 1;
                            quiet.reset();
                            E::new(kind, Some(item), revision)
                        }
                        None => continue,
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let status = Status::resource_exhausted(format!(
                            "this watcher fell {missed} {what} behind and was dropped; watch again"
                        ));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = quiet.tick() => E::new(WatchEventType::Bookmark, None, revision),
                () = tx.closed() => return,
            };
            match tx.try_send(Ok(event)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let status =
                        Status::resource_exhausted("this watcher read too slowly and was dropped; watch again");
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(i32, Option<u32>, i64);

    impl Event for E {
        type Item = u32;
        fn new(kind: WatchEventType, item: Option<u32>, revision: i64) -> Self {
            E(kind as i32, item, revision)
        }
    }

    const ADDED: i32 = WatchEventType::Added as i32;
    const MODIFIED: i32 = WatchEventType::Modified as i32;
    const BOOKMARK: i32 = WatchEventType::Bookmark as i32;

    #[tokio::test(start_paused = true)]
    async fn snapshot_then_bookmark_then_changes_with_keepalives() {
        let (live, rx) = broadcast::channel(16);
        let mut s = spawn::<E, u32>(vec![7, 8], rx, "items", |n| (n % 2 == 0).then_some((WatchEventType::Modified, n)));
        let mut next = async || s.next().await.unwrap().unwrap();
        assert_eq!(next().await, E(ADDED, Some(7), 1));
        assert_eq!(next().await, E(ADDED, Some(8), 2));
        assert_eq!(next().await, E(BOOKMARK, None, 2), "the snapshot ends with a bookmark");
        live.send(1).unwrap();
        live.send(4).unwrap();
        assert_eq!(next().await, E(MODIFIED, Some(4), 3), "odd ones are skipped");
        // Idle: a keep-alive after a minute (the paused clock jumps ahead).
        assert_eq!(next().await, E(BOOKMARK, None, 3));
    }

    #[tokio::test]
    async fn an_empty_snapshot_is_one_bookmark_and_resuming_is_refused() {
        let (_live, rx) = broadcast::channel::<u32>(16);
        let mut s = spawn::<E, u32>(vec![], rx, "items", |n| Some((WatchEventType::Modified, n)));
        assert_eq!(s.next().await.unwrap().unwrap(), E(BOOKMARK, None, 0));
        assert_eq!(check_since(3).unwrap_err().code(), tonic::Code::OutOfRange);
        assert!(check_since(0).is_ok());
    }

    #[tokio::test]
    async fn a_lagging_reader_is_told_what_it_missed() {
        let (live, rx) = broadcast::channel(2);
        let mut s = spawn::<E, u32>(vec![], rx, "samples", |n| Some((WatchEventType::Modified, n)));
        assert_eq!(s.next().await.unwrap().unwrap(), E(BOOKMARK, None, 0));
        for n in 0..5 {
            live.send(n).unwrap();
        }
        let mut got = Vec::new();
        while let Some(e) = s.next().await {
            match e {
                Ok(e) => got.push(e),
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
                    assert!(status.message().contains("3 samples behind"), "{}", status.message());
                    return;
                }
            }
        }
        panic!("no error after {got:?}");
    }
}
