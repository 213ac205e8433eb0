// The "run workload" form: its text inputs parsed into a CreateWorkloadRequest. Only what
// cannot be sent at all (an unreadable quantity, an unclosed quote) is refused here, under the
// field path the server would use; everything else is the server's to judge, and its field
// violations come back to the same inputs.
import { create } from "@bufbuild/protobuf";
import {
  type CreateWorkloadRequest,
  CreateWorkloadRequestSchema,
} from "../gen/persys/scheduler/v1/workload_api_pb";
import { RestartPolicy } from "../gen/persys/scheduler/v1/workload_pb";
import type { Violation } from "./errors";

/** What the user typed. */
export interface RunForm {
  name: string;
  image: string;
  command: string;
  env: string;
  ports: string;
  cpu: string;
  memory: string;
  replicas: string;
  restart: "always" | "on-failure" | "never";
}

/** An empty form. */
export const EMPTY_FORM: RunForm = {
  name: "",
  image: "",
  command: "",
  env: "",
  ports: "",
  cpu: "",
  memory: "",
  replicas: "1",
  restart: "always",
};

/** The field paths each input edits, for assignViolations. */
export const FORM_FIELDS: Record<keyof RunForm, readonly string[]> = {
  name: ["name"],
  image: ["spec.image"],
  command: ["spec.command", "spec.args"],
  env: ["spec.env"],
  ports: ["spec.ports"],
  cpu: ["spec.resources.requests.cpu_millis", "spec.resources"],
  memory: ["spec.resources.requests.memory_bytes"],
  replicas: ["spec.replicas", "spec.max_replicas_per_node"],
  restart: ["spec.restart_policy", "spec.max_restarts"],
};

/** Splits a command line into words as a POSIX shell would (quotes, backslashes; no expansion). */
export function shellWords(line: string): string[] | null {
  const words: string[] = [];
  let cur = "";
  let has = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      has = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) words.push(cur);
      cur = "";
      has = false;
    } else {
      cur += c;
    }
  }
  if (quote) return null;
  if (has || cur) words.push(cur);
  return words;
}

/** Parses CPU as cores ("0.5", "2") or millicores ("250m"). */
export function parseCpuMillis(s: string): bigint | null {
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(s.trim());
  if (!m) return null;
  const millis = m[2] ? Number(m[1]) : Number(m[1]) * 1000;
  return Number.isInteger(millis) ? BigInt(millis) : null;
}

const MEMORY_UNITS: Record<string, number> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

/** Parses memory as bytes with an optional unit ("128Mi", "1G", "1.5Gi"). */
export function parseMemoryBytes(s: string): bigint | null {
  const m = /^(\d+(?:\.\d+)?)(k|M|G|Ki|Mi|Gi|Ti)?$/.exec(s.trim());
  if (!m) return null;
  const bytes = Number(m[1]) * MEMORY_UNITS[m[2] ?? ""];
  return Number.isFinite(bytes) ? BigInt(Math.round(bytes)) : null;
}

const RESTART: Record<RunForm["restart"], RestartPolicy> = {
  always: RestartPolicy.ALWAYS,
  "on-failure": RestartPolicy.ON_FAILURE,
  never: RestartPolicy.NEVER,
};

/** Builds the request, or the violations that keep it from being sent. */
export function buildRequest(
  f: RunForm,
  requestId: string,
): { request: CreateWorkloadRequest; violations: [] } | { request: null; violations: Violation[] } {
  const v: Violation[] = [];
  const command = shellWords(f.command);
  if (command === null) v.push({ field: "spec.command", description: "a quote is not closed" });
  const env = f.env
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l, i) => {
      const eq = l.indexOf("=");
      if (eq < 0) v.push({ field: `spec.env[${i}]`, description: `\`${l}\`: write NAME=value` });
      return { name: eq < 0 ? l : l.slice(0, eq), value: eq < 0 ? "" : l.slice(eq + 1) };
    });
  const ports = f.ports
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((p, i) => {
      const m = /^(?:(\d+):)?(\d+)$/.exec(p);
      if (!m) v.push({ field: `spec.ports[${i}]`, description: `\`${p}\`: write CONTAINER or HOST:CONTAINER` });
      return { hostPort: Number(m?.[1] ?? 0), containerPort: Number(m?.[2] ?? 0) };
    });
  const cpu = f.cpu.trim() ? parseCpuMillis(f.cpu) : 0n;
  if (cpu === null) v.push({ field: "spec.resources.requests.cpu_millis", description: "cores (0.5) or millicores (250m)" });
  const memory = f.memory.trim() ? parseMemoryBytes(f.memory) : 0n;
  if (memory === null)
    v.push({ field: "spec.resources.requests.memory_bytes", description: "bytes with a unit, e.g. 128Mi or 1Gi" });
  const replicas = f.replicas.trim() === "" ? 1 : Number(f.replicas);
  if (!Number.isInteger(replicas)) v.push({ field: "spec.replicas", description: "a whole number" });
  if (v.length) return { request: null, violations: v };
  const resources =
    cpu || memory ? { requests: { cpuMillis: cpu ?? 0n, memoryBytes: memory ?? 0n } } : undefined;
  return {
    request: create(CreateWorkloadRequestSchema, {
      name: f.name.trim(),
      requestId,
      spec: {
        image: f.image.trim(),
        command: command ?? [],
        env,
        ports,
        resources,
        replicas,
        restartPolicy: RESTART[f.restart],
      },
    }),
    violations: [],
  };
}
