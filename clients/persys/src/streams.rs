//! `persys workload logs` and `workload exec`: output streamed from an instance.

use std::{
    io::{Read, Write},
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use persys_proto::{
    common::v1::{OutputChunk, OutputStream},
    scheduler::v1::{EnvVar, ExecWorkloadRequest, StreamLogsRequest, exec_workload_response::Payload},
};

use crate::{
    client::Session,
    error::{Exit, Failure, describe},
    run::key_value,
    workload::resolve,
};

/// Arguments of `persys workload logs`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  persys workload logs web --tail 100\n  persys workload logs web -f --since 10m")]
pub struct LogsArgs {
    /// Workload id, a unique prefix of it, or its name.
    id: String,
    /// Keep streaming new output until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines (default: all retained output).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(0..))]
    tail: Option<i32>,
    /// Only output written in the last DURATION, e.g. 10m.
    #[arg(long, value_parser = persys_kit::config::parse_duration)]
    since: Option<Duration>,
    /// Replica to read (0 for single-replica workloads).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    replica: i32,
}

/// Arguments of `persys workload exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Workload id, a unique prefix of it, or its name.
    id: String,
    /// Command and arguments (after `--`), run without a shell.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    /// Replica whose instance runs the command.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    replica: i32,
    /// Extra environment variable KEY=VAL (repeatable).
    #[arg(short = 'e', long = "env", value_parser = key_value)]
    env: Vec<(String, String)>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Send standard input (read to the end, at most 1 MiB) to the command.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Kill the command after this long (server default 60s, at most 10m).
    #[arg(long, value_parser = persys_kit::config::parse_duration)]
    command_timeout: Option<Duration>,
}

/// Writes a chunk of output to stdout or stderr, as it came.
pub fn write_chunk(chunk: &OutputChunk) -> std::io::Result<()> {
    if chunk.stream == OutputStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        err.write_all(&chunk.data)?;
        err.flush()
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&chunk.data)?;
        out.flush()
    }
}

/// Prints an instance's output.
pub async fn logs(s: &Session, args: LogsArgs) -> anyhow::Result<()> {
    let since = args.since.map(|d| prost_types::Timestamp::from(std::time::SystemTime::now() - d));
    let request = &StreamLogsRequest {
        workload_id: resolve(s, &args.id).await?,
        replica_index: args.replica,
        tail_lines: args.tail,
        since,
        follow: args.follow,
    };
    let mut stream = s.call(|c| async move { c.scheduler().stream_logs(request.clone()).await }).await?;
    while let Some(message) = stream.message().await.map_err(|e| describe(&e, &s.server))? {
        if let Some(chunk) = &message.chunk {
            write_chunk(chunk).context("writing output")?;
        }
    }
    Ok(())
}

/// Runs a command in an instance; exits with its exit code.
pub async fn exec(s: &Session, args: ExecArgs) -> anyhow::Result<()> {
    let stdin = if args.stdin {
        let mut buf = Vec::new();
        std::io::stdin().take(1 << 20 | 1).read_to_end(&mut buf).context("reading standard input")?;
        if buf.len() > 1 << 20 {
            return Err(Failure::new(Exit::Usage, "standard input is larger than exec's limit of 1 MiB").into());
        }
        buf
    } else {
        Vec::new()
    };
    let request = &ExecWorkloadRequest {
        workload_id: resolve(s, &args.id).await?,
        replica_index: args.replica,
        command: args.command,
        timeout: args.command_timeout.and_then(|d| d.try_into().ok()),
        env: args.env.into_iter().map(|(name, value)| EnvVar { name, value, sensitive: false }).collect(),
        working_dir: args.workdir.unwrap_or_default(),
        stdin,
    };
    let mut stream = s.call(|c| async move { c.scheduler().exec_workload(request.clone()).await }).await?;
    while let Some(message) = stream.message().await.map_err(|e| describe(&e, &s.server))? {
        match message.payload {
            Some(Payload::Output(chunk)) => write_chunk(&chunk).context("writing output")?,
            Some(Payload::Exit(exit)) => {
                if exit.timed_out {
                    eprintln!("persys: the command was killed after its timeout");
                }
                if exit.output_truncated {
                    eprintln!("persys: some output was dropped (over the server's cap)");
                }
                std::process::exit(if exit.exit_code < 0 { 1 } else { exit.exit_code });
            }
            None => {}
        }
    }
    Err(Failure::new(Exit::Error, "the exec stream ended without the command's exit status").into())
}
