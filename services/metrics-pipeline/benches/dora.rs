//! The DORA pipeline's throughput against local GitHub and DevLake fakes (the ones the tests
//! use): deployment events recorded over mTLS gRPC (32 at a time), then resolved (revision
//! commit, compare against the previous image tag) and posted to DevLake by the worker, timed
//! until every one is SENT; beside it, in the same run, the ceiling of posting the same number of
//! bodies straight to the DevLake fake. Prints figures; asserts only exactly-once delivery.
//! Needs `PERSYS_TEST_PG_ADMIN_URL` (`scripts/bench dora` starts one).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{
    Pipeline,
    fakes::{FakeCommit, FakeDevlake, FakeGithub, sha},
    now_ms,
};
use persys_proto::metrics::v1::{DevlakePushState, RecordDeploymentRequest};

const COMPONENTS: usize = 50;
const CONCURRENCY: usize = 32;

fn rate(n: usize, d: Duration) -> String {
    format!("{:>8.0} events/s ({n} in {:.2} s)", n as f64 / d.as_secs_f64(), d.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var("PERSYS_TEST_PG_ADMIN_URL").is_err() {
        anyhow::bail!("PERSYS_TEST_PG_ADMIN_URL is not set: run `scripts/bench dora`");
    }
    let n: usize = std::env::var("PERSYS_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let per = n / COMPONENTS;
    let t0 = now_ms() - 86_400_000;

    // Each component: a line of image commits; every deployment a GitOps revision of its own.
    let github = FakeGithub::default();
    let revisions: Vec<FakeCommit> = (0..n)
        .map(|i| FakeCommit { sha: sha(&format!("rev{i}")), message: "bump".into(), authored_ms: Some(t0) })
        .collect();
    github.push("acme/infra", revisions.clone());
    for c in 0..COMPONENTS {
        let line = (0..per).map(|i| FakeCommit {
            sha: sha(&format!("c{c}-{i}")),
            message: format!("change {i}"),
            authored_ms: Some(t0 + i as i64 * 1000),
        });
        github.push(&format!("acme/svc{c}"), line);
    }
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;

    // Baseline: the same number of posts straight to the fake, as concurrent as the worker's.
    let http = persys_kit::http::client(None, "bench")?;
    let body = serde_json::json!({"id": "x", "startedDate": "2026-12-01T00:00:00+00:00",
        "finishedDate": "2026-12-01T00:00:00+00:00", "deploymentCommits": [{"repoUrl": "https://github.com/acme/infra", "commitSha": sha("rev0")}]});
    let url = format!("{dl}/api/rest/plugins/webhook/connections/9/deployments");
    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut posts = Vec::new();
    for i in 0..n {
        let (http, url, sem) = (http.clone(), url.clone(), sem.clone());
        let mut b = body.clone();
        b["id"] = format!("baseline-{i}").into();
        posts.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let request = http::Request::post(url)
                .header("authorization", "Bearer dl-key")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(b.to_string())))
                .unwrap();
            persys_kit::http::send(&http, request, Duration::from_secs(10)).await.unwrap().status.is_success()
        }));
    }
    for p in posts {
        assert!(p.await?);
    }
    let baseline = started.elapsed();

    let Some(p) = Pipeline::start_with(|a| {
        a.github_api_url = gh.clone();
        a.dora_image_repos = (0..COMPONENTS)
            .map(|c| (format!("quay.io/acme/svc{c}"), format!("https://github.com/acme/svc{c}")))
            .collect();
        a.devlake_url = Some(dl.clone());
        a.devlake_connections = vec!["7".into()];
        a.devlake_token = Some("dl-key".to_owned().into());
        a.database_max_connections = 16;
    })
    .await
    else {
        anyhow::bail!("no PostgreSQL");
    };
    let client = p.dora_service("reconciler");
    let started = Instant::now();
    let mut calls = Vec::new();
    for (i, rev) in revisions.iter().enumerate() {
        let (c, k) = (i % COMPONENTS, i / COMPONENTS);
        let r = RecordDeploymentRequest {
            application: format!("svc{c}-east"),
            cluster: "east".into(),
            revision: rev.sha.clone(),
            source_repo_url: "https://github.com/acme/infra".into(),
            source_path: "apps/production".into(),
            images: vec![format!("quay.io/acme/svc{c}:{}", &sha(&format!("c{c}-{k}"))[..12])],
            sync_status: "Synced".into(),
            health_status: "Healthy".into(),
            deployed_at: Some(prost_types::Timestamp { seconds: (t0 / 1000) + 3600 + k as i64 * 60, nanos: 0 }),
            ..RecordDeploymentRequest::default()
        };
        let (mut client, sem) = (client.clone(), sem.clone());
        calls.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            client.record_deployment(r).await.map(|_| ())
        }));
    }
    for c in calls {
        c.await??;
    }
    let recorded = started.elapsed();
    let pool = p.running.store.postgres().expect("PostgreSQL").clone();
    loop {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE push_state = $1")
            .bind(DevlakePushState::Pending as i16)
            .fetch_one(&pool)
            .await?;
        if pending == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(600), "{pending} deployments still pending after 10 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = started.elapsed();
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE push_state = $1")
        .bind(DevlakePushState::Sent as i16)
        .fetch_one(&pool)
        .await?;
    let mut ids: Vec<String> =
        devlake.posts().iter().map(|(_, b)| b["id"].as_str().unwrap_or_default().to_owned()).collect();
    ids.retain(|id| !id.starts_with("baseline-"));
    let posted = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((sent as usize, posted, ids.len()), (n, n, n), "every deployment sent exactly once");

    println!("DORA pipeline, {n} deployment events ({COMPONENTS} components, {CONCURRENCY} concurrent calls)");
    println!("  baseline: posts straight to the DevLake fake   {}", rate(n, baseline));
    println!("  RecordDeployment over mTLS gRPC (stored)        {}", rate(n, recorded));
    println!("  recorded, resolved on GitHub and sent to DevLake {}", rate(n, delivered));
    println!("  GitHub calls: {}, DevLake posts: {posted}, each deployment once", github.calls().len());
    p.finish().await;
    Ok(())
}
