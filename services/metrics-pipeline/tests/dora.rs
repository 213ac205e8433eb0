//! DORA end to end: deployments recorded over mTLS gRPC into real PostgreSQL, commits resolved
//! from a GitHub fake, sent to a DevLake fake that validates as DevLake does, deduplicated
//! across replicas (one database) and clusters (separate databases, a real Redis, restarted
//! mid-flight), and the four keys checked against hand-computed values.

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{
    Pipeline,
    fakes::{FakeCommit, FakeDevlake, FakeGithub, sha},
    now_ms,
};
use persys_kit::identity::Role;
use persys_metrics_pipeline::{
    config::ServeArgs,
    dora::{
        github::{Auth, Github, GithubError},
        github_app::AppCredentials,
    },
};
use persys_proto::{
    common::v1::TimeRange,
    metrics::v1::{
        Deployment, DeploymentEnvironment, DeploymentStatus, DevlakePushState, DoraPerformanceLevel as Level,
        GetDeploymentRequest, GetDoraMetricsRequest, ListDeploymentsRequest, RecordDeploymentRequest,
        RetryDevlakePushRequest,
    },
};
use tonic::Code;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: 0 }
}

fn commit(seed: &str, authored_ms: i64) -> FakeCommit {
    FakeCommit { sha: sha(seed), message: format!("{seed}: change\n\nbody"), authored_ms: Some(authored_ms) }
}

/// Points the pipeline at the fakes, with quick retries.
fn wire(args: &mut ServeArgs, github: &str, devlake: Option<&str>) {
    args.github_api_url = github.to_owned();
    args.github_token = Some("gh-token".to_owned().into());
    args.dora_image_repos = vec![("quay.io/acme/ui".into(), "https://github.com/acme/ui".into())];
    if let Some(devlake) = devlake {
        args.devlake_url = Some(devlake.to_owned());
        args.devlake_connections = vec!["7".into()];
        args.devlake_token = Some("dl-key".to_owned().into());
    }
    args.devlake_backoff = Duration::from_millis(40);
}

fn request(app: &str, cluster: &str, revision: &str, images: &[String], deployed_ms: i64) -> RecordDeploymentRequest {
    RecordDeploymentRequest {
        application: app.into(),
        argocd_namespace: "argocd".into(),
        cluster: cluster.into(),
        revision: revision.into(),
        source_repo_url: "https://github.com/acme/infra.git".into(),
        source_path: "apps/production".into(),
        images: images.to_vec(),
        sync_status: "Synced".into(),
        health_status: "Healthy".into(),
        deployed_at: Some(ts(deployed_ms)),
        ..RecordDeploymentRequest::default()
    }
}

/// Polls `get` until it returns `Some`, or panics with `what` after `limit`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut get: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = get().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until deployment `id` has left PENDING; returns it.
async fn settled(p: &Pipeline, id: &str) -> Deployment {
    eventually(&format!("deployment {id} to settle"), Duration::from_secs(30), || async {
        let d = p.running.dora.deployments().get(id).await.unwrap()?;
        (d.devlake.as_ref()?.state != DevlakePushState::Pending as i32).then_some(d)
    })
    .await
}

fn state(d: &Deployment) -> DevlakePushState {
    DevlakePushState::try_from(d.devlake.as_ref().unwrap().state).unwrap()
}

fn shas(d: &Deployment) -> Vec<String> {
    let mut v: Vec<String> = d.commits.iter().map(|c| c.sha.clone()).collect();
    v.sort();
    v
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| sha(s)).collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_seeds_three_applications_reach_devlake_as_they_should() {
    let t0 = now_ms();
    let github = FakeGithub::default();
    github.require_token("gh-token");
    github.push("acme/infra", [commit("r1", t0 - 3 * HOUR), commit("r2", t0 - 2 * HOUR)]);
    github.push("acme/ui", [commit("a", t0 - 5 * HOUR), commit("b", t0 - 4 * HOUR), commit("c", t0 - HOUR)]);
    github.push("acme/api", [commit("x", t0 - 6 * HOUR)]);
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let Some(p) = Pipeline::start_with(|a| wire(a, &gh, Some(&dl))).await else { return };
    let mut reconciler = p.dora_service("reconciler");
    // The first GitHub call meets a spent rate limit: everything waits for the reset.
    github.rate_limit_next(1);

    let ui_image = format!("quay.io/acme/ui:{}", &sha("a")[..7]);
    let images = [ui_image.clone(), "quay.io/acme/sidecar:latest".into()];
    let (r1, r2) = (sha("r1"), sha("r2"));
    let ui_east = request("ui-east", "east", &r1, &images, t0 - 30 * 60_000);
    let first = reconciler.record_deployment(ui_east.clone()).await.unwrap().into_inner();
    assert!(!first.duplicate);
    let api = request("api-east", "east", &r2, &[format!("quay.io/acme/api:{}", &sha("x")[..12])], t0 - 29 * 60_000);
    reconciler.record_deployment(api).await.unwrap();
    let again = reconciler.record_deployment(ui_east.clone()).await.unwrap().into_inner();
    assert!(again.duplicate, "the same event twice is one deployment");
    let east = settled(&p, &format!("ui:east:production:{r1}")).await;
    let api = settled(&p, &format!("api:east:production:{r2}")).await;
    // The same revision of ui in another cluster.
    let ui_west = RecordDeploymentRequest { application: "ui-west".into(), cluster: "west".into(), ..ui_east.clone() };
    reconciler.record_deployment(ui_west).await.unwrap();
    let west = settled(&p, &format!("ui:west:production:{r1}")).await;
    assert_eq!(state(&east), DevlakePushState::Sent, "{east:?}");
    assert_eq!(state(&api), DevlakePushState::Sent, "{api:?}");
    assert_eq!(state(&west), DevlakePushState::Skipped, "{west:?}");
    assert!(west.devlake.as_ref().unwrap().last_error.contains("sent already"), "{west:?}");

    // Exactly the posts the seed's scenario calls for: ui once (two clusters), api once.
    let posts = devlake.posts();
    let ids: Vec<&str> = posts.iter().map(|(_, b)| b["id"].as_str().unwrap()).collect();
    assert_eq!(posts.len(), 2, "{ids:?}");
    assert_eq!(devlake.posts_of(&format!("ui:production:{r1}")).len(), 1);
    assert_eq!(devlake.posts_of(&format!("api:production:{r2}")).len(), 1);
    assert!(devlake.refused().is_empty(), "{:?}", devlake.refused());
    let (connection, ui_body) = &devlake.posts_of(&format!("ui:production:{r1}"))[0];
    assert_eq!(connection, "7");
    let mut posted: Vec<String> = ui_body["deploymentCommits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["commitSha"].as_str().unwrap().to_owned())
        .collect();
    posted.sort();
    assert_eq!(posted, sorted(&["r1", "a"]), "the GitOps revision and the image's commit");
    assert_eq!(shas(&api), sorted(&["r2", "x"]), "api's repository was found by commit search");

    // Images: the SHA in full, the tag that is no commit with its reason.
    assert_eq!(east.images[0].commit_sha, sha("a"));
    assert!(east.images[1].skip_reason.contains("not a commit SHA"), "{:?}", east.images[1]);
    assert_eq!(east.started_at.unwrap().seconds, (t0 - 5 * HOUR) / 1000, "earliest author date");
    let lead = east.lead_time.unwrap().seconds;
    assert_eq!(lead, (t0 - 30 * 60_000) / 1000 - (t0 - 5 * HOUR) / 1000);
    assert!(github.not_modified() >= 1, "west's lookups of the same commits were answered from the ETag cache");

    // The next ui deployment delivers the commits after `a` up to `c`, not `a` again.
    github.push("acme/infra", [commit("r3", t0 - 20 * 60_000)]);
    let r3 = sha("r3");
    let next = request("ui-east", "east", &r3, &[format!("quay.io/acme/ui:{}", &sha("c")[..10])], t0 - 10 * 60_000);
    reconciler.record_deployment(next).await.unwrap();
    let next = settled(&p, &format!("ui:east:production:{r3}")).await;
    assert_eq!(state(&next), DevlakePushState::Sent);
    assert_eq!(shas(&next), sorted(&["r3", "b", "c"]), "compare a...c, and the revision");
    assert!(!next.commits_truncated);
    assert_eq!(devlake.posts().len(), 3);

    // Reads: newest first, filtered.
    let mut viewer = p.dora_as("vera", Role::Viewer);
    let list = viewer
        .list_deployments(ListDeploymentsRequest { component: "ui".into(), ..ListDeploymentsRequest::default() })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = list.deployments.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [next.id.as_str(), east.id.as_str(), west.id.as_str()], "newest first, then by id");
    assert_eq!(list.page.unwrap().total_size, Some(3));
    p.finish().await;
}

#[tokio::test]
async fn devlake_outages_are_retried_refusals_fail_and_an_admin_retries_them() {
    let t0 = now_ms();
    let github = FakeGithub::default();
    github.push("acme/infra", [commit("i1", t0 - HOUR), commit("i2", t0 - HOUR), commit("i3", t0 - HOUR)]);
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let Some(p) = Pipeline::start_with(|a| wire(a, &gh, Some(&dl))).await else { return };
    let mut reconciler = p.dora_service("reconciler");

    // Down twice, then accepted: sent once, on the third attempt.
    devlake.fail_next(2);
    reconciler.record_deployment(request("svc-c1", "c1", &sha("i1"), &[], t0 - HOUR)).await.unwrap();
    let d = settled(&p, &format!("svc:c1:production:{}", sha("i1"))).await;
    assert_eq!(state(&d), DevlakePushState::Sent, "{d:?}");
    assert_eq!(d.devlake.as_ref().unwrap().attempts, 3);
    assert_eq!(devlake.posts_of(&d.devlake_id).len(), 1);
    // The admin port counts the attempts the same way.
    let exposed = common::http_get(p.running.admin.unwrap(), "/metrics").await;
    for line in [
        "persys_dora_devlake_pushes_total{outcome=\"retried\"} 2",
        "persys_dora_devlake_pushes_total{outcome=\"sent\"} 1",
        "persys_dora_deployments_recorded_total 1",
    ] {
        assert!(exposed.contains(line), "{line} missing from /metrics:\n{exposed}");
    }

    // Refused (the API key was rotated): failed at once, without retries.
    devlake.set_token("new-key");
    reconciler.record_deployment(request("svc-c1", "c1", &sha("i2"), &[], t0 - HOUR / 2)).await.unwrap();
    let failed = settled(&p, &format!("svc:c1:production:{}", sha("i2"))).await;
    assert_eq!(state(&failed), DevlakePushState::Failed);
    assert_eq!(failed.devlake.as_ref().unwrap().attempts, 1);
    assert!(failed.devlake.as_ref().unwrap().last_error.contains("401"), "{failed:?}");

    let mut member = p.dora_as("mia", Role::Member);
    let denied = member.retry_devlake_push(RetryDevlakePushRequest { id: failed.id.clone() }).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = member.record_deployment(request("svc-c1", "c1", &sha("i3"), &[], t0)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "members cannot record deployments");
    let mut admin = p.dora_as("ada", Role::Admin);
    let sent = admin.retry_devlake_push(RetryDevlakePushRequest { id: d.id.clone() }).await.unwrap_err();
    assert_eq!(sent.code(), Code::FailedPrecondition, "only a FAILED push is retried");
    devlake.set_token("dl-key");
    admin.retry_devlake_push(RetryDevlakePushRequest { id: failed.id.clone() }).await.unwrap();
    let retried = settled(&p, &failed.id).await;
    assert_eq!(state(&retried), DevlakePushState::Sent);
    assert_eq!(devlake.posts_of(&failed.devlake_id).len(), 1);

    // A deployment with no commit GitHub knows is kept, with the reasons, and not sent.
    let unknown = RecordDeploymentRequest {
        source_repo_url: String::new(),
        ..request("web-c1", "c1", "deadbeef", &["quay.io/acme/ui:abcdef1234".into(), "bad image".into()], t0)
    };
    reconciler.record_deployment(unknown).await.unwrap();
    let kept = settled(&p, "web:c1:production:deadbeef").await;
    assert_eq!(state(&kept), DevlakePushState::Skipped);
    assert!(kept.commits.is_empty());
    assert!(kept.images[0].skip_reason.contains("GitHub knows no commit"), "{:?}", kept.images);
    assert!(kept.images[1].skip_reason.contains("contains"), "{:?}", kept.images);

    // GitHub answering garbage is retried, then given up with the reason in the record.
    github.garbage_next(1000);
    reconciler.record_deployment(request("svc-c1", "c1", &sha("i3"), &[], t0)).await.unwrap();
    let garbage = settled(&p, &format!("svc:c1:production:{}", sha("i3"))).await;
    assert_eq!(state(&garbage), DevlakePushState::Skipped);
    assert!(garbage.warnings.iter().any(|w| w.contains("gave up") && w.contains("not JSON")), "{:?}", garbage.warnings);
    github.garbage_next(0);
    p.finish().await;
}

#[tokio::test]
async fn replicas_on_one_database_send_each_deployment_once() {
    let t0 = now_ms();
    let github = FakeGithub::default();
    let revisions: Vec<FakeCommit> = (0..24).map(|i| commit(&format!("rev{i}"), t0 - HOUR)).collect();
    github.push("acme/infra", revisions.clone());
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let Some(p) = Pipeline::start_with(|a| wire(a, &gh, Some(&dl))).await else { return };
    let (replica, stop) = p.replica(|a| wire(a, &gh, Some(&dl))).await;
    let mut one = p.dora_service("reconciler");
    let mut two = persys_proto::metrics::v1::dora_service_client::DoraServiceClient::new(
        common::connection(p.certs.path(), replica.addr.port(), "reconciler").channel(),
    );
    let mut calls = Vec::new();
    for (i, c) in revisions.iter().enumerate() {
        let r = request(&format!("app{}-c1", i % 4), "c1", &c.sha, &[], t0 - HOUR + i as i64 * 1000);
        // Every event reaches both replicas at once, as two watchers would deliver it.
        let (mut a, mut b) = (one.clone(), two.clone());
        let (ra, rb) = (r.clone(), r);
        calls.push(tokio::spawn(async move { a.record_deployment(ra).await.map(|r| r.into_inner().duplicate) }));
        calls.push(tokio::spawn(async move { b.record_deployment(rb).await.map(|r| r.into_inner().duplicate) }));
    }
    let mut fresh = 0;
    for c in calls {
        if !c.await.unwrap().unwrap() {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 24, "each event is recorded once whichever replica gets it first");
    for (i, c) in revisions.iter().enumerate() {
        let d = settled(&p, &format!("app{}:c1:production:{}", i % 4, c.sha)).await;
        assert_eq!(state(&d), DevlakePushState::Sent, "{d:?}");
    }
    let posts = devlake.posts();
    let mut ids: Vec<&str> = posts.iter().map(|(_, b)| b["id"].as_str().unwrap()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (24, 24), "every deployment posted, none twice");
    let _ = (&mut one, &mut two);
    stop.trigger();
    let _ = replica.served.await;
    p.finish().await;
}

/// A Redis server of a test's own, keeping its keys in an append-only file over a restart.
struct OwnRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Option<Self> {
        if std::process::Command::new("redis-server").arg("--version").output().is_err() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is not installed: scripts/test installs it"
            );
            eprintln!("SKIPPED: redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut me = Self { dir: tempfile::tempdir().unwrap(), port, child: None };
        me.restart();
        Some(me)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let start = Instant::now();
        while !ping(addr) {
            assert!(start.elapsed() < Duration::from_secs(10), "redis did not answer PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
}

#[tokio::test]
async fn clusters_with_their_own_databases_send_once_through_redis_even_over_a_redis_restart() {
    let t0 = now_ms();
    let Some(mut redis) = OwnRedis::start() else { return };
    let github = FakeGithub::default();
    github.push("acme/infra", [commit("shared", t0 - HOUR)]);
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let url = redis.url();
    let config = |a: &mut ServeArgs| {
        wire(a, &gh, Some(&dl));
        a.redis_url = Some(url.clone().into());
        a.redis_prefix = "test:dora".into();
    };
    let Some(east) = Pipeline::start_with(config).await else { return };
    let Some(west) = Pipeline::start_with(config).await else { return };
    let rev = sha("shared");

    // East claims the DevLake id and posts; DevLake holds the answer while Redis dies.
    devlake.hold();
    east.dora_service("reconciler")
        .record_deployment(request("shop-east", "east", &rev, &[], t0 - 60_000))
        .await
        .unwrap();
    eventually("east's post to reach DevLake", Duration::from_secs(20), || async {
        (devlake.held() == 1).then_some(())
    })
    .await;
    redis.kill();
    devlake.release();
    eventually("the post to be accepted", Duration::from_secs(20), || async {
        (devlake.posts().len() == 1).then_some(())
    })
    .await;

    // West sees the same revision while Redis is down: it waits, it does not post.
    west.dora_service("reconciler")
        .record_deployment(request("shop-west", "west", &rev, &[], t0 - 50_000))
        .await
        .unwrap();
    let west_id = format!("shop:west:production:{rev}");
    eventually("west to wait for Redis", Duration::from_secs(20), || async {
        let d = west.running.dora.deployments().get(&west_id).await.unwrap()?;
        d.devlake.as_ref()?.last_error.contains("Redis").then_some(())
    })
    .await;
    let east_id = format!("shop:east:production:{rev}");
    let pending = east.running.dora.deployments().get(&east_id).await.unwrap().unwrap();
    assert_eq!(state(&pending), DevlakePushState::Pending, "east cannot mark it sent without Redis");

    redis.restart();
    let sent = settled(&east, &east_id).await;
    let skipped = settled(&west, &west_id).await;
    assert_eq!(state(&sent), DevlakePushState::Sent, "{sent:?}");
    assert_eq!(state(&skipped), DevlakePushState::Skipped, "{skipped:?}");
    assert!(skipped.devlake.as_ref().unwrap().last_error.contains("sent already"), "{skipped:?}");
    assert_eq!(
        devlake.posts_of(&format!("shop:production:{rev}")).len(),
        1,
        "one post across clusters and a Redis restart"
    );
    east.finish().await;
    west.finish().await;
}

#[tokio::test]
async fn the_four_keys_match_a_hand_computed_history() {
    // Monday 2026-11-02 00:00 UTC.
    let t = 1_793_577_600_000;
    let github = FakeGithub::default();
    github.push(
        "acme/ui",
        [
            commit("s1", t + DAY - 2 * HOUR),
            commit("s2", t + 2 * DAY - 10 * HOUR),
            commit("s3", t + 2 * DAY - 4 * HOUR),
            commit("s4", t + 3 * DAY - HOUR),
            commit("s5", t + 9 * DAY - 30 * HOUR),
            commit("s6", t + 10 * DAY - HOUR),
        ],
    );
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let Some(p) = Pipeline::start_with(|a| wire(a, &gh, Some(&dl))).await else { return };
    let mut reconciler = p.dora_service("reconciler");
    let image = |s: &str| vec![format!("quay.io/acme/ui:{}", &sha(s)[..12])];
    let history = [
        ("d1", t + DAY, "Healthy", "Synced", "s1"),
        ("d2", t + 2 * DAY, "Healthy", "Synced", "s3"),
        ("d3", t + 3 * DAY, "Degraded", "Synced", "s4"),
        ("d4", t + 3 * DAY + 3 * HOUR, "Missing", "OutOfSync", "s4"),
        ("d5", t + 3 * DAY + 5 * HOUR, "Healthy", "Synced", "s4"),
        ("d6", t + 9 * DAY, "Healthy", "Synced", "s5"),
        ("d7", t + 10 * DAY, "Degraded", "Synced", "s6"),
    ];
    for (rev, at, health, sync, s) in history {
        let r = RecordDeploymentRequest {
            source_repo_url: String::new(),
            health_status: health.into(),
            sync_status: sync.into(),
            ..request("shop-c1", "c1", &format!("{rev}0000"), &image(s), at)
        };
        reconciler.record_deployment(r).await.unwrap();
    }
    // Neither another environment nor another component counts.
    let staging = RecordDeploymentRequest {
        source_repo_url: String::new(),
        source_path: "apps/staging".into(),
        health_status: "Degraded".into(),
        ..request("shop-c1", "c1", "st10000", &image("s2"), t + 4 * DAY)
    };
    reconciler.record_deployment(staging).await.unwrap();
    let other = RecordDeploymentRequest {
        source_repo_url: String::new(),
        health_status: "Degraded".into(),
        ..request("cart-c1", "c1", "ca10000", &image("s2"), t + 4 * DAY)
    };
    reconciler.record_deployment(other).await.unwrap();
    for (rev, ..) in history {
        settled(&p, &format!("shop:c1:production:{rev}0000")).await;
    }
    let d3 = settled(&p, "shop:c1:production:d30000").await;
    assert_eq!(d3.status, DeploymentStatus::Failed as i32);
    assert_eq!(devlake.posts_of(&d3.devlake_id)[0].1["result"], "FAILURE");
    let d5 = settled(&p, "shop:c1:production:d50000").await;
    assert_eq!(devlake.posts_of(&d5.devlake_id)[0].1["result"], "SUCCESS");
    assert_eq!(shas(&d5), sorted(&["s4"]), "d5 delivers s4 against d2, the last success");

    let mut viewer = p.dora_as("vera", Role::Viewer);
    let m = viewer
        .get_dora_metrics(GetDoraMetricsRequest {
            range: Some(TimeRange { start: Some(ts(t)), end: Some(ts(t + 14 * DAY)) }),
            component: "shop".into(),
            ..GetDoraMetricsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    common::assert_shop_keys(&m);
    assert_eq!(
        (m.deployment_frequency_level, m.lead_time_level, m.change_failure_rate_level, m.time_to_restore_level),
        (Level::High as i32, Level::Elite as i32, Level::Low as i32, Level::High as i32)
    );
    assert_eq!(m.benchmark, "dora-2023");
    let weeks: Vec<(i64, i64, i64, Option<i64>)> = m
        .weeks
        .iter()
        .map(|w| {
            (
                w.week_start.unwrap().seconds * 1000,
                w.deployments_total,
                w.deployments_failed,
                w.lead_time_median.map(|d| d.seconds),
            )
        })
        .collect();
    assert_eq!(weeks, [(t, 5, 2, Some(5 * 3600)), (t + 7 * DAY, 2, 1, Some(30 * 3600))]);

    // Bad input names the field.
    let bad = viewer.get_dora_metrics(GetDoraMetricsRequest::default()).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("range.start") || format!("{bad:?}").contains("range.start"), "{bad:?}");
    let wide = GetDoraMetricsRequest {
        range: Some(TimeRange { start: Some(ts(t - 400 * DAY)), end: Some(ts(t)) }),
        ..GetDoraMetricsRequest::default()
    };
    assert_eq!(viewer.get_dora_metrics(wide).await.unwrap_err().code(), Code::InvalidArgument);
    let missing = viewer.get_deployment(GetDeploymentRequest { id: "nope".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let invalid = RecordDeploymentRequest {
        revision: String::new(),
        environment: DeploymentEnvironment::Development as i32 + 10,
        ..request("shop-c1", "c1", "x", &[], t)
    };
    let bad = reconciler.record_deployment(invalid).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&bad).unwrap();
    let fields: Vec<&str> = details.field_violations.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["revision", "environment"]);
    p.finish().await;
}

#[tokio::test]
async fn members_see_only_their_own_rollouts_and_the_deployments_without_an_owner() {
    let t0 = now_ms();
    let github = FakeGithub::default();
    let gh = github.serve().await;
    let Some(p) = Pipeline::start_with(|a| wire(a, &gh, None)).await else { return };
    let dora = &p.running.dora;
    let rollout = |name: &str, rev: &str, at: i64| RecordDeploymentRequest {
        application: name.into(),
        cluster: "persys".into(),
        component: name.into(),
        revision: rev.into(),
        images: vec![format!("quay.io/acme/{name}:latest")],
        status: DeploymentStatus::Success as i32,
        deployed_at: Some(ts(at)),
        ..RecordDeploymentRequest::default()
    };
    dora.record(&rollout("mias-shop", "aaaa00000001", t0 - HOUR), false, "mia").await.unwrap();
    dora.record(&rollout("bobs-shop", "bbbb00000001", t0 - HOUR), false, "bob").await.unwrap();
    p.dora_service("reconciler")
        .record_deployment(request("infra-c1", "c1", "cccc1111", &[], t0 - HOUR))
        .await
        .unwrap();

    let ids = |list: Vec<Deployment>| {
        let mut v: Vec<String> = list.into_iter().map(|d| d.component).collect();
        v.sort();
        v
    };
    let mut mia = p.dora_as("mia", Role::Member);
    let seen = mia.list_deployments(ListDeploymentsRequest::default()).await.unwrap().into_inner().deployments;
    assert_eq!(ids(seen), ["infra", "mias-shop"], "her rollout and the one without an owner, not bob's");
    let bobs = "bobs-shop:persys:production:bbbb00000001";
    let hidden = mia.get_deployment(GetDeploymentRequest { id: bobs.into() }).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound, "another member's rollout reads as absent");
    let window = || GetDoraMetricsRequest {
        range: Some(TimeRange { start: Some(ts(t0 - DAY)), end: Some(ts(t0)) }),
        ..GetDoraMetricsRequest::default()
    };
    assert_eq!(mia.get_dora_metrics(window()).await.unwrap().into_inner().deployments_total, 2);
    let mut viewer = p.dora_as("vera", Role::Viewer);
    let all = viewer.list_deployments(ListDeploymentsRequest::default()).await.unwrap().into_inner().deployments;
    assert_eq!(ids(all), ["bobs-shop", "infra", "mias-shop"], "viewers read everything, as with workloads");
    assert_eq!(viewer.get_dora_metrics(window()).await.unwrap().into_inner().deployments_total, 3);
    assert_eq!(
        viewer
            .get_deployment(GetDeploymentRequest { id: bobs.into() })
            .await
            .unwrap()
            .into_inner()
            .deployment
            .unwrap()
            .owner_id,
        "bob"
    );
    p.finish().await;
}

fn app_key() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-app-test-key.pem")
}

#[tokio::test]
async fn as_a_github_app_one_installation_token_serves_until_github_refuses_it_then_a_new_one_is_minted() {
    let t0 = now_ms();
    let key = app_key();
    let credentials = AppCredentials::from_file("4242", 77, &key).unwrap();
    let github = FakeGithub::default();
    github.require_app("4242", 77, credentials.public_key_der());
    let revisions = ["app-r1", "app-r2", "app-r3"];
    github.push("acme/infra", revisions.map(|r| commit(r, t0 - 3 * HOUR)));
    github.push("acme/ui", [commit("p", t0 - 5 * HOUR), commit("q", t0 - 4 * HOUR), commit("r", t0 - 3 * HOUR)]);
    let gh = github.serve().await;
    let devlake = FakeDevlake::new("dl-key");
    let dl = devlake.serve().await;
    let Some(p) = Pipeline::start_with(|a| {
        wire(a, &gh, Some(&dl));
        a.github_token = None;
        a.github_app_id = Some("4242".into());
        a.github_app_installation_id = Some(77);
        a.github_app_private_key_file = Some(key.clone());
    })
    .await
    else {
        return;
    };
    let mut reconciler = p.dora_service("reconciler");
    let deploy = |revision: &str, image_seed: &str, minutes_ago: i64| {
        request(
            "ui-east",
            "east",
            &sha(revision),
            &[format!("quay.io/acme/ui:{}", &sha(image_seed)[..7])],
            t0 - minutes_ago * 60_000,
        )
    };

    reconciler.record_deployment(deploy("app-r1", "p", 30)).await.unwrap();
    let first = settled(&p, &format!("ui:east:production:{}", sha("app-r1"))).await;
    assert_eq!(state(&first), DevlakePushState::Sent, "{first:?}");
    // The GitOps revision's commit and the image's.
    assert_eq!(shas(&first), sorted(&["app-r1", "p"]));
    reconciler.record_deployment(deploy("app-r2", "r", 20)).await.unwrap();
    let second = settled(&p, &format!("ui:east:production:{}", sha("app-r2"))).await;
    assert_eq!(state(&second), DevlakePushState::Sent, "{second:?}");
    assert_eq!(shas(&second), sorted(&["app-r2", "q", "r"]), "the compare p...r, read with the installation token");
    let api_calls = github.calls().iter().filter(|c| !c.starts_with("/app/")).count();
    assert!(api_calls >= 4, "{:?}", github.calls());
    assert_eq!(github.app_tokens(), (1, 0), "one installation token for all {api_calls} calls");

    // GitHub stops honouring it (revoked, or expired early): the refused call is retried with a
    // newly minted token, and the deployment still reaches DevLake, once.
    github.revoke_app_tokens();
    github.push("acme/ui", [commit("s", t0 - 2 * HOUR)]);
    reconciler.record_deployment(deploy("app-r3", "s", 10)).await.unwrap();
    let third = settled(&p, &format!("ui:east:production:{}", sha("app-r3"))).await;
    assert_eq!(state(&third), DevlakePushState::Sent, "{third:?}");
    assert_eq!(shas(&third), sorted(&["app-r3", "s"]));
    assert_eq!(github.app_tokens(), (2, 0), "renewed once, and every JWT was accepted");
    assert_eq!(devlake.posts().len(), 3, "each deployment posted once");
    p.finish().await;
}

#[tokio::test]
async fn a_github_app_with_the_wrong_id_or_installation_is_refused_with_what_to_fix() {
    let key = app_key();
    let github = FakeGithub::default();
    github.require_app("4242", 77, AppCredentials::from_file("4242", 77, &key).unwrap().public_key_der());
    github.push("acme/ui", [commit("p", now_ms() - HOUR)]);
    let gh = github.serve().await;
    let client = |app: &str, installation: u64| {
        let credentials = AppCredentials::from_file(app, installation, &key).unwrap();
        Github::new(&gh, Auth::App(credentials), Duration::from_secs(5)).unwrap()
    };
    let wrong_installation = client("4242", 99).commit("https://github.com/acme/ui", &sha("p")).await.unwrap_err();
    assert!(
        matches!(&wrong_installation, GithubError::Refused(m) if m.contains("no installation 99") && m.contains("--github-app-installation-id")),
        "{wrong_installation:?}"
    );
    let wrong_app = client("1111", 77).commit("https://github.com/acme/ui", &sha("p")).await.unwrap_err();
    assert!(matches!(&wrong_app, GithubError::Refused(m) if m.contains("--github-app-id")), "{wrong_app:?}");
    assert_eq!(github.app_tokens(), (0, 1), "the JWT with the wrong issuer was refused, nothing minted");
    let right = client("4242", 77).commit("https://github.com/acme/ui", &sha("p")).await.unwrap();
    assert_eq!(right.map(|c| c.sha), Some(sha("p")));
    assert_eq!(github.app_tokens(), (1, 1));
}

#[tokio::test]
async fn a_github_app_key_that_cannot_be_used_stops_the_pipeline_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("app.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let mut args = ServeArgs::loopback(&persys_kit::tls::CertsDir::new(dir.path()), "postgres://unused".into());
    args.github_app_id = Some("4242".into());
    args.github_app_installation_id = Some(77);
    args.github_app_private_key_file = Some(bad.clone());
    let err = args.dora_options().unwrap_err();
    assert!(err.contains(&bad.display().to_string()) && err.contains("no private key"), "{err}");
    args.github_app_private_key_file = None;
    assert!(args.dora_options().unwrap_err().contains("needs all of"));
}
