// Real persys agents beside a running persys-stack, for the benchmark of many live nodes: each
// joins the stack's scheduler with a join token (its own key and certificate, like any
// machine), heartbeats, and ships this machine's host metrics to the stack's metrics pipeline
// every 5 s. They run the process driver only and are never given work. Stopped with SIGTERM.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { REPO, type Stack } from "./stack";

/** Returns the agent binary scripts/test built (`cargo build --bins`). */
export function agentBinary(): string {
  const target = process.env.CARGO_TARGET_DIR || join(REPO, "target");
  const bin = process.env.PERSYS_AGENT_BIN || join(target, "debug", "agent");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build --bins -p persys-agent`);
  return bin;
}

/** Agents started; `stop` ends them all, `pause`/`resume` freeze them (SIGSTOP/SIGCONT). */
export interface Agents {
  names: string[];
  log: (i: number) => string;
  pause: () => void;
  resume: () => void;
  stop: () => Promise<void>;
}

/**
 * Starts `n` agents named `<prefix>-NNN` joining `stack` with `token` (one with at least `n`
 * uses), their state under `dir`, one every `spreadMs / n`: a fleet's agents do not sample in
 * the same instant, and started together their 5 s timers would all fire at once.
 */
export async function startAgents(stack: Stack, token: string, n: number, prefix: string, dir: string, spreadMs = 5000): Promise<Agents> {
  const scheduler = stack.ready.scheduler;
  const metrics = stack.ready["metrics-pipeline"];
  if (!scheduler?.grpc || !scheduler.bootstrap || !metrics?.grpc) throw new Error(`the stack did not say where its scheduler and metrics pipeline listen: ${JSON.stringify(stack.ready)}`);
  const port = (addr: string) => addr.slice(addr.lastIndexOf(":") + 1);
  const children: ChildProcess[] = [];
  const logs: string[][] = [];
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, spreadMs / n));
    const name = `${prefix}-${String(i).padStart(3, "0")}`;
    const home = join(dir, name);
    mkdirSync(join(home, "processes"), { recursive: true });
    const child = spawn(
      agentBinary(),
      [
        "--scheduler",
        `https://localhost:${port(scheduler.grpc)}`,
        "--bootstrap",
        `https://localhost:${port(scheduler.bootstrap)}`,
        "--join-token",
        token,
        "--ca-file",
        join(stack.state, "certs", "ca.pem"),
        "--state-dir",
        join(home, "state"),
        "--process-dir",
        join(home, "processes"),
        "--node-name",
        name,
        "--drivers",
        "process",
        "--admin-api-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
        "--metrics-pipeline",
        `https://localhost:${port(metrics.grpc)}`,
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.PERSYS_AGENT_LOG ?? "warn" } },
    );
    const lines: string[] = [];
    const keep = (b: Buffer) => {
      lines.push(b.toString());
      if (lines.length > 50) lines.shift();
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    children.push(child);
    logs.push(lines);
    names.push(name);
  }
  const signal = (s: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null) c.kill(s);
  };
  return {
    names,
    log: (i) => logs[i].join(""),
    pause: () => signal("SIGSTOP"),
    resume: () => signal("SIGCONT"),
    stop: async () => {
      signal("SIGCONT");
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((r) => {
              if (c.exitCode !== null || c.signalCode !== null) return r();
              const t = setTimeout(() => c.kill("SIGKILL"), 20_000);
              c.on("exit", () => {
                clearTimeout(t);
                r();
              });
              c.kill("SIGTERM");
            }),
        ),
      );
    },
  };
}
