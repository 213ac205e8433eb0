//! The metrics shipper: one host sample per interval, each in a new batch, streamed to the
//! metrics pipeline over one `MetricsIngestService.Ingest` stream.
//!
//! A batch stays buffered until the pipeline answers it (the answer means it is committed);
//! the buffer is bounded and drops its oldest batch when full, counting the samples lost in
//! every later request's `dropped_samples`. When the stream breaks, fails or stops answering,
//! the shipper reconnects with jittered backoff and re-sends every unanswered batch, in order,
//! with its original `batch_seq`; the pipeline stores a batch once however often it arrives.
//!
//! Batch numbers survive restarts: the next number is stored durably in the state directory
//! before a batch can be sent (see [`StateDir::next_batch_seq`]), so a restarted agent goes on
//! from where it stopped instead of reusing numbers the pipeline would drop as duplicates.
//! Batches still buffered at shutdown are lost.

pub mod batches;

use std::time::{Duration, SystemTime};

use persys_kit::{client::TracedChannel, shutdown::Shutdown};
use persys_proto::metrics::v1::{
    HostMetrics, IngestRequest, IngestResponse, metrics_ingest_service_client::MetricsIngestServiceClient,
};
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};
use tokio_stream::wrappers::ReceiverStream;

use self::batches::Batches;
use crate::{host::backoff, hostmetrics::Collector, state::StateDir};

/// Requests queued towards the stream before the shipper waits for room.
const SEND_QUEUE: usize = 8;

/// The shipper's settings.
#[derive(Clone, Debug)]
pub struct ShipperConfig {
    /// This node's id.
    pub node_id: String,
    /// Time between samples.
    pub interval: Duration,
    /// Unanswered batches kept; beyond it the oldest is dropped.
    pub buffer: usize,
    /// Longest wait between reconnects.
    pub max_backoff: Duration,
    /// How long the pipeline may leave a sent batch unanswered before the stream is given up.
    pub answer_timeout: Duration,
}

/// Streams batches to the pipeline (see the module docs).
pub struct Shipper {
    config: ShipperConfig,
    channel: TracedChannel,
    state: StateDir,
    batches: Batches,
    dropped_batches: u64,
    store_failures: u64,
}

enum End {
    Shutdown,
    Broken(String),
}

/// Starts sampling this machine and shipping the samples over `channel` until `shutdown`;
/// returns the task, which ends once both have stopped.
/// With `docker`, each sample also carries the node's running Persys containers.
pub fn spawn(
    config: ShipperConfig,
    channel: TracedChannel,
    state: StateDir,
    docker: Option<std::sync::Arc<crate::driver::docker::DockerDriver>>,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let (tx, rx) = mpsc::channel(4);
    let sampler = tokio::spawn(sample_every(config.node_id.clone(), config.interval, tx, docker, shutdown.clone()));
    let shipper = Shipper::new(config, channel, state);
    tokio::spawn(async move {
        shipper.run(rx, shutdown).await;
        let _ = sampler.await;
    })
}

/// Sends one sample of this machine to `samples` every `interval` (the first one interval
/// from now, so that its CPU usage covers a whole interval) until shutdown or until the
/// receiver is gone. With `docker`, each sample also carries the running Persys containers.
pub async fn sample_every(
    node_id: String,
    interval: Duration,
    samples: mpsc::Sender<HostMetrics>,
    docker: Option<std::sync::Arc<crate::driver::docker::DockerDriver>>,
    shutdown: Shutdown,
) {
    let mut collector = Collector::new();
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.clone().wait() => return,
        }
        let id = node_id.clone();
        // File reads and statvfs block; they stay off the runtime's threads.
        let collected = tokio::task::spawn_blocking(move || {
            let sample = collector.collect(&id, SystemTime::now());
            (collector, sample)
        })
        .await;
        let Ok((back, sample)) = collected else {
            tracing::error!("host metrics collection panicked; no more samples");
            return;
        };
        collector = back;
        let mut sample = sample;
        if let Some(docker) = &docker {
            sample.containers = docker.container_metrics().await;
        }
        if samples.send(sample).await.is_err() {
            return;
        }
    }
}

impl Shipper {
    /// Returns a shipper over `channel` whose first batch takes the number stored in `state`.
    pub fn new(config: ShipperConfig, channel: TracedChannel, state: StateDir) -> Self {
        let batches = Batches::new(config.buffer, state.next_batch_seq());
        Self { config, channel, state, batches, dropped_batches: 0, store_failures: 0 }
    }

    /// Ships every sample from `samples`, one per batch, until shutdown; keeps reconnecting
    /// while the pipeline is away.
    pub async fn run(mut self, samples: mpsc::Receiver<HostMetrics>, shutdown: Shutdown) {
        let mut samples = Some(samples);
        let mut attempt = 0u32;
        loop {
            let (end, answered) = self.stream_once(&mut samples, &shutdown).await;
            let error = match end {
                End::Shutdown => return,
                End::Broken(error) => error,
            };
            attempt = if answered { 1 } else { attempt.saturating_add(1) };
            let wait = backoff(attempt, self.config.max_backoff, rand::random());
            tracing::warn!(%error, attempt, retry_in = ?wait, unanswered = self.batches.len(), "metrics pipeline stream down");
            let until = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.clone().wait() => return,
                    sample = next_sample(&mut samples) => self.add(sample).await,
                }
            }
        }
    }

    /// One stream from call to break; returns how it ended and whether the pipeline answered
    /// a batch on it.
    async fn stream_once(
        &mut self,
        samples: &mut Option<mpsc::Receiver<HostMetrics>>,
        shutdown: &Shutdown,
    ) -> (End, bool) {
        let node_id = self.config.node_id.clone();
        let (tx, rx) = mpsc::channel::<IngestRequest>(SEND_QUEUE);
        // The batch_seq last sent on this stream: a new stream starts over from the oldest.
        let mut sent = 0u64;
        while let Ok(permit) = tx.try_reserve() {
            let Some(request) = self.batches.send_after(&node_id, sent) else { break };
            sent = request.batch_seq;
            permit.send(request);
        }
        let mut client = MetricsIngestServiceClient::new(self.channel.clone());
        let call = client.ingest(ReceiverStream::new(rx));
        tokio::pin!(call);
        let open_by = Instant::now() + self.config.answer_timeout;
        let mut inbound = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(open_by) => {
                    return (End::Broken("the pipeline did not open the stream in time".into()), false);
                }
                response = &mut call => match response {
                    Ok(response) => break response.into_inner(),
                    Err(status) => {
                        return (End::Broken(format!("ingest: {}: {}", status.code(), status.message())), false);
                    }
                },
                sample = next_sample(samples) => self.add(sample).await,
                _ = shutdown.clone().wait() => return (End::Shutdown, false),
            }
        };
        tracing::info!(unanswered = self.batches.len(), "metrics pipeline stream open");
        let timeout = self.config.answer_timeout;
        let mut answered = false;
        // While batches sent on this stream wait for answers: when the next answer is due.
        let mut deadline = (sent > 0).then(|| Instant::now() + timeout);
        loop {
            let more = self.batches.has_after(sent);
            tokio::select! {
                _ = shutdown.clone().wait() => return (End::Shutdown, answered),
                message = inbound.message() => match message {
                    Ok(Some(response)) => {
                        self.answer(response);
                        answered = true;
                        deadline = self.batches.has_through(sent).then(|| Instant::now() + timeout);
                    }
                    Ok(None) => return (End::Broken("the pipeline closed the stream".into()), answered),
                    Err(status) => return (End::Broken(format!("{}: {}", status.code(), status.message())), answered),
                },
                permit = tx.reserve(), if more => {
                    let Ok(permit) = permit else { return (End::Broken("stream closed".into()), answered) };
                    if let Some(request) = self.batches.send_after(&node_id, sent) {
                        sent = request.batch_seq;
                        permit.send(request);
                        deadline.get_or_insert_with(|| Instant::now() + timeout);
                    }
                }
                sample = next_sample(samples) => self.add(sample).await,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return (End::Broken(format!("no answer from the pipeline within {timeout:?}")), answered);
                }
            }
        }
    }

    /// Buffers a sample as a new batch, storing the next batch number before it can be sent.
    async fn add(&mut self, sample: HostMetrics) {
        let (_, dropped) = self.batches.push(vec![sample]);
        if let Some(batch) = dropped {
            self.dropped_batches += 1;
            if self.dropped_batches == 1 || self.dropped_batches.is_power_of_two() {
                tracing::warn!(
                    batch_seq = batch.seq,
                    dropped_batches = self.dropped_batches,
                    dropped_samples = self.batches.dropped_samples(),
                    capacity = self.config.buffer,
                    "metrics buffer full; dropping the oldest batches"
                );
            }
        }
        let (state, next) = (self.state.clone(), self.batches.next_seq());
        let stored = tokio::task::spawn_blocking(move || state.store_next_batch_seq(next)).await;
        if let Err(error) = stored.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
            self.store_failures += 1;
            if self.store_failures == 1 || self.store_failures.is_power_of_two() {
                tracing::warn!(%error, failures = self.store_failures, "could not store the next metrics batch number");
            }
        }
    }

    fn answer(&mut self, response: IngestResponse) {
        let seq = response.batch_seq;
        let Some(batch) = self.batches.ack(seq) else {
            tracing::debug!(batch_seq = seq, "answer for a batch no longer buffered");
            return;
        };
        if response.rejected_samples > 0 {
            tracing::warn!(batch_seq = seq, rejected = response.rejected_samples, errors = ?response.errors, "the pipeline rejected samples");
        }
        if response.duplicate_samples > 0 && batch.sends == 1 {
            // Never sent before, yet already stored: this number was used by another run.
            tracing::warn!(
                batch_seq = seq,
                duplicates = response.duplicate_samples,
                "the pipeline already had this batch number; its samples were not stored"
            );
        }
        tracing::trace!(batch_seq = seq, accepted = response.accepted_samples, "batch answered");
    }
}

/// Returns the next sample, or waits forever once the sampler has stopped.
async fn next_sample(samples: &mut Option<mpsc::Receiver<HostMetrics>>) -> HostMetrics {
    if let Some(rx) = samples {
        if let Some(sample) = rx.recv().await {
            return sample;
        }
        *samples = None;
    }
    std::future::pending().await
}
