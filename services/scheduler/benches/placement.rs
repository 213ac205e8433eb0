//! Placement throughput and create-call latency on a real etcd with many simulated agents
//! (each a real join and a real mTLS stream; their driver only pretends). Prints figures.
//!
//! Run with `scripts/bench placement` (it starts a throwaway etcd). Knobs:
//! `PERSYS_BENCH_NODES` (default "100,1000"), `PERSYS_BENCH_WORKLOADS` (per node count:
//! 2 × nodes, at least 1000), `PERSYS_BENCH_CONCURRENCY` (creates in flight, 64).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use futures::StreamExt;
use persys_proto::scheduler::v1 as pb;
use persys_scheduler::kv::{Event, Kv, etcd::EtcdKv};

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// The spec of every benchmark workload: 10 mCPU and 16 MiB requested.
fn small_spec() -> pb::WorkloadSpec {
    pb::WorkloadSpec {
        image: "busybox".into(),
        resources: Some(pb::ResourceRequirements {
            requests: Some(persys_proto::common::v1::ResourceQuantities {
                cpu_millis: 10,
                memory_bytes: 16 << 20,
                disk_bytes: 0,
            }),
            limits: None,
        }),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(kv: Arc<EtcdKv>, nodes: usize, workloads: usize, concurrency: usize) {
    let prefix = format!("/bench-{}", uuid::Uuid::new_v4().simple());
    let pki = Pki::new();
    let served =
        serve(kv.clone(), config(&pki, &prefix, &["--heartbeat", "5s", "--lease-ttl", "15s", "--down-grace", "60s"]))
            .await;
    let grpc = served.running.grpc;
    let boot = served.running.bootstrap;
    let mut admin = api(&pki, grpc, "root", "admin");
    let mut token_request = pb::CreateJoinTokenRequest { unlimited_uses: true, ..Default::default() };
    token_request.description = "bench".into();
    let token = admin.create_join_token(token_request).await.unwrap().into_inner().token;

    let joined = Instant::now();
    let pki = Arc::new(pki);
    let mut agents = Vec::with_capacity(nodes);
    let indices: Vec<usize> = (0..nodes).collect();
    for batch in indices.chunks(50) {
        let started: Vec<_> = batch
            .iter()
            .copied()
            .map(|i| {
                let pki = pki.clone();
                let token = token.clone();
                tokio::spawn(async move { FakeAgent::start(&pki, grpc, boot, &token, &format!("sim-{i:05}")).await })
            })
            .collect();
        for s in started {
            agents.push(s.await.unwrap());
        }
    }
    let join_time = joined.elapsed();

    // Count workloads that have their instance, from the store's own watch.
    let (_, rev) = kv.range(&format!("{prefix}/workloads/")).await.unwrap();
    let mut changes = kv.watch(&format!("{prefix}/workloads/"), rev + 1).await.unwrap();
    let counter = tokio::spawn(async move {
        let mut placed = std::collections::HashSet::new();
        while let Some(batch) = changes.next().await {
            for e in batch.unwrap() {
                if let Event::Put(entry) = e
                    && let Some(w) = persys_scheduler::model::decode_workload(&entry)
                    && w.status.as_ref().is_some_and(|s| !s.instances.is_empty())
                {
                    placed.insert(w.id);
                }
            }
            if placed.len() >= workloads {
                return Instant::now();
            }
        }
        Instant::now()
    });

    let start = Instant::now();
    let per_task = workloads / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let mut client = api(&pki, grpc, "bench", "member");
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let request = pb::CreateWorkloadRequest {
                        name: format!("w-{t}-{i}"),
                        spec: Some(small_spec()),
                        request_id: String::new(),
                    };
                    let t0 = Instant::now();
                    client.create_workload(request).await.expect("create");
                    latencies.push(t0.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let created = start.elapsed();
    let all_placed =
        tokio::time::timeout(Duration::from_secs(600), counter).await.expect("placed within 10 min").unwrap();
    let placing = all_placed.duration_since(start);
    latencies.sort_unstable();
    let total = per_task * concurrency;
    println!(
        "{nodes:>6} nodes  {total:>6} workloads  joined in {:>6.1} s  creates {:>7.0}/s (p50 {:>6.2} ms, p99 {:>6.2} ms)  placed {:>7.0}/s (all placed after {:>6.2} s)",
        join_time.as_secs_f64(),
        total as f64 / created.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        total as f64 / placing.as_secs_f64(),
        placing.as_secs_f64(),
    );
    // The placement engine alone: a backlog written to etcd while no scheduler runs, then
    // placed by one leader in guarded batches against the same nodes.
    served.trigger.trigger();
    let _ = served.running.task.await;
    for a in agents {
        a.kill();
    }
    let store = persys_scheduler::store::Store::new(kv.clone(), &prefix);
    let backlog = total;
    let writers: Vec<_> = (0..concurrency)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..backlog / concurrency {
                    let w = pb::Workload {
                        id: format!("backlog-{t:03}-{i:05}"),
                        name: format!("b-{t}-{i}"),
                        spec: Some(small_spec()),
                        status: Some(pb::WorkloadStatus::default()),
                        desired_state: pb::DesiredState::Running as i32,
                        owner_id: "bench".into(),
                        ..Default::default()
                    };
                    store.create_workload(&w, "").await.expect("backlog write");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let ca = Arc::new(persys_kit::pki::Ca::load(pki.ca.cert_pem(), pki.ca.key_pem()).unwrap());
    let (_leader, leading) = tokio::sync::watch::channel(Some(0));
    let settings = persys_scheduler::sched::Settings {
        heartbeat: Duration::from_secs(5),
        lease_ttl: Duration::from_secs(15),
        down_grace: Duration::from_secs(60),
        strategy: persys_scheduler::config::Strategy::Binpack,
        node_cert_ttl: Duration::from_secs(3600),
        dns_zone: None,
    };
    let core = persys_scheduler::sched::Scheduler::new(store, settings, ca, leading);
    let t0 = Instant::now();
    let mut placed = 0;
    loop {
        let n = core.place_pending().await.expect("placement pass");
        placed += n;
        if n == 0 {
            break;
        }
    }
    let took = t0.elapsed();
    println!(
        "{nodes:>6} nodes  backlog of {backlog} placed by one leader in {:>6.3} s: {:>7.0} placements/s ({placed} placed)",
        took.as_secs_f64(),
        placed as f64 / took.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let _logs = persys_kit::telemetry::init_with_endpoint(
        "placement-bench",
        &persys_kit::config::TelemetryArgs {
            log_format: persys_kit::config::LogFormat::Text,
            log_filter: std::env::var("PERSYS_LOG").unwrap_or_else(|_| "warn".into()),
            admin_listen: "off".into(),
        },
        None,
    );
    let Ok(endpoints) = std::env::var("PERSYS_TEST_ETCD_ENDPOINTS") else {
        eprintln!("PERSYS_TEST_ETCD_ENDPOINTS is not set: run this with scripts/bench placement");
        std::process::exit(2);
    };
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
    let kv = Arc::new(EtcdKv::connect(&endpoints).await.expect("etcd"));
    let concurrency = env_list("PERSYS_BENCH_CONCURRENCY", "64")[0];
    println!(
        "placement benchmark: real etcd, simulated agents with real mTLS streams; {concurrency} creates in flight"
    );
    for nodes in env_list("PERSYS_BENCH_NODES", "100,1000") {
        let workloads = env_list("PERSYS_BENCH_WORKLOADS", &(nodes * 2).max(1000).to_string())[0];
        let workloads = workloads / concurrency * concurrency;
        run(kv.clone(), nodes, workloads, concurrency).await;
    }
}
