//! `persys workload`: run, list, inspect and change workloads.

use clap::{Args, Subcommand};
use persys_proto::{
    common::v1::PageRequest,
    scheduler::v1::{
        DeleteWorkloadRequest, GetWorkloadRequest, ListWorkloadsRequest, RestartWorkloadRequest, StartWorkloadRequest,
        StopWorkloadRequest, Workload,
    },
};

use crate::{
    client::{Global, Session},
    error::{Exit, Failure},
    output::{self, Table, age, dash, duration, emit, now_secs, short},
    run::{self, RunArgs},
    streams::{self, ExecArgs, LogsArgs},
    view,
};

/// `persys workload ...`
#[derive(Subcommand, Debug)]
pub enum WorkloadCommand {
    /// Run a container image as a workload.
    Run(Box<RunArgs>),
    /// List workloads.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one workload: spec, status, instances and recent events.
    Get(IdArg),
    /// Print a workload's container output.
    Logs(LogsArgs),
    /// Stop every instance and keep the workload (start it again with `workload start`).
    Stop(GraceArgs),
    /// Run a stopped workload again.
    Start(IdArg),
    /// Restart every instance in place, one replica at a time.
    Restart(GraceArgs),
    /// Stop and remove workloads.
    #[command(visible_alias = "delete")]
    Rm(RmArgs),
    /// Run a command in a running instance and print its output.
    ///
    /// The command runs without a shell or a terminal; `persys` exits with its exit code.
    #[command(after_help = "Example:\n  persys workload exec web -- cat /etc/os-release")]
    Exec(ExecArgs),
}

/// A workload named by id, id prefix or name.
#[derive(Args, Debug)]
pub struct IdArg {
    /// Workload id, a unique prefix of it, or its name.
    pub id: String,
}

/// `workload stop|restart`.
#[derive(Args, Debug)]
pub struct GraceArgs {
    /// Workload id, a unique prefix of it, or its name.
    id: String,
    /// Time between SIGTERM and SIGKILL (default: the workload's stop timeout), e.g. 30s.
    #[arg(long, value_parser = persys_kit::config::parse_duration)]
    grace_period: Option<std::time::Duration>,
}

/// `workload rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Workload ids, unique prefixes or names.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Delete the record at once, without waiting for the nodes to confirm the removal.
    #[arg(long)]
    force: bool,
}

/// `workload list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only workloads with this label (k=v, repeatable).
    #[arg(short = 'l', long = "label", value_parser = run::key_value)]
    labels: Vec<(String, String)>,
    /// Only workloads with an instance on this node.
    #[arg(long)]
    node: Option<String>,
    /// Only your own workloads.
    #[arg(long)]
    mine: bool,
}

/// Runs a `workload` subcommand.
pub async fn run(global: &Global, command: WorkloadCommand) -> anyhow::Result<()> {
    let session = Session::open(global)?;
    let s = &session;
    match command {
        WorkloadCommand::Run(args) => run::run(global, s, *args).await,
        WorkloadCommand::List(args) => list(global, s, args).await,
        WorkloadCommand::Get(IdArg { id }) => {
            let id = &resolve(s, &id).await?;
            let w = s
                .call(|c| async move { c.scheduler().get_workload(GetWorkloadRequest { id: id.clone() }).await })
                .await?;
            show(global, w.workload.unwrap_or_default())
        }
        WorkloadCommand::Logs(args) => streams::logs(s, args).await,
        WorkloadCommand::Exec(args) => streams::exec(s, args).await,
        WorkloadCommand::Stop(GraceArgs { id, grace_period }) => {
            let req = &StopWorkloadRequest {
                id: resolve(s, &id).await?,
                grace_period: grace_period.and_then(|d| d.try_into().ok()),
                expected_revision: 0,
            };
            let w = s.call(|c| async move { c.scheduler().stop_workload(req.clone()).await }).await?;
            changed(global, "stopping", w.workload)
        }
        WorkloadCommand::Start(IdArg { id }) => {
            let req = &StartWorkloadRequest { id: resolve(s, &id).await?, expected_revision: 0 };
            let w = s.call(|c| async move { c.scheduler().start_workload(req.clone()).await }).await?;
            changed(global, "starting", w.workload)
        }
        WorkloadCommand::Restart(GraceArgs { id, grace_period }) => {
            let req = &RestartWorkloadRequest {
                id: resolve(s, &id).await?,
                grace_period: grace_period.and_then(|d| d.try_into().ok()),
                expected_revision: 0,
            };
            let w = s.call(|c| async move { c.scheduler().restart_workload(req.clone()).await }).await?;
            changed(global, "restarting", w.workload)
        }
        WorkloadCommand::Rm(RmArgs { ids, force }) => {
            for id in ids {
                let req = &DeleteWorkloadRequest {
                    id: resolve(s, &id).await?,
                    force,
                    grace_period: None,
                    expected_revision: 0,
                };
                s.call(|c| async move { c.scheduler().delete_workload(req.clone()).await }).await?;
                println!("{}", req.id);
                eprintln!("deleting workload {}", req.id);
            }
            Ok(())
        }
    }
}

fn changed(global: &Global, verb: &str, w: Option<Workload>) -> anyhow::Result<()> {
    let w = w.unwrap_or_default();
    if global.output == output::Format::Table {
        println!("{}", w.id);
        eprintln!("{verb} workload {} ({})", w.id, w.name);
        Ok(())
    } else {
        show(global, w)
    }
}

/// Returns every workload the filters select (all pages) and the revision read at.
pub async fn list_all(s: &Session, request: ListWorkloadsRequest) -> anyhow::Result<(Vec<Workload>, i64)> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let req = &ListWorkloadsRequest {
            page: Some(PageRequest { page_size: 1000, page_token: token.clone() }),
            ..request.clone()
        };
        let page = s.call(|c| async move { c.scheduler().list_workloads(req.clone()).await }).await?;
        all.extend(page.workloads);
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok((all, page.revision));
        }
    }
}

/// Resolves a workload named by full id, unique id prefix or name to its id.
pub async fn resolve(s: &Session, arg: &str) -> anyhow::Result<String> {
    if uuid::Uuid::parse_str(arg).is_ok() {
        return Ok(arg.to_owned());
    }
    let (all, _) = list_all(s, ListWorkloadsRequest::default()).await?;
    pick(arg, &all)
}

fn pick(arg: &str, all: &[Workload]) -> anyhow::Result<String> {
    let by_name: Vec<&Workload> = all.iter().filter(|w| w.name == arg).collect();
    // Tables show the end of an id (see `output::short`), so either end identifies it.
    let matches = if by_name.is_empty() {
        all.iter().filter(|w| w.id.starts_with(arg) || w.id.ends_with(arg)).collect()
    } else {
        by_name
    };
    match matches.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => {
            Err(Failure::new(Exit::NotFound, format!("no workload `{arg}` (tried name, id, id prefix and suffix)"))
                .into())
        }
        many => {
            let names: Vec<String> = many.iter().map(|w| format!("  {} {}", w.id, w.name)).collect();
            Err(Failure::new(
                Exit::Usage,
                format!("`{arg}` matches {} workloads; use the full id:\n{}", many.len(), names.join("\n")),
            )
            .into())
        }
    }
}

async fn list(global: &Global, s: &Session, args: ListArgs) -> anyhow::Result<()> {
    let owner_id = if args.mine {
        let me =
            s.call(|c| async move { c.auth().who_am_i(persys_proto::gateway::v1::WhoAmIRequest {}).await }).await?;
        me.user.map(|u| u.id).unwrap_or_default()
    } else {
        String::new()
    };
    let request = ListWorkloadsRequest {
        node_id: args.node.unwrap_or_default(),
        label_selector: run::selector(args.labels),
        owner_id,
        ..Default::default()
    };
    let (all, _) = list_all(s, request).await?;
    if all.is_empty() && global.output == output::Format::Table {
        eprintln!("no workloads: start one with `persys workload run IMAGE`");
        return Ok(());
    }
    let views: Vec<view::Workload> = all.iter().map(view::Workload::from).collect();
    emit(global.output, &views, || table(&all).to_string())
}

/// Returns the `workload list` table.
pub fn table(all: &[Workload]) -> Table {
    let now = now_secs();
    let mut t = Table::new(&["ID", "NAME", "PHASE", "READY", "NODE", "RESTARTS", "AGE"]);
    for w in all {
        t.row(row(w, now));
    }
    t
}

/// Returns one workload's table cells.
pub fn row(w: &Workload, now: i64) -> Vec<String> {
    let status = w.status.clone().unwrap_or_default();
    let replicas = w.spec.as_ref().map_or(1, |s| s.replicas.max(1));
    vec![
        short(&w.id),
        w.name.clone(),
        view::phase(status.phase),
        format!("{}/{replicas}", status.ready_replicas),
        dash(&short(&status.node_id)),
        status.restart_count.to_string(),
        age(w.created_at.as_ref(), now),
    ]
}

fn show(global: &Global, w: Workload) -> anyhow::Result<()> {
    emit(global.output, &view::Workload::from(&w), || describe(&w))
}

fn describe(w: &Workload) -> String {
    let now = now_secs();
    let spec = w.spec.clone().unwrap_or_default();
    let status = w.status.clone().unwrap_or_default();
    let mut phase = view::phase(status.phase);
    if !status.reason.is_empty() {
        phase = format!("{phase} ({}): {}", status.reason, status.message);
    }
    let mut out = output::describe(&[
        ("ID", w.id.clone()),
        ("Name", w.name.clone()),
        ("Image", spec.image.clone()),
        ("Command", spec.command.iter().chain(&spec.args).cloned().collect::<Vec<_>>().join(" ")),
        ("Phase", phase),
        ("Desired", view::desired(w.desired_state)),
        ("Ready", format!("{}/{}", status.ready_replicas, spec.replicas.max(1))),
        ("Restarts", status.restart_count.to_string()),
        ("Owner", w.owner_id.clone()),
        ("Created", format!("{} ago", age(w.created_at.as_ref(), now))),
    ]);
    if !status.instances.is_empty() {
        let mut t = Table::new(&["REPLICA", "INSTANCE", "NODE", "PHASE", "REASON", "RESTARTS"]);
        for i in &status.instances {
            t.row(vec![
                i.replica_index.to_string(),
                short(&i.instance_id),
                dash(&short(&i.node_id)),
                view::phase(i.phase),
                match &i.restart_at {
                    // Waiting out its restart backoff.
                    Some(at) => format!("{}, restarts in {}", dash(&i.reason), duration((at.seconds - now).max(0))),
                    None => dash(&i.reason),
                },
                i.restart_count.to_string(),
            ]);
        }
        out.push_str(&format!("\nInstances:\n{t}"));
    }
    if !w.events.is_empty() {
        let mut t = Table::new(&["AGE", "TYPE", "REASON", "MESSAGE"]);
        for e in w.events.iter().rev().take(10).rev() {
            let count = if e.count > 1 { format!(" (x{})", e.count) } else { String::new() };
            t.row(vec![
                age(e.time.as_ref(), now),
                view::event_type(e.r#type),
                e.reason.clone(),
                e.message.clone() + &count,
            ]);
        }
        out.push_str(&format!("\nEvents:\n{t}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, name: &str) -> Workload {
        Workload { id: id.into(), name: name.into(), ..Default::default() }
    }

    #[test]
    fn workloads_resolve_by_name_then_unique_prefix_or_suffix() {
        let all = [w("aaaa-1", "web"), w("aabb-2", "db"), w("cccc-3", "aaaa")];
        assert_eq!(pick("web", &all).unwrap(), "aaaa-1");
        assert_eq!(pick("aab", &all).unwrap(), "aabb-2");
        assert_eq!(pick("c-3", &all).unwrap(), "cccc-3");
        // A name wins over an id prefix.
        assert_eq!(pick("aaaa", &all).unwrap(), "cccc-3");
        let many = pick("aa", &all).unwrap_err().downcast::<Failure>().unwrap();
        assert_eq!(many.exit, Exit::Usage);
        let none = pick("zz", &all).unwrap_err().downcast::<Failure>().unwrap();
        assert_eq!(none.exit, Exit::NotFound);
    }
}
