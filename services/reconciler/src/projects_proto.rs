//! Kapsa's resources in the contract's terms (`persys.reconciler.v1`), for ProjectService:
//! Projects and Environments from their CRDs, and Builds from kpack Images as the Project
//! controller makes them (see [`crate::project`]).

use std::{collections::HashMap, time::Duration};

use k8s_openapi::jiff::Timestamp;
use kube::{ResourceExt, api::DynamicObject};
use persys_crds::kapsa::{self as crd, Environment, Project};
use persys_proto::{common::v1 as common, reconciler::v1 as pb};
use serde_json::Value;

use crate::{
    decide,
    project::{LABEL_BRANCH, LABEL_PROJECT},
    proto::{conditions, meta, timestamp},
};

/// Annotation of a kpack Image: the branch it builds, as git names it.
pub const BRANCH_NAME: &str = "kapsa-project.io/branch-name";
/// Annotation of a kpack Image: the commit it builds.
pub const COMMIT: &str = "kapsa-project.io/commit";

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

fn env_vars(env: &[crd::EnvVar]) -> Vec<pb::EnvVar> {
    env.iter().map(|e| pb::EnvVar { name: e.name.clone(), value: e.value.clone() }).collect()
}

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The CRD's build strategy as the contract's enum.
pub fn strategy(s: &str) -> pb::BuildStrategy {
    match s {
        "dockerfile" => pb::BuildStrategy::Dockerfile,
        "buildpack" => pb::BuildStrategy::Buildpack,
        _ => pb::BuildStrategy::Unspecified,
    }
}

/// The CRD's environment type (`permanent`, `preview`) as the contract's enum.
pub fn environment_type(s: &str) -> pb::EnvironmentType {
    match s {
        "permanent" => pb::EnvironmentType::Permanent,
        "preview" => pb::EnvironmentType::Preview,
        _ => pb::EnvironmentType::Unspecified,
    }
}

/// The CRD's environment phase as the contract's enum.
pub fn environment_phase(s: Option<&str>) -> pb::EnvironmentPhase {
    match s {
        Some("Pending") => pb::EnvironmentPhase::Pending,
        Some("Building") => pb::EnvironmentPhase::Building,
        Some("Running") => pb::EnvironmentPhase::Running,
        Some("Failed") => pb::EnvironmentPhase::Failed,
        _ => pb::EnvironmentPhase::Unspecified,
    }
}

/// A Project in the contract's terms.
pub fn project(p: &Project) -> pb::Project {
    let s = &p.spec;
    let spec = pb::ProjectSpec {
        repository: Some(pb::RepositorySpec {
            url: s.repository.url.clone(),
            branch: s.repository.branch.clone(),
            poll_interval: Some(prost_types::Duration { seconds: s.repository.poll_interval, nanos: 0 }),
            credentials: s.repository.credentials.as_ref().map(|c| pb::SecretReference {
                name: c.secret_ref.name.clone(),
                namespace: c.secret_ref.namespace.clone(),
            }),
        }),
        build: Some(pb::BuildSpec {
            strategy: strategy(&s.build.strategy) as i32,
            dockerfile: s.build.dockerfile.clone().unwrap_or_default(),
            context: s.build.context.clone(),
            args: map(&s.build.args),
            env: env_vars(&s.build.env),
        }),
        registry: Some(pb::RegistryRef {
            name: s.registry.name.clone(),
            image_repository: s.registry.image_repository.clone(),
        }),
        domain: Some(pb::DomainSpec {
            subdomain: s.domain.subdomain.clone(),
            domain_pool_ref: s.domain.domain_pool_ref.clone(),
        }),
        environments: s
            .environments
            .iter()
            .map(|e| pb::EnvironmentTemplate {
                name: e.name.clone(),
                branch: e.branch.clone().unwrap_or_default(),
                auto_sync: e.auto_sync,
            })
            .collect(),
        preview_environments: s.preview_environments.as_ref().map(|v| pb::PreviewEnvironmentsSpec {
            enabled: v.enabled,
            // The CRD's pattern admits only what parses; anything else is sent unset.
            ttl: decide::project::parse_ttl(&v.ttl).ok().map(duration),
            branches: Some(pb::BranchFilter {
                include: v.branches.include.clone(),
                exclude: v.branches.exclude.clone(),
            }),
        }),
    };
    let status = p.status.as_ref().map(|st| pb::ProjectStatus {
        conditions: conditions(&st.conditions),
        latest_commit: st.latest_commit.clone().unwrap_or_default(),
        latest_image: st.latest_image.clone().unwrap_or_default(),
        environments: st
            .environments
            .iter()
            .map(|e| pb::ProjectEnvironmentStatus {
                name: e.name.clone(),
                ready: e.ready,
                url: e.url.clone().unwrap_or_default(),
                r#type: environment_type(&e.kind) as i32,
            })
            .collect(),
        last_polled_at: timestamp(st.last_polled.as_deref()),
        observed_generation: st.observed_generation.unwrap_or(0),
        namespace: st.namespace.clone().unwrap_or_default(),
        branches: st
            .branches
            .iter()
            .map(|b| pb::BranchStatus {
                name: b.name.clone(),
                commit: b.commit.clone(),
                commit_seen_at: timestamp(b.commit_seen_at.as_deref()),
                slug: b.slug.clone(),
                image: b.image.clone().unwrap_or_default(),
                image_commit: b.image_commit.clone().unwrap_or_default(),
                failed_commit: b.failed_commit.clone().unwrap_or_default(),
            })
            .collect(),
    });
    pb::Project { metadata: Some(meta(&p.metadata)), spec: Some(spec), status }
}

/// An Environment in the contract's terms.
pub fn environment(e: &Environment) -> pb::Environment {
    let s = &e.spec;
    let runtime = &s.runtime;
    let spec = pb::EnvironmentSpec {
        project_ref: s.project_ref.name.clone(),
        project_namespace: s.project_ref.namespace.clone(),
        image: s.image.clone().unwrap_or_default(),
        auto_sync: s.auto_sync,
        r#type: environment_type(&s.kind) as i32,
        branch: s.branch.clone().unwrap_or_default(),
        runtime: Some(pb::RuntimeSpec {
            replicas: Some(runtime.replicas),
            resources: Some(pb::RuntimeResources {
                requests: map(&runtime.resources.requests),
                limits: map(&runtime.resources.limits),
            }),
            autoscaling: runtime.autoscaling.as_ref().map(|a| pb::AutoscalingSpec {
                enabled: a.enabled,
                min_replicas: a.min_replicas.unwrap_or(0),
                max_replicas: a.max_replicas.unwrap_or(0),
                target_cpu_utilization: a.target_cpu_utilization.unwrap_or(0),
                target_memory_utilization: a.target_memory_utilization.unwrap_or(0),
            }),
            ports: runtime
                .ports
                .iter()
                .map(|p| pb::ContainerPort {
                    name: p.name.clone().unwrap_or_default(),
                    container_port: p.container_port,
                    protocol: match p.protocol.as_deref() {
                        Some("TCP") => common::Protocol::Tcp,
                        Some("UDP") => common::Protocol::Udp,
                        _ => common::Protocol::Unspecified,
                    } as i32,
                })
                .collect(),
        }),
        ingress: Some(pb::IngressSpec {
            enabled: Some(s.ingress.enabled),
            host: s.ingress.host.clone().unwrap_or_default(),
            path: s.ingress.path.clone(),
            tls: Some(pb::TlsSpec {
                enabled: Some(s.ingress.tls.enabled),
                secret_name: s.ingress.tls.secret_name.clone().unwrap_or_default(),
            }),
            annotations: map(&s.ingress.annotations),
        }),
        config_map_refs: s.config_refs.iter().map(|c| c.config_map_ref.name.clone()).collect(),
        secret_refs: s.secret_refs.iter().map(|r| r.secret_ref.name.clone()).collect(),
        env: env_vars(&s.env),
    };
    let status = e.status.as_ref().map(|st| pb::EnvironmentStatus {
        conditions: conditions(&st.conditions),
        phase: environment_phase(st.phase.as_deref()) as i32,
        image: st.image.clone().unwrap_or_default(),
        resources: st.resources.as_ref().map(|r| pb::EnvironmentResources {
            deployment_name: r.deployment_name.clone().unwrap_or_default(),
            service_name: r.service_name.clone().unwrap_or_default(),
            ingress_name: r.ingress_name.clone().unwrap_or_default(),
        }),
        urls: st.urls.clone(),
        expires_at: timestamp(st.expires_at.as_deref()),
    });
    pb::Environment { metadata: Some(meta(&e.metadata)), spec: Some(spec), status }
}

/// kpack's `Ready` condition of an Image, if it has one.
fn ready(image: &DynamicObject) -> Option<&Value> {
    image.data["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// Where a build stands by its Image's status. kpack has not seen the Image's current
/// revision (no status, or one of an older generation): PENDING. `Ready` True with an image:
/// SUCCEEDED; False: FAILED; otherwise RUNNING.
pub fn build_phase(image: &DynamicObject) -> pb::BuildPhase {
    let status = &image.data["status"];
    let observed = status["observedGeneration"].as_i64();
    if observed.is_none() || observed != image.metadata.generation {
        return pb::BuildPhase::Pending;
    }
    let latest = status["latestImage"].as_str().unwrap_or_default();
    match ready(image).and_then(|c| c["status"].as_str()) {
        Some("True") if !latest.is_empty() => pb::BuildPhase::Succeeded,
        Some("False") => pb::BuildPhase::Failed,
        _ => pb::BuildPhase::Running,
    }
}

/// When a build's Image last changed state (its `Ready` condition's last transition), or when
/// the Image was made: what "newest first" orders by.
pub fn build_time(image: &DynamicObject) -> Option<Timestamp> {
    ready(image)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .and_then(|t| t.parse().ok())
        .or_else(|| image.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// A Build in the contract's terms: the kpack Image's current revision. `strategy` is its
/// Project's (the Image does not say).
pub fn build(image: &DynamicObject, strategy: pb::BuildStrategy) -> pb::Build {
    let (labels, annotations) = (image.labels(), image.annotations());
    let status = &image.data["status"];
    let phase = build_phase(image);
    let ready = ready(image);
    let text = |c: Option<&Value>, k: &str| c.and_then(|c| c[k].as_str()).unwrap_or_default().to_owned();
    let transition = timestamp(ready.and_then(|c| c["lastTransitionTime"].as_str()));
    let (started_at, finished_at) = match phase {
        pb::BuildPhase::Running => (transition, None),
        pb::BuildPhase::Succeeded | pb::BuildPhase::Failed => (None, transition),
        _ => (None, None),
    };
    let failed = phase == pb::BuildPhase::Failed;
    pb::Build {
        metadata: Some(meta(&image.metadata)),
        project: labels.get(LABEL_PROJECT).cloned().unwrap_or_default(),
        branch: annotations.get(BRANCH_NAME).or_else(|| labels.get(LABEL_BRANCH)).cloned().unwrap_or_default(),
        commit_sha: annotations
            .get(COMMIT)
            .map(String::as_str)
            .or_else(|| image.data["spec"]["source"]["git"]["revision"].as_str())
            .unwrap_or_default()
            .to_owned(),
        strategy: strategy as i32,
        phase: phase as i32,
        image: if phase == pb::BuildPhase::Succeeded {
            status["latestImage"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        reason: if failed { text(ready, "reason") } else { String::new() },
        message: if failed { text(ready, "message") } else { String::new() },
        started_at,
        finished_at,
        build_number: status["buildCounter"].as_i64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image(generation: i64, status: Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "kpack.io/v1alpha2", "kind": "Image",
            "metadata": {"name": "build-main", "namespace": "team-api", "generation": generation,
                "labels": {LABEL_PROJECT: "api", LABEL_BRANCH: "feature-login"},
                "annotations": {BRANCH_NAME: "feature/login", COMMIT: "abc1234"}},
            "spec": {"source": {"git": {"revision": "abc1234"}}}, "status": status}))
        .unwrap()
    }

    #[test]
    fn kpack_images_read_as_builds() {
        let ok = json!({"observedGeneration": 2, "latestImage": "r/api@sha256:1", "buildCounter": 4,
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"}]});
        let b = build(&image(2, ok.clone()), pb::BuildStrategy::Dockerfile);
        assert_eq!(b.phase, pb::BuildPhase::Succeeded as i32);
        assert_eq!((b.project.as_str(), b.branch.as_str(), b.commit_sha.as_str()), ("api", "feature/login", "abc1234"));
        assert_eq!((b.image.as_str(), b.build_number), ("r/api@sha256:1", 4));
        assert_eq!(b.finished_at, timestamp(Some("2026-12-01T00:00:00Z")));
        assert!(b.started_at.is_none());
        let newer = build(&image(3, ok), pb::BuildStrategy::Dockerfile);
        assert_eq!(newer.phase, pb::BuildPhase::Pending as i32, "kpack has not seen the new commit");
        assert!(newer.image.is_empty(), "the image of an older commit is not this build's");
        let failed = json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "False",
            "reason": "BuildFailed", "message": "exit 1", "lastTransitionTime": "2026-12-01T00:00:00Z"}]});
        let f = build(&image(2, failed), pb::BuildStrategy::Buildpack);
        assert_eq!(
            (f.phase, f.reason.as_str(), f.message.as_str()),
            (pb::BuildPhase::Failed as i32, "BuildFailed", "exit 1")
        );
        let running = json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "Unknown",
            "lastTransitionTime": "2026-12-02T00:00:00Z"}]});
        let r = build(&image(2, running), pb::BuildStrategy::Buildpack);
        assert_eq!(r.phase, pb::BuildPhase::Running as i32);
        assert_eq!(r.started_at, timestamp(Some("2026-12-02T00:00:00Z")));
        assert_eq!(build_phase(&image(1, json!(null))), pb::BuildPhase::Pending);
    }
}
