// DORA: the four keys' windows and the words and numbers the DORA page shows them in
// (durations, frequencies, rates, bands), and a deployment's parts (statuses, DevLake state,
// revisions, commits).
import { type Duration, type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import {
  DeploymentEnvironment,
  DeploymentStatus,
  DevlakePushState,
  DoraPerformanceLevel,
  type DoraWeek,
} from "../gen/persys/metrics/v1/dora_pb";
import type { Tone } from "./states";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Windows the four keys are computed over, in days. */
export const DORA_WINDOWS: readonly { days: number; label: string }[] = [
  { days: 30, label: "30 d" },
  { days: 90, label: "90 d" },
  { days: 180, label: "180 d" },
];

/** The window the page opens with, in days. */
export const DEFAULT_WINDOW_DAYS = 90;

/** The range of the last `days` days at `nowMs`: a start and no end (the server's now). */
export function windowRange(days: number, nowMs: number): { start: Timestamp } {
  return { start: timestampFromMs(nowMs - days * DAY_MS) };
}

/** Environments a user picks from, Production (the server's default) first. */
export const ENVIRONMENTS: readonly { environment: DeploymentEnvironment; label: string }[] = [
  { environment: DeploymentEnvironment.PRODUCTION, label: "Production" },
  { environment: DeploymentEnvironment.STAGING, label: "Staging" },
  { environment: DeploymentEnvironment.TESTING, label: "Testing" },
  { environment: DeploymentEnvironment.DEVELOPMENT, label: "Development" },
];

/** An environment's name ("Unknown" for an unset or unknown one). */
export function environmentLabel(e: DeploymentEnvironment): string {
  return ENVIRONMENTS.find((x) => x.environment === e)?.label ?? "Unknown";
}

/** A protobuf duration in milliseconds; undefined when unset. */
export function durationMs(d?: Duration): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** A number with one decimal below 10 ("2.5", "1"), whole from 10 on ("14"). */
function short(v: number): string {
  return v < 9.95 ? String(Math.round(v * 10) / 10) : String(Math.round(v));
}

/**
 * A duration as a person says it: "45 s", "40 min", "5 h", "2.5 d", "45 d"; "—" when there is
 * none. Each unit is used up to where its rounded value would read as the next one.
 */
export function humanDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "—";
  const v = Math.max(0, ms);
  if (v < 59_500) return `${Math.round(v / 1000)} s`;
  if (v < 59.5 * MINUTE_MS) return `${Math.round(v / MINUTE_MS)} min`;
  if (v < 23.5 * HOUR_MS) return `${short(v / HOUR_MS)} h`;
  return `${short(v / DAY_MS)} d`;
}

/** A protobuf duration as humanDuration says it. */
export function durationText(d?: Duration): string {
  return humanDuration(durationMs(d));
}

/**
 * A deployment frequency: per day from one a day, per week from one a week, per month (30
 * days) below that; "none" for zero.
 */
export function frequencyText(perDay: number): string {
  if (!(perDay > 0)) return "none";
  if (perDay >= 1) return `${short(perDay)} per day`;
  if (perDay * 7 >= 1) return `${short(perDay * 7)} per week`;
  const perMonth = perDay * 30;
  return `${perMonth < 0.05 ? "< 0.1" : short(perMonth)} per month`;
}

/** A 0-1 rate as a percentage with at most one decimal: "50 %", "3.3 %". */
export function percentText(rate: number): string {
  if (!Number.isFinite(rate)) return "—";
  return `${Math.round(rate * 1000) / 10} %`;
}

const LEVELS: Record<DoraPerformanceLevel, { label: string; tone: Tone }> = {
  [DoraPerformanceLevel.UNSPECIFIED]: { label: "not enough data", tone: "idle" },
  [DoraPerformanceLevel.ELITE]: { label: "Elite", tone: "ok" },
  [DoraPerformanceLevel.HIGH]: { label: "High", tone: "busy" },
  [DoraPerformanceLevel.MEDIUM]: { label: "Medium", tone: "warn" },
  [DoraPerformanceLevel.LOW]: { label: "Low", tone: "bad" },
};

/** A DORA band's name ("not enough data" when the window could not be classified). */
export function levelLabel(l: DoraPerformanceLevel): string {
  return (LEVELS[l] ?? LEVELS[DoraPerformanceLevel.UNSPECIFIED]).label;
}

/** A DORA band's tone. */
export function levelTone(l: DoraPerformanceLevel): Tone {
  return (LEVELS[l] ?? LEVELS[DoraPerformanceLevel.UNSPECIFIED]).tone;
}

/** The benchmark the bands come from, in words: "dora-2023" is "DORA 2023 bands". */
export function benchmarkLabel(benchmark: string): string {
  const m = /^dora-(\d{4})$/i.exec(benchmark.trim());
  if (m) return `DORA ${m[1]} bands`;
  return benchmark.trim() ? `${benchmark.trim()} bands` : "";
}

/** A deployment's status in words and tone. */
export function statusOf(s: DeploymentStatus): { label: string; tone: Tone } {
  switch (s) {
    case DeploymentStatus.SUCCESS:
      return { label: "Success", tone: "ok" };
    case DeploymentStatus.FAILED:
      return { label: "Failed", tone: "bad" };
    default:
      return { label: "Unknown", tone: "idle" };
  }
}

/** Where a DevLake push stands, in words and tone. */
export function devlakeOf(s: DevlakePushState | undefined): { label: string; tone: Tone } {
  switch (s) {
    case DevlakePushState.SENT:
      return { label: "Sent", tone: "ok" };
    case DevlakePushState.PENDING:
      return { label: "Pending", tone: "busy" };
    case DevlakePushState.FAILED:
      return { label: "Failed", tone: "bad" };
    case DevlakePushState.SKIPPED:
      return { label: "Skipped", tone: "idle" };
    default:
      return { label: "Unknown", tone: "idle" };
  }
}

/** The first 8 characters of a revision or commit SHA. */
export function shortSha(sha: string): string {
  return sha.slice(0, 8);
}

/** A repository URL as host/path: "https://github.com/acme/ui" is "github.com/acme/ui". */
export function repoPath(url: string): string {
  try {
    const u = new URL(url);
    return `${u.host}${u.pathname}`.replace(/\/+$/, "").replace(/\.git$/, "");
  } catch {
    return url.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/+$/, "");
  }
}

/** A commit message's first line (its subject). */
export function firstLine(message: string): string {
  return message.split(/\r?\n/, 1)[0].trim();
}

/** A day as YYYY-MM-DD in UTC (weeks start Monday 00:00 UTC). */
export function utcDate(ts?: Timestamp): string {
  return ts ? new Date(timestampMs(ts)).toISOString().slice(0, 10) : "—";
}

/** One row of the week-by-week table. */
export interface WeekRow {
  start: string;
  deployments: number;
  failed: number;
  leadTime: string;
}

/** The weeks as the page lists them, newest first. */
export function weekRows(weeks: readonly DoraWeek[]): WeekRow[] {
  return weeks
    .map((w) => ({
      start: utcDate(w.weekStart),
      deployments: Number(w.deploymentsTotal),
      failed: Number(w.deploymentsFailed),
      leadTime: durationText(w.leadTimeMedian),
    }))
    .reverse();
}
