//! HorizontalPodAutoscaler and PodDisruptionBudget.

use k8s_openapi::{
    api::{
        autoscaling::v2::{
            CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
            HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
            ResourceMetricSource,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use super::{Manifest, Object, meta, selector, to_yaml};
use crate::model::App;

fn utilization(resource: &str, percent: i32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: resource.into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(percent),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }
}

fn rules(window: i32, kind: &str, value: i32, period: i32) -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(window),
        policies: Some(vec![HPAScalingPolicy { type_: kind.into(), value, period_seconds: period }]),
        ..HPAScalingRules::default()
    }
}

/// The persona's scaling behaviour as HPA rules: how fast to add and remove pods.
fn behavior(name: &str) -> HorizontalPodAutoscalerBehavior {
    let (up, down) = match name {
        "conservative" => (rules(120, "Pods", 1, 60), rules(600, "Percent", 10, 60)),
        "aggressive" => (rules(0, "Percent", 100, 15), rules(60, "Percent", 50, 60)),
        _ => (rules(30, "Percent", 50, 60), rules(300, "Percent", 25, 60)),
    };
    HorizontalPodAutoscalerBehavior { scale_up: Some(up), scale_down: Some(down) }
}

/// The HPA, for apps that scale (not for stateful or third-party ones).
pub fn hpa(app: &App, ns: &str, env: &str) -> Option<Manifest> {
    let (min, max, cpu) = app.autoscale?;
    let mut metrics = vec![utilization("cpu", cpu)];
    if app.target_memory > 0 {
        metrics.push(utilization("memory", app.target_memory));
    }
    let hpa = HorizontalPodAutoscaler {
        metadata: meta(app, &app.name, ns, env),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: app.name.clone(),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: Some(behavior(&app.behavior)),
        },
        ..HorizontalPodAutoscaler::default()
    };
    Some(Manifest {
        path: "hpa.yaml".into(),
        content: to_yaml(&hpa),
        kind: "HorizontalPodAutoscaler".into(),
        object: Some(Object::HorizontalPodAutoscaler(Box::new(hpa))),
    })
}

/// The PodDisruptionBudget, when more than one replica runs: voluntary disruptions (drains,
/// upgrades) take at most one pod at a time.
pub fn pdb(app: &App, ns: &str, env: &str) -> Option<Manifest> {
    let min = app.autoscale.map_or(app.replicas, |(min, _, _)| min);
    if min <= 1 {
        return None;
    }
    let pdb = PodDisruptionBudget {
        metadata: meta(app, &app.name, ns, env),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector(app)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    Some(Manifest { path: "pdb.yaml".into(), content: to_yaml(&pdb), kind: "PodDisruptionBudget".into(), object: None })
}
