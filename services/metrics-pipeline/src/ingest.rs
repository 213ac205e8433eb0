//! `MetricsIngestService`: agents stream batches; each is validated, committed once per
//! (node, batch sequence) and then acknowledged, and its newest sample goes to live watchers.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use persys_kit::{ApiError, Identity, identity::Caller};
use persys_proto::metrics::v1::{
    HostMetrics, IngestRequest, IngestResponse, metrics_ingest_service_server::MetricsIngestService,
};
use prost::Message;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    samples::{Rates, time_ms},
    store::{Batch, Committed, Store},
};

/// Most samples in one batch.
pub const MAX_SAMPLES_PER_BATCH: usize = 120;
/// How far in the future a sample may be stamped.
pub const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

/// What ingest shares with the query side.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<Store>,
    rates: Arc<Mutex<Rates>>,
    live: broadcast::Sender<Arc<HostMetrics>>,
    /// Each node's newest sample for Prometheus scrapes, current once a batch is acknowledged.
    latest: crate::prometheus::LatestHosts,
    /// Oldest sample accepted, as an age in ms (the raw retention).
    max_age_ms: i64,
    alerts: crate::alerts::Alerts,
}

use crate::clock::now_ms;

impl Ingest {
    /// Ingest into `store`, publishing each node's newest sample on `live` and in `latest`; samples older
    /// than `max_age_ms` are rejected.
    /// Committed rows are evaluated against the rules of `alerts`.
    pub fn new(
        store: Arc<Store>,
        live: broadcast::Sender<Arc<HostMetrics>>,
        latest: crate::prometheus::LatestHosts,
        max_age_ms: i64,
        alerts: crate::alerts::Alerts,
    ) -> Self {
        Self { store, rates: Arc::default(), live, latest, max_age_ms, alerts }
    }

    /// Validates and commits one batch from `node`; returns its acknowledgement.
    pub async fn batch(&self, node: &str, request: IngestRequest) -> Result<IngestResponse, ApiError> {
        if request.node_id != node {
            return Err(ApiError::PermissionDenied(format!(
                "the agent of node {node:?} cannot send metrics for node {:?}",
                request.node_id
            )));
        }
        let mut violations = persys_kit::error::Violations::new();
        violations.check(request.batch_seq == 0, "batch_seq", "must be 1 or more");
        violations.check(
            request.samples.len() > MAX_SAMPLES_PER_BATCH,
            "samples",
            format!("at most {MAX_SAMPLES_PER_BATCH} samples per batch, got {}", request.samples.len()),
        );
        violations.finish()?;

        let now = now_ms();
        let mut errors: Vec<String> = Vec::new();
        let mut rejected = 0i64;
        let mut accepted = Vec::new();
        for (i, sample) in request.samples.into_iter().enumerate() {
            let problem = match time_ms(&sample) {
                _ if sample.node_id != node => {
                    Some(format!("samples[{i}].node_id {:?} is not {node:?}", sample.node_id))
                }
                None => Some(format!("samples[{i}].time is missing")),
                Some(t) if t > now + MAX_FUTURE_MS => Some(format!("samples[{i}].time is more than 10 minutes ahead")),
                Some(t) if t < now - self.max_age_ms => Some(format!("samples[{i}].time is older than the retention")),
                Some(t) => {
                    accepted.push((t, sample));
                    None
                }
            };
            if let Some(p) = problem {
                rejected += 1;
                if errors.len() < 10 {
                    errors.push(p);
                }
            }
        }
        accepted.sort_by_key(|(t, _)| *t);
        let rows = {
            let mut rates = self.rates.lock().await;
            accepted.iter().flat_map(|(t, s)| rates.rows(s, *t)).collect::<Vec<_>>()
        };
        let newest = accepted.last();
        let batch = Batch {
            node_id: node,
            batch_seq: request.batch_seq,
            dropped: request.dropped_samples,
            samples: accepted.len(),
            rows: &rows,
            latest: newest.map(|(t, s)| (*t, s.encode_to_vec())),
            now_ms: now,
        };
        let committed = self.store.commit(&batch).await.map_err(ApiError::internal)?;
        if request.dropped_samples > 0 {
            tracing::warn!(
                node,
                dropped = request.dropped_samples,
                "the agent dropped samples while the pipeline was unreachable"
            );
        }
        let response = match committed {
            Committed::Stored(_) => {
                // Evaluated as samples arrive. A failure to store an alert is logged; the batch
                // stays stored and acknowledged (a re-sent duplicate is not evaluated again).
                if let Err(error) = self.alerts.observe(node, &rows).await {
                    tracing::warn!(node, %error, "alert evaluation failed");
                }
                if let Some((_, sample)) = newest {
                    self.latest.update(sample);
                    // Nobody listening is fine.
                    let _ = self.live.send(Arc::new(sample.clone()));
                }
                IngestResponse { accepted_samples: accepted.len() as i64, ..Default::default() }
            }
            Committed::Duplicate => IngestResponse { duplicate_samples: accepted.len() as i64, ..Default::default() },
        };
        Ok(IngestResponse { rejected_samples: rejected, errors, batch_seq: request.batch_seq, ..response })
    }
}

#[tonic::async_trait]
impl MetricsIngestService for Ingest {
    type IngestStream = Pin<Box<dyn Stream<Item = Result<IngestResponse, Status>> + Send>>;

    async fn ingest(&self, request: Request<Streaming<IngestRequest>>) -> Result<Response<Self::IngestStream>, Status> {
        let node = match Caller::of(&request).map(|c| &c.identity) {
            Some(Identity::Agent(node)) => node.clone(),
            _ => return Err(Status::permission_denied("only agents send metrics, each for its own node")),
        };
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let ingest = self.clone();
        tokio::spawn(async move {
            loop {
                let request = match inbound.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(node, %status, "ingest stream ended");
                        return;
                    }
                };
                let seq = request.batch_seq;
                match ingest.batch(&node, request).await {
                    Ok(ack) => {
                        if tx.send(Ok(ack)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::info!(node, batch_seq = seq, %error, "batch refused");
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
