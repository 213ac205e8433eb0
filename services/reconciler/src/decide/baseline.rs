//! Resource baselines from Prometheus: which series belong to a workload, the PromQL that
//! reads them, how figures are written, when a persona is due, and the right-sizing
//! recommendations a baseline leads to. Pure: the learner in `crate::baseline` does the I/O.
//!
//! Dorgu matched pods with `pod=~"<app>.*"`, unescaped: `api` also read `api-gateway`'s pods
//! and a `.` in a name matched anything. Here a pod belongs to a workload only when its whole
//! name is one Kubernetes gives that workload's pods: `<deployment>-<pod-template-hash>-<5>`
//! for a Deployment, `<statefulset>-<ordinal>` for a StatefulSet, with the name escaped.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use persys_crds::persona::{Recommendation, ResourceBaseline};

/// Deployment or StatefulSet, as the status names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Pods named `<name>-<pod-template-hash>-<random 5>`.
    Deployment,
    /// Pods named `<name>-<ordinal>`.
    StatefulSet,
}

impl Kind {
    /// From `status.workload.kind`.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "Deployment" => Some(Self::Deployment),
            "StatefulSet" => Some(Self::StatefulSet),
            _ => None,
        }
    }
}

/// Longest base of a generated name: Kubernetes keeps 63 characters and appends five random
/// ones (`names.SimpleNameGenerator`), so `<rs>-` is cut to 58.
const MAX_GENERATED_BASE: usize = 58;

/// Escapes a literal for an RE2 (Prometheus) regular expression.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The regular expression (fully anchored, as Prometheus anchors `=~`) matching exactly the
/// names of the pods of workload `name`.
pub fn pod_regex(kind: Kind, name: &str) -> String {
    match kind {
        Kind::StatefulSet => format!("{}-[0-9]+", regex_escape(name)),
        // The pod-template-hash is 1 to 10 characters of [bcdfghjklmnpqrstvwxz2456789]; the
        // whole `<name>-<hash>-` fits in the 58 kept.
        Kind::Deployment if format!("{name}-{:10}-", "").len() <= MAX_GENERATED_BASE => {
            format!("{}-[a-z0-9]{{1,10}}-[a-z0-9]{{5}}", regex_escape(name))
        }
        // A long name: `<name>-<hash>-` was cut to 58 characters before the random five, so
        // what is left of the hash (and its dash) may be anything shorter.
        Kind::Deployment => {
            let base: String = format!("{name}-").chars().take(MAX_GENERATED_BASE).collect();
            let rest = MAX_GENERATED_BASE - base.len();
            format!("{}[a-z0-9-]{{0,{rest}}}[a-z0-9]{{5}}", regex_escape(&base))
        }
    }
}

/// A PromQL double-quoted string literal holding `s`.
pub fn promql_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The workload whose pods are measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// Deployment or StatefulSet.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The container measured: the pod template's first, whose resources the persona
    /// describes.
    pub container: String,
}

/// The four instant queries of a baseline over `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// Mean CPU (cores) of a pod's container over the window.
    pub avg_cpu: String,
    /// Highest 5-minute CPU rate (cores) of any pod's container in the window.
    pub peak_cpu: String,
    /// Mean working set (bytes).
    pub avg_memory: String,
    /// Highest working set (bytes).
    pub peak_memory: String,
}

/// PromQL duration: whole seconds.
fn promql_duration(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// The queries for `target` over `window`, on cAdvisor's series (what the kubelet exports):
/// `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes`.
pub fn queries(target: &Target, window: Duration) -> Queries {
    let selector = format!(
        "namespace={},pod=~{},container={}",
        promql_string(&target.namespace),
        promql_string(&pod_regex(target.kind, &target.name)),
        promql_string(&target.container),
    );
    let w = promql_duration(window);
    // The peak CPU is the highest 5-minute rate, sampled each minute: a rate over the whole
    // window would only give the mean again.
    let rate_window = promql_duration(window.min(Duration::from_secs(300)));
    Queries {
        avg_cpu: format!("avg(rate(container_cpu_usage_seconds_total{{{selector}}}[{w}]))"),
        peak_cpu: format!(
            "max(max_over_time(rate(container_cpu_usage_seconds_total{{{selector}}}[{rate_window}])[{w}:1m]))"
        ),
        avg_memory: format!("avg(avg_over_time(container_memory_working_set_bytes{{{selector}}}[{w}]))"),
        peak_memory: format!("max(max_over_time(container_memory_working_set_bytes{{{selector}}}[{w}]))"),
    }
}

/// CPU as Dorgu wrote it: whole millicores (`250m`).
pub fn format_cpu(cores: f64) -> String {
    format!("{:.0}m", cores * 1000.0)
}

/// Memory as Dorgu wrote it: `1.5Gi` from one GiB up, else whole MiB (`258Mi`).
pub fn format_memory(bytes: f64) -> String {
    const MI: f64 = 1024.0 * 1024.0;
    const GI: f64 = 1024.0 * MI;
    if bytes >= GI { format!("{:.1}Gi", bytes / GI) } else { format!("{:.0}Mi", bytes / MI) }
}

/// What the four queries returned (`None`: no series).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Measured {
    /// Cores.
    pub avg_cpu: Option<f64>,
    /// Cores.
    pub peak_cpu: Option<f64>,
    /// Bytes.
    pub avg_memory: Option<f64>,
    /// Bytes.
    pub peak_memory: Option<f64>,
}

impl Measured {
    /// As the status writes it; `None` when Prometheus had none of the series.
    pub fn baseline(&self) -> Option<ResourceBaseline> {
        let all = [self.avg_cpu, self.peak_cpu, self.avg_memory, self.peak_memory];
        if all.iter().all(Option::is_none) {
            return None;
        }
        Some(ResourceBaseline {
            avg_cpu: self.avg_cpu.map(format_cpu).unwrap_or_default(),
            avg_memory: self.avg_memory.map(format_memory).unwrap_or_default(),
            peak_cpu: self.peak_cpu.map(format_cpu).unwrap_or_default(),
            peak_memory: self.peak_memory.map(format_memory).unwrap_or_default(),
        })
    }
}

/// Whether a persona last learned at `last` (RFC 3339, from its status) is due at `now`:
/// never learned, unreadable, or `interval` ago or more.
pub fn due(last: Option<&str>, now: Timestamp, interval: Duration) -> bool {
    let Some(Ok(last)) = last.map(str::parse::<Timestamp>) else { return true };
    match std::time::Duration::try_from(now.duration_since(last)) {
        Ok(elapsed) => elapsed >= interval,
        // `last` is in the future (a clock step): learn again.
        Err(_) => true,
    }
}

/// The requests and limits of the measured container, as written in the workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests.cpu`.
    pub cpu_request: Option<String>,
    /// `limits.cpu`.
    pub cpu_limit: Option<String>,
    /// `requests.memory`.
    pub memory_request: Option<String>,
    /// `limits.memory`.
    pub memory_limit: Option<String>,
}

/// At this share of its memory limit a container is close to being OOM-killed.
const MEMORY_LIMIT_PRESSURE: f64 = 0.9;
/// At this share of its CPU limit a container is being throttled.
const CPU_LIMIT_PRESSURE: f64 = 0.9;
/// A request the peak stays below this share of is oversized.
const OVERSIZED: f64 = 0.5;
/// Headroom added to a measured figure in a suggestion.
const HEADROOM: f64 = 1.25;

fn value(q: &Option<String>) -> Option<f64> {
    q.as_deref().and_then(|q| persys_analyzer::quantity::parse(q).ok()).filter(|v| *v > 0.0)
}

fn read(s: &str) -> Option<f64> {
    (!s.is_empty()).then(|| persys_analyzer::quantity::parse(s).ok()).flatten()
}

/// A CPU suggestion: measured plus headroom, rounded up to 10 millicores.
fn suggest_cpu(cores: f64) -> String {
    let m = (cores * HEADROOM * 1000.0 / 10.0).ceil() * 10.0;
    format!("{:.0}m", m.max(10.0))
}

/// A memory suggestion: measured plus headroom, rounded up to 16 MiB.
fn suggest_memory(bytes: f64) -> String {
    let mi = (bytes * HEADROOM / (1024.0 * 1024.0) / 16.0).ceil() * 16.0;
    format!("{:.0}Mi", mi.max(16.0))
}

fn percent(part: f64, whole: f64) -> f64 {
    (part / whole * 100.0).round()
}

/// One resource's figures and settings, for [`right_sizing`].
struct Dimension<'a> {
    what: &'static str,
    field: &'static str,
    peak: Option<f64>,
    peak_text: &'a str,
    avg: Option<f64>,
    request: &'a Option<String>,
    limit: &'a Option<String>,
    /// The share of the limit that is too close, and (type, priority, consequence) then.
    pressure: (f64, &'static str, &'static str, &'static str),
    suggest: fn(f64) -> String,
}

/// Right-sizing from a baseline against the container's resources: limits first (a memory
/// peak near the limit, an OOM kill coming, is high; a CPU peak at the limit, throttling, is
/// medium), then requests (a peak above the request is medium; a request the workload never
/// comes near, or none at all, is low).
pub fn right_sizing(baseline: &ResourceBaseline, resources: &Resources) -> Vec<Recommendation> {
    let rec = |kind: &str, priority: &str, message: String, action: String| Recommendation {
        kind: kind.into(),
        priority: priority.into(),
        message,
        action,
    };
    let dimensions = [
        Dimension {
            what: "CPU",
            field: "cpu",
            peak: read(&baseline.peak_cpu),
            peak_text: &baseline.peak_cpu,
            avg: read(&baseline.avg_cpu),
            request: &resources.cpu_request,
            limit: &resources.cpu_limit,
            pressure: (CPU_LIMIT_PRESSURE, "performance", "medium", "the container is throttled"),
            suggest: suggest_cpu,
        },
        Dimension {
            what: "memory",
            field: "memory",
            peak: read(&baseline.peak_memory),
            peak_text: &baseline.peak_memory,
            avg: read(&baseline.avg_memory),
            request: &resources.memory_request,
            limit: &resources.memory_limit,
            pressure: (MEMORY_LIMIT_PRESSURE, "resource", "high", "the container is close to being OOM-killed"),
            suggest: suggest_memory,
        },
    ];
    let mut out = Vec::new();
    for d in &dimensions {
        let (share, kind, priority, consequence) = d.pressure;
        if let (Some(peak), Some(limit)) = (d.peak, value(d.limit))
            && peak >= limit * share
        {
            out.push(rec(
                kind,
                priority,
                format!(
                    "peak {} {} is {}% of the limit {}: {consequence}",
                    d.what,
                    d.peak_text,
                    percent(peak, limit),
                    d.limit.as_deref().unwrap_or_default()
                ),
                format!("raise resources.limits.{} to at least {}", d.field, (d.suggest)(peak)),
            ));
        }
    }
    for d in &dimensions {
        let Some(peak) = d.peak else { continue };
        let request = d.request.as_deref().unwrap_or_default();
        match value(d.request) {
            Some(req) if peak > req => out.push(rec(
                "performance",
                "medium",
                format!(
                    "peak {} {} is above the request {request}: the scheduler places the pod on less than it uses",
                    d.what, d.peak_text
                ),
                format!("raise resources.requests.{} to {}", d.field, (d.suggest)(peak)),
            )),
            Some(req) if peak < req * OVERSIZED => out.push(rec(
                "cost",
                "low",
                format!(
                    "{} request {request} is {}% used at peak ({}) over the window",
                    d.what,
                    percent(peak, req),
                    d.peak_text
                ),
                format!("lower resources.requests.{} to {}", d.field, (d.suggest)(peak)),
            )),
            Some(_) => {}
            None => out.push(rec(
                "resource",
                "low",
                format!("no {} request: the scheduler cannot place the pod by what it uses", d.what),
                format!("set resources.requests.{} to {}", d.field, (d.suggest)(d.avg.unwrap_or(peak))),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn full(re: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{re})$")).unwrap()
    }

    #[test]
    fn a_deployments_pods_match_and_a_longer_names_do_not() {
        let re = full(&pod_regex(Kind::Deployment, "api"));
        assert!(re.is_match("api-7d4b9c8f6d-x2x7q"));
        assert!(re.is_match("api-5-bcdfg"));
        assert!(!re.is_match("api-gateway-7d4b9c8f6d-x2x7q"), "Dorgu's prefix match read this one");
        assert!(!re.is_match("api-7d4b9c8f6d"));
        assert!(!re.is_match("xapi-7d4b9c8f6d-x2x7q"));
        let dotted = full(&pod_regex(Kind::Deployment, "web.v2"));
        assert!(dotted.is_match("web.v2-7d4b9c8f6d-x2x7q"));
        assert!(!dotted.is_match("webxv2-7d4b9c8f6d-x2x7q"), "the dot is escaped");
        let sts = full(&pod_regex(Kind::StatefulSet, "db"));
        assert!(sts.is_match("db-0") && sts.is_match("db-12"));
        assert!(!sts.is_match("db-replica-0") && !sts.is_match("db-0-x2x7q"));
    }

    #[test]
    fn a_long_deployment_name_matches_its_truncated_pod_names() {
        let name = "a-very-long-deployment-name-that-goes-on-and-on-x"; // 49 characters
        let re = full(&pod_regex(Kind::Deployment, name));
        let base: String = format!("{name}-7d4b9c8f6d-").chars().take(MAX_GENERATED_BASE).collect();
        assert!(re.is_match(&format!("{base}x2x7q")));
        assert!(!re.is_match("a-very-long-deployment-name-that-goes-on-and-on-y-7d4b-x2x7q"));
    }

    #[test]
    fn strings_are_promql_literals() {
        assert_eq!(promql_string(r"a\.b"), r#""a\\.b""#);
        assert_eq!(promql_string(r#"say "hi""#), r#""say \"hi\"""#);
    }

    #[test]
    fn the_queries_select_the_namespace_the_pods_and_the_container_exactly() {
        let t =
            Target { namespace: "shop".into(), kind: Kind::Deployment, name: "web.v2".into(), container: "web".into() };
        let q = queries(&t, Duration::from_secs(3600));
        let sel = r#"namespace="shop",pod=~"web\\.v2-[a-z0-9]{1,10}-[a-z0-9]{5}",container="web""#;
        assert_eq!(q.avg_cpu, format!("avg(rate(container_cpu_usage_seconds_total{{{sel}}}[3600s]))"));
        assert_eq!(
            q.peak_cpu,
            format!("max(max_over_time(rate(container_cpu_usage_seconds_total{{{sel}}}[300s])[3600s:1m]))")
        );
        assert_eq!(q.avg_memory, format!("avg(avg_over_time(container_memory_working_set_bytes{{{sel}}}[3600s]))"));
        assert_eq!(q.peak_memory, format!("max(max_over_time(container_memory_working_set_bytes{{{sel}}}[3600s]))"));
    }

    #[test]
    fn figures_are_written_as_dorgu_wrote_them() {
        assert_eq!(format_cpu(0.2504), "250m");
        assert_eq!(format_memory(270_672_418.0), "258Mi");
        assert_eq!(format_memory(1.5 * 1024.0 * 1024.0 * 1024.0), "1.5Gi");
        let none = Measured::default();
        assert_eq!(none.baseline(), None);
        let some = Measured { peak_memory: Some(512.0 * 1024.0 * 1024.0), ..Measured::default() };
        let b = some.baseline().unwrap();
        assert_eq!((b.peak_memory.as_str(), b.avg_cpu.as_str()), ("512Mi", ""));
    }

    #[test]
    fn due_after_the_interval_or_when_never_learned() {
        let now: Timestamp = "2026-12-04T12:00:00Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        assert!(due(None, now, hour));
        assert!(due(Some("garbage"), now, hour));
        assert!(!due(Some("2026-12-04T11:30:00Z"), now, hour));
        assert!(due(Some("2026-12-04T11:00:00Z"), now, hour));
        assert!(due(Some("2026-12-04T13:00:00Z"), now, hour), "a time in the future");
    }

    fn baseline(avg_cpu: &str, peak_cpu: &str, avg_mem: &str, peak_mem: &str) -> ResourceBaseline {
        ResourceBaseline {
            avg_cpu: avg_cpu.into(),
            peak_cpu: peak_cpu.into(),
            avg_memory: avg_mem.into(),
            peak_memory: peak_mem.into(),
        }
    }

    fn res(cpu_req: &str, cpu_lim: &str, mem_req: &str, mem_lim: &str) -> Resources {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Resources {
            cpu_request: s(cpu_req),
            cpu_limit: s(cpu_lim),
            memory_request: s(mem_req),
            memory_limit: s(mem_lim),
        }
    }

    #[test]
    fn right_sizing_rules() {
        let b = baseline("250m", "500m", "258Mi", "512Mi");
        // Sized well: nothing to say.
        assert!(right_sizing(&b, &res("500m", "1", "512Mi", "1Gi")).is_empty());

        let near_oom = right_sizing(&b, &res("500m", "1", "512Mi", "550Mi"));
        assert_eq!(near_oom.len(), 1);
        assert_eq!((near_oom[0].kind.as_str(), near_oom[0].priority.as_str()), ("resource", "high"));
        assert!(near_oom[0].message.contains("93% of the limit 550Mi"), "{}", near_oom[0].message);
        assert_eq!(near_oom[0].action, "raise resources.limits.memory to at least 640Mi");

        let throttled = right_sizing(&b, &res("500m", "500m", "512Mi", "1Gi"));
        assert_eq!(throttled.len(), 1);
        assert_eq!(throttled[0].kind, "performance");
        assert_eq!(throttled[0].action, "raise resources.limits.cpu to at least 630m");

        let under = right_sizing(&b, &res("100m", "", "256Mi", ""));
        assert_eq!(
            under.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["raise resources.requests.cpu to 630m", "raise resources.requests.memory to 640Mi"]
        );

        let over = right_sizing(&b, &res("2", "", "2Gi", ""));
        assert_eq!(over.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["cost", "cost"]);
        assert!(over[0].message.contains("25% used at peak (500m)"), "{}", over[0].message);
        assert_eq!(over[1].action, "lower resources.requests.memory to 640Mi");

        let unset = right_sizing(&b, &Resources::default());
        assert_eq!(
            unset.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["set resources.requests.cpu to 320m", "set resources.requests.memory to 336Mi"]
        );
        // Missing figures recommend nothing about them.
        assert!(right_sizing(&ResourceBaseline::default(), &Resources::default()).is_empty());
    }

    proptest! {
        /// The pods of any workload match its pattern; those of a workload whose name extends
        /// it with `-<more>` never do (short names; a long name's pods are cut by Kubernetes
        /// itself, so only the 58 characters it keeps can tell them apart).
        #[test]
        fn own_pods_match_and_a_longer_names_never_do(
            name in "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
            more in "[a-z0-9]{1,8}",
            hash in "[bcdfghjklmnpqrstvwxz2456789]{1,10}",
            suffix in "[bcdfghjklmnpqrstvwxz2456789]{5}",
            ordinal in 0u32..1000,
        ) {
            let dep = full(&pod_regex(Kind::Deployment, &name));
            let own = format!("{name}-{hash}-{suffix}");
            let longer = format!("{name}-{more}-{hash}-{suffix}");
            prop_assert!(dep.is_match(&own));
            prop_assert!(!dep.is_match(&longer));
            let sts = full(&pod_regex(Kind::StatefulSet, &name));
            let (own, longer) = (format!("{name}-{ordinal}"), format!("{name}-{more}-{ordinal}"));
            prop_assert!(sts.is_match(&own));
            prop_assert!(!sts.is_match(&longer));
        }
    }
}
