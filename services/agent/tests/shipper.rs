//! The metrics shipper against an in-process MetricsIngestService (plaintext h2c on
//! 127.0.0.1) that the test drives stream by stream: answered batches are never sent again,
//! unanswered ones come back after a broken stream in order and unchanged, no batch number is
//! skipped, and a restarted shipper goes on from the stored number.

use std::{pin::Pin, time::Duration};

use persys_agent::{
    shipper::{self, ShipperConfig},
    state::StateDir,
};
use persys_kit::{
    client::{ClientOptions, plain_channel},
    shutdown,
};
use persys_proto::metrics::v1::{
    IngestRequest, IngestResponse,
    metrics_ingest_service_server::{MetricsIngestService, MetricsIngestServiceServer},
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

/// One Ingest stream as the test sees it: what the agent sent and where answers go.
struct Stream {
    requests: mpsc::UnboundedReceiver<IngestRequest>,
    answers: mpsc::UnboundedSender<Result<IngestResponse, Status>>,
}

impl Stream {
    async fn next(&mut self) -> IngestRequest {
        within("a batch", self.requests.recv()).await.expect("the stream ended")
    }

    fn answer(&self, request: &IngestRequest) {
        let answer = IngestResponse {
            accepted_samples: request.samples.len() as i64,
            batch_seq: request.batch_seq,
            ..Default::default()
        };
        self.answers.send(Ok(answer)).unwrap();
    }

    /// Ends the stream with an error, as a pipeline restarting would.
    fn break_off(&self) {
        self.answers.send(Err(Status::unavailable("pipeline restarting"))).unwrap();
    }
}

#[derive(Clone)]
struct Pipeline {
    streams: mpsc::UnboundedSender<Stream>,
}

#[tonic::async_trait]
impl MetricsIngestService for Pipeline {
    type IngestStream = Pin<Box<dyn futures::Stream<Item = Result<IngestResponse, Status>> + Send>>;

    async fn ingest(&self, request: Request<Streaming<IngestRequest>>) -> Result<Response<Self::IngestStream>, Status> {
        let mut inbound = request.into_inner();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (answers, answers_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(request)) = inbound.message().await {
                if requests.send(request).is_err() {
                    break;
                }
            }
        });
        let _ = self.streams.send(Stream { requests: requests_rx, answers });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(answers_rx))))
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f).await.unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

fn seqs(requests: &[IngestRequest]) -> Vec<u64> {
    requests.iter().map(|r| r.batch_seq).collect()
}

fn consecutive(from: u64, n: usize) -> Vec<u64> {
    (from..from + n as u64).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_batches_are_resent_with_their_numbers_and_none_is_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsIngestServiceServer::new(Pipeline { streams: streams_tx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::open(tmp.path()).unwrap();
    let config = ShipperConfig {
        node_id: "node-1".into(),
        interval: Duration::from_millis(50),
        buffer: 1000,
        max_backoff: Duration::from_millis(100),
        answer_timeout: Duration::from_secs(10),
    };
    let start = |state: StateDir| {
        let channel = plain_channel(&address, &ClientOptions::default()).unwrap();
        let (trigger, handle) = shutdown::channel();
        (trigger, shipper::spawn(config.clone(), channel, state, None, handle))
    };
    let (trigger, task) = start(state.clone());

    // First stream: numbers from 1, one real sample each; 1 and 2 answered, 3 and 4 not.
    let mut first = within("stream", streams.recv()).await.unwrap();
    let mut sent_first = Vec::new();
    for _ in 0..4 {
        sent_first.push(first.next().await);
    }
    assert_eq!(seqs(&sent_first), [1, 2, 3, 4]);
    for r in &sent_first {
        assert_eq!((r.node_id.as_str(), r.samples.len(), r.dropped_samples), ("node-1", 1, 0));
        assert_eq!(r.samples[0].node_id, "node-1");
        assert!(r.samples[0].memory.is_some_and(|m| m.total_bytes > 0));
    }
    first.answer(&sent_first[0]);
    first.answer(&sent_first[1]);
    first.break_off();

    // Second stream: every unanswered batch again, unchanged and in order, then new ones.
    let mut second = within("second stream", streams.recv()).await.unwrap();
    let mut sent_second = Vec::new();
    for _ in 0..6 {
        let r = second.next().await;
        second.answer(&r);
        sent_second.push(r);
    }
    assert_eq!(seqs(&sent_second), consecutive(3, 6), "resent from the first unanswered batch");
    // Whatever reached the first stream after the answers (5, 6... before the agent saw the
    // break) must have come again too.
    while let Ok(late) = first.requests.try_recv() {
        sent_first.push(late);
    }
    for r in sent_first.iter().filter(|r| r.batch_seq >= 3) {
        assert!(sent_second.contains(r), "batch {} was not re-sent unchanged", r.batch_seq);
    }
    let last_answered = sent_second.last().unwrap().batch_seq;
    second.break_off();

    // Third stream: everything answered on the second is gone; it goes on right after.
    let mut third = within("third stream", streams.recv()).await.unwrap();
    let r = third.next().await;
    assert_eq!(r.batch_seq, last_answered + 1);

    // A restart goes on from the stored number instead of starting over at 1.
    trigger.trigger();
    within("shipper stop", task).await.unwrap();
    let stored = state.next_batch_seq();
    assert!(stored > r.batch_seq, "stored {stored}, sent {}", r.batch_seq);
    let (trigger, task) = start(StateDir::open(tmp.path()).unwrap());
    let mut after_restart = within("stream after restart", streams.recv()).await.unwrap();
    assert_eq!(after_restart.next().await.batch_seq, stored);
    trigger.trigger();
    within("shipper stop", task).await.unwrap();
    server.abort();
}
