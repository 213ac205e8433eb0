//! The agents connected to this replica: one stream each, commands sent down it, and the
//! answers (output chunks, pull progress, the final result) routed back to whoever asked.
//!
//! Routing never waits: the agent's stream also carries its heartbeats and status reports, so
//! a caller that stops reading (a paused `logs -f`) must not hold it up. Each call buffers at
//! most [`CALL_BUFFER`] replies; a call whose buffer is full is cut (its caller gets
//! `RESOURCE_EXHAUSTED` after what was buffered, the agent is told to cancel the command), not
//! the node.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use persys_proto::scheduler::v1::{
    CommandResult, ConnectResponse, ImagePullProgress, LogChunk, connect_response::Payload,
};
use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::Status;

/// Replies buffered for one call before a caller that does not read is cut off.
pub const CALL_BUFFER: usize = 256;

/// What comes back for a command.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Output of logs or exec.
    Chunk(LogChunk),
    /// Image pull progress.
    Progress(ImagePullProgress),
    /// The end of the command.
    Done(CommandResult),
    /// The call was cut on this side (its reader fell too far behind); the command was
    /// canceled on the agent. Nothing follows.
    Cut(Status),
}

/// The sending half of one agent's stream.
pub type Downstream = mpsc::Sender<Result<ConnectResponse, Status>>;

struct Session {
    id: u64,
    tx: Downstream,
}

/// Whoever waits for a command's replies.
struct Waiter {
    node: String,
    tx: mpsc::Sender<Reply>,
    cut: Arc<Mutex<Option<Status>>>,
}

/// Streams of the agents connected here.
#[derive(Default)]
pub struct Agents {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, Waiter>>,
    next: AtomicU64,
}

/// Why a command could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node has no stream on this replica.
    #[error("node {0} is not connected")]
    NotConnected(String),
}

impl Agents {
    /// Registers `node`'s stream, replacing (and so closing) an older one. Returns its session.
    pub fn register(&self, node: &str, tx: Downstream) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let old = self.sessions.lock().expect("agents lock").insert(node.to_owned(), Session { id, tx });
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted("a newer stream of this node replaced this one")));
        }
        id
    }

    /// Forgets `node`'s stream if `session` is still the current one.
    pub fn unregister(&self, node: &str, session: u64) {
        let mut sessions = self.sessions.lock().expect("agents lock");
        if sessions.get(node).is_some_and(|s| s.id == session) {
            sessions.remove(node);
        }
    }

    /// Ends every stream (agents reconnect, to another replica when there is one), so shutdown
    /// does not wait on streams that never end by themselves.
    pub fn close_all(&self) {
        let sessions = std::mem::take(&mut *self.sessions.lock().expect("agents lock"));
        for (_, s) in sessions {
            let _ = s.tx.try_send(Err(Status::unavailable("the scheduler is shutting down; reconnect")));
        }
    }

    /// Returns whether `node` has a stream here.
    pub fn connected(&self, node: &str) -> bool {
        self.sessions.lock().expect("agents lock").contains_key(node)
    }

    /// Returns the nodes connected here.
    pub fn nodes(&self) -> Vec<String> {
        self.sessions.lock().expect("agents lock").keys().cloned().collect()
    }

    /// Sends a command without waiting for its answer; returns the command id.
    pub async fn send(&self, node: &str, payload: Payload) -> Result<String, SendError> {
        let command_id = uuid::Uuid::new_v4().to_string();
        self.send_with_id(node, command_id.clone(), payload).await?;
        Ok(command_id)
    }

    async fn send_with_id(&self, node: &str, command_id: String, payload: Payload) -> Result<(), SendError> {
        let tx = self
            .sessions
            .lock()
            .expect("agents lock")
            .get(node)
            .map(|s| s.tx.clone())
            .ok_or_else(|| SendError::NotConnected(node.to_owned()))?;
        tx.send(Ok(ConnectResponse { command_id, payload: Some(payload) }))
            .await
            .map_err(|_| SendError::NotConnected(node.to_owned()))
    }

    /// Sends a command and returns the stream of its replies, ending after `Done`.
    pub async fn call(self: &Arc<Self>, node: &str, payload: Payload) -> Result<Call, SendError> {
        let command_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = mpsc::channel(CALL_BUFFER);
        let cut = Arc::new(Mutex::new(None));
        let waiter = Waiter { node: node.to_owned(), tx, cut: cut.clone() };
        self.pending.lock().expect("agents lock").insert(command_id.clone(), waiter);
        if let Err(e) = self.send_with_id(node, command_id.clone(), payload).await {
            self.pending.lock().expect("agents lock").remove(&command_id);
            return Err(e);
        }
        Ok(Call { agents: self.clone(), node: node.to_owned(), command_id, rx, cut })
    }

    /// Routes a reply from `node` to whoever waits for its command, without waiting: a call
    /// whose buffer is full is cut (see the module docs). Returns `false` if nobody waits for
    /// it (or the command is another node's).
    pub fn route(&self, node: &str, command_id: &str, reply: Reply) -> bool {
        let done = matches!(reply, Reply::Done(_));
        let mut pending = self.pending.lock().expect("agents lock");
        let Some(waiter) = pending.get(command_id).filter(|w| w.node == node) else { return false };
        match waiter.tx.try_send(reply) {
            Ok(()) => {
                if done {
                    pending.remove(command_id);
                }
                true
            }
            Err(TrySendError::Closed(_)) => {
                pending.remove(command_id);
                false
            }
            Err(TrySendError::Full(reply)) if done => {
                // One message per call at most: it waits behind the buffer, off the stream.
                let waiter = pending.remove(command_id).expect("looked up above");
                tokio::spawn(async move {
                    let _ = waiter.tx.send(reply).await;
                });
                true
            }
            Err(TrySendError::Full(_)) => {
                let waiter = pending.remove(command_id).expect("looked up above");
                drop(pending);
                tracing::warn!(node, command = command_id, buffered = CALL_BUFFER, "caller too slow; call cut");
                *waiter.cut.lock().expect("cut lock") = Some(Status::resource_exhausted(format!(
                    "the reader fell behind: {CALL_BUFFER} messages from node {node} were waiting unread, so the \
                     command was canceled; read faster or ask for less output (e.g. fewer tail lines)"
                )));
                self.cancel_on(node, command_id);
                true
            }
        }
    }

    /// Tells `node` to cancel a command, without waiting.
    fn cancel_on(&self, node: &str, command_id: &str) {
        let Some(tx) = self.sessions.lock().expect("agents lock").get(node).map(|s| s.tx.clone()) else { return };
        let cancel = ConnectResponse {
            command_id: uuid::Uuid::new_v4().to_string(),
            payload: Some(Payload::Cancel(persys_proto::scheduler::v1::CancelCommand {
                target_command_id: command_id.to_owned(),
            })),
        };
        tokio::spawn(async move {
            let _ = tx.send(Ok(cancel)).await;
        });
    }
}

/// A command in flight; dropping it cancels the command on the agent.
pub struct Call {
    agents: Arc<Agents>,
    node: String,
    command_id: String,
    rx: mpsc::Receiver<Reply>,
    cut: Arc<Mutex<Option<Status>>>,
}

impl Call {
    /// Returns the next reply, then [`Reply::Cut`] once if the call was cut; `None` when the
    /// agent went away.
    pub async fn next(&mut self) -> Option<Reply> {
        match self.rx.recv().await {
            Some(reply) => Some(reply),
            None => self.cut.lock().expect("cut lock").take().map(Reply::Cut),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let still_pending = self.agents.pending.lock().expect("agents lock").remove(&self.command_id).is_some();
        if still_pending {
            let agents = self.agents.clone();
            let node = self.node.clone();
            let target = self.command_id.clone();
            tokio::spawn(async move {
                let cancel = Payload::Cancel(persys_proto::scheduler::v1::CancelCommand { target_command_id: target });
                let _ = agents.send(&node, cancel).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::FetchLogs;

    use super::*;

    fn chunk() -> Reply {
        Reply::Chunk(LogChunk::default())
    }

    async fn call(agents: &Arc<Agents>, down: &mut mpsc::Receiver<Result<ConnectResponse, Status>>) -> (Call, String) {
        let call = agents.call("n", Payload::Logs(FetchLogs::default())).await.unwrap();
        let id = down.recv().await.unwrap().unwrap().command_id;
        (call, id)
    }

    #[tokio::test]
    async fn a_call_whose_reader_falls_behind_is_cut_and_canceled_without_waiting() {
        let agents = Arc::new(Agents::default());
        let (tx, mut down) = mpsc::channel(16);
        agents.register("n", tx);

        // A full buffer still takes the result, behind what is buffered.
        let (mut full, id) = call(&agents, &mut down).await;
        for _ in 0..CALL_BUFFER {
            assert!(agents.route("n", &id, chunk()));
        }
        assert!(agents.route("n", &id, Reply::Done(CommandResult { success: true, ..Default::default() })));
        for _ in 0..CALL_BUFFER {
            assert!(matches!(full.next().await, Some(Reply::Chunk(_))));
        }
        assert!(matches!(full.next().await, Some(Reply::Done(r)) if r.success));

        // One chunk more than the buffer cuts the call: what was buffered, then the status.
        let (mut slow, id) = call(&agents, &mut down).await;
        assert!(!agents.route("other", &id, chunk()), "another node's reply is not routed");
        for _ in 0..=CALL_BUFFER {
            assert!(agents.route("n", &id, chunk()));
        }
        assert!(!agents.route("n", &id, chunk()), "a cut call takes nothing more");
        let cancel = down.recv().await.unwrap().unwrap();
        assert!(matches!(cancel.payload, Some(Payload::Cancel(c)) if c.target_command_id == id));
        for _ in 0..CALL_BUFFER {
            assert!(matches!(slow.next().await, Some(Reply::Chunk(_))));
        }
        match slow.next().await {
            Some(Reply::Cut(status)) => assert_eq!(status.code(), tonic::Code::ResourceExhausted),
            other => panic!("expected the call to be cut, got {other:?}"),
        }
        assert!(slow.next().await.is_none());
        drop(slow);
        tokio::task::yield_now().await;
        assert!(down.try_recv().is_err(), "a cut call is not canceled twice");
    }
}
