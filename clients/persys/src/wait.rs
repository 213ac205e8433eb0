//! `workload run --wait`: follow one workload until it settles, showing its phase, reason and
//! new events (a spinner on a terminal, plain lines otherwise).

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressStyle};
use persys_proto::scheduler::v1::{Workload, WorkloadPhase};

use crate::{
    client::Session,
    error::{Exit, Failure, fail},
    view,
};

/// Returns whether a phase ends `--wait`.
pub fn settled(phase: i32) -> bool {
    [WorkloadPhase::Running, WorkloadPhase::Succeeded, WorkloadPhase::Failed, WorkloadPhase::Stopped]
        .iter()
        .any(|p| *p as i32 == phase)
}

/// The one-line summary of where a workload is.
pub fn summary(w: &Workload) -> String {
    let status = w.status.clone().unwrap_or_default();
    let replicas = w.spec.as_ref().map_or(1, |s| s.replicas.max(1));
    let mut text = format!("{}: {} {}/{replicas} ready", w.name, view::phase(status.phase), status.ready_replicas);
    if !status.reason.is_empty() {
        text.push_str(&format!(" ({}", status.reason));
        if !status.message.is_empty() {
            text.push_str(&format!(": {}", status.message));
        }
        text.push(')');
    }
    text
}

/// Shows progress on a terminal (spinner) or as plain lines.
struct Progress {
    bar: Option<ProgressBar>,
    last: String,
    seen: HashMap<String, i32>,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self { bar, last: String::new(), seen: HashMap::new() }
    }

    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn update(&mut self, w: &Workload) {
        for e in &w.events {
            if self.seen.get(&e.id) != Some(&e.count) {
                self.seen.insert(e.id.clone(), e.count);
                let count = if e.count > 1 { format!(" (x{})", e.count) } else { String::new() };
                self.say(&format!("  {} {}: {}{count}", view::event_type(e.r#type), e.reason, e.message));
            }
        }
        let line = summary(w);
        if line != self.last {
            match &self.bar {
                Some(bar) => bar.set_message(line.clone()),
                None => eprintln!("{line}"),
            }
            self.last = line;
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Follows `created` until its phase settles; returns it then. Fails on timeout or deletion.
pub async fn until_settled(s: &Session, created: &Workload, timeout: Option<Duration>) -> anyhow::Result<Workload> {
    let mut progress = Progress::new();
    progress.update(created);
    if created.status.as_ref().is_some_and(|st| settled(st.phase)) {
        progress.finish();
        return Ok(created.clone());
    }
    let mut latest = created.clone();
    let follow = s.client().wait_until(
        &created.id,
        created.revision,
        |w| {
            progress.update(w);
            latest = w.clone();
            w.status.as_ref().is_some_and(|st| settled(st.phase))
        },
        |line| eprintln!("watch: {line}"),
    );
    // `None`: the deadline passed.
    let outcome = match timeout {
        Some(t) => tokio::time::timeout(t, follow).await.ok(),
        None => Some(follow.await),
    };
    progress.finish();
    match outcome {
        Some(Ok(w)) => Ok(w),
        Some(Err(e)) if e.code() == Some(tonic::Code::NotFound) => {
            Err(Failure::new(Exit::NotFound, format!("workload {} was deleted while waiting", created.id)).into())
        }
        Some(Err(e)) => Err(fail(e, &s.server).into()),
        None => Err(Failure::new(
            Exit::Timeout,
            format!("gave up waiting after {:?}: still {}", timeout.unwrap_or_default(), summary(&latest)),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use persys_proto::scheduler::v1::{WorkloadSpec, WorkloadStatus};

    use super::*;

    #[test]
    fn summaries_show_phase_readiness_and_reason() {
        let w = Workload {
            name: "web".into(),
            spec: Some(WorkloadSpec { replicas: 3, ..Default::default() }),
            status: Some(WorkloadStatus {
                phase: WorkloadPhase::Pending as i32,
                reason: "Unschedulable".into(),
                message: "no nodes have joined the cluster".into(),
                ready_replicas: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(summary(&w), "web: Pending 1/3 ready (Unschedulable: no nodes have joined the cluster)");
        assert!(!settled(WorkloadPhase::Pending as i32));
        assert!(settled(WorkloadPhase::Running as i32));
        assert!(settled(WorkloadPhase::Failed as i32));
    }
}
