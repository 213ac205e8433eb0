// What the Projects page shows of Kapsa projects, their environments and their builds: rows,
// orders, phase and condition badges, and the watch events the reconciler streams as the
// events a live collection folds. Pure, so it is tested without a browser.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Condition, ConditionStatus, type WatchEventType } from "../gen/persys/common/v1/common_pb";
import { type Build, BuildPhase } from "../gen/persys/reconciler/v1/build_pb";
import { type Environment, EnvironmentPhase } from "../gen/persys/reconciler/v1/environment_pb";
import type { ObjectMeta } from "../gen/persys/reconciler/v1/object_meta_pb";
import { EnvironmentType, type Project } from "../gen/persys/reconciler/v1/project_pb";
import { resourceVersion } from "./personas";
import type { Tone } from "./states";
import type { WatchEvent } from "./watch";

/** The message a not-enabled ProjectService (UNIMPLEMENTED) is told with. */
export const PROJECTS_NOT_ENABLED =
  "Kapsa projects are not enabled on this cluster: run the reconciler with --projects (chart: reconciler.projects.enabled)";

/** `namespace/name` of an object: the key of a live collection and of a project filter. */
export function objectKey(o: { metadata?: ObjectMeta }): string {
  return `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;
}

/** By namespace, then name. */
export function byKey(a: { metadata?: ObjectMeta }, b: { metadata?: ObjectMeta }): number {
  const ka = objectKey(a);
  const kb = objectKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** One event of WatchProjects, WatchEnvironments or WatchBuilds as a live collection folds it. */
export function watchEvent<T>(type: WatchEventType, rv: string, item: T | undefined): WatchEvent<T> {
  return { type, revision: resourceVersion(rv), item };
}

/** A commit as people read it: its first seven characters. */
export function shortCommit(sha: string): string {
  return sha.slice(0, 7);
}

/**
 * An image reference short enough for a table: the repository's last segment with its tag,
 * and a digest's first 12 hex digits ("registry.example.com/team/api@sha256:0123…" →
 * "api@sha256:0123456789ab").
 */
export function shortImage(ref: string): string {
  if (!ref) return "";
  const [name, digest] = ref.split("@", 2);
  const last = name.slice(name.lastIndexOf("/") + 1);
  if (!digest) return last;
  const [alg, hex = ""] = digest.split(":", 2);
  return `${last}@${alg}:${hex.slice(0, 12)}`;
}

/** A condition of `conditions` by type. */
export function conditionOf(conditions: readonly Condition[], type: string): Condition | undefined {
  return conditions.find((c) => c.type === type);
}

/** How a condition reads: "True", "False" or "Unknown", and its tone (every Kapsa condition is good when true). */
export function conditionBadge(c: Condition | undefined): { label: string; tone: Tone } {
  switch (c?.status) {
    case ConditionStatus.TRUE:
      return { label: "True", tone: "ok" };
    case ConditionStatus.FALSE:
      return { label: "False", tone: "bad" };
    case ConditionStatus.UNKNOWN:
      return { label: "Unknown", tone: "warn" };
    default:
      return { label: "Not reconciled", tone: "idle" };
  }
}

/** Conditions in the order a reader wants them: failing first (BuildSucceeded among them), then by type. */
export function orderedConditions(conditions: readonly Condition[]): Condition[] {
  const failing = (c: Condition) => (c.status === ConditionStatus.FALSE ? 0 : 1);
  return [...conditions].sort((a, b) => failing(a) - failing(b) || (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}

/** The conditions that are False: what the detail puts above everything else. */
export function failingConditions(conditions: readonly Condition[]): Condition[] {
  return orderedConditions(conditions).filter((c) => c.status === ConditionStatus.FALSE);
}

/** One row of the projects table. */
export interface ProjectRow {
  key: string;
  namespace: string;
  name: string;
  repository: string;
  ready: { label: string; tone: Tone; reason: string; message: string };
  /** "ready/total" of its environments. */
  environments: string;
  latestImage: string;
  latestCommit: string;
  /** A failing BuildSucceeded, flagged in the row. */
  buildFailed: boolean;
}

export function projectRow(p: Project): ProjectRow {
  const conditions = p.status?.conditions ?? [];
  const ready = conditionOf(conditions, "Ready");
  const envs = p.status?.environments ?? [];
  return {
    key: objectKey(p),
    namespace: p.metadata?.namespace ?? "",
    name: p.metadata?.name ?? "",
    repository: p.spec?.repository?.url ?? "",
    ready: { ...conditionBadge(ready), reason: ready?.reason ?? "", message: ready?.message ?? "" },
    environments: `${envs.filter((e) => e.ready).length}/${envs.length}`,
    latestImage: p.status?.latestImage ?? "",
    latestCommit: shortCommit(p.status?.latestCommit ?? ""),
    buildFailed: conditionOf(conditions, "BuildSucceeded")?.status === ConditionStatus.FALSE,
  };
}

export function environmentPhaseLabel(p: EnvironmentPhase | undefined): string {
  switch (p) {
    case EnvironmentPhase.PENDING:
      return "Pending";
    case EnvironmentPhase.BUILDING:
      return "Building";
    case EnvironmentPhase.RUNNING:
      return "Running";
    case EnvironmentPhase.FAILED:
      return "Failed";
    default:
      return "Not reconciled";
  }
}

export function environmentPhaseTone(p: EnvironmentPhase | undefined): Tone {
  switch (p) {
    case EnvironmentPhase.RUNNING:
      return "ok";
    case EnvironmentPhase.PENDING:
    case EnvironmentPhase.BUILDING:
      return "busy";
    case EnvironmentPhase.FAILED:
      return "bad";
    default:
      return "idle";
  }
}

export function environmentTypeLabel(t: EnvironmentType | undefined): string {
  switch (t) {
    case EnvironmentType.PERMANENT:
      return "permanent";
    case EnvironmentType.PREVIEW:
      return "preview";
    default:
      return "unknown";
  }
}

/** Permanent environments first, then previews, each by name. */
export function byEnvironment(a: Environment, b: Environment): number {
  const rank = (e: Environment) => (e.spec?.type === EnvironmentType.PREVIEW ? 1 : 0);
  return rank(a) - rank(b) || byKey(a, b);
}

/** An environment's first URL, when it is one a link may carry (http or https). */
export function environmentUrl(e: Environment): string | undefined {
  const url = e.status?.urls[0];
  return url && /^https?:\/\//.test(url) ? url : undefined;
}

export function buildPhaseLabel(p: BuildPhase | undefined): string {
  switch (p) {
    case BuildPhase.PENDING:
      return "Pending";
    case BuildPhase.RUNNING:
      return "Running";
    case BuildPhase.SUCCEEDED:
      return "Succeeded";
    case BuildPhase.FAILED:
      return "Failed";
    default:
      return "Unknown";
  }
}

export function buildPhaseTone(p: BuildPhase | undefined): Tone {
  switch (p) {
    case BuildPhase.SUCCEEDED:
      return "ok";
    case BuildPhase.PENDING:
    case BuildPhase.RUNNING:
      return "busy";
    case BuildPhase.FAILED:
      return "bad";
    default:
      return "idle";
  }
}

/** When a build last changed state: finished, else started, else its object's creation. */
export function buildTime(b: Build): number {
  const ts = b.finishedAt ?? b.startedAt ?? b.metadata?.creationTimestamp;
  return ts ? timestampMs(ts) : 0;
}

/** Newest first (as ListBuilds orders them), then by namespace and name. */
export function byNewestBuild(a: Build, b: Build): number {
  return buildTime(b) - buildTime(a) || byKey(a, b);
}

/** When a preview goes, from `now`: "in 3d", "in 5h", "in 12m", "in 40s", or "expired". */
export function expiresText(atMs: number, nowMs: number): string {
  const s = Math.round((atMs - nowMs) / 1000);
  if (s <= 0) return "expired";
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.floor(s / 60)}m`;
  if (s < 86400) return `in ${Math.floor(s / 3600)}h`;
  return `in ${Math.floor(s / 86400)}d`;
}
