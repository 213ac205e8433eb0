//! The agent's idle footprint with host metrics on: two real agents join a real scheduler with
//! the Docker driver, one shipping a host sample every `PERSYS_BENCH_INTERVAL` (5s) to the real
//! metrics pipeline over mTLS, the other without metrics (the baseline, in the same run). Over
//! `PERSYS_BENCH_SECONDS` (60) of idling it reads each process's CPU time (utime + stime, all
//! threads, from /proc) and its resident memory now and at its peak (VmRSS, VmHWM), and counts
//! the samples the pipeline received. Prints figures; asserts only that the samples arrived.
//! Needs PostgreSQL and Docker: `scripts/bench agent_footprint` starts both.

use std::time::{Duration, Instant, SystemTime};

use persys_e2e::{
    cluster::{Cluster, ClusterOptions, start_agent},
    stack::{ADMIN, ADMIN_PASSWORD, bearer},
};
use persys_proto::{
    gateway::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    metrics::v1::{WatchHostMetricsRequest, metrics_query_service_client::MetricsQueryServiceClient},
    scheduler::v1::{CreateJoinTokenRequest, scheduler_service_client::SchedulerServiceClient},
};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set: run `scripts/bench agent_footprint`"))
}

/// CPU seconds the process has used (all its threads), from /proc/PID/stat.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) in parentheses; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / ticks_per_s)
}

/// VmRSS and VmHWM in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = env("PERSYS_TEST_DATABASE_URL")?;
    let docker_host = env("DOCKER_HOST")?;
    let interval = std::env::var("PERSYS_BENCH_INTERVAL").unwrap_or_else(|_| "5s".into());
    let window =
        Duration::from_secs(std::env::var("PERSYS_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60));
    let ticks_per_s: f64 =
        String::from_utf8(std::process::Command::new("getconf").arg("CLK_TCK").output()?.stdout)?.trim().parse()?;
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_nanos();
    let cluster = Cluster::start(ClusterOptions {
        metrics: Some((database_url, format!("bench_footprint_{nanos:x}"))),
        ..Default::default()
    })
    .await?;
    let channel = persys_kit::client::plain_channel(&cluster.url(), &Default::default())?;
    let token = AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: ADMIN.into(), password: ADMIN_PASSWORD.into() })
        .await?
        .into_inner()
        .access_token;
    let mut scheduler = SchedulerServiceClient::with_interceptor(channel.clone(), bearer(&token));
    let mut query = MetricsQueryServiceClient::with_interceptor(channel, bearer(&token));
    let pipeline = cluster.metrics.as_ref().expect("asked for").addr("grpc");
    let scheduler_service = cluster.scheduler.as_ref().expect("running");

    let with_node = format!("fp-metrics-{:x}", nanos % 0xffff_ffff);
    let without_node = format!("fp-plain-{:x}", nanos % 0xffff_ffff);
    let join = |s: &mut SchedulerServiceClient<_>| {
        let mut s = s.clone();
        async move { anyhow::Ok(s.create_join_token(CreateJoinTokenRequest::default()).await?.into_inner().token) }
    };
    let metrics_flags: Vec<String> =
        ["--metrics-pipeline", &format!("https://localhost:{}", pipeline.port()), "--metrics-interval", &interval]
            .map(String::from)
            .to_vec();
    let quiet = ["--log-filter".to_owned(), "warn".to_owned()];
    let mut watch = query
        .watch_host_metrics(WatchHostMetricsRequest { node_ids: Vec::new(), ..Default::default() })
        .await?
        .into_inner();
    let with = start_agent(
        cluster.dir.path(),
        &cluster.certs(),
        scheduler_service,
        &with_node,
        &join(&mut scheduler).await?,
        &docker_host,
        &[metrics_flags.as_slice(), &quiet].concat(),
    )
    .await?;
    let without = start_agent(
        cluster.dir.path(),
        &cluster.certs(),
        scheduler_service,
        &without_node,
        &join(&mut scheduler).await?,
        &docker_host,
        &quiet,
    )
    .await?;
    let (with_pid, without_pid) = (with.pid().expect("running"), without.pid().expect("running"));

    // Settle: the first sample has reached the pipeline (the agent is connected and shipping).
    let until_sample = async {
        loop {
            let event = watch.message().await?.ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
            if event.metrics.is_some_and(|m| m.node_id == with_node) {
                return anyhow::Ok(());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), until_sample).await??;

    let start = Instant::now();
    let cpu0 = (cpu_seconds(with_pid, ticks_per_s)?, cpu_seconds(without_pid, ticks_per_s)?);
    let mut samples = 0u64;
    let counting = async {
        loop {
            let Some(event) = watch.message().await? else { return anyhow::Ok(()) };
            if event.metrics.is_some_and(|m| m.node_id == with_node) {
                samples += 1;
            }
        }
    };
    let _ = tokio::time::timeout(window, counting).await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = (cpu_seconds(with_pid, ticks_per_s)?, cpu_seconds(without_pid, ticks_per_s)?);
    let (with_mem, without_mem) = (memory_kib(with_pid)?, memory_kib(without_pid)?);

    let percent = |a: f64, b: f64| (b - a) / elapsed * 100.0;
    println!(
        "agent footprint, idle (connected, heartbeating, no containers) over {elapsed:.0} s, CLK_TCK {ticks_per_s}"
    );
    println!("                                         CPU % of one core   RSS MiB   peak RSS MiB");
    println!(
        "  metrics on, a sample every {interval:<6}     {:>14.3}   {:>7.1}   {:>12.1}",
        percent(cpu0.0, cpu1.0),
        with_mem.0 as f64 / 1024.0,
        with_mem.1 as f64 / 1024.0
    );
    println!(
        "  metrics off (baseline)               {:>14.3}   {:>7.1}   {:>12.1}",
        percent(cpu0.1, cpu1.1),
        without_mem.0 as f64 / 1024.0,
        without_mem.1 as f64 / 1024.0
    );
    println!("  samples the pipeline received from the metrics agent in the window: {samples}");
    anyhow::ensure!(samples > 0, "no host sample reached the pipeline during the window");
    with.stop().await?;
    without.stop().await?;
    Ok(())
}
