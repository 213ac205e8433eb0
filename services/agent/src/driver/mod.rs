//! Workload drivers: Docker containers ([`docker`]) and host processes ([`process`]), and what
//! they share: the labels that mark Persys instances, the output sink of a command, and the
//! status events they push to the [`Outbox`](crate::outbox::Outbox).

pub mod container;
pub mod docker;
pub mod process;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

use bytes::Bytes;
use persys_proto::{
    common::v1::{OutputChunk, OutputStream},
    scheduler::v1::{
        ConnectRequest, ImagePullProgress, InstanceStatus, LogChunk, RunInstance, WorkloadPhase, WorkloadStatusEvent,
        connect_request::Payload,
    },
};
use tokio::sync::mpsc;

use crate::error::CommandError;

/// Label on every container the agent creates.
pub const LABEL_MANAGED: &str = "persys.managed";
/// Label: the workload id.
pub const LABEL_WORKLOAD_ID: &str = "persys.workload-id";
/// Label: the instance id (also the container name).
pub const LABEL_INSTANCE_ID: &str = "persys.instance-id";
/// Label: the workload's display name.
pub const LABEL_WORKLOAD_NAME: &str = "persys.workload-name";
/// Label: the node that created the container.
pub const LABEL_NODE_ID: &str = "persys.node-id";
/// Label: the replica slot.
pub const LABEL_REPLICA_INDEX: &str = "persys.replica-index";

/// Lines and bytes of output attached to the status of an exited instance, at most.
pub const EXIT_TAIL: (usize, usize) = (20, 4096);

/// Image prefix that selects the process driver (see [`process`]), and whether a RunInstance
/// belongs to it: an empty image or one starting with `process://`.
pub use persys_proto::workload::{PROCESS_SCHEME, is_process_image};

/// Checks an instance id: it becomes a container name and a directory name.
pub fn validate_instance_id(id: &str) -> Result<(), CommandError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok { Ok(()) } else { Err(CommandError::new("InvalidArgument", format!("invalid instance id `{id}`"))) }
}

/// Returns the current time as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    SystemTime::now().into()
}

/// A timestamp in Unix milliseconds (what `since` is compared at).
pub fn timestamp_ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000)
}

/// The last sequence given to a status event (see [`next_sequence`]).
static LAST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Returns the sequence of an observation made now: the clock in nanoseconds since the Unix
/// epoch, raised past the last value returned, so it strictly increases within the process
/// and, unless the clock went back by more than the agent was down, across restarts. The
/// scheduler ignores reports older than the last it recorded for an instance.
pub fn next_sequence() -> u64 {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let prev = LAST_SEQUENCE
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1)))
        .unwrap_or_else(|last| last);
    now.max(prev + 1)
}

/// Returns a status event for `status` observed now.
pub fn event(workload_id: &str, status: InstanceStatus, removed: bool) -> WorkloadStatusEvent {
    WorkloadStatusEvent {
        workload_id: workload_id.to_owned(),
        status: Some(status),
        observed_at: Some(now()),
        removed,
        sequence: next_sequence(),
    }
}

/// Returns the status of an instance that has no container or process (yet).
pub fn bare_status(
    run: &RunInstance,
    node_id: &str,
    phase: WorkloadPhase,
    reason: &str,
    message: &str,
) -> InstanceStatus {
    InstanceStatus {
        instance_id: run.instance_id.clone(),
        replica_index: run.replica_index,
        node_id: node_id.to_owned(),
        phase: phase as i32,
        reason: reason.to_owned(),
        message: message.to_owned(),
        ..Default::default()
    }
}

/// Keeps the last `lines` lines of `text`, at most `max_bytes` bytes of them.
pub fn tail(text: &str, lines: usize, max_bytes: usize) -> String {
    let text = text.trim_end_matches('\n');
    let start = text.rmatch_indices('\n').nth(lines.saturating_sub(1)).map_or(0, |(i, _)| i + 1);
    let mut kept = &text[start..];
    if kept.len() > max_bytes {
        let mut cut = kept.len() - max_bytes;
        while !kept.is_char_boundary(cut) {
            cut += 1;
        }
        kept = &kept[cut..];
    }
    kept.to_owned()
}

/// Where a command sends its chunks and progress: the stream it arrived on.
#[derive(Clone, Debug)]
pub struct Output {
    command_id: String,
    tx: mpsc::Sender<ConnectRequest>,
}

impl Output {
    /// Returns the sink of command `command_id` on a stream fed by `tx`.
    pub fn new(command_id: String, tx: mpsc::Sender<ConnectRequest>) -> Self {
        Self { command_id, tx }
    }

    /// Returns the command id.
    pub fn command_id(&self) -> &str {
        &self.command_id
    }

    async fn send(&self, payload: Payload) -> Result<(), CommandError> {
        self.tx
            .send(ConnectRequest { payload: Some(payload) })
            .await
            .map_err(|_| CommandError::new("Disconnected", "the stream to the scheduler closed"))
    }

    /// Sends a piece of output, stamped with the time it is sent.
    pub async fn chunk(&self, stream: OutputStream, data: Bytes) -> Result<(), CommandError> {
        self.chunk_at(stream, data, now()).await
    }

    /// Sends a piece of output stamped with the time it was written (the same on every read,
    /// so a client resuming from a chunk's time can tell the chunks it already has).
    pub async fn chunk_at(
        &self,
        stream: OutputStream,
        data: Bytes,
        time: prost_types::Timestamp,
    ) -> Result<(), CommandError> {
        let chunk = OutputChunk { stream: stream as i32, data: data.to_vec(), time: Some(time) };
        self.send(Payload::LogChunk(LogChunk { command_id: self.command_id.clone(), chunk: Some(chunk) })).await
    }

    /// Sends image pull progress; a closed stream is ignored (the pull goes on).
    pub async fn pull_progress(&self, mut progress: ImagePullProgress) {
        progress.command_id = self.command_id.clone();
        let _ = self.send(Payload::ImagePullProgress(progress)).await;
    }

    /// Sends a message on the stream, e.g. the command's result.
    pub async fn raw(&self, payload: Payload) -> Result<(), CommandError> {
        self.send(payload).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines_within_the_byte_bound() {
        assert_eq!(tail("a\nb\nc\n", 2, 100), "b\nc");
        assert_eq!(tail("a\nb\nc", 5, 100), "a\nb\nc");
        assert_eq!(tail("héllo", 1, 3), "llo");
        assert_eq!(tail("", 3, 10), "");
    }

    #[test]
    fn sequences_strictly_increase_and_follow_the_clock() {
        let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let seqs: Vec<u64> = (0..1000).map(|_| next_sequence()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "not strictly increasing");
        assert!(seqs[0] >= before, "a sequence is at least the clock when taken");
        let a = event("w", InstanceStatus::default(), false).sequence;
        let b = event("w", InstanceStatus::default(), true).sequence;
        assert!(seqs[999] < a && a < b);
    }

    #[test]
    fn instance_ids_must_be_safe_names() {
        assert!(validate_instance_id("web-0.a_b").is_ok());
        for bad in ["", "../x", "-x", "a/b", "a b"] {
            assert!(validate_instance_id(bad).is_err(), "{bad}");
        }
        assert!(is_process_image("process:///bin/sleep") && is_process_image("") && !is_process_image("busybox"));
    }
}
