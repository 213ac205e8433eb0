// Alerts and alert rules for the Alerts page: names of states, severities, metrics and
// comparators; the order a list shows alerts in; and the "new rule" form parsed into a rule
// (its notification channels in ./channels). Only what cannot be sent (a threshold that is not a
// number, a duration that cannot be read, a channel without an http or https URL) is refused
// here, under the server's field path; the rest is the server's to judge.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Alert, AlertSeverity, AlertState, type AlertRule, AlertRuleSchema, Comparator } from "../gen/persys/metrics/v1/alert_pb";
import { Metric } from "../gen/persys/metrics/v1/host_metrics_pb";
import { type ChannelForm, channelFields, channelsDiffer, channelsFromForm, channelsToForm } from "./channels";
import type { Violation } from "./errors";
import type { Tone } from "./states";

const STATE_LABELS: Record<AlertState, string> = {
  [AlertState.UNSPECIFIED]: "Unknown",
  [AlertState.PENDING]: "Pending",
  [AlertState.FIRING]: "Firing",
  [AlertState.ACKNOWLEDGED]: "Acknowledged",
  [AlertState.RESOLVED]: "Resolved",
};

/** An alert state's word. */
export const alertStateLabel = (s: AlertState) => STATE_LABELS[s] ?? "Unknown";

/** An alert state's tone. */
export function alertStateTone(s: AlertState): Tone {
  switch (s) {
    case AlertState.FIRING:
      return "bad";
    case AlertState.PENDING:
      return "warn";
    case AlertState.ACKNOWLEDGED:
      return "busy";
    case AlertState.RESOLVED:
      return "ok";
    default:
      return "idle";
  }
}

const SEVERITY_LABELS: Record<AlertSeverity, string> = {
  [AlertSeverity.UNSPECIFIED]: "Warning",
  [AlertSeverity.INFO]: "Info",
  [AlertSeverity.WARNING]: "Warning",
  [AlertSeverity.CRITICAL]: "Critical",
};

/** A severity's word (unset is what the server treats it as: warning). */
export const severityLabel = (s: AlertSeverity) => SEVERITY_LABELS[s] ?? "Unknown";

/** The metrics a rule can watch, with their names and units, in the form's order. */
export const RULE_METRICS: readonly { metric: Metric; label: string; unit: string }[] = [
  { metric: Metric.CPU_USAGE_PERCENT, label: "CPU usage", unit: "%" },
  { metric: Metric.CPU_CORE_USAGE_PERCENT, label: "CPU usage of one core", unit: "%" },
  { metric: Metric.MEMORY_USAGE_PERCENT, label: "Memory usage", unit: "%" },
  { metric: Metric.MEMORY_USED_BYTES, label: "Memory used", unit: "bytes" },
  { metric: Metric.DISK_USAGE_PERCENT, label: "Disk usage", unit: "%" },
  { metric: Metric.DISK_USED_BYTES, label: "Disk used", unit: "bytes" },
  { metric: Metric.DISK_READ_BYTES_PER_SECOND, label: "Disk read", unit: "bytes/s" },
  { metric: Metric.DISK_WRITE_BYTES_PER_SECOND, label: "Disk written", unit: "bytes/s" },
  { metric: Metric.NETWORK_RX_BYTES_PER_SECOND, label: "Network received", unit: "bytes/s" },
  { metric: Metric.NETWORK_TX_BYTES_PER_SECOND, label: "Network sent", unit: "bytes/s" },
  { metric: Metric.LOAD_1, label: "Load (1 min)", unit: "" },
  { metric: Metric.LOAD_5, label: "Load (5 min)", unit: "" },
  { metric: Metric.LOAD_15, label: "Load (15 min)", unit: "" },
  { metric: Metric.CONTAINER_CPU_PERCENT, label: "Container CPU", unit: "%" },
  { metric: Metric.CONTAINER_MEMORY_BYTES, label: "Container memory", unit: "bytes" },
  { metric: Metric.CONTAINER_MEMORY_LIMIT_PERCENT, label: "Container memory of its limit", unit: "%" },
  { metric: Metric.CONTAINER_NETWORK_RX_BYTES_PER_SECOND, label: "Container network received", unit: "bytes/s" },
  { metric: Metric.CONTAINER_NETWORK_TX_BYTES_PER_SECOND, label: "Container network sent", unit: "bytes/s" },
  { metric: Metric.CONTAINER_RESTARTS, label: "Container restarts (Docker)", unit: "" },
  { metric: Metric.WORKLOAD_UNAVAILABLE_REPLICAS, label: "Workload replicas down", unit: "" },
  { metric: Metric.WORKLOAD_RESTARTS_10M, label: "Workload restarts (10 min)", unit: "" },
];

/** A metric's name and unit. */
export function metricLabel(m: Metric): string {
  const known = RULE_METRICS.find((r) => r.metric === m);
  return known ? `${known.label}${known.unit ? ` (${known.unit})` : ""}` : `metric ${m}`;
}

/** Comparators with their symbols, in the form's order. */
export const COMPARATORS: readonly { comparator: Comparator; symbol: string }[] = [
  { comparator: Comparator.GREATER_THAN, symbol: ">" },
  { comparator: Comparator.GREATER_THAN_OR_EQUAL, symbol: "≥" },
  { comparator: Comparator.LESS_THAN, symbol: "<" },
  { comparator: Comparator.LESS_THAN_OR_EQUAL, symbol: "≤" },
  { comparator: Comparator.EQUAL, symbol: "=" },
  { comparator: Comparator.NOT_EQUAL, symbol: "≠" },
];

/** A comparator's symbol. */
export const comparatorSymbol = (c: Comparator) => COMPARATORS.find((x) => x.comparator === c)?.symbol ?? "?";

/** States in the order a list shows them: what needs someone first. */
const STATE_ORDER: AlertState[] = [AlertState.FIRING, AlertState.PENDING, AlertState.ACKNOWLEDGED, AlertState.RESOLVED];

const when = (a: Alert) => {
  const t = a.resolvedAt ?? a.firedAt ?? a.pendingSince;
  return t ? timestampMs(t) : 0;
};

/** Orders alerts: by state (firing first), then severity (critical first), then newest first. */
export function byUrgency(a: Alert, b: Alert): number {
  const s = STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state);
  if (s !== 0) return s;
  if (a.severity !== b.severity) return b.severity - a.severity;
  return when(b) - when(a) || a.id.localeCompare(b.id);
}

/** Alerts in the given states (all when `states` is empty). */
export function filterAlerts(alerts: Iterable<Alert>, states: readonly AlertState[]): Alert[] {
  return [...alerts].filter((a) => states.length === 0 || states.includes(a.state)).sort(byUrgency);
}

/** Counts alerts by state. */
export function countByState(alerts: Iterable<Alert>): Map<AlertState, number> {
  const m = new Map<AlertState, number>();
  for (const a of alerts) m.set(a.state, (m.get(a.state) ?? 0) + 1);
  return m;
}

/** Reads "90", "90s", "5m", "1h30m" as seconds; undefined when it cannot. Empty is 0. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  if (t === "") return 0;
  if (/^\d+$/.test(t)) return Number(t);
  const re = /(\d+)(h|m|s)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * { h: 3600, m: 60, s: 1 }[m[2] as "h" | "m" | "s"];
    end = re.lastIndex;
  }
  return end === t.length && end > 0 ? total : undefined;
}

/** Formats seconds as "90s", "5m", "1h30m". */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return "0s";
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s ? `${s}s` : ""}`;
}

/** What the user typed in the "new rule" form. */
export interface RuleForm {
  name: string;
  description: string;
  metric: string;
  comparator: string;
  threshold: string;
  resolveThreshold: string;
  forDuration: string;
  severity: string;
  /** Empty: never. */
  repeatInterval: string;
  channels: ChannelForm[];
}

/** An empty form: CPU above a threshold for a minute, a warning. */
export const EMPTY_RULE: RuleForm = {
  name: "",
  description: "",
  metric: String(Metric.CPU_USAGE_PERCENT),
  comparator: String(Comparator.GREATER_THAN),
  threshold: "",
  resolveThreshold: "",
  forDuration: "1m",
  severity: String(AlertSeverity.WARNING),
  repeatInterval: "",
  channels: [],
};

/** The form's own inputs (each channel has its own, named by ./channels' channelInput). */
export type RuleInput = Exclude<keyof RuleForm, "channels">;

/** The field paths each of the form's own inputs edits, for assignViolations. */
export const RULE_FIELDS: Record<RuleInput, readonly string[]> = {
  name: ["rule.name"],
  description: ["rule.description"],
  metric: ["rule.metric", "rule.match_labels"],
  comparator: ["rule.comparator"],
  threshold: ["rule.threshold"],
  resolveThreshold: ["rule.resolve_threshold"],
  forDuration: ["rule.for_duration"],
  severity: ["rule.severity"],
  repeatInterval: ["rule.repeat_interval"],
};

/**
 * The field paths every input of `f` edits, its channels' included, with the repeat interval
 * after the channels as the form shows it (the first input in trouble gets the focus).
 */
export function ruleFields(f: RuleForm): Record<string, readonly string[]> {
  const { repeatInterval, ...rest } = RULE_FIELDS;
  return { ...rest, ...channelFields(f.channels), repeatInterval };
}

const number = (text: string) => (text.trim() === "" ? undefined : Number(text.trim()));

/** The form as a rule, or the violations that stop it from being sent. */
export function ruleFromForm(f: RuleForm): { rule: AlertRule } | { violations: Violation[] } {
  const violations: Violation[] = [];
  const threshold = number(f.threshold);
  if (threshold === undefined) violations.push({ field: "rule.threshold", description: "required: a number, e.g. 90" });
  else if (!Number.isFinite(threshold)) violations.push({ field: "rule.threshold", description: `"${f.threshold}" is not a number` });
  const resolve = number(f.resolveThreshold);
  if (resolve !== undefined && !Number.isFinite(resolve))
    violations.push({ field: "rule.resolve_threshold", description: `"${f.resolveThreshold}" is not a number` });
  const seconds = parseDuration(f.forDuration);
  if (seconds === undefined)
    violations.push({ field: "rule.for_duration", description: `"${f.forDuration}" is not a duration: write e.g. 30s, 5m or 1h` });
  const repeat = parseDuration(f.repeatInterval);
  if (repeat === undefined)
    violations.push({ field: "rule.repeat_interval", description: `"${f.repeatInterval}" is not a duration: write e.g. 30m, 1h or 4h, or nothing for never` });
  const channels = channelsFromForm(f.channels);
  violations.push(...channels.violations);
  if (violations.length) return { violations };
  return {
    rule: create(AlertRuleSchema, {
      name: f.name.trim(),
      description: f.description.trim(),
      metric: Number(f.metric),
      comparator: Number(f.comparator),
      threshold,
      resolveThreshold: resolve,
      forDuration: { seconds: BigInt(seconds!) },
      severity: Number(f.severity),
      notificationChannels: channels.channels,
      repeatInterval: { seconds: BigInt(repeat!) },
      enabled: true,
    }),
  };
}

/** A rule's condition in words, e.g. "CPU usage (%) > 90 for 5m". */
export function ruleCondition(r: AlertRule): string {
  const f = Number(r.forDuration?.seconds ?? 0n);
  const resolve = r.resolveThreshold === undefined ? "" : `, resolves at ${r.resolveThreshold}`;
  return `${metricLabel(r.metric)} ${comparatorSymbol(r.comparator)} ${r.threshold}${f ? ` for ${formatDuration(f)}` : ""}${resolve}`;
}

/** How often a rule notifies again while firing, e.g. "again every 1h"; empty for never. */
export function ruleRepeat(r: AlertRule): string {
  const s = Number(r.repeatInterval?.seconds ?? 0n);
  return s > 0 ? `again every ${formatDuration(s)}` : "";
}

/** A stored rule as the form shows it, for editing. */
export function ruleToForm(r: AlertRule): RuleForm {
  return {
    name: r.name,
    description: r.description,
    metric: String(r.metric),
    comparator: String(r.comparator),
    threshold: String(r.threshold),
    resolveThreshold: r.resolveThreshold === undefined ? "" : String(r.resolveThreshold),
    forDuration: formatDuration(Number(r.forDuration?.seconds ?? 0n)),
    severity: String(r.severity),
    repeatInterval: r.repeatInterval?.seconds ? formatDuration(Number(r.repeatInterval.seconds)) : "",
    channels: channelsToForm(r.notificationChannels),
  };
}

/** The update mask's paths: the fields `edited` changes on `stored` (in the server's names). */
export function changedFields(stored: AlertRule, edited: AlertRule): string[] {
  const paths: string[] = [];
  const differs: [string, unknown, unknown][] = [
    ["name", stored.name, edited.name],
    ["description", stored.description, edited.description],
    ["metric", stored.metric, edited.metric],
    ["comparator", stored.comparator, edited.comparator],
    ["threshold", stored.threshold, edited.threshold],
    ["resolve_threshold", stored.resolveThreshold, edited.resolveThreshold],
    ["for_duration", stored.forDuration?.seconds ?? 0n, edited.forDuration?.seconds ?? 0n],
    ["severity", stored.severity, edited.severity],
  ];
  for (const [path, a, b] of differs) if (a !== b) paths.push(path);
  if (channelsDiffer(stored.notificationChannels, edited.notificationChannels)) paths.push("notification_channels");
  if ((stored.repeatInterval?.seconds ?? 0n) !== (edited.repeatInterval?.seconds ?? 0n)) paths.push("repeat_interval");
  return paths;
}

/** The "new silence" form, as typed. */
export interface SilenceForm {
  /** `name=value` or `name!=value`, one a line (or comma-separated). */
  matchers: string;
  /** How long, e.g. "2h". */
  duration: string;
  comment: string;
}

export const EMPTY_SILENCE: SilenceForm = { matchers: "", duration: "2h", comment: "" };

/** Which input edits which of the server's field paths. */
export const SILENCE_FIELDS: Record<keyof SilenceForm, readonly string[]> = {
  matchers: ["silence.matchers"],
  duration: ["silence.ends_at", "silence.starts_at"],
  comment: ["silence.comment"],
};

/** A silence's matchers as people write them: `node_id=web-1`, `severity!=info`. */
export function matcherText(m: { name: string; value: string; negate: boolean }): string {
  return `${m.name}${m.negate ? "!=" : "="}${m.value}`;
}

/** The form as a silence ending `duration` after `nowMs`, or the violations that stop it. */
export function silenceFromForm(
  f: SilenceForm,
  nowMs: number,
): { silence: { matchers: { name: string; value: string; negate: boolean }[]; endsAt: ReturnType<typeof timestampFromMs>; comment: string } } | { violations: Violation[] } {
  const violations: Violation[] = [];
  const matchers: { name: string; value: string; negate: boolean }[] = [];
  const parts = f.matchers.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) violations.push({ field: "silence.matchers", description: "at least one, e.g. node_id=web-1" });
  parts.forEach((p, i) => {
    const negate = p.includes("!=");
    const [name, ...rest] = p.split(negate ? "!=" : "=");
    if (rest.length === 0 || !name.trim())
      violations.push({ field: `silence.matchers[${i}]`, description: `"${p}": write name=value or name!=value` });
    else matchers.push({ name: name.trim(), value: rest.join(negate ? "!=" : "=").trim(), negate });
  });
  const seconds = parseDuration(f.duration);
  if (seconds === undefined || seconds <= 0)
    violations.push({ field: "silence.ends_at", description: "how long, e.g. 30m, 2h or 24h" });
  if (!f.comment.trim()) violations.push({ field: "silence.comment", description: "say why, e.g. maintenance of web-1" });
  if (violations.length) return { violations };
  return { silence: { matchers, endsAt: timestampFromMs(nowMs + (seconds ?? 0) * 1000), comment: f.comment.trim() } };
}
