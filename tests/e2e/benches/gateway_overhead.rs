//! Gateway overhead: unary 1 KiB calls straight to an upstream over mTLS versus the same calls
//! through the gateway (authenticated, mTLS to the upstream), in one run on one machine.
//!
//! Prints throughput and p50/p99 latency for both and the differences. Run with
//! `scripts/bench` (which builds the release binaries first). Knobs:
//! `PERSYS_BENCH_REQUESTS` (default 20000 per load phase), `PERSYS_BENCH_CONCURRENCY` (64),
//! `PERSYS_BENCH_ROUNDS` (5; each figure is the median over the rounds).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use persys_client::testing::AsUser;
use persys_e2e::stack::{Stack, StackOptions, bearer};
use persys_kit::{UserClaims, identity::Role};
use persys_proto::metrics::v1::{QueryRangeRequest, metrics_query_service_client::MetricsQueryServiceClient};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn request() -> QueryRangeRequest {
    QueryRangeRequest {
        node_ids: vec!["n1".into()],
        match_labels: [("payload".to_string(), "x".repeat(1024))].into(),
        ..Default::default()
    }
}

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `total` calls with `concurrency` in flight; returns throughput and latency percentiles.
async fn run<F, Fut>(total: usize, concurrency: usize, call: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let per_task = total / concurrency;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    call().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Figures { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: percentile(&all, 0.5), p99: percentile(&all, 0.99) }
}

/// Returns the median of each figure over rounds.
fn median(rounds: Vec<Figures>) -> Figures {
    let mid = rounds.len() / 2;
    let mut rps: Vec<f64> = rounds.iter().map(|f| f.rps).collect();
    let mut p50: Vec<Duration> = rounds.iter().map(|f| f.p50).collect();
    let mut p99: Vec<Duration> = rounds.iter().map(|f| f.p99).collect();
    rps.sort_by(f64::total_cmp);
    p50.sort_unstable();
    p99.sort_unstable();
    Figures { rps: rps[mid], p50: p50[mid], p99: p99[mid] }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_pair(title: &str, direct: &Figures, gateway: &Figures) {
    println!("\n{title}");
    println!("{:<22} {:>12} {:>12} {:>12}", "", "req/s", "p50 µs", "p99 µs");
    println!("{:<22} {:>12.0} {:>12.1} {:>12.1}", "direct (mTLS)", direct.rps, us(direct.p50), us(direct.p99));
    println!("{:<22} {:>12.0} {:>12.1} {:>12.1}", "through gateway", gateway.rps, us(gateway.p50), us(gateway.p99));
    println!(
        "{:<22} {:>11.0}% {:>+12.1} {:>+12.1}",
        "gateway vs direct",
        100.0 * gateway.rps / direct.rps,
        us(gateway.p50) - us(direct.p50),
        us(gateway.p99) - us(direct.p99)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env_or("PERSYS_BENCH_REQUESTS", 20_000);
    let concurrency = env_or("PERSYS_BENCH_CONCURRENCY", 64);
    let rounds = env_or("PERSYS_BENCH_ROUNDS", 5).max(1);
    let stack = Stack::start(StackOptions {
        upstream: true,
        gateway_args: vec!["--log-filter".into(), "warn".into()],
        ..Default::default()
    })
    .await?;
    let token = stack.admin_token().await;
    let upstream = stack.upstream.as_ref().expect("upstream").addr("grpc");

    let direct =
        MetricsQueryServiceClient::with_interceptor(stack.mtls_channel_as("gateway", upstream), gateway_user());
    let gateway = MetricsQueryServiceClient::with_interceptor(stack.public_channel(), bearer(token));
    let direct_call = {
        let c = direct.clone();
        move || {
            let mut c = c.clone();
            async move {
                c.query_range(request()).await.expect("direct call");
            }
        }
    };
    let gateway_call = {
        let c = gateway.clone();
        move || {
            let mut c = c.clone();
            async move {
                c.query_range(request()).await.expect("gateway call");
            }
        }
    };

    println!("gateway overhead benchmark: unary QueryRange, 1 KiB request and response");
    println!(
        "machine: {} cores; load phase: {total} requests, {concurrency} in flight",
        std::thread::available_parallelism()?
    );
    // Warm up connections, TLS sessions and allocators.
    run(2_000, 8, direct_call.clone()).await;
    run(2_000, 8, gateway_call.clone()).await;

    // Direct and gateway rounds alternate, and each figure is the median over the rounds, so
    // a slow moment of the machine does not land on one side only.
    let latency_n = (total / 4).max(1_000);
    let (mut d1, mut g1, mut d, mut g) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        d1.push(run(latency_n, 1, direct_call.clone()).await);
        g1.push(run(latency_n, 1, gateway_call.clone()).await);
    }
    print_pair(
        &format!("latency: one call in flight, {latency_n} calls, median of {rounds} rounds"),
        &median(d1),
        &median(g1),
    );
    for _ in 0..rounds {
        d.push(run(total, concurrency, direct_call.clone()).await);
        g.push(run(total, concurrency, gateway_call.clone()).await);
    }
    print_pair(
        &format!("throughput: {concurrency} calls in flight, {total} calls, median of {rounds} rounds"),
        &median(d),
        &median(g),
    );

    stack.gateway.stop().await?;
    Ok(())
}

/// What the gateway attaches: the upstream sees the same metadata either way.
fn gateway_user() -> AsUser {
    AsUser::new(UserClaims { id: "bench".into(), name: "admin".into(), role: Role::Admin })
}
