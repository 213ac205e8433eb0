//! Invariants of the scheduler's state, checked over its store: for tests at every tier (unit,
//! integration on etcd, end-to-end fault injection), after each step that should leave the
//! cluster consistent.
//!
//! The checks read one consistent snapshot (a single range over the cluster prefix), so they
//! hold or fail for one revision; call them when the cluster is quiet (no write in flight).

use std::collections::{BTreeMap, HashMap};

use persys_proto::{
    common::v1::ResourceQuantities,
    scheduler::v1::{DesiredState, Node, Workload},
};

use crate::{
    kv::{Kv, KvError, Revision},
    model::{add, decode_node, decode_workload, is_terminal, requests_of},
    store::Store,
};

/// What the checks found wrong, one line per fault, and the revision they read.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The revision of the snapshot checked.
    pub revision: Revision,
    /// One line per broken invariant; empty when all hold.
    pub violations: Vec<String>,
}

impl Report {
    /// Panics, listing every violation, unless all invariants hold.
    pub fn assert_ok(&self) {
        assert!(
            self.violations.is_empty(),
            "scheduler invariants broken at revision {}:\n  {}",
            self.revision,
            self.violations.join("\n  ")
        );
    }
}

/// Checks, over one snapshot of the store:
/// - every node: `allocatable − Σ requests of the live instances on it = available`, and
///   `instance_count` is the number of those instances;
/// - every live instance is on a node that exists;
/// - no replica of a workload has two live instances, and no workload that should run has
///   more live instances than replicas.
pub async fn check<K: Kv>(store: &Store<K>) -> Result<Report, KvError> {
    let keys = store.keys();
    let (entries, revision) = store.kv().range(&keys.root()).await?;
    let (nodes_prefix, workloads_prefix) = (keys.nodes(), keys.workloads());
    let nodes: Vec<Node> =
        entries.iter().filter(|e| e.key.starts_with(&nodes_prefix)).filter_map(decode_node).collect();
    let workloads: Vec<Workload> =
        entries.iter().filter(|e| e.key.starts_with(&workloads_prefix)).filter_map(decode_workload).collect();
    Ok(Report { revision, violations: violations(&nodes, &workloads) })
}

/// Checks like [`check`] and panics, listing every violation, unless all invariants hold.
pub async fn assert_invariants<K: Kv>(store: &Store<K>) {
    check(store).await.expect("reading the store").assert_ok();
}

/// Returns the broken invariants of a snapshot (see [`check`]).
pub fn violations(nodes: &[Node], workloads: &[Workload]) -> Vec<String> {
    let mut out = Vec::new();
    let mut reserved: HashMap<&str, (ResourceQuantities, i32)> = HashMap::new();
    for w in workloads {
        let requests = requests_of(w);
        let live: Vec<_> = w
            .status
            .iter()
            .flat_map(|s| &s.instances)
            .filter(|i| !i.node_id.is_empty() && !is_terminal(i.phase))
            .collect();
        let mut per_replica: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
        for i in &live {
            per_replica.entry(i.replica_index).or_default().push(&i.instance_id);
            if !nodes.iter().any(|n| n.id == i.node_id) {
                out.push(format!(
                    "workload {}: live instance {} is on unknown node {}",
                    w.id, i.instance_id, i.node_id
                ));
                continue;
            }
            let slot = reserved.entry(&i.node_id).or_default();
            slot.0 = add(&slot.0, &requests, 1);
            slot.1 += 1;
        }
        for (replica, instances) in per_replica.iter().filter(|(_, v)| v.len() > 1) {
            out.push(format!(
                "workload {}: replica {replica} has {} live instances: {instances:?}",
                w.id,
                instances.len()
            ));
        }
        let replicas = w.spec.as_ref().map_or(1, |s| s.replicas.max(1)) as usize;
        if w.desired_state() == DesiredState::Running && live.len() > replicas {
            out.push(format!("workload {}: {} live instances for {replicas} replicas", w.id, live.len()));
        }
    }
    for n in nodes {
        let (held, count) = reserved.get(n.id.as_str()).cloned().unwrap_or_default();
        let expected = add(&n.allocatable.unwrap_or_default(), &held, -1);
        let available = n.available.unwrap_or_default();
        if expected != available {
            out.push(format!(
                "node {}: allocatable − reservations of its live instances = {} but available = {}",
                n.id,
                show(&expected),
                show(&available)
            ));
        }
        if n.instance_count != count {
            out.push(format!("node {}: instance_count {} but {count} live instances", n.id, n.instance_count));
        }
    }
    out
}

fn show(q: &ResourceQuantities) -> String {
    format!("{{cpu {}m, memory {}, disk {}}}", q.cpu_millis, q.memory_bytes, q.disk_bytes)
}
