// What the Personas page shows of a persona: phase and health names and tones, issue counts,
// the baseline in one line, and a stable order; the cluster persona's facts. Pure, so it is
// tested without a browser.
import { FindingSeverity } from "../gen/persys/analyzer/v1/finding_pb";
import { EnvNeed, EnvSource } from "../gen/persys/analyzer/v1/persona_pb";
import { type ApplicationPersona, HealthStatus, PersonaPhase } from "../gen/persys/reconciler/v1/application_persona_pb";
import { ClusterEnvironment, type ClusterPersona, ClusterPhase } from "../gen/persys/reconciler/v1/cluster_persona_pb";
import type { Tone } from "./states";

export function personaPhaseLabel(p: PersonaPhase | undefined): string {
  switch (p) {
    case PersonaPhase.PENDING:
      return "Pending";
    case PersonaPhase.ACTIVE:
      return "Active";
    case PersonaPhase.DEGRADED:
      return "Degraded";
    case PersonaPhase.FAILED:
      return "Failed";
    default:
      return "Not reconciled";
  }
}

export function personaPhaseTone(p: PersonaPhase | undefined): Tone {
  switch (p) {
    case PersonaPhase.ACTIVE:
      return "ok";
    case PersonaPhase.PENDING:
      return "busy";
    case PersonaPhase.DEGRADED:
      return "warn";
    case PersonaPhase.FAILED:
      return "bad";
    default:
      return "idle";
  }
}

export function healthLabel(h: HealthStatus | undefined): string {
  switch (h) {
    case HealthStatus.HEALTHY:
      return "Healthy";
    case HealthStatus.DEGRADED:
      return "Degraded";
    case HealthStatus.UNHEALTHY:
      return "Unhealthy";
    default:
      return "Unknown";
  }
}

/** Errors and warnings of the last validation. */
export function issueCounts(p: ApplicationPersona): { errors: number; warnings: number } {
  const issues = p.status?.validation?.issues ?? [];
  return {
    errors: issues.filter((i) => i.severity === FindingSeverity.ERROR).length,
    warnings: issues.filter((i) => i.severity === FindingSeverity.WARNING).length,
  };
}

/** "CPU 250m avg / 500m peak · memory 258Mi avg / 512Mi peak", or "" without a baseline. */
export function baselineText(p: ApplicationPersona): string {
  const b = p.status?.learned?.resourceBaseline;
  if (!b) return "";
  const part = (what: string, avg: string, peak: string) =>
    avg || peak ? `${what} ${avg || "–"} avg / ${peak || "–"} peak` : "";
  return [part("CPU", b.avgCpu, b.peakCpu), part("memory", b.avgMemory, b.peakMemory)].filter(Boolean).join(" · ");
}

/** One environment variable of a persona as the page lists it. */
export interface EnvRow {
  name: string;
  /** "required", "defaulted", "optional", or "set, not read" when no read was found. */
  need: string;
  /** Where the Deployment takes it from, in words. */
  source: string;
  /** Whether the pod cannot start until someone sets it. */
  missing: boolean;
  /** The code's default and where the code reads it, e.g. "default 8080 · src/app.py:12". */
  detail: string;
}

/** The persona's `spec.env` (never values: only a non-secret default the code writes). */
export function envRows(p: ApplicationPersona): EnvRow[] {
  const app = p.spec?.name || p.metadata?.name || "app";
  return (p.spec?.env ?? []).map((e) => {
    const need =
      e.need === EnvNeed.REQUIRED
        ? "required"
        : e.need === EnvNeed.DEFAULTED
          ? "defaulted"
          : e.need === EnvNeed.OPTIONAL
            ? "optional"
            : "set, not read";
    const source =
      e.source === EnvSource.CONFIG_MAP
        ? `ConfigMap ${app}-config`
        : e.source === EnvSource.SECRET
          ? `Secret ${app}-secrets`
          : e.source === EnvSource.IMAGE
            ? "the image"
            : e.source === EnvSource.MISSING
              ? `nothing yet: add it to ConfigMap ${app}-config`
              : "not set";
    const detail = [e.defaultValue ? `default ${e.defaultValue}` : "", e.readAt].filter(Boolean).join(" · ");
    return { name: e.name, need, source, missing: e.source === EnvSource.MISSING, detail };
  });
}

/** By namespace, then name. */
export function byNamespaceAndName(a: ApplicationPersona, b: ApplicationPersona): number {
  const ka = `${a.metadata?.namespace ?? ""}/${a.metadata?.name ?? ""}`;
  const kb = `${b.metadata?.namespace ?? ""}/${b.metadata?.name ?? ""}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * A Kubernetes resource version as a watch revision: they are etcd revisions, decimal numbers,
 * though the API calls them opaque. One that is not a number reads as 0, so a break after it
 * starts over with a fresh snapshot instead of resuming from a wrong place.
 */
export function resourceVersion(rv: string): bigint {
  return /^[0-9]+$/.test(rv) ? BigInt(rv) : 0n;
}

/** The phases a filter offers, in order. */
export const PERSONA_PHASES: readonly PersonaPhase[] = [
  PersonaPhase.PENDING,
  PersonaPhase.ACTIVE,
  PersonaPhase.DEGRADED,
  PersonaPhase.FAILED,
];

/** Personas in `namespace` (any when empty) and `phase` (any when undefined) whose name or namespace contains `text`. */
export function filterPersonas(
  list: readonly ApplicationPersona[],
  f: { namespace?: string; phase?: PersonaPhase; text?: string },
): ApplicationPersona[] {
  const q = (f.text ?? "").trim().toLowerCase();
  return list.filter(
    (p) =>
      (!f.namespace || p.metadata?.namespace === f.namespace) &&
      (f.phase === undefined || (p.status?.phase ?? PersonaPhase.UNSPECIFIED) === f.phase) &&
      (!q || (p.metadata?.name ?? "").toLowerCase().includes(q) || (p.metadata?.namespace ?? "").toLowerCase().includes(q)),
  );
}

/** The namespaces of `list`, sorted, each once. */
export function namespacesOf(list: readonly ApplicationPersona[]): string[] {
  return [...new Set(list.map((p) => p.metadata?.namespace ?? ""))].sort();
}

const ENVIRONMENTS: Record<ClusterEnvironment, string> = {
  [ClusterEnvironment.UNSPECIFIED]: "development",
  [ClusterEnvironment.DEVELOPMENT]: "development",
  [ClusterEnvironment.STAGING]: "staging",
  [ClusterEnvironment.PRODUCTION]: "production",
  [ClusterEnvironment.SANDBOX]: "sandbox",
};

export function clusterPhaseLabel(p: ClusterPhase | undefined): string {
  switch (p) {
    case ClusterPhase.DISCOVERING:
      return "Discovering";
    case ClusterPhase.READY:
      return "Ready";
    case ClusterPhase.DEGRADED:
      return "Degraded";
    case ClusterPhase.UNKNOWN:
      return "Unknown";
    default:
      return "Not discovered";
  }
}

export function clusterPhaseTone(p: ClusterPhase | undefined): Tone {
  switch (p) {
    case ClusterPhase.READY:
      return "ok";
    case ClusterPhase.DISCOVERING:
      return "busy";
    case ClusterPhase.DEGRADED:
      return "warn";
    default:
      return "idle";
  }
}

/** The cluster persona's facts, as label and value, in the order the page lists them. */
export function clusterFacts(cp: ClusterPersona): [string, string][] {
  const s = cp.status;
  const facts: [string, string][] = [["Environment", ENVIRONMENTS[cp.spec?.environment ?? ClusterEnvironment.UNSPECIFIED] ?? "development"]];
  if (!s) return facts;
  const platform = [s.platform, s.kubernetesVersion].filter(Boolean).join(" ");
  if (platform) facts.push(["Platform", platform]);
  const ready = s.nodes.filter((n) => n.ready).length;
  facts.push(["Nodes", `${ready}/${s.nodes.length} ready`]);
  const r = s.resourceSummary;
  if (r) {
    facts.push(["CPU", `${Math.round(r.cpuUtilization)} % of ${r.allocatableCpu || "?"} requested`]);
    facts.push(["Memory", `${Math.round(r.memoryUtilization)} % of ${r.allocatableMemory || "?"} requested`]);
    facts.push(["Pods", `${r.runningPods} running of ${r.totalPods} slots`]);
  }
  if (s.namespaces) facts.push(["Namespaces", `${s.namespaces.active} active, ${s.namespaces.withPersonas} with personas`]);
  facts.push(["Applications", String(s.applicationCount)]);
  const installed = s.addons.filter((a) => a.installed);
  facts.push([
    "Add-ons",
    installed.length ? installed.map((a) => `${a.name}${a.version ? ` ${a.version}` : ""}${a.healthy ? "" : " (unhealthy)"}`).join(", ") : "none found",
  ]);
  return facts;
}
