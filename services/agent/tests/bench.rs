//! Benchmark, printed only (no timed assertion): the real `agent` binary against the fake
//! scheduler. Prints its idle RSS once connected, and the time from sending RunInstance to
//! the RUNNING status event next to a plain `docker run -d` of the same image, as a ratio.
//!
//! `cargo nextest run -p persys-agent --test bench --no-capture` (add `--release` for release
//! figures).

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::{
    docker::{self, Cleanup, engine},
    scheduler::{FakeScheduler, Received},
};
use persys_proto::scheduler::v1::{WorkloadPhase, connect_request::Payload, connect_response};

const ROUNDS: usize = 7;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_idle_rss_and_container_start_ratio() {
    let Some((host, image)) = engine() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut fake = FakeScheduler::start(tmp.path(), Duration::from_secs(3600)).await;
    let state = tmp.path().join("agent");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"))
        .env("PERSYS_AGENT_SCHEDULER", format!("https://localhost:{}", fake.mtls_addr.port()))
        .env("PERSYS_AGENT_BOOTSTRAP", format!("https://localhost:{}", fake.bootstrap_addr.port()))
        .env("PERSYS_AGENT_JOIN_TOKEN", common::scheduler::TOKEN)
        .env("PERSYS_AGENT_CA_FILE", fake.ca_file())
        .env("PERSYS_AGENT_STATE_DIR", &state)
        .env("PERSYS_AGENT_DOCKER_HOST", &host)
        .env("PERSYS_AGENT_NETWORK_MODE", "none")
        .env("PERSYS_AGENT_ADMIN_API_LISTEN", "off")
        .env("PERSYS_ADMIN_LISTEN", "off")
        .env("PERSYS_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let hello =
        fake.expect("hello", |r: &Received| matches!(r.message, Payload::Hello(_)).then(|| r.node.clone())).await;
    let _cleanup = Cleanup::new(&host, &hello);
    // Idle: connected, a few heartbeats exchanged, nothing running.
    for _ in 0..5 {
        fake.expect("heartbeat", |r| matches!(r.message, Payload::Heartbeat(_)).then_some(())).await;
    }
    let idle = rss_kib(pid);

    let mut through_agent = Vec::new();
    let mut plain = Vec::new();
    for round in 0..ROUNDS {
        let run = docker::run_sh(&hello, &format!("bench{round}"), &image, "sleep 300");
        let started = Instant::now();
        fake.send(&format!("c{round}"), connect_response::Payload::Run(run.clone())).await;
        let id = run.instance_id.clone();
        fake.expect("running", |r| match &r.message {
            Payload::WorkloadStatus(e)
                if e.status
                    .as_ref()
                    .is_some_and(|s| s.instance_id == id && s.phase == WorkloadPhase::Running as i32) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
        through_agent.push(started.elapsed());

        let name = format!("{hello}-plain{round}");
        let started = Instant::now();
        let status = std::process::Command::new("docker")
            .args(["-H", &host, "run", "-d", "--network", "none", "--name", &name])
            .args(["--label", &format!("persys.node-id={hello}"), &image, "sleep", "300"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        plain.push(started.elapsed());
        assert!(status.success());
    }
    let busy = rss_kib(pid);
    let (a, p) = (median(through_agent), median(plain));
    println!(
        "agent idle RSS: {:.1} MiB ({idle} KiB); after {ROUNDS} runs: {:.1} MiB",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0
    );
    println!(
        "container start, median of {ROUNDS}: through the agent {:.1} ms (RunInstance -> RUNNING event), plain `docker run -d` {:.1} ms, ratio {:.2}",
        a.as_secs_f64() * 1000.0,
        p.as_secs_f64() * 1000.0,
        a.as_secs_f64() / p.as_secs_f64()
    );
    child.kill().await.unwrap();
}
