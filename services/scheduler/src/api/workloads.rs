//! Workloads: created (stored before anything is dispatched), read, stopped, started,
//! restarted and deleted by their owners; admins see and manage all, viewers only read.

use persys_kit::{ApiError, UserClaims, error::Violations, identity::Role};
use persys_proto::{
    common::v1::{EventType as PbEventType, Role as PbRole},
    scheduler::v1::{
        CreateWorkloadRequest, DesiredState, ListWorkloadsRequest, ListWorkloadsResponse, NodeState, RestartInstance,
        RestartPolicy, Workload, WorkloadPhase, WorkloadSpec, WorkloadStatus, connect_response::Payload,
    },
};

use super::{admission::Admission, nodes::page, require_writer};
use crate::{
    kv::Kv,
    model::{is_terminal, now_ts},
    sched::{Scheduler, record_event},
    store::Change,
};

/// Most replicas one workload may ask for.
pub const MAX_REPLICAS: i32 = 100;

fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn default_name(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    let cleaned: String =
        base.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(50).collect();
    let cleaned = cleaned.trim_matches('-');
    if cleaned.is_empty() { "workload".into() } else { cleaned.to_owned() }
}

/// Checks a spec for a user of `role`, with the cluster's allowed networks; every problem is
/// reported with its field.
pub fn validate(name: &str, spec: &WorkloadSpec, role: Role, admission: &Admission) -> Result<(), ApiError> {
    let mut v = Violations::new();
    admission.check(role, spec, &mut v);
    v.check(spec.image.trim().is_empty(), "spec.image", "required, e.g. `nginx:1.27` or `busybox`");
    v.check(spec.image.chars().any(char::is_whitespace), "spec.image", "must not contain spaces");
    v.check(
        !name.is_empty() && !valid_name(name),
        "name",
        "1-63 lowercase letters, digits or '-', not starting or ending with '-'",
    );
    v.check(
        !(0..=MAX_REPLICAS).contains(&spec.replicas),
        "spec.replicas",
        format!("must be between 0 (means 1) and {MAX_REPLICAS}"),
    );
    v.check(spec.max_restarts < 0, "spec.max_restarts", "must not be negative");
    v.check(spec.max_replicas_per_node < 0, "spec.max_replicas_per_node", "must not be negative");
    if let Some(r) = &spec.resources {
        for (field, q) in [("spec.resources.requests", &r.requests), ("spec.resources.limits", &r.limits)] {
            if let Some(q) = q {
                v.check(
                    q.cpu_millis < 0 || q.memory_bytes < 0 || q.disk_bytes < 0,
                    field,
                    "quantities must not be negative",
                );
            }
        }
        if let (Some(req), Some(lim)) = (&r.requests, &r.limits) {
            let over = (lim.cpu_millis > 0 && req.cpu_millis > lim.cpu_millis)
                || (lim.memory_bytes > 0 && req.memory_bytes > lim.memory_bytes);
            v.check(over, "spec.resources.requests", "must not exceed the limits");
        }
    }
    for (i, e) in spec.env.iter().enumerate() {
        let ok = !e.name.is_empty()
            && !e.name.starts_with(|c: char| c.is_ascii_digit())
            && e.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        v.check(!ok, &format!("spec.env[{i}].name"), "letters, digits and '_', not starting with a digit");
    }
    for (i, p) in spec.ports.iter().enumerate() {
        v.check(
            p.container_port == 0 || p.container_port > 65535,
            &format!("spec.ports[{i}].container_port"),
            "1-65535",
        );
        v.check(p.host_port > 65535, &format!("spec.ports[{i}].host_port"), "0-65535");
    }
    v.finish()
}

/// Returns a role as the protobuf enum.
pub fn role_of(role: Role) -> PbRole {
    match role {
        Role::Admin => PbRole::Admin,
        Role::Member => PbRole::Member,
        Role::Viewer => PbRole::Viewer,
    }
}

/// Hides sensitive environment values from reads.
pub fn redact(mut w: Workload) -> Workload {
    if let Some(spec) = w.spec.as_mut() {
        for e in spec.env.iter_mut().filter(|e| e.sensitive) {
            e.value.clear();
        }
    }
    w
}

/// Returns whether `user` may see `w`.
pub fn visible(user: &UserClaims, w: &Workload) -> bool {
    user.role != Role::Member || w.owner_id == user.id
}

impl<K: Kv> Scheduler<K> {
    /// Stores a new workload and returns it at once; placement happens after.
    pub async fn create_workload(
        &self,
        user: &UserClaims,
        r: CreateWorkloadRequest,
        admission: &Admission,
    ) -> Result<Workload, ApiError> {
        require_writer(user)?;
        let mut spec = r.spec.ok_or_else(|| ApiError::invalid("spec", "required"))?;
        validate(&r.name, &spec, user.role, admission)?;
        if spec.replicas == 0 {
            spec.replicas = 1;
        }
        if spec.restart_policy == RestartPolicy::Unspecified as i32 {
            spec.restart_policy = RestartPolicy::Never as i32;
        }
        let name = if r.name.is_empty() { default_name(&spec.image) } else { r.name };
        let mut w = Workload {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            spec: Some(spec),
            status: Some(WorkloadStatus {
                phase: WorkloadPhase::Pending as i32,
                reason: "Pending".into(),
                message: "waiting for placement".into(),
                last_transition_time: Some(now_ts()),
                ..Default::default()
            }),
            desired_state: DesiredState::Running as i32,
            owner_id: user.id.clone(),
            owner_role: role_of(user.role) as i32,
            created_at: Some(now_ts()),
            updated_at: Some(now_ts()),
            ..Default::default()
        };
        record_event(&mut w, PbEventType::Normal, "Created", format!("created by {}", user.name));
        let stored = self.store.create_workload(&w, &r.request_id).await?;
        self.kick.notify_one();
        tracing::info!(workload = %stored.id, name = %stored.name, owner = %user.name, "workload created");
        Ok(redact(stored))
    }

    /// Returns a workload the user may see (others' are reported as missing).
    pub async fn get_workload(&self, user: &UserClaims, id: &str) -> Result<Workload, ApiError> {
        match self.store.workload(id).await? {
            Some(w) if visible(user, &w) => Ok(w),
            _ => Err(ApiError::NotFound(format!("workload `{id}`"))),
        }
    }

    /// Lists the workloads the user may see.
    pub async fn list_workloads(
        &self,
        user: &UserClaims,
        r: ListWorkloadsRequest,
    ) -> Result<ListWorkloadsResponse, ApiError> {
        if !r.owner_id.is_empty() && user.role == Role::Member && r.owner_id != user.id {
            return Err(ApiError::PermissionDenied("members can list only their own workloads".into()));
        }
        let (all, revision) = self.store.workloads().await?;
        let selector = r.label_selector.clone().unwrap_or_default();
        let items: Vec<Workload> = all
            .into_iter()
            .filter(|w| visible(user, w))
            .filter(|w| r.owner_id.is_empty() || w.owner_id == r.owner_id)
            .filter(|w| r.node_id.is_empty() || super::nodes::runs_on(w, &r.node_id))
            .filter(|w| r.phases.is_empty() || r.phases.contains(&w.status.as_ref().map_or(0, |s| s.phase)))
            .filter(|w| selects(&selector, w))
            .map(redact)
            .collect();
        let (workloads, page) = page(items, r.page.as_ref(), |w| w.id.clone())?;
        Ok(ListWorkloadsResponse { workloads, page, revision })
    }

    async fn change(
        &self,
        user: &UserClaims,
        id: &str,
        expected_revision: i64,
        f: impl Fn(&mut Workload) -> bool,
    ) -> Result<Workload, ApiError> {
        require_writer(user)?;
        let current = self.get_workload(user, id).await?;
        if expected_revision != 0 && expected_revision != current.revision {
            return Err(ApiError::Aborted(format!(
                "workload `{id}` changed (revision {} ≠ expected {expected_revision}); read it again",
                current.revision
            )));
        }
        let mut mismatch = false;
        // Through the core, which removes the instances a start finds no room for.
        let updated = self
            .update_workload(id, |w| {
                if expected_revision != 0 && w.revision != 0 && w.revision != expected_revision {
                    mismatch = true;
                    return Change::Keep;
                }
                if f(w) { Change::Write(()) } else { Change::Keep }
            })
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("workload `{id}`")))?;
        if mismatch {
            return Err(ApiError::Aborted(format!("workload `{id}` changed meanwhile; read it again")));
        }
        Ok(redact(updated))
    }

    /// Stops every instance; the workload stays, Stopped.
    pub async fn stop_workload(
        &self,
        user: &UserClaims,
        id: &str,
        expected_revision: i64,
    ) -> Result<Workload, ApiError> {
        let name = user.name.clone();
        self.change(user, id, expected_revision, |w| {
            if w.desired_state() == DesiredState::Stopped {
                return false;
            }
            w.desired_state = DesiredState::Stopped as i32;
            record_event(w, PbEventType::Normal, "Stopping", format!("stop requested by {name}"));
            true
        })
        .await
    }

    /// Restarts every placed instance in place. The restart is written first (each instance
    /// Starting, reason [`crate::sched::RESTARTING`], one restart more), then sent: at once, with
    /// `grace`, to the nodes connected to this replica, and by the replica holding the
    /// connection for the others (with the spec's stop timeout), so it reaches every node.
    pub async fn restart_workload(
        &self,
        user: &UserClaims,
        id: &str,
        expected_revision: i64,
        grace: Option<prost_types::Duration>,
    ) -> Result<Workload, ApiError> {
        let name = user.name.clone();
        let w = self
            .change(user, id, expected_revision, |w| {
                if w.desired_state() != DesiredState::Running {
                    return false;
                }
                let mut restarted = Vec::new();
                for i in w.status.iter_mut().flat_map(|s| s.instances.iter_mut()) {
                    if i.node_id.is_empty() || i.removing {
                        continue;
                    }
                    i.restart_count += 1;
                    i.restart_at = None;
                    i.phase = WorkloadPhase::Starting as i32;
                    i.reason = crate::sched::RESTARTING.into();
                    restarted.push(i.instance_id.clone());
                }
                if restarted.is_empty() {
                    return false;
                }
                if let Some(s) = w.status.as_mut() {
                    s.restart_count += restarted.len() as i32;
                }
                record_event(w, PbEventType::Normal, "Restarting", format!("restart requested by {name}"));
                true
            })
            .await?;
        if w.desired_state() != DesiredState::Running {
            return Err(ApiError::FailedPrecondition(format!("workload `{id}` is not running; start it instead")));
        }
        for i in w.status.iter().flat_map(|s| &s.instances) {
            if i.reason == crate::sched::RESTARTING && self.agents.connected(&i.node_id) {
                let restart =
                    Payload::Restart(RestartInstance { instance_id: i.instance_id.clone(), grace_period: grace });
                self.send_once(&i.instance_id, "restart", i.restart_count, &i.node_id, restart).await;
            }
        }
        Ok(w)
    }

    /// Runs a stopped workload again.
    pub async fn start_workload(
        &self,
        user: &UserClaims,
        id: &str,
        expected_revision: i64,
    ) -> Result<Workload, ApiError> {
        let name = user.name.clone();
        let w = self
            .change(user, id, expected_revision, |w| {
                if w.desired_state() == DesiredState::Running {
                    return false;
                }
                w.desired_state = DesiredState::Running as i32;
                if let Some(s) = w.status.as_mut() {
                    for i in s.instances.iter_mut().filter(|i| is_terminal(i.phase)) {
                        i.phase = WorkloadPhase::Scheduled as i32;
                        i.reason = "Starting".into();
                        i.restart_count += 1;
                    }
                }
                record_event(w, PbEventType::Normal, "Starting", format!("start requested by {name}"));
                true
            })
            .await?;
        self.kick.notify_one();
        Ok(w)
    }

    /// Deletes a workload: its instances are removed from their nodes, then the record. With
    /// `force` the record goes at once and agents drop the orphans when they next reconcile.
    pub async fn delete_workload(
        &self,
        user: &UserClaims,
        id: &str,
        force: bool,
        expected_revision: i64,
    ) -> Result<(), ApiError> {
        // Instances stay, with their reservations, until their agents confirm the removal (sent
        // by whichever replica holds each node's connection), except where nobody can confirm:
        // not placed, Lost, or on a node that is Down or gone (its agent removes them when it
        // reconnects and reconciles).
        let (nodes, _) = self.store.nodes().await?;
        let up: Vec<String> = nodes.into_iter().filter(|n| n.state() != NodeState::Down).map(|n| n.id).collect();
        let name = user.name.clone();
        let w = self
            .change(user, id, expected_revision, |w| {
                w.desired_state = DesiredState::Deleted as i32;
                if let Some(s) = w.status.as_mut() {
                    s.instances.retain(|i| up.contains(&i.node_id) && i.phase != WorkloadPhase::Lost as i32);
                }
                record_event(w, PbEventType::Normal, "Deleting", format!("delete requested by {name}"));
                true
            })
            .await?;
        if force || w.status.as_ref().is_none_or(|s| s.instances.is_empty()) {
            self.dispatch(&w).await;
            self.store.delete_workload(id).await?;
            self.forget_workload_dns(&w).await;
        }
        tracing::info!(workload = %id, by = %user.name, force, "workload deletion requested");
        Ok(())
    }
}

fn selects(selector: &persys_proto::common::v1::LabelSelector, w: &Workload) -> bool {
    let labels = w.spec.as_ref().map(|s| &s.labels);
    let empty = std::collections::HashMap::new();
    let labels = labels.unwrap_or(&empty);
    selector.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|req| {
            use persys_proto::common::v1::LabelSelectorOperator as Op;
            let value = labels.get(&req.key);
            match Op::try_from(req.operator).unwrap_or(Op::Unspecified) {
                Op::In => value.is_some_and(|v| req.values.contains(v)),
                Op::NotIn => value.is_none_or(|v| !req.values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Unspecified => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::{EnvVar, ResourceRequirements};

    use super::*;

    #[test]
    fn validation_names_every_bad_field() {
        let spec = WorkloadSpec {
            image: String::new(),
            replicas: 1000,
            env: vec![EnvVar { name: "1BAD".into(), value: String::new(), sensitive: false }],
            resources: Some(ResourceRequirements {
                requests: Some(persys_proto::common::v1::ResourceQuantities {
                    cpu_millis: 2000,
                    memory_bytes: 0,
                    disk_bytes: 0,
                }),
                limits: Some(persys_proto::common::v1::ResourceQuantities {
                    cpu_millis: 1000,
                    memory_bytes: 0,
                    disk_bytes: 0,
                }),
            }),
            ..Default::default()
        };
        let Err(ApiError::InvalidArgument(v)) = validate("Bad_Name", &spec, Role::Member, &Admission::default()) else {
            panic!("expected violations")
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["spec.image", "name", "spec.replicas", "spec.resources.requests", "spec.env[0].name"]);
        assert!(
            validate(
                "web",
                &WorkloadSpec { image: "nginx:1.27".into(), ..Default::default() },
                Role::Member,
                &Admission::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn members_may_not_share_the_hosts_network() {
        let host = WorkloadSpec { image: "nginx:1.27".into(), network: "host".into(), ..Default::default() };
        let Err(ApiError::InvalidArgument(v)) = validate("web", &host, Role::Member, &Admission::default()) else {
            panic!("a member got the host network")
        };
        assert_eq!(v[0].field, "spec.network");
        assert!(validate("web", &host, Role::Admin, &Admission::default()).is_ok());
    }

    #[test]
    fn default_names_come_from_the_image() {
        assert_eq!(default_name("registry.example.com/team/Web_App:1.2"), "web-app");
        assert_eq!(default_name("busybox"), "busybox");
        assert_eq!(default_name(":::"), "workload");
    }

    #[test]
    fn sensitive_env_values_are_hidden() {
        let w = Workload {
            spec: Some(WorkloadSpec {
                env: vec![
                    EnvVar { name: "TOKEN".into(), value: "s3cret".into(), sensitive: true },
                    EnvVar { name: "MODE".into(), value: "prod".into(), sensitive: false },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = redact(w).spec.unwrap().env;
        assert_eq!((env[0].value.as_str(), env[1].value.as_str()), ("", "prod"));
    }
}
