//! Placement: filter the nodes an instance fits on, then score them. Pure functions over
//! snapshots; the caller commits the choice in a guarded transaction.

use std::collections::HashMap;

use persys_proto::{
    common::v1::{LabelSelectorRequirement, ResourceQuantities},
    scheduler::v1::{Node, NodeState, WorkloadSpec},
};

use crate::config::Strategy;

/// Why a node was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Misfit {
    /// Not Ready (NotReady, Down, Draining).
    NotReady,
    /// Cordoned by an admin.
    Cordoned,
    /// Not enough CPU left.
    Cpu,
    /// Not enough memory left.
    Memory,
    /// Not enough disk left.
    Disk,
    /// Labels do not match the node selector or constraints.
    Labels,
    /// Already runs the allowed number of replicas of this workload.
    ReplicasPerNode,
}

impl Misfit {
    fn describe(self) -> &'static str {
        match self {
            Self::NotReady => "not ready",
            Self::Cordoned => "cordoned",
            Self::Cpu => "insufficient cpu",
            Self::Memory => "insufficient memory",
            Self::Disk => "insufficient disk",
            Self::Labels => "labels do not match",
            Self::ReplicasPerNode => "max replicas per node reached",
        }
    }
}

fn matches(labels: &HashMap<String, String>, req: &LabelSelectorRequirement) -> bool {
    persys_kit::select::requirement_matches(|k| labels.get(k), req)
}

/// Returns why `node` cannot take one instance of `spec`, or `None` when it fits.
/// `here` is how many replicas of the workload the node already runs.
pub fn misfit(node: &Node, spec: &WorkloadSpec, requests: &ResourceQuantities, here: i32) -> Option<Misfit> {
    if node.cordoned {
        return Some(Misfit::Cordoned);
    }
    if node.state() != NodeState::Ready {
        return Some(Misfit::NotReady);
    }
    if spec.node_selector.iter().any(|(k, v)| node.labels.get(k) != Some(v))
        || !spec.constraints.iter().all(|c| matches(&node.labels, c))
    {
        return Some(Misfit::Labels);
    }
    if spec.max_replicas_per_node > 0 && here >= spec.max_replicas_per_node {
        return Some(Misfit::ReplicasPerNode);
    }
    let avail = node.available.unwrap_or_default();
    if requests.cpu_millis > avail.cpu_millis {
        return Some(Misfit::Cpu);
    }
    if requests.memory_bytes > avail.memory_bytes {
        return Some(Misfit::Memory);
    }
    if requests.disk_bytes > avail.disk_bytes {
        return Some(Misfit::Disk);
    }
    None
}

fn free_fraction(node: &Node, requests: &ResourceQuantities) -> f64 {
    let alloc = node.allocatable.unwrap_or_default();
    let avail = node.available.unwrap_or_default();
    let part = |a: i64, r: i64, total: i64| if total > 0 { (a - r) as f64 / total as f64 } else { 0.0 };
    part(avail.cpu_millis, requests.cpu_millis, alloc.cpu_millis)
        + part(avail.memory_bytes, requests.memory_bytes, alloc.memory_bytes)
}

/// Chooses a node for one instance, or explains why none fits.
pub fn choose<'a>(
    nodes: &'a [Node],
    spec: &WorkloadSpec,
    requests: &ResourceQuantities,
    per_node: &HashMap<String, i32>,
    strategy: Strategy,
) -> Result<&'a Node, String> {
    let mut misfits: HashMap<Misfit, usize> = HashMap::new();
    let mut best: Option<(&Node, f64)> = None;
    for node in nodes {
        let here = per_node.get(&node.id).copied().unwrap_or(0);
        if let Some(m) = misfit(node, spec, requests, here) {
            *misfits.entry(m).or_default() += 1;
            continue;
        }
        let free = free_fraction(node, requests);
        let score = match strategy {
            Strategy::Binpack => -free,
            Strategy::Spread => free - f64::from(here),
        };
        // Ties go to the lowest node id, so the same snapshot always gives the same answer.
        let better = match best {
            None => true,
            Some((b, s)) => score > s + 1e-12 || ((score - s).abs() <= 1e-12 && node.id < b.id),
        };
        if better {
            best = Some((node, score));
        }
    }
    best.map(|(n, _)| n).ok_or_else(|| {
        if nodes.is_empty() {
            return "no nodes have joined the cluster".to_owned();
        }
        let mut reasons: Vec<_> = misfits.into_iter().collect();
        reasons.sort();
        let parts: Vec<String> = reasons.iter().map(|(m, n)| format!("{n} {}", m.describe())).collect();
        format!("0/{} nodes are available: {}", nodes.len(), parts.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use persys_proto::common::v1::{LabelSelectorOperator, ResourceQuantities as Q};

    use super::*;

    fn node(id: &str, cpu: i64, mem: i64, avail_cpu: i64, avail_mem: i64) -> Node {
        Node {
            id: id.into(),
            state: NodeState::Ready as i32,
            allocatable: Some(Q { cpu_millis: cpu, memory_bytes: mem, disk_bytes: 0 }),
            available: Some(Q { cpu_millis: avail_cpu, memory_bytes: avail_mem, disk_bytes: 0 }),
            ..Default::default()
        }
    }

    fn req(cpu: i64, mem: i64) -> Q {
        Q { cpu_millis: cpu, memory_bytes: mem, disk_bytes: 0 }
    }

    #[test]
    fn binpack_prefers_the_fullest_fitting_node_and_spread_the_emptiest() {
        let nodes = vec![node("a", 4000, 8 << 30, 3500, 7 << 30), node("b", 4000, 8 << 30, 1000, 2 << 30)];
        let spec = WorkloadSpec::default();
        let r = req(500, 1 << 30);
        assert_eq!(choose(&nodes, &spec, &r, &HashMap::new(), Strategy::Binpack).unwrap().id, "b");
        assert_eq!(choose(&nodes, &spec, &r, &HashMap::new(), Strategy::Spread).unwrap().id, "a");
    }

    #[test]
    fn nodes_that_do_not_fit_are_explained() {
        let mut cordoned = node("c", 4000, 8 << 30, 4000, 8 << 30);
        cordoned.cordoned = true;
        let mut down = node("d", 4000, 8 << 30, 4000, 8 << 30);
        down.state = NodeState::Down as i32;
        let nodes = vec![node("a", 1000, 1 << 30, 100, 1 << 30), cordoned, down];
        let err =
            choose(&nodes, &WorkloadSpec::default(), &req(500, 0), &HashMap::new(), Strategy::Binpack).unwrap_err();
        assert_eq!(err, "0/3 nodes are available: 1 not ready, 1 cordoned, 1 insufficient cpu");
        let none = choose(&[], &WorkloadSpec::default(), &req(1, 1), &HashMap::new(), Strategy::Binpack).unwrap_err();
        assert!(none.contains("no nodes"));
    }

    #[test]
    fn selectors_constraints_and_replica_caps_filter() {
        let mut gpu = node("gpu", 4000, 8 << 30, 4000, 8 << 30);
        gpu.labels.insert("accel".into(), "gpu".into());
        let plain = node("plain", 4000, 8 << 30, 4000, 8 << 30);
        let nodes = vec![plain, gpu];
        let mut spec = WorkloadSpec::default();
        spec.node_selector.insert("accel".into(), "gpu".into());
        assert_eq!(choose(&nodes, &spec, &req(0, 0), &HashMap::new(), Strategy::Spread).unwrap().id, "gpu");

        let mut spec = WorkloadSpec::default();
        spec.constraints.push(LabelSelectorRequirement {
            key: "accel".into(),
            operator: LabelSelectorOperator::DoesNotExist as i32,
            values: vec![],
        });
        assert_eq!(choose(&nodes, &spec, &req(0, 0), &HashMap::new(), Strategy::Spread).unwrap().id, "plain");

        let spec = WorkloadSpec { max_replicas_per_node: 1, ..Default::default() };
        let per_node = HashMap::from([("gpu".to_string(), 1), ("plain".to_string(), 1)]);
        assert!(choose(&nodes, &spec, &req(0, 0), &per_node, Strategy::Spread).unwrap_err().contains("max replicas"));
    }
}
