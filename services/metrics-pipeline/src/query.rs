//! `MetricsQueryService`: range queries over the stored samples, each node's newest sample,
//! and a live watch fanned out to any number of subscribers without slowing ingest.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, RwLock},
};

use futures::Stream;
use persys_kit::{ApiError, FieldViolation, error::Violations, identity::Caller, identity::Role};
use persys_proto::{
    common::v1::{PageResponse, WatchEventType},
    metrics::v1::{
        DataPoint, HostMetrics, LatestHostMetricsRequest, LatestHostMetricsResponse, Metric, QueryRangeRequest,
        QueryRangeResponse, Rollup, Series, WatchHostMetricsRequest, WatchHostMetricsResponse,
        metrics_query_service_server::MetricsQueryService,
    },
};
use prost::Message;
use tokio::sync::broadcast;
use tonic::{Request, Response, Status};

use crate::store::{RangeQuery, Store};

/// Most points one range query may return per series (as Prometheus: 11,000).
pub const MAX_POINTS: i64 = 11_000;

/// The query side.
#[derive(Clone)]
pub struct Query {
    store: Arc<Store>,
    live: broadcast::Sender<Arc<HostMetrics>>,
    owners: Owners,
}

impl Query {
    /// Queries over `store`; live samples come from `live`; who owns each workload from
    /// `owners`.
    pub fn new(store: Arc<Store>, live: broadcast::Sender<Arc<HostMetrics>>, owners: Owners) -> Self {
        Self { store, live, owners }
    }
}

/// Who owns each workload, as the scheduler's workload watch tells (`--scheduler`); empty and
/// not following without one.
#[derive(Clone, Default)]
pub struct Owners {
    inner: Arc<RwLock<(bool, HashMap<String, String>)>>,
}

impl Owners {
    /// Marks the map as following the scheduler.
    pub fn following(&self) {
        self.inner.write().expect("owners lock").0 = true;
    }

    /// Workload `id` is owned by user `owner` (or was deleted, with `None`).
    pub fn set(&self, id: &str, owner: Option<&str>) {
        let mut inner = self.inner.write().expect("owners lock");
        match owner {
            Some(owner) => inner.1.insert(id.to_owned(), owner.to_owned()),
            None => inner.1.remove(id),
        };
    }

    /// Whether the map follows the scheduler (else no owner is known).
    fn is_following(&self) -> bool {
        self.inner.read().expect("owners lock").0
    }

    /// `Some(owner)` of workload `id`; `Err` when the pipeline does not follow the scheduler.
    fn owner_of(&self, id: &str) -> Result<Option<String>, ()> {
        let inner = self.inner.read().expect("owners lock");
        if inner.0 { Ok(inner.1.get(id).cloned()) } else { Err(()) }
    }
}

/// Metrics of a workload's containers: what a member may read of their own workloads.
const CONTAINER_METRICS: [Metric; 6] = [
    Metric::ContainerCpuPercent,
    Metric::ContainerMemoryBytes,
    Metric::ContainerMemoryLimitPercent,
    Metric::ContainerNetworkRxBytesPerSecond,
    Metric::ContainerNetworkTxBytesPerSecond,
    Metric::ContainerRestarts,
];

/// A range query by a member or viewer: only container metrics of one workload named with
/// `match_labels.workload_id`, which a member must own (viewers read every workload, as they
/// do in the scheduler). Host metrics stay with admins.
fn check_workload_query(owners: &Owners, user: &persys_kit::UserClaims, q: &RangeQuery) -> Result<(), ApiError> {
    let denied = |why: String| {
        ApiError::PermissionDenied(format!(
            "{why}; as a {:?}, {} may read the container metrics of {} workloads (name one with label \
             workload_id=ID); host metrics are for admins",
            user.role,
            user.name,
            if user.role == Role::Viewer { "all" } else { "their own" }
        ))
    };
    if let Some(host) = q.metrics.iter().find(|m| !CONTAINER_METRICS.contains(m)) {
        return Err(denied(format!("{} is a host metric", host.as_str_name())));
    }
    let Some(workload) = q.match_labels.get("workload_id") else {
        return Err(denied("no workload_id label names the workload".into()));
    };
    let owner = owners.owner_of(workload).map_err(|()| {
        ApiError::PermissionDenied(
            "this metrics pipeline does not follow the scheduler (--scheduler), so it cannot tell whose workload \
             it is; ask an admin"
                .into(),
        )
    })?;
    match owner {
        Some(_) if user.role == Role::Viewer => Ok(()),
        Some(owner) if owner == user.id => Ok(()),
        // Someone else's workload reads as absent, as in the scheduler.
        _ => Err(ApiError::NotFound(format!("workload {workload}"))),
    }
}

/// Host metrics show every node of the cluster: a user must be an admin. Services calling on
/// their own behalf (no user) are trusted by the caller policy.
pub fn check_may_read<T>(request: &Request<T>) -> Result<(), ApiError> {
    check_admin(request, "host metrics")
}

/// `what` is for admins: a user must be one (the refusal names `what` and the user's role).
/// Services calling on their own behalf (no user) are trusted by the caller policy.
pub fn check_admin<T>(request: &Request<T>, what: &str) -> Result<(), ApiError> {
    let Some(caller) = Caller::of(request) else { return Err(ApiError::Unauthenticated("no caller identity".into())) };
    match (&caller.identity, &caller.user) {
        (_, Some(user)) if user.role == Role::Admin => Ok(()),
        (_, Some(user)) => Err(ApiError::PermissionDenied(format!(
            "{what} are for admins only, and {} is a {:?}",
            user.name, user.role
        ))),
        (persys_kit::Identity::Service(s), None) if s == "gateway" => {
            Err(ApiError::Unauthenticated("this call needs a user; call it through the gateway".into()))
        }
        (_, None) => Ok(()),
    }
}

/// What of a sample a caller of `LatestHostMetrics` / `WatchHostMetrics` sees.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// Everything (admins, and services on their own behalf).
    All,
    /// Only containers of workloads: a viewer's every workload (`None`), a member's own (the
    /// user id); no host-wide fields, and no sample without such a container.
    Containers(Option<String>),
}

impl Scope {
    /// The caller's scope; members and viewers need the pipeline to follow the scheduler.
    fn of<T>(request: &Request<T>, owners: &Owners) -> Result<Self, ApiError> {
        let user = Caller::of(request).and_then(|c| c.user.clone()).filter(|u| u.role != Role::Admin);
        let Some(user) = user else {
            check_may_read(request)?;
            return Ok(Self::All);
        };
        if !owners.is_following() {
            return Err(ApiError::PermissionDenied(format!(
                "this metrics pipeline does not follow the scheduler (--scheduler), so it cannot tell which \
                 workloads are {}'s; host metrics are for admins",
                user.name
            )));
        }
        Ok(Self::Containers((user.role != Role::Viewer).then(|| user.id.clone())))
    }

    /// The part of `m` this scope sees: containers only when `include` (always for
    /// [`Scope::Containers`]); `None` when nothing is left.
    fn apply(&self, owners: &Owners, mut m: HostMetrics, include: bool) -> Option<HostMetrics> {
        match self {
            Self::All => {
                if !include {
                    m.containers.clear();
                }
                Some(m)
            }
            Self::Containers(user) => {
                m.containers.retain(|c| {
                    !c.workload_id.is_empty()
                        && match owners.owner_of(&c.workload_id) {
                            Ok(Some(owner)) => user.as_ref().is_none_or(|u| *u == owner),
                            _ => false,
                        }
                });
                if m.containers.is_empty() {
                    return None;
                }
                Some(HostMetrics { node_id: m.node_id, time: m.time, containers: m.containers, ..Default::default() })
            }
        }
    }
}

use crate::clock::{millis as ms, now_ms, timestamp as ts};

/// Validates a range request into a query; `now_ms` stands for an unset end.
pub fn range_query(r: &QueryRangeRequest, now_ms: i64) -> Result<RangeQuery, ApiError> {
    let mut v = Violations::new();
    v.check(r.metrics.is_empty(), "metrics", "name at least one metric");
    let mut metrics = Vec::new();
    for (i, m) in r.metrics.iter().enumerate() {
        match Metric::try_from(*m) {
            Ok(Metric::Unspecified) | Err(_) => {
                v.check(true, &format!("metrics[{i}]"), format!("unknown metric {m}"));
            }
            Ok(Metric::SecondsSinceLastSample | Metric::WorkloadUnavailableReplicas | Metric::WorkloadRestarts10m) => {
                v.check(
                    true,
                    &format!("metrics[{i}]"),
                    format!(
                        "{} is for alert rules, not stored",
                        Metric::try_from(*m).map(|m| m.as_str_name()).unwrap_or_default()
                    ),
                );
            }
            Ok(metric) => metrics.push(metric),
        }
    }
    let start = r.range.as_ref().and_then(|r| r.start.as_ref()).map(ms);
    let end = r.range.as_ref().and_then(|r| r.end.as_ref()).map_or(now_ms, ms);
    v.check(start.is_none(), "range.start", "required");
    let step =
        r.step.as_ref().map_or(0, |d| d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos) / 1_000_000));
    v.check(step <= 0, "step", "must be at least 1ms");
    let rollup = Rollup::try_from(r.rollup).ok();
    v.check(rollup.is_none(), "rollup", format!("unknown rollup {}", r.rollup));
    for k in r.match_labels.keys() {
        v.check(k.is_empty(), "match_labels", "label names are not empty");
    }
    if let Some(start) = start {
        v.check(start >= end, "range", "start must be before end");
        if step > 0 && start < end {
            let points = (end - start + step - 1) / step;
            v.check(
                points > MAX_POINTS,
                "step",
                format!("{points} points per series; at most {MAX_POINTS}: use a larger step or a shorter range"),
            );
        }
    }
    v.finish()?;
    Ok(RangeQuery {
        node_ids: r.node_ids.clone(),
        metrics,
        match_labels: r.match_labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        start_ms: start.unwrap_or_default(),
        end_ms: end,
        step_ms: step,
        rollup: match rollup {
            None | Some(Rollup::Unspecified) => Rollup::Avg,
            Some(r) => r,
        },
    })
}

impl Query {
    /// Fails with INVALID_ARGUMENT naming each of `node_ids` that never sent metrics.
    async fn check_nodes(&self, node_ids: &[String]) -> Result<(), ApiError> {
        if node_ids.is_empty() {
            return Ok(());
        }
        let known = self.store.known_nodes(node_ids).await.map_err(ApiError::internal)?;
        let unknown: Vec<FieldViolation> = node_ids
            .iter()
            .enumerate()
            .filter(|(_, n)| !known.contains(*n))
            .map(|(i, n)| FieldViolation::new(format!("node_ids[{i}]"), format!("no metrics from node {n:?}")))
            .collect();
        if unknown.is_empty() { Ok(()) } else { Err(ApiError::InvalidArgument(unknown)) }
    }
}

#[tonic::async_trait]
impl MetricsQueryService for Query {
    async fn query_range(&self, request: Request<QueryRangeRequest>) -> Result<Response<QueryRangeResponse>, Status> {
        let user = Caller::of(&request).and_then(|c| c.user.clone()).filter(|u| u.role != Role::Admin);
        if user.is_none() {
            check_may_read(&request)?;
        }
        let r = request.into_inner();
        let q = range_query(&r, now_ms())?;
        if let Some(user) = &user {
            check_workload_query(&self.owners, user, &q)?;
        }
        self.check_nodes(&q.node_ids).await?;
        let found = self.store.range(&q).await.map_err(ApiError::internal)?;
        let series = found
            .into_iter()
            .map(|s| Series {
                metric: s.metric as i32,
                node_id: s.node_id,
                labels: s.labels.into_iter().collect(),
                points: s.points.into_iter().map(|(t, value)| DataPoint { time: Some(ts(t)), value }).collect(),
            })
            .collect();
        let step = prost_types::Duration { seconds: q.step_ms / 1000, nanos: ((q.step_ms % 1000) * 1_000_000) as i32 };
        Ok(Response::new(QueryRangeResponse { series, step: Some(step) }))
    }

    async fn latest_host_metrics(
        &self,
        request: Request<LatestHostMetricsRequest>,
    ) -> Result<Response<LatestHostMetricsResponse>, Status> {
        let scope = Scope::of(&request, &self.owners)?;
        let r = request.into_inner();
        let page = r.page.unwrap_or_default();
        let size = match page.page_size {
            n if n <= 0 => 50,
            n => i64::from(n.min(1000)),
        };
        self.check_nodes(&r.node_ids).await?;
        let rows = self.store.latest(&r.node_ids, &page.page_token, size + 1).await.map_err(ApiError::internal)?;
        let more = rows.len() as i64 > size;
        let (mut metrics, mut last) = (Vec::new(), String::new());
        for (_, payload) in rows.into_iter().take(size as usize) {
            let m = HostMetrics::decode(payload.as_slice()).map_err(ApiError::internal)?;
            last = m.node_id.clone();
            metrics.extend(scope.apply(&self.owners, m, r.include_containers));
        }
        // The page token is the last node read, shown or not.
        let next_page_token = if more { last } else { String::new() };
        Ok(Response::new(LatestHostMetricsResponse {
            metrics,
            page: Some(PageResponse { next_page_token, total_size: None }),
        }))
    }

    type WatchHostMetricsStream = Pin<Box<dyn Stream<Item = Result<WatchHostMetricsResponse, Status>> + Send>>;

    async fn watch_host_metrics(
        &self,
        request: Request<WatchHostMetricsRequest>,
    ) -> Result<Response<Self::WatchHostMetricsStream>, Status> {
        let scope = Scope::of(&request, &self.owners)?;
        let r = request.into_inner();
        self.check_nodes(&r.node_ids).await?;
        crate::watch::check_since(r.since_revision)?;
        // Subscribe before reading the snapshot, so nothing falls between the two.
        let live = self.live.subscribe();
        let rows = self.store.latest(&r.node_ids, "", 10_000).await.map_err(ApiError::internal)?;
        let include = r.include_containers;
        let snapshot = rows
            .into_iter()
            .filter_map(|(_, payload)| HostMetrics::decode(payload.as_slice()).ok())
            .filter_map(|m| scope.apply(&self.owners, m, include))
            .collect();
        let wanted: std::collections::HashSet<String> = r.node_ids.iter().cloned().collect();
        let owners = self.owners.clone();
        let stream = crate::watch::spawn::<WatchHostMetricsResponse, _>(snapshot, live, "samples", move |m| {
            if !wanted.is_empty() && !wanted.contains(&m.node_id) {
                return None;
            }
            scope.apply(&owners, (*m).clone(), include).map(|m| (WatchEventType::Modified, m))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl crate::watch::Event for WatchHostMetricsResponse {
    type Item = HostMetrics;
    fn new(kind: WatchEventType, metrics: Option<HostMetrics>, revision: i64) -> Self {
        Self { r#type: kind as i32, metrics, revision }
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::common::v1::TimeRange;

    use super::*;

    fn request(start: i64, end: i64, step_ms: i64) -> QueryRangeRequest {
        QueryRangeRequest {
            metrics: vec![Metric::CpuUsagePercent as i32],
            range: Some(TimeRange { start: Some(ts(start)), end: Some(ts(end)) }),
            step: Some(prost_types::Duration { seconds: step_ms / 1000, nanos: ((step_ms % 1000) * 1_000_000) as i32 }),
            ..Default::default()
        }
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn members_read_container_metrics_of_their_own_workloads_only() {
        let user = |id: &str, role| persys_kit::UserClaims { id: id.into(), name: id.into(), role };
        let (mona, other, vera) =
            (user("u-mona", Role::Member), user("u-other", Role::Member), user("u-vera", Role::Viewer));
        let query = |metric: Metric, workload: Option<&str>| {
            let mut r = request(1_000, 61_000, 10_000);
            r.metrics = vec![metric as i32];
            if let Some(w) = workload {
                r.match_labels.insert("workload_id".into(), w.into());
            }
            range_query(&r, 0).unwrap()
        };
        let owners = Owners::default();
        let mine = query(Metric::ContainerMemoryBytes, Some("w-1"));
        let denied = check_workload_query(&owners, &mona, &mine).unwrap_err();
        assert!(matches!(&denied, ApiError::PermissionDenied(m) if m.contains("--scheduler")), "{denied:?}");
        owners.following();
        owners.set("w-1", Some("u-mona"));
        check_workload_query(&owners, &mona, &mine).unwrap();
        for metric in CONTAINER_METRICS {
            check_workload_query(&owners, &mona, &query(metric, Some("w-1"))).unwrap();
        }
        check_workload_query(&owners, &vera, &mine).expect("viewers read every workload");
        let theirs = check_workload_query(&owners, &other, &mine).unwrap_err();
        assert!(matches!(theirs, ApiError::NotFound(_)), "another member's workload reads as absent: {theirs:?}");
        let host = check_workload_query(&owners, &mona, &query(Metric::CpuUsagePercent, Some("w-1"))).unwrap_err();
        assert!(matches!(&host, ApiError::PermissionDenied(m) if m.contains("host metric")), "{host:?}");
        let unnamed = check_workload_query(&owners, &mona, &query(Metric::ContainerCpuPercent, None)).unwrap_err();
        assert!(matches!(&unnamed, ApiError::PermissionDenied(m) if m.contains("workload_id=ID")), "{unnamed:?}");
        owners.set("w-1", None);
        assert!(matches!(check_workload_query(&owners, &mona, &mine), Err(ApiError::NotFound(_))), "deleted");
    }

    #[test]
    fn members_watch_their_own_containers_and_no_host_metrics() {
        use persys_proto::metrics::v1::{ContainerMetrics, CpuMetrics};
        let container = |workload: &str| ContainerMetrics {
            workload_id: workload.into(),
            container_id: format!("c-{workload}"),
            ..Default::default()
        };
        let sample = HostMetrics {
            node_id: "n1".into(),
            time: Some(ts(1_000)),
            cpu: Some(CpuMetrics { usage_percent: 42.0, ..Default::default() }),
            process_count: 300,
            containers: vec![container("w-mona"), container("w-other"), container("")],
            ..Default::default()
        };
        let owners = Owners::default();
        owners.following();
        owners.set("w-mona", Some("u-mona"));
        owners.set("w-other", Some("u-other"));
        let ids = |m: &HostMetrics| m.containers.iter().map(|c| c.workload_id.clone()).collect::<Vec<_>>();

        let all = Scope::All.apply(&owners, sample.clone(), true).unwrap();
        assert_eq!(all, sample, "admins see the whole sample");
        assert!(Scope::All.apply(&owners, sample.clone(), false).unwrap().containers.is_empty());

        let mona = Scope::Containers(Some("u-mona".into())).apply(&owners, sample.clone(), false).unwrap();
        assert_eq!(ids(&mona), ["w-mona"], "only her workload's containers, asked for or not");
        assert_eq!((mona.cpu, mona.process_count, mona.node_id.as_str()), (None, 0, "n1"), "no host-wide fields");
        assert_eq!(mona.time, sample.time);
        let viewer = Scope::Containers(None).apply(&owners, sample.clone(), true).unwrap();
        assert_eq!(ids(&viewer), ["w-mona", "w-other"], "viewers see every workload, never unlabelled containers");
        assert_eq!(Scope::Containers(Some("u-nobody".into())).apply(&owners, sample, true), None, "nothing to show");
    }

    #[test]
    fn a_valid_request_becomes_a_query() {
        let q = range_query(&request(1_000, 61_000, 10_000), 0).unwrap();
        assert_eq!((q.start_ms, q.end_ms, q.step_ms, q.rollup), (1_000, 61_000, 10_000, Rollup::Avg));
        assert_eq!(q.metrics, vec![Metric::CpuUsagePercent]);
        let open =
            QueryRangeRequest { range: Some(TimeRange { start: Some(ts(1_000)), end: None }), ..request(0, 0, 1000) };
        assert_eq!(range_query(&open, 5_000).unwrap().end_ms, 5_000, "an unset end is now");
    }

    #[test]
    fn bad_requests_name_each_field() {
        let mut r = request(5_000, 1_000, 0);
        r.metrics = vec![0, 99];
        r.rollup = 42;
        assert_eq!(fields(range_query(&r, 0).unwrap_err()), ["metrics[0]", "metrics[1]", "step", "rollup", "range"]);
        assert_eq!(fields(range_query(&request(0, 86_400_000, 1), 0).unwrap_err()), ["step"], "too many points");
        let mut no_start = request(0, 1, 1);
        no_start.range = None;
        assert_eq!(fields(range_query(&no_start, 10).unwrap_err()), ["range.start"]);
    }
}
