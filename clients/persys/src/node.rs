//! `persys node`: list and inspect nodes; cordon, drain and uncordon them (admins).

use clap::{Args, Subcommand};
use persys_proto::{
    common::v1::PageRequest,
    scheduler::v1::{
        CordonNodeRequest, DeleteNodeRequest, DrainNodeRequest, GetNodeRequest, ListNodesRequest, Node,
        UncordonNodeRequest,
    },
};

use crate::{
    client::{Global, Session},
    output::{self, Format, Table, age, dash, emit, now_secs, short},
    quantity::{format_bytes, format_cpu},
    run, view,
};

/// `persys node ...`
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes.
    #[command(visible_alias = "ls")]
    List {
        /// Only nodes with this label (k=v, repeatable).
        #[arg(short = 'l', long = "label", value_parser = run::key_value)]
        labels: Vec<(String, String)>,
    },
    /// Show one node.
    Get {
        /// Node id.
        id: String,
    },
    /// Stop placing new instances on a node; running ones stay (admin).
    Cordon(ReasonArgs),
    /// Cordon a node and move its instances elsewhere (admin).
    Drain {
        #[command(flatten)]
        target: ReasonArgs,
        /// Time each instance gets between SIGTERM and SIGKILL, e.g. 30s.
        #[arg(long, value_parser = persys_kit::config::parse_duration)]
        grace_period: Option<std::time::Duration>,
    },
    /// Make a cordoned or drained node schedulable again (admin).
    Uncordon {
        /// Node id.
        id: String,
    },
    /// Remove a node record; the machine must join again to come back (admin).
    Rm {
        /// Node id.
        id: String,
        /// Remove it even if it is not down or still has instances (they are rescheduled).
        #[arg(long)]
        force: bool,
    },
}

/// A node and why it is being changed.
#[derive(Args, Debug)]
pub struct ReasonArgs {
    /// Node id.
    id: String,
    /// Why, shown in the node's state reason, e.g. "kernel upgrade".
    #[arg(long, default_value = "")]
    reason: String,
}

/// Runs a `node` subcommand.
pub async fn run(global: &Global, command: NodeCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    let node = match command {
        NodeCommand::List { labels } => return list(global, s, labels).await,
        NodeCommand::Get { id } => {
            let id = &id;
            s.call(|c| async move { c.scheduler().get_node(GetNodeRequest { id: id.clone() }).await }).await?.node
        }
        NodeCommand::Cordon(ReasonArgs { id, reason }) => {
            let req = &CordonNodeRequest { id, reason };
            s.call(|c| async move { c.scheduler().cordon_node(req.clone()).await }).await?.node
        }
        NodeCommand::Drain { target, grace_period } => {
            let req = &DrainNodeRequest {
                id: target.id,
                reason: target.reason,
                grace_period: grace_period.and_then(|d| d.try_into().ok()),
            };
            let answer = s.call(|c| async move { c.scheduler().drain_node(req.clone()).await }).await?;
            if !answer.workload_ids.is_empty() {
                eprintln!("rescheduling {} workload(s): {}", answer.workload_ids.len(), answer.workload_ids.join(", "));
            }
            answer.node
        }
        NodeCommand::Uncordon { id } => {
            let req = &UncordonNodeRequest { id };
            s.call(|c| async move { c.scheduler().uncordon_node(req.clone()).await }).await?.node
        }
        NodeCommand::Rm { id, force } => {
            let req = &DeleteNodeRequest { id, force };
            s.call(|c| async move { c.scheduler().delete_node(req.clone()).await }).await?;
            eprintln!("node {} removed", req.id);
            return Ok(());
        }
    };
    let node = node.unwrap_or_default();
    emit(global.output, &view::Node::from(&node), || describe(&node))
}

async fn list(global: &Global, s: &Session, labels: Vec<(String, String)>) -> anyhow::Result<()> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let req = &ListNodesRequest {
            page: Some(PageRequest { page_size: 1000, page_token: token.clone() }),
            label_selector: run::selector(labels.clone()),
            ..Default::default()
        };
        let page = s.call(|c| async move { c.scheduler().list_nodes(req.clone()).await }).await?;
        all.extend(page.nodes);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    if all.is_empty() && global.output == Format::Table {
        eprintln!("no nodes yet: create a join token (persys token create) and start an agent with it");
        return Ok(());
    }
    let views: Vec<view::Node> = all.iter().map(view::Node::from).collect();
    emit(global.output, &views, || {
        let now = now_secs();
        let mut t = Table::new(&["ID", "HOSTNAME", "STATE", "CPU", "MEM", "INSTANCES", "HEARTBEAT"]);
        for n in &all {
            t.row(row(n, now));
        }
        t.to_string()
    })
}

/// Returns one node's table cells: CPU and memory as available/allocatable.
pub fn row(n: &Node, now: i64) -> Vec<String> {
    let avail = n.available.unwrap_or_default();
    let alloc = n.allocatable.unwrap_or_default();
    vec![
        short(&n.id),
        dash(&n.hostname),
        view::node_state(n.state),
        format!("{}/{}", format_cpu(avail.cpu_millis), format_cpu(alloc.cpu_millis)),
        format!("{}/{}", format_bytes(avail.memory_bytes), format_bytes(alloc.memory_bytes)),
        n.instance_count.to_string(),
        age(n.last_heartbeat.as_ref(), now),
    ]
}

fn describe(n: &Node) -> String {
    let now = now_secs();
    let (avail, alloc, cap) =
        (n.available.unwrap_or_default(), n.allocatable.unwrap_or_default(), n.capacity.unwrap_or_default());
    let info = n.info.clone().unwrap_or_default();
    let mut labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    let mut state = view::node_state(n.state);
    if !n.state_reason.is_empty() {
        state = format!("{state} ({})", n.state_reason);
    }
    output::describe(&[
        ("ID", n.id.clone()),
        ("Hostname", n.hostname.clone()),
        ("State", state),
        ("Addresses", n.addresses.join(", ")),
        ("DNS", n.dns_name.clone()),
        ("Labels", labels.join(", ")),
        (
            "CPU",
            format!(
                "{} available of {} allocatable ({} total)",
                format_cpu(avail.cpu_millis),
                format_cpu(alloc.cpu_millis),
                format_cpu(cap.cpu_millis)
            ),
        ),
        (
            "Memory",
            format!(
                "{} available of {} allocatable ({} total)",
                format_bytes(avail.memory_bytes),
                format_bytes(alloc.memory_bytes),
                format_bytes(cap.memory_bytes)
            ),
        ),
        ("Drivers", n.drivers.join(", ")),
        ("Instances", n.instance_count.to_string()),
        ("System", [info.os_image, info.arch, info.kernel_version].join(" ").trim().to_owned()),
        ("Runtime", format!("{} {}", info.container_runtime, info.container_runtime_version).trim().to_owned()),
        ("Agent", info.agent_version),
        ("Owner", n.owner_id.clone()),
        ("Heartbeat", format!("{} ago", age(n.last_heartbeat.as_ref(), now))),
        ("Joined", format!("{} ago", age(n.joined_at.as_ref(), now))),
    ])
}
