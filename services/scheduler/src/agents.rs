//! The agents connected to this replica: one stream each, commands sent down it, and the
//! answers (output chunks, pull progress, the final result) routed back to whoever asked.

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
use tokio::sync::mpsc;
use tonic::Status;

/// What comes back for a command.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Output of logs or exec.
    Chunk(LogChunk),
    /// Image pull progress.
    Progress(ImagePullProgress),
    /// The end of the command.
    Done(CommandResult),
}

/// The sending half of one agent's stream.
pub type Downstream = mpsc::Sender<Result<ConnectResponse, Status>>;

struct Session {
    id: u64,
    tx: Downstream,
}

/// Streams of the agents connected here.
#[derive(Default)]
pub struct Agents {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<String, mpsc::Sender<Reply>>>,
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
        let (tx, rx) = mpsc::channel(256);
        self.pending.lock().expect("agents lock").insert(command_id.clone(), tx);
        if let Err(e) = self.send_with_id(node, command_id.clone(), payload).await {
            self.pending.lock().expect("agents lock").remove(&command_id);
            return Err(e);
        }
        Ok(Call { agents: self.clone(), node: node.to_owned(), command_id, rx })
    }

    /// Routes a reply to whoever waits for its command; returns `false` if nobody does.
    pub async fn route(&self, command_id: &str, reply: Reply) -> bool {
        let done = matches!(reply, Reply::Done(_));
        let tx = {
            let mut pending = self.pending.lock().expect("agents lock");
            if done { pending.remove(command_id) } else { pending.get(command_id).cloned() }
        };
        match tx {
            Some(tx) => tx.send(reply).await.is_ok(),
            None => false,
        }
    }
}

/// A command in flight; dropping it cancels the command on the agent.
pub struct Call {
    agents: Arc<Agents>,
    node: String,
    command_id: String,
    rx: mpsc::Receiver<Reply>,
}

impl Call {
    /// Returns the next reply, `None` when the agent went away.
    pub async fn next(&mut self) -> Option<Reply> {
        self.rx.recv().await
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
