//! SIGKILL the real `metrics-pipeline` binary while an agent streams batches, restart it, let
//! the agent re-send what was not acknowledged: every acknowledged batch is stored, and every
//! sample exactly once.

mod common;

use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use common::{AgentStream, Db, batch, certs, connection, now_ms, sample};
use persys_e2e::process::Service;
use persys_metrics_pipeline::store::Store;
use persys_proto::metrics::v1::{IngestRequest, metrics_ingest_service_client::MetricsIngestServiceClient};
use sqlx::Row;

const BATCHES: u64 = 12;
const SAMPLES_PER_BATCH: i64 = 100;
/// Rows one `common::sample` makes.
const ROWS_PER_SAMPLE: i64 = 6;

async fn start(certs: &std::path::Path, db: &Db, port: u16) -> Service {
    let mut args: Vec<String> =
        ["--listen", &format!("127.0.0.1:{port}"), "--database-url", &db.url].map(String::from).to_vec();
    args.extend(persys_kit::tls::CertsDir::new(certs).tls_flags("metrics"));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_metrics-pipeline"));
    Service::start("metrics-pipeline", binary, &args, &[], certs, Duration::from_secs(60)).await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn the_batch(seq: u64, t0: i64) -> IngestRequest {
    let first = (seq as i64 - 1) * SAMPLES_PER_BATCH;
    let samples = (first..first + SAMPLES_PER_BATCH).map(|i| sample("node-a", t0 + i * 10, (i % 100) as f64)).collect();
    batch("node-a", seq, samples)
}

#[tokio::test]
async fn a_killed_pipeline_loses_no_acknowledged_batch_and_stores_nothing_twice() {
    let Some(db) = Db::create().await else { return };
    let certs = certs();
    let port = free_port();
    let t0 = now_ms() - 60_000;

    // All batches sent back to back; the pipeline is killed after the fourth answer, with
    // the rest in flight.
    let pipeline = start(certs.path(), &db, port).await;
    let mut client = MetricsIngestServiceClient::new(connection(certs.path(), port, "node-a").channel());
    let mut stream = AgentStream::open(&mut client).await.unwrap();
    let mut acked = BTreeSet::new();
    let (tx, rx) = tokio::sync::mpsc::channel(BATCHES as usize);
    for seq in 1..=BATCHES {
        tx.send(the_batch(seq, t0)).await.unwrap();
    }
    drop(tx);
    let mut outbox = tokio_stream::wrappers::ReceiverStream::new(rx);
    // Push them through the open stream without waiting for answers.
    let mut sent = 0;
    while let Some(b) = futures::StreamExt::next(&mut outbox).await {
        stream.push(b).await;
        sent += 1;
    }
    assert_eq!(sent, BATCHES);
    while acked.len() < 4 {
        let ack = stream.acks.message().await.unwrap().expect("an answer");
        acked.insert(ack.batch_seq);
    }
    pipeline.kill().await.unwrap();
    // Whatever answers were already on the wire count too; then the stream breaks.
    while let Ok(Some(ack)) = stream.acks.message().await {
        acked.insert(ack.batch_seq);
    }
    drop(stream);

    // Restarted on the same port, the agent re-sends every batch it holds unanswered.
    let pipeline = start(certs.path(), &db, port).await;
    let mut client = MetricsIngestServiceClient::new(connection(certs.path(), port, "node-a").channel());
    let mut stream = AgentStream::open(&mut client).await.unwrap();
    let mut duplicates = 0;
    for seq in (1..=BATCHES).filter(|s| !acked.contains(s)) {
        let ack = stream.send(the_batch(seq, t0)).await.unwrap();
        assert_eq!(ack.batch_seq, seq);
        assert_eq!(ack.accepted_samples + ack.duplicate_samples, SAMPLES_PER_BATCH, "{ack:?}");
        duplicates += ack.duplicate_samples;
    }
    drop(stream);
    assert!(pipeline.stop().await.unwrap(), "the pipeline exits cleanly on SIGTERM");
    eprintln!(
        "acknowledged before the kill: {}; committed but unanswered: {} batches",
        acked.len(),
        duplicates / SAMPLES_PER_BATCH
    );

    // Every batch stored once, every sample once.
    let store = Store::connect(&db.url, 2, "metrics").await.unwrap();
    assert_eq!(store.batches("node-a").await.unwrap(), (1..=BATCHES as i64).collect::<Vec<_>>());
    let row = sqlx::query("SELECT count(*), count(DISTINCT (metric, time_ms)) FROM samples WHERE node_id = 'node-a'")
        .fetch_one(store.postgres().expect("PostgreSQL"))
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rows, distinct, "a sample was stored twice");
    assert_eq!(rows, BATCHES as i64 * SAMPLES_PER_BATCH * ROWS_PER_SAMPLE);
    store.close().await;
    db.drop_now().await;
}
