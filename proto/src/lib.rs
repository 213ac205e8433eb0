//! Generated Rust types, clients and servers for the Persys v1 contracts.
//!
//! The `.proto` files under `persys/` are the source of truth; this crate compiles them, and
//! [`workload`] holds the few rules of the contract that more than one service checks.
//! [`FILE_DESCRIPTOR_SET`] holds every file so servers can answer gRPC reflection.

#![allow(clippy::all, missing_docs)]

pub mod workload;

/// The encoded `FileDescriptorSet` of every Persys contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/persys_descriptor.bin"));

/// `persys.common.v1`: messages shared by every service.
pub mod common {
    pub mod v1 {
        tonic::include_proto!("persys.common.v1");
    }
}

/// `persys.gateway.v1`: authentication, users, API keys, audit.
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("persys.gateway.v1");
    }
}

/// `persys.scheduler.v1`: nodes, workloads, join, the agent stream.
pub mod scheduler {
    pub mod v1 {
        tonic::include_proto!("persys.scheduler.v1");
    }
}

/// `persys.agent.v1`: the agent's local admin API.
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("persys.agent.v1");
    }
}

/// `persys.analyzer.v1`: app analysis, manifests and persona validation.
pub mod analyzer {
    pub mod v1 {
        tonic::include_proto!("persys.analyzer.v1");
    }
}

/// `persys.metrics.v1`: host metrics, alerts, DORA, server commands.
pub mod metrics {
    pub mod v1 {
        tonic::include_proto!("persys.metrics.v1");
    }
}

/// `persys.reconciler.v1`: personas, cluster, Kapsa projects and environments.
pub mod reconciler {
    pub mod v1 {
        tonic::include_proto!("persys.reconciler.v1");
    }
}
