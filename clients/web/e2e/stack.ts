// A real persys-stack for the browser tests: started on a free loopback port with the process
// driver, and Docker beside it when the test bench has an engine (DOCKER_HOST; containers
// without a network), and the built dashboard as its web root; ready when the gateway prints
// its ready line; stopped with SIGTERM.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

/** The repository's root. */
export const REPO = resolve(import.meta.dirname, "../../..");

/** A running stack. */
export interface Stack {
  url: string;
  adminPassword: string;
  /** The stack's state directory (its CA is `certs/ca.pem`). */
  state: string;
  /** The services' ready lines by service (e.g. `scheduler` → `{grpc, bootstrap}`). */
  ready: Record<string, Record<string, string>>;
  log: () => string;
  stop: () => Promise<void>;
}

/** Returns the persys-stack binary scripts/test built. */
export function stackBinary(): string {
  const target = process.env.CARGO_TARGET_DIR || join(REPO, "target");
  const bin = process.env.PERSYS_STACK_BIN || join(target, "debug", "persys-stack");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build it with cargo build --bins -p persys-stack`);
  return bin;
}

/** The built-in agent's drivers: host processes, and Docker when the bench has an engine. */
function drivers(): string[] {
  const docker = process.env.DOCKER_HOST;
  if (!docker) return ["--driver", "process"];
  return ["--driver", "auto", "--docker-host", docker, "--network-mode", "none"];
}

/** Starts the stack serving `webRoot` (with `extraArgs`); resolves once its gateway is ready. */
export async function startStack(webRoot: string, extraArgs: string[] = []): Promise<Stack> {
  const dir = mkdtempSync(join(tmpdir(), "persys-web-e2e-"));
  const state = join(dir, "state");
  const child: ChildProcess = spawn(
    stackBinary(),
    ["--dir", state, "--listen", "127.0.0.1:0", ...drivers(), "--admin-listen", "off", "--web-root", webRoot, ...extraArgs],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" } },
  );
  const lines: string[] = [];
  const keep = (l: string) => {
    lines.push(l);
    if (lines.length > 400) lines.shift();
  };
  createInterface({ input: child.stderr! }).on("line", keep);
  const log = () => lines.join("\n");
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const readyLines: Record<string, Record<string, string>> = {};
  const ready = new Promise<string>((resolveReady, reject) => {
    createInterface({ input: child.stdout! }).on("line", (l) => {
      keep(l);
      try {
        const v = JSON.parse(l);
        if (v.event === "ready" && typeof v.service === "string") readyLines[v.service] = v;
        if (v.event === "ready" && v.service === "gateway" && v.public) resolveReady(`http://${v.public}`);
      } catch {
        // Not a ready line.
      }
    });
    void exited.then((code) => reject(new Error(`persys-stack exited (${code}) before it was ready:\n${log()}`)));
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`persys-stack was not ready within 60 s:\n${log()}`)), 60_000);
  });
  const url = await Promise.race([ready, timeout]).finally(() => clearTimeout(timer));
  return {
    url,
    adminPassword: readFileSync(join(state, "admin-password"), "utf8").trim(),
    state,
    ready: readyLines,
    log,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
