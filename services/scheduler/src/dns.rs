//! DNS records for CoreDNS's etcd plugin: `<node>.nodes.<zone>` points at a node's first
//! address, `<workload>.workloads.<zone>` at the nodes of its running instances (one record
//! per instance under the name, so the name answers with all of them).
//!
//! Records live under `/skydns/` with the labels reversed, as the plugin expects, and are
//! best effort: a failed write is logged and repaired by the next change.

use persys_proto::scheduler::v1::Workload;
use serde::Serialize;

use crate::kv::{Kv, MAX_TXN_OPS, Op};

#[derive(Serialize)]
struct Record<'a> {
    host: &'a str,
    ttl: u32,
}

fn key(zone: &str, labels: &[&str]) -> String {
    let mut parts: Vec<&str> = zone.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    let mut key = String::from("/skydns");
    for p in parts.iter().chain(labels.iter().rev()) {
        key.push('/');
        key.push_str(p);
    }
    key
}

/// Returns the record key of a node.
pub fn node_key(zone: &str, node: &str) -> String {
    key(zone, &[node, "nodes"])
}

/// Returns the record key of one instance of a workload (`name` is the workload's name).
pub fn instance_key(zone: &str, name: &str, instance: &str) -> String {
    key(zone, &[instance, name, "workloads"])
}

/// Returns the prefix of the record keys of every instance of one workload (instance ids
/// start with their workload's id); names are not unique, ids are.
pub fn workload_prefix(zone: &str, name: &str, workload_id: &str) -> String {
    format!("{}/{workload_id}-", key(zone, &[name, "workloads"]))
}

/// Returns the record keys of a node that is lost or deleted: its own and those of every
/// instance of `workloads` placed on it.
pub fn node_keys(zone: &str, node_id: &str, workloads: &[Workload]) -> Vec<String> {
    let mut keys = vec![node_key(zone, node_id)];
    for w in workloads {
        for i in w.status.iter().flat_map(|s| &s.instances).filter(|i| i.node_id == node_id) {
            keys.push(instance_key(zone, &w.name, &i.instance_id));
        }
    }
    keys
}

/// Deletes records, in transactions within the store's operation limit.
pub async fn remove<K: Kv>(kv: &K, keys: Vec<String>) {
    for chunk in keys.chunks(MAX_TXN_OPS) {
        let ops = chunk.iter().map(|k| Op::Delete(k.clone())).collect();
        if let Err(error) = kv.txn(vec![], ops).await {
            tracing::warn!(records = chunk.len(), %error, "dns records not removed");
        }
    }
}

/// Deletes every record under `prefix`.
pub async fn remove_prefix<K: Kv>(kv: &K, prefix: &str) {
    match kv.range(prefix).await {
        Ok((entries, _)) => remove(kv, entries.into_iter().map(|e| e.key).collect()).await,
        Err(error) => tracing::warn!(%prefix, %error, "dns records not listed for removal"),
    }
}

/// Writes (or, with no address, deletes) a record.
pub async fn set<K: Kv>(kv: &K, key: String, address: Option<&str>) {
    let op = match address {
        Some(host) => {
            let value = serde_json::to_vec(&Record { host, ttl: 30 }).expect("a record serializes");
            Op::put(key.clone(), value)
        }
        None => Op::Delete(key.clone()),
    };
    if let Err(error) = kv.txn(vec![], vec![op]).await {
        tracing::warn!(%key, %error, "dns record not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reverse_the_name_as_coredns_expects() {
        assert_eq!(node_key("persys.local", "n1"), "/skydns/local/persys/nodes/n1");
        assert_eq!(instance_key("persys.local", "web", "w-1"), "/skydns/local/persys/workloads/web/w-1");
        assert_eq!(node_key("cluster.example.com.", "n1"), "/skydns/com/example/cluster/nodes/n1");
        assert_eq!(workload_prefix("persys.local", "web", "w"), "/skydns/local/persys/workloads/web/w-");
        assert!(instance_key("persys.local", "web", "w-1").starts_with(&workload_prefix("persys.local", "web", "w")));
    }

    #[test]
    fn a_lost_node_takes_its_own_record_and_its_instances_records() {
        use persys_proto::scheduler::v1::{InstanceStatus, WorkloadStatus};
        let on = |id: &str, node: &str| InstanceStatus {
            instance_id: id.into(),
            node_id: node.into(),
            ..Default::default()
        };
        let w = Workload {
            name: "web".into(),
            status: Some(WorkloadStatus { instances: vec![on("w-1", "n1"), on("w-2", "n2")], ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(
            node_keys("persys.local", "n1", &[w]),
            ["/skydns/local/persys/nodes/n1", "/skydns/local/persys/workloads/web/w-1"]
        );
    }
}
