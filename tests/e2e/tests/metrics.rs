//! Host metrics end to end with every real part: a real agent joins a real scheduler, samples
//! its machine's /proc every 200 ms and streams batches over mTLS to the real metrics-pipeline
//! on real PostgreSQL; an admin watches and queries them through the gateway.

use std::time::{Duration, SystemTime};

use persys_e2e::{
    cluster::{Cluster, ClusterOptions},
    stack::{ADMIN, ADMIN_PASSWORD, bearer},
};
use persys_kit::testing::require_env;
use persys_proto::{
    common::v1::{TimeRange, WatchEventType},
    gateway::v1::{LoginRequest, auth_service_client::AuthServiceClient},
    metrics::v1::{
        AlertRule, AlertState, Comparator, CreateAlertRuleRequest, DeploymentStatus, HostMetrics,
        LatestHostMetricsRequest, ListAlertsRequest, ListDeploymentsRequest, Metric, QueryRangeRequest, Rollup,
        WatchHostMetricsRequest, alert_service_client::AlertServiceClient, dora_service_client::DoraServiceClient,
        metrics_query_service_client::MetricsQueryServiceClient,
    },
    scheduler::v1::{
        CreateJoinTokenRequest, CreateWorkloadRequest, DeleteWorkloadRequest, ImagePullPolicy, ListNodesRequest,
        RestartPolicy, WatchWorkloadsRequest, WorkloadSpec, scheduler_service_client::SchedulerServiceClient,
    },
};

fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

#[tokio::test]
async fn an_agent_streams_its_host_metrics_and_an_admin_queries_them_through_the_gateway() {
    let (Some(database_url), Some(docker_host)) =
        (require_env("PERSYS_TEST_DATABASE_URL", "PostgreSQL"), require_env("DOCKER_HOST", "a Docker engine"))
    else {
        return;
    };
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("e2e_metrics_{nanos:x}");
    let cluster =
        Cluster::start(ClusterOptions { metrics: Some((database_url, schema)), ..Default::default() }).await.unwrap();
    let channel = persys_kit::client::plain_channel(&cluster.url(), &Default::default()).unwrap();
    let token = AuthServiceClient::new(channel.clone())
        .login(LoginRequest { username: ADMIN.into(), password: ADMIN_PASSWORD.into() })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let mut scheduler = SchedulerServiceClient::with_interceptor(channel.clone(), bearer(&token));
    let mut metrics = MetricsQueryServiceClient::with_interceptor(channel, bearer(&token));
    let join = scheduler.create_join_token(CreateJoinTokenRequest::default()).await.unwrap().into_inner().token;

    // Watch every node before the agent exists: its samples arrive live.
    let started = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut watch = metrics.watch_host_metrics(WatchHostMetricsRequest::default()).await.unwrap().into_inner();
    let node_name = format!("metrics-{:x}", nanos % 0xffff_ffff);
    let agent = cluster.agent(&node_name, &join, &docker_host).await.unwrap();
    let mut seen: Vec<HostMetrics> = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < 3 {
            let event = watch.message().await.unwrap().expect("the watch stays open");
            // BOOKMARKs (the empty snapshot's end, keep-alives) carry no sample.
            seen.extend(event.metrics);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fewer than 3 samples in 60 s; agent log:\n{}", agent.log()));

    // The samples are the joined node's, and describe this machine.
    let nodes = scheduler.list_nodes(ListNodesRequest::default()).await.unwrap().into_inner().nodes;
    let node = nodes.iter().find(|n| n.hostname == node_name).expect("the agent joined");
    for m in &seen {
        assert_eq!(m.node_id, node.id);
        let memory = m.memory.as_ref().unwrap();
        assert!(
            memory.total_bytes > 0 && memory.used_bytes > 0 && memory.used_bytes <= memory.total_bytes,
            "{memory:?}"
        );
        let cpu = m.cpu.as_ref().unwrap();
        assert!(cpu.cores >= 1 && (0.0..=100.0).contains(&cpu.usage_percent), "{cpu:?}");
        // Every sample after the agent's first carries each core's usage.
        assert_eq!(cpu.core_usage_percent.len(), cpu.cores as usize, "{cpu:?}");
        assert!(cpu.core_usage_percent.iter().all(|p| (0.0..=100.0).contains(p)), "{cpu:?}");
    }

    // What was watched is what is stored: the range query at a 1 ms step returns each
    // watched sample's CPU figure at its time.
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    let ts = |ms: i64| prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 };
    let range = QueryRangeRequest {
        node_ids: vec![node.id.clone()],
        metrics: vec![Metric::CpuUsagePercent as i32],
        range: Some(TimeRange { start: Some(ts(started - 1000)), end: Some(ts(now + 1)) }),
        step: Some(prost_types::Duration { seconds: 0, nanos: 1_000_000 }),
        rollup: Rollup::Last as i32,
        ..Default::default()
    };
    let answer = metrics.query_range(range.clone()).await.unwrap().into_inner();
    assert_eq!(answer.series.len(), 1, "{answer:?}");
    let points: Vec<(i64, f64)> =
        answer.series[0].points.iter().map(|p| (ms(p.time.as_ref().unwrap()), p.value)).collect();
    for m in &seen {
        let at = ms(m.time.as_ref().unwrap());
        let cpu = m.cpu.as_ref().unwrap().usage_percent;
        assert!(points.contains(&(at, cpu)), "sample at {at} ({cpu}%) missing from {points:?}");
    }
    // Each core is a series of its own, labelled with its number.
    let cores = QueryRangeRequest {
        metrics: vec![Metric::CpuCoreUsagePercent as i32],
        match_labels: [("core".to_owned(), "0".to_owned())].into(),
        ..range.clone()
    };
    let core0 = metrics.query_range(cores).await.unwrap().into_inner().series;
    assert_eq!(core0.len(), 1, "{core0:?}");
    let last = seen.last().unwrap();
    let at = ms(last.time.as_ref().unwrap());
    let want = last.cpu.as_ref().unwrap().core_usage_percent[0];
    assert!(
        core0[0].points.iter().any(|p| ms(p.time.as_ref().unwrap()) == at && p.value == want),
        "core 0 at {at} ({want}%) missing from {:?}",
        core0[0].points
    );

    // A workload's container shows up in the samples, labelled with the workload, and its
    // memory is queryable by that label.
    let Some(image) = require_env("PERSYS_TEST_IMAGE", "a local test image") else { return };
    let w = scheduler
        .create_workload(CreateWorkloadRequest {
            name: "metered".into(),
            spec: Some(WorkloadSpec {
                image,
                command: vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
                image_pull_policy: ImagePullPolicy::Never as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    let with_containers = WatchHostMetricsRequest { include_containers: true, ..Default::default() };
    let mut watch = metrics.watch_host_metrics(with_containers).await.unwrap().into_inner();
    let container = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = watch.message().await.unwrap().expect("the watch stays open");
            let Some(m) = event.metrics else { continue };
            if let Some(c) = m.containers.into_iter().find(|c| c.workload_id == w.id) {
                return c;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no sample with the workload's container in 60 s; agent log:\n{}", agent.log()));
    assert!(container.memory_usage_bytes > 0 && !container.instance_id.is_empty(), "{container:?}");
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    let by_workload = QueryRangeRequest {
        metrics: vec![Metric::ContainerMemoryBytes as i32],
        range: Some(TimeRange { start: Some(ts(started)), end: Some(ts(now + 1)) }),
        step: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        match_labels: [("workload_id".to_string(), w.id.clone())].into(),
        ..Default::default()
    };
    let series = metrics.query_range(by_workload.clone()).await.unwrap().into_inner().series;
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0].labels.get("instance_id"), Some(&container.instance_id));

    // Through the gateway as other users: a viewer reads the workload's container metrics too;
    // a member reads neither another user's workload (absent, as in the scheduler) nor host
    // metrics.
    let channel = persys_kit::client::plain_channel(&cluster.url(), &Default::default()).unwrap();
    let users = persys_proto::gateway::v1::user_service_client::UserServiceClient::with_interceptor(
        channel.clone(),
        bearer(&token),
    );
    // A user made by the admin, logged in: their access token.
    let login_as = |name: &'static str, role: persys_proto::common::v1::Role| {
        let (mut users, channel) = (users.clone(), channel.clone());
        async move {
            let password = "a-long-enough-password-1";
            users
                .create_user(persys_proto::gateway::v1::CreateUserRequest {
                    username: name.into(),
                    password: password.into(),
                    role: role as i32,
                })
                .await
                .unwrap();
            AuthServiceClient::new(channel.clone())
                .login(LoginRequest { username: name.into(), password: password.into() })
                .await
                .unwrap()
                .into_inner()
                .access_token
        }
    };
    let vera = login_as("vera", persys_proto::common::v1::Role::Viewer).await;
    let mut viewer = MetricsQueryServiceClient::with_interceptor(channel.clone(), bearer(&vera));
    let seen_by_viewer = viewer.query_range(by_workload.clone()).await.unwrap().into_inner().series;
    assert_eq!(seen_by_viewer.len(), 1, "{seen_by_viewer:?}");
    let mona = login_as("mona", persys_proto::common::v1::Role::Member).await;
    let mut member = MetricsQueryServiceClient::with_interceptor(channel.clone(), bearer(&mona));
    let not_hers = member.query_range(by_workload.clone()).await.unwrap_err();
    assert_eq!(not_hers.code(), tonic::Code::NotFound, "{not_hers:?}");
    let host = QueryRangeRequest { metrics: vec![Metric::CpuUsagePercent as i32], ..by_workload.clone() };
    let host = member.query_range(host).await.unwrap_err();
    assert_eq!(host.code(), tonic::Code::PermissionDenied, "{host:?}");

    // Live views: a viewer's samples carry every workload's containers and nothing host-wide;
    // a member's only the containers of her own workloads.
    let host_wide = |m: &HostMetrics| {
        m.cpu.is_some() || m.memory.is_some() || !m.disks.is_empty() || !m.network.is_empty() || m.load.is_some()
    };
    let latest = viewer.latest_host_metrics(LatestHostMetricsRequest::default()).await.unwrap().into_inner().metrics;
    assert!(latest.iter().any(|m| m.containers.iter().any(|c| c.workload_id == w.id)), "{latest:?}");
    assert!(!latest.iter().any(host_wide), "a viewer sees no host metrics: {latest:?}");
    let mut hers_scheduler = SchedulerServiceClient::with_interceptor(channel.clone(), bearer(&mona));
    let hers = hers_scheduler
        .create_workload(CreateWorkloadRequest {
            name: "hers".into(),
            spec: Some(WorkloadSpec {
                command: vec!["sh".into(), "-c".into(), "exec sleep 600".into()],
                ..w.spec.clone().unwrap()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    let mut live = member.watch_host_metrics(WatchHostMetricsRequest::default()).await.unwrap().into_inner();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let event = live.message().await.unwrap().expect("the member's watch stays open");
            let Some(m) = event.metrics else { continue };
            assert!(!host_wide(&m), "a member sees no host metrics: {m:?}");
            assert!(m.containers.iter().all(|c| c.workload_id == hers.id), "only her containers: {m:?}");
            if !m.containers.is_empty() {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no sample with her workload's container in 60 s; agent log:\n{}", agent.log()));
    hers_scheduler.delete_workload(DeleteWorkloadRequest { id: hers.id.clone(), ..Default::default() }).await.unwrap();

    // The running workload is a rollout of `metered`: a DORA deployment, recorded once; a
    // workload whose image cannot start is a failed one.
    let dora = DoraServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&cluster.url(), &Default::default()).unwrap(),
        bearer(&token),
    );
    let rollouts = || {
        let mut dora = dora.clone();
        async move {
            dora.list_deployments(ListDeploymentsRequest { component: "metered".into(), ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .deployments
        }
    };
    let revision: String = w.id.chars().filter(char::is_ascii_hexdigit).collect();
    let recorded = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let list = rollouts().await;
            if !list.is_empty() {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the rollout is recorded within 30 s");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!((recorded[0].revision.as_str(), recorded[0].cluster.as_str()), (revision.as_str(), "persys"));
    assert_eq!(recorded[0].status, DeploymentStatus::Success as i32);
    assert_eq!(recorded[0].images[0].image, w.spec.as_ref().unwrap().image);
    // A rule on workload health: any replica of `metered` down.
    let alerts = AlertServiceClient::with_interceptor(
        persys_kit::client::plain_channel(&cluster.url(), &Default::default()).unwrap(),
        bearer(&token),
    );
    let down = AlertRule {
        name: "metered down".into(),
        metric: Metric::WorkloadUnavailableReplicas as i32,
        comparator: Comparator::GreaterThan as i32,
        threshold: 0.0,
        match_labels: [("workload".to_string(), "metered".to_string())].into(),
        enabled: true,
        ..Default::default()
    };
    alerts.clone().create_alert_rule(CreateAlertRuleRequest { rule: Some(down) }).await.unwrap();
    let firing = || {
        let mut alerts = alerts.clone();
        async move {
            alerts
                .list_alerts(ListAlertsRequest { states: vec![AlertState::Firing as i32], ..Default::default() })
                .await
                .unwrap()
                .into_inner()
                .alerts
        }
    };
    let broken = scheduler
        .create_workload(CreateWorkloadRequest {
            name: "metered".into(),
            spec: Some(WorkloadSpec {
                image: "persys-test/absent:1".into(),
                image_pull_policy: ImagePullPolicy::Never as i32,
                restart_policy: RestartPolicy::Never as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let list = rollouts().await;
            if let Some(d) = list.into_iter().find(|d| d.status == DeploymentStatus::Failed as i32) {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the failed rollout is recorded within 60 s; agent log:\n{}", agent.log()));
    assert_eq!(failed.revision, broken.id.chars().filter(char::is_ascii_hexdigit).collect::<String>());
    assert_eq!(rollouts().await.len(), 2, "each rollout once");
    // The broken one is down, the running one is not: one alert, on the broken workload.
    let open = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let list = firing().await;
            if !list.is_empty() {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the workload-down rule fires within 60 s");
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].labels.get("workload_id"), Some(&broken.id));
    scheduler
        .delete_workload(DeleteWorkloadRequest { id: broken.id.clone(), force: true, ..Default::default() })
        .await
        .unwrap();
    // Deleted: nothing is wanted of it any more, and its alert resolves.
    tokio::time::timeout(Duration::from_secs(60), async {
        while !firing().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the alert resolves once the broken workload is deleted");

    // Deleted, and gone from the engine, before the agent stops.
    let mut changes = scheduler
        .watch_workloads(WatchWorkloadsRequest { workload_id: w.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    scheduler.delete_workload(DeleteWorkloadRequest { id: w.id.clone(), ..Default::default() }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = changes.message().await.unwrap() {
            if e.r#type == WatchEventType::Deleted as i32 {
                return;
            }
        }
        panic!("the watch ended before the deletion");
    })
    .await
    .expect("the workload is deleted within 30 s");
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=persys.workload-id={}", w.id)])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the container is removed: {}", String::from_utf8_lossy(&left.stdout));
    let hers_left = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=persys.workload-id={}", hers.id)])
            .output()
            .unwrap();
        !out.stdout.is_empty()
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while hers_left() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("her deleted workload's container is removed");
    drop(agent);
}
