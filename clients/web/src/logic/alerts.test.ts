import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { AlertRuleSchema, AlertSchema, AlertSeverity, AlertState, Comparator, NotificationChannelType } from "../gen/persys/metrics/v1/alert_pb";
import { Metric } from "../gen/persys/metrics/v1/host_metrics_pb";
import {
  alertStateLabel,
  alertStateTone,
  countByState,
  EMPTY_RULE,
  filterAlerts,
  formatDuration,
  metricLabel,
  parseDuration,
  ruleCondition,
  ruleFromForm,
  ruleToForm,
  changedFields,
} from "./alerts";
import { assignViolations } from "./errors";
import { matcherText, RULE_FIELDS, ruleFields, ruleRepeat, SILENCE_FIELDS, silenceFromForm } from "./alerts";
import { EMPTY_CHANNEL } from "./channels";

const alert = (id: string, state: AlertState, severity: AlertSeverity, firedMs: number) =>
  create(AlertSchema, { id, state, severity, firedAt: timestampFromMs(firedMs) });

describe("alerts", () => {
  it("names and colours every state", () => {
    expect([AlertState.FIRING, AlertState.PENDING, AlertState.ACKNOWLEDGED, AlertState.RESOLVED].map(alertStateLabel)).toEqual([
      "Firing",
      "Pending",
      "Acknowledged",
      "Resolved",
    ]);
    expect(alertStateTone(AlertState.FIRING)).toBe("bad");
    expect(alertStateTone(AlertState.RESOLVED)).toBe("ok");
    expect(alertStateLabel(99 as AlertState)).toBe("Unknown");
  });

  it("lists firing first, then by severity, then newest, and filters by state", () => {
    const all = [
      alert("resolved", AlertState.RESOLVED, AlertSeverity.CRITICAL, 9),
      alert("old-warning", AlertState.FIRING, AlertSeverity.WARNING, 1),
      alert("new-warning", AlertState.FIRING, AlertSeverity.WARNING, 5),
      alert("critical", AlertState.FIRING, AlertSeverity.CRITICAL, 0),
      alert("pending", AlertState.PENDING, AlertSeverity.CRITICAL, 0),
    ];
    expect(filterAlerts(all, []).map((a) => a.id)).toEqual(["critical", "new-warning", "old-warning", "pending", "resolved"]);
    expect(filterAlerts(all, [AlertState.RESOLVED, AlertState.PENDING]).map((a) => a.id)).toEqual(["pending", "resolved"]);
    expect(countByState(all).get(AlertState.FIRING)).toBe(3);
  });

  it("reads and writes durations", () => {
    expect(parseDuration("")).toBe(0);
    expect(parseDuration("90")).toBe(90);
    expect(parseDuration("90s")).toBe(90);
    expect(parseDuration(" 5m ")).toBe(300);
    expect(parseDuration("1h30m")).toBe(5400);
    for (const bad of ["5 m", "m", "1d", "-5s", "5m!"]) expect(parseDuration(bad), bad).toBeUndefined();
    expect([0, 45, 300, 5400, 3601].map(formatDuration)).toEqual(["0s", "45s", "5m", "1h30m", "1h1s"]);
  });

  it("turns the form into a rule, and refuses what cannot be sent under the server's field names", () => {
    const ok = ruleFromForm({ ...EMPTY_RULE, name: " hot cpu ", threshold: "90", resolveThreshold: "80", forDuration: "5m" });
    expect("rule" in ok).toBe(true);
    if (!("rule" in ok)) return;
    expect(ok.rule).toMatchObject({
      name: "hot cpu",
      metric: Metric.CPU_USAGE_PERCENT,
      comparator: Comparator.GREATER_THAN,
      threshold: 90,
      resolveThreshold: 80,
      severity: AlertSeverity.WARNING,
      enabled: true,
    });
    expect(ok.rule.forDuration?.seconds).toBe(300n);
    expect(ruleCondition(ok.rule)).toBe("CPU usage (%) > 90 for 5m, resolves at 80");

    const bad = ruleFromForm({ ...EMPTY_RULE, threshold: "ninety", resolveThreshold: "x", forDuration: "soon" });
    expect("violations" in bad && bad.violations.map((v) => v.field)).toEqual([
      "rule.threshold",
      "rule.resolve_threshold",
      "rule.for_duration",
    ]);
    const empty = ruleFromForm(EMPTY_RULE);
    expect("violations" in empty && empty.violations[0].description).toMatch(/required/);
    // The server's violations land on the inputs that edit them.
    const { byInput, other } = assignViolations(
      [
        { field: "rule.name", description: "required" },
        { field: "rule.metric", description: "unknown metric 0" },
        { field: "rule.notification_channels", description: "not yet" },
      ],
      RULE_FIELDS,
    );
    expect(byInput).toEqual({ name: ["required"], metric: ["unknown metric 0"] });
    expect(other.map((v) => v.field)).toEqual(["rule.notification_channels"]);
  });

  it("names metrics with their units", () => {
    expect(metricLabel(Metric.NETWORK_RX_BYTES_PER_SECOND)).toBe("Network received (bytes/s)");
    expect(metricLabel(Metric.LOAD_1)).toBe("Load (1 min)");
    expect(metricLabel(77 as Metric)).toBe("metric 77");
    const noFor = create(AlertRuleSchema, { metric: Metric.LOAD_1, comparator: Comparator.LESS_THAN_OR_EQUAL, threshold: 0.5 });
    expect(ruleCondition(noFor)).toBe("Load (1 min) ≤ 0.5");
  });
});

describe("editing a rule", () => {
  it("fills the form from a rule and sends only what changed", () => {
    const stored = create(AlertRuleSchema, {
      id: "r1",
      name: "hot",
      metric: Metric.CPU_USAGE_PERCENT,
      comparator: Comparator.GREATER_THAN,
      threshold: 90,
      forDuration: { seconds: 300n },
      severity: AlertSeverity.WARNING,
      revision: 3n,
    });
    const form = ruleToForm(stored);
    expect(form).toMatchObject({ name: "hot", threshold: "90", forDuration: "5m", resolveThreshold: "" });
    // Unchanged, the form sends nothing.
    const same = ruleFromForm(form);
    expect("rule" in same && changedFields(stored, same.rule)).toEqual([]);
    const edited = ruleFromForm({ ...form, threshold: "95", resolveThreshold: "80", severity: String(AlertSeverity.CRITICAL) });
    expect("rule" in edited && changedFields(stored, edited.rule)).toEqual(["threshold", "resolve_threshold", "severity"]);
  });

  it("keeps a rule's channels (and their stored secrets) unless they are edited", () => {
    // As the server returns it: the webhook's secret is empty on reads.
    const stored = create(AlertRuleSchema, {
      id: "r2",
      name: "hooked",
      metric: Metric.CPU_USAGE_PERCENT,
      comparator: Comparator.GREATER_THAN,
      threshold: 90,
      severity: AlertSeverity.WARNING,
      notificationChannels: [{ type: NotificationChannelType.WEBHOOK, target: "https://ops.example.com/h", notifyOnResolve: true }],
      repeatInterval: { seconds: 3600n },
    });
    const form = ruleToForm(stored);
    expect(form.repeatInterval).toBe("1h");
    expect(form.channels).toEqual([{ ...EMPTY_CHANNEL, target: "https://ops.example.com/h", notifyOnResolve: true }]);
    const same = ruleFromForm(form);
    // Untouched, the channels are not in the mask, so the stored secret stays as it is.
    expect("rule" in same && changedFields(stored, same.rule)).toEqual([]);
    const secret = ruleFromForm({ ...form, channels: [{ ...form.channels[0], secret: "rotated" }] });
    expect("rule" in secret && changedFields(stored, secret.rule)).toEqual(["notification_channels"]);
    if ("rule" in secret) expect(secret.rule.notificationChannels[0].secret).toBe("rotated");
    const removed = ruleFromForm({ ...form, channels: [], repeatInterval: "" });
    expect("rule" in removed && changedFields(stored, removed.rule)).toEqual(["notification_channels", "repeat_interval"]);
    // A rule without a repeat shows an empty input ("never"), not "0s".
    expect(ruleToForm(create(AlertRuleSchema, {})).repeatInterval).toBe("");
  });
});

describe("a rule's notifications", () => {
  it("sends the channels and the repeat interval, and names the repeat", () => {
    const built = ruleFromForm({
      ...EMPTY_RULE,
      name: "hot",
      threshold: "90",
      repeatInterval: "4h",
      channels: [{ ...EMPTY_CHANNEL, target: "https://ops.example.com/h", secret: "s", notifyOnResolve: true }],
    });
    if (!("rule" in built)) throw new Error("expected a rule");
    expect(built.rule.repeatInterval?.seconds).toBe(14400n);
    expect(built.rule.notificationChannels).toHaveLength(1);
    expect(built.rule.notificationChannels[0]).toMatchObject({
      type: NotificationChannelType.WEBHOOK,
      target: "https://ops.example.com/h",
      secret: "s",
      notifyOnResolve: true,
    });
    expect(ruleRepeat(built.rule)).toBe("again every 4h");
    const never = ruleFromForm({ ...EMPTY_RULE, threshold: "90" });
    expect("rule" in never && never.rule.repeatInterval?.seconds).toBe(0n);
    expect("rule" in never && ruleRepeat(never.rule)).toBe("");
  });

  it("puts its own and the server's mistakes on the repeat and channel inputs", () => {
    const form = {
      ...EMPTY_RULE,
      threshold: "90",
      repeatInterval: "often",
      channels: [
        { ...EMPTY_CHANNEL, target: "https://ops.example.com/h" },
        { ...EMPTY_CHANNEL, type: String(NotificationChannelType.SLACK) },
      ],
    };
    const bad = ruleFromForm(form);
    if (!("violations" in bad)) throw new Error("expected violations");
    const mine = assignViolations(bad.violations, ruleFields(form));
    expect(Object.keys(mine.byInput).sort()).toEqual(["channel-1-target", "repeatInterval"]);
    // The first input in trouble, as the form shows them, is the channel's (it gets the focus).
    expect(Object.keys(ruleFields(form)).find((k) => mine.byInput[k])).toBe("channel-1-target");
    expect(mine.byInput.repeatInterval?.[0]).toMatch(/not a duration/);
    expect(mine.byInput["channel-1-target"]?.[0]).toMatch(/^required: the Slack incoming webhook's URL/);
    // The server's (google.rpc.BadRequest) field paths land on the same inputs.
    const server = assignViolations(
      [
        { field: "rule.repeat_interval", description: "must not be negative" },
        { field: "rule.notification_channels[0].target", description: "names no host" },
        { field: "rule.notification_channels[1].type", description: "unknown channel type 0" },
        { field: "rule.notification_channels", description: "at most 10 channels" },
      ],
      ruleFields(form),
    );
    expect(server.byInput).toEqual({
      repeatInterval: ["must not be negative"],
      "channel-0-target": ["names no host"],
      "channel-1-type": ["unknown channel type 0"],
      channels: ["at most 10 channels"],
    });
    expect(server.other).toEqual([]);
  });
});

describe("silences", () => {
  it("reads matchers, a duration and a comment, and says what to fix", () => {
    const now = Date.UTC(2026, 11, 4, 12, 0, 0);
    const ok = silenceFromForm({ matchers: "node_id=web-1\nseverity!=info, mount_point=/", duration: "2h", comment: " upgrade " }, now);
    if (!("silence" in ok)) throw new Error("expected a silence");
    expect(ok.silence.matchers).toEqual([
      { name: "node_id", value: "web-1", negate: false },
      { name: "severity", value: "info", negate: true },
      { name: "mount_point", value: "/", negate: false },
    ]);
    expect(Number(ok.silence.endsAt.seconds) * 1000).toBe(now + 2 * 3600_000);
    expect(ok.silence.comment).toBe("upgrade");
    expect(ok.silence.matchers.map(matcherText)).toEqual(["node_id=web-1", "severity!=info", "mount_point=/"]);

    const bad = silenceFromForm({ matchers: "web-1", duration: "soon", comment: "" }, now);
    if (!("violations" in bad)) throw new Error("expected violations");
    const { byInput } = assignViolations(bad.violations, SILENCE_FIELDS);
    expect(Object.keys(byInput).sort()).toEqual(["comment", "duration", "matchers"]);
    expect(byInput.matchers?.[0]).toContain("name=value");
  });
});
