//! DNS records for CoreDNS's etcd plugin: `<node>.nodes.<zone>` points at a node's first
//! address, `<workload>.workloads.<zone>` at the nodes of its running instances (one record
//! per instance under the name, so the name answers with all of them).
//!
//! Records live under `/skydns/` with the labels reversed, as the plugin expects, and are
//! best effort: a failed write is logged and repaired by the next change.

use serde::Serialize;

use crate::kv::{Kv, Op};

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
    }
}
