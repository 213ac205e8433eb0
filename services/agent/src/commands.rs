//! Commands from the scheduler: each runs in its own task and ends with exactly one
//! CommandResult on the stream it came from.
//!
//! Streaming commands (logs, exec) belong to their stream and are canceled when it breaks;
//! lifecycle commands (run, stop, remove, restart) finish regardless, their effect reaching the
//! scheduler as status events and in the next hello.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use persys_proto::scheduler::v1::{
    CommandResult, ConnectRequest, ConnectResponse, ContainerActionResult, ExecExit, WorkloadStatusEvent,
    connect_request, connect_response::Payload,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    driver::{
        Output, container::duration, docker::DockerDriver, is_process_image, process::ProcessDriver,
        validate_instance_id,
    },
    error::CommandError,
    host_command::HostPolicy,
};

/// The enabled drivers.
#[derive(Debug, Default)]
pub struct Drivers {
    /// Containers, when enabled.
    pub docker: Option<Arc<DockerDriver>>,
    /// Host processes, when enabled.
    pub process: Option<Arc<ProcessDriver>>,
    /// What host commands may run (none by default).
    pub host: HostPolicy,
}

enum Target<'a> {
    Docker(&'a Arc<DockerDriver>),
    Process(&'a Arc<ProcessDriver>),
}

impl Drivers {
    fn for_instance(&self, instance_id: &str) -> Result<Target<'_>, CommandError> {
        validate_instance_id(instance_id)?;
        if let Some(p) = &self.process
            && p.has(instance_id)
        {
            return Ok(Target::Process(p));
        }
        self.docker
            .as_ref()
            .map(Target::Docker)
            .ok_or_else(|| CommandError::new("ContainerNotFound", format!("no instance `{instance_id}` on this node")))
    }

    /// Returns the names of the enabled drivers that work now, and why the others do not.
    pub async fn available(&self) -> (Vec<String>, String) {
        let mut names = Vec::new();
        let mut problems = Vec::new();
        if let Some(d) = &self.docker {
            match d.health().await {
                None => names.push("docker".to_owned()),
                Some(why) => problems.push(why),
            }
        }
        if self.process.is_some() {
            names.push("process".to_owned());
        }
        (names, problems.join("; "))
    }

    /// Returns the status of every instance of every available driver.
    pub async fn inventory(&self) -> Vec<WorkloadStatusEvent> {
        let mut all = Vec::new();
        if let Some(d) = &self.docker {
            match d.inventory().await {
                Ok(list) => all.extend(list),
                Err(error) => tracing::warn!(%error, "listing containers failed; the hello lists none"),
            }
        }
        if let Some(p) = &self.process {
            all.extend(p.inventory());
        }
        all
    }
}

/// Runs commands and tracks the cancelable ones.
#[derive(Debug)]
pub struct Commands {
    drivers: Arc<Drivers>,
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Commands {
    /// Returns a dispatcher over `drivers`.
    pub fn new(drivers: Arc<Drivers>) -> Arc<Self> {
        Arc::new(Self { drivers, running: Mutex::default() })
    }

    /// Starts a command received on a stream fed by `tx`; `session` is canceled when that
    /// stream ends.
    pub fn dispatch(
        self: &Arc<Self>,
        message: ConnectResponse,
        tx: mpsc::Sender<ConnectRequest>,
        session: &CancellationToken,
    ) {
        let Some(payload) = message.payload else {
            tracing::warn!(command_id = %message.command_id, "command without a payload");
            return;
        };
        let command_id = message.command_id;
        let output = Output::new(command_id.clone(), tx);
        if let Payload::Cancel(cancel) = &payload {
            let token = self.running.lock().expect("running lock").get(&cancel.target_command_id).cloned();
            let result = match token {
                Some(token) => {
                    token.cancel();
                    Ok(Outcome::Done)
                }
                None => Err(CommandError::new(
                    "CommandNotFound",
                    format!("no running command `{}`", cancel.target_command_id),
                )),
            };
            tokio::spawn(async move { finish(&output, result).await });
            return;
        }
        let streaming = matches!(
            payload,
            Payload::Logs(_) | Payload::Exec(_) | Payload::HostCommand(_) | Payload::ContainerAction(_)
        );
        let token = if streaming { session.child_token() } else { CancellationToken::new() };
        self.running.lock().expect("running lock").insert(command_id.clone(), token.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.execute(payload, &output, &token).await;
            this.running.lock().expect("running lock").remove(&command_id);
            if let Err(e) = &result {
                tracing::info!(%command_id, reason = e.reason, message = %e.message, "command failed");
            }
            finish(&output, result).await;
        });
    }

    async fn execute(
        &self,
        payload: Payload,
        output: &Output,
        cancel: &CancellationToken,
    ) -> Result<Outcome, CommandError> {
        let drivers = &self.drivers;
        match payload {
            Payload::Run(run) => {
                validate_instance_id(&run.instance_id)?;
                let image = run.spec.as_ref().map(|s| s.image.as_str()).unwrap_or_default();
                if is_process_image(image) {
                    let p = drivers.process.as_ref().ok_or_else(|| {
                        CommandError::new("DriverUnavailable", "the process driver is not enabled on this node")
                    })?;
                    p.run(&run).await?;
                } else {
                    let d = drivers.docker.as_ref().ok_or_else(|| {
                        CommandError::new("DriverUnavailable", "the docker driver is not enabled on this node")
                    })?;
                    d.run(&run, output).await?;
                }
                Ok(Outcome::Done)
            }
            Payload::Stop(stop) => {
                let grace = duration(&stop.grace_period);
                match drivers.for_instance(&stop.instance_id)? {
                    Target::Docker(d) => d.stop(&stop.instance_id, grace).await?,
                    Target::Process(p) => p.stop(&stop.instance_id, grace).await?,
                }
                Ok(Outcome::Done)
            }
            Payload::Remove(remove) => {
                let grace = duration(&remove.grace_period);
                match drivers.for_instance(&remove.instance_id)? {
                    Target::Docker(d) => d.remove(&remove.instance_id, grace, remove.remove_volumes).await?,
                    Target::Process(p) => p.remove(&remove.instance_id, grace).await?,
                }
                Ok(Outcome::Done)
            }
            Payload::Restart(restart) => {
                let grace = duration(&restart.grace_period);
                match drivers.for_instance(&restart.instance_id)? {
                    Target::Docker(d) => d.restart(&restart.instance_id, grace).await?,
                    Target::Process(p) => p.restart(&restart.instance_id, grace).await?,
                }
                Ok(Outcome::Done)
            }
            Payload::Logs(logs) => {
                match drivers.for_instance(&logs.instance_id)? {
                    Target::Docker(d) => d.logs(&logs, output, cancel).await?,
                    Target::Process(p) => p.logs(&logs, output, cancel).await?,
                }
                Ok(Outcome::Done)
            }
            Payload::Exec(exec) => match drivers.for_instance(&exec.instance_id)? {
                Target::Docker(d) => Ok(Outcome::Exit(d.exec(&exec, output, cancel).await?)),
                Target::Process(_) => {
                    Err(CommandError::new("NotSupported", "exec is not available for process instances"))
                }
            },
            Payload::HostCommand(command) => Ok(Outcome::Exit(drivers.host.run(&command, output, cancel).await?)),
            Payload::ContainerAction(action) => {
                let d = drivers.docker.as_ref().ok_or_else(|| {
                    CommandError::new("DriverUnavailable", "the docker driver is not enabled on this node")
                })?;
                Ok(Outcome::Container(d.action(&action, output, cancel).await?))
            }
            Payload::Welcome(_) => Err(CommandError::new("InvalidArgument", "unexpected Welcome")),
            Payload::Cancel(_) => unreachable!("handled in dispatch"),
        }
    }
}

/// How a command that did what it asked ended.
enum Outcome {
    /// Nothing to tell but success.
    Done,
    /// A process ran (exec, host command).
    Exit(ExecExit),
    /// A container was acted on.
    Container(ContainerActionResult),
}

async fn finish(output: &Output, result: Result<Outcome, CommandError>) {
    let command_id = output.command_id().to_owned();
    let result = match result {
        Ok(outcome) => {
            let (exit, container) = match outcome {
                Outcome::Done => (None, None),
                Outcome::Exit(exit) => (Some(exit), None),
                Outcome::Container(c) => (None, Some(c)),
            };
            CommandResult { command_id, success: true, exit, container, ..Default::default() }
        }
        Err(e) => CommandResult {
            command_id,
            success: false,
            reason: e.reason.to_owned(),
            message: e.message,
            ..Default::default()
        },
    };
    if output.raw(connect_request::Payload::CommandResult(result)).await.is_err() {
        tracing::debug!(command_id = %output.command_id(), "stream closed before the command result could be sent");
    }
}
