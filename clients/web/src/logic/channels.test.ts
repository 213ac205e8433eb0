import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { NotificationChannelSchema, NotificationChannelType } from "../gen/persys/metrics/v1/alert_pb";
import {
  type ChannelForm,
  channelFields,
  channelsDiffer,
  channelsFromForm,
  channelsToForm,
  channelSummary,
  channelTypeLabel,
  EMPTY_CHANNEL,
  MAX_CHANNELS,
  targetProblem,
} from "./channels";
import { assignViolations } from "./errors";

const webhook = (c: Partial<ChannelForm> = {}): ChannelForm => ({ ...EMPTY_CHANNEL, ...c });
const slack = (c: Partial<ChannelForm> = {}): ChannelForm => webhook({ type: String(NotificationChannelType.SLACK), ...c });
const alertmanager = (c: Partial<ChannelForm> = {}): ChannelForm => webhook({ type: String(NotificationChannelType.ALERTMANAGER), ...c });

describe("channels from the form", () => {
  it("builds the API's channels, with a secret for webhooks only", () => {
    const { channels, violations } = channelsFromForm([
      webhook({ target: " https://ops.example.com/hooks/persys ", secret: " s3cret ", notifyOnResolve: true }),
      // A secret typed before the type was switched to Slack is not sent: Slack does not sign.
      slack({ target: "https://hooks.slack.com/services/T0/B0/XXXX", secret: "left over" }),
      alertmanager({ target: "http://alertmanager:9093" }),
    ]);
    expect(violations).toEqual([]);
    expect(channels.map((c) => ({ type: c.type, target: c.target, secret: c.secret, notifyOnResolve: c.notifyOnResolve }))).toEqual([
      { type: NotificationChannelType.WEBHOOK, target: "https://ops.example.com/hooks/persys", secret: " s3cret ", notifyOnResolve: true },
      { type: NotificationChannelType.SLACK, target: "https://hooks.slack.com/services/T0/B0/XXXX", secret: "", notifyOnResolve: false },
      { type: NotificationChannelType.ALERTMANAGER, target: "http://alertmanager:9093", secret: "", notifyOnResolve: false },
    ]);
    expect(channelsFromForm([]).channels).toEqual([]);
  });

  it("refuses what cannot be delivered, under the server's field paths", () => {
    const { violations } = channelsFromForm([
      webhook(),
      slack({ target: "hooks.slack.com/services/T0" }),
      alertmanager({ target: "http://" }),
      webhook({ type: String(NotificationChannelType.EMAIL), target: "https://mail.example.com" }),
      webhook({ type: "0", target: "https://x.example.com" }),
    ]);
    expect(violations).toEqual([
      { field: "rule.notification_channels[0].target", description: "required: the URL to POST to, e.g. https://ops.example.com/hooks/persys" },
      { field: "rule.notification_channels[1].target", description: "must start with http:// or https://" },
      { field: "rule.notification_channels[2].target", description: "not a URL; use http://host/path or https://host/path" },
      { field: "rule.notification_channels[3].type", description: "e-mail is not delivered yet: choose Webhook, Slack or Alertmanager" },
      { field: "rule.notification_channels[4].type", description: "choose Webhook, Slack or Alertmanager" },
    ]);
    const many = channelsFromForm(Array.from({ length: MAX_CHANNELS + 1 }, () => webhook({ target: "https://x.example.com" })));
    expect(many.violations).toEqual([{ field: "rule.notification_channels", description: "at most 10 channels" }]);
  });

  it("says what each type's URL is when it is missing, and takes http and https only", () => {
    expect(targetProblem("", NotificationChannelType.SLACK)).toBe(
      "required: the Slack incoming webhook's URL, e.g. https://hooks.slack.com/services/…",
    );
    expect(targetProblem("  ", NotificationChannelType.ALERTMANAGER)).toBe("required: Alertmanager's base URL, e.g. http://alertmanager:9093");
    for (const bad of ["ftp://example.com", "file:///etc/passwd", "javascript:alert(1)", "example.com"])
      expect(targetProblem(bad, NotificationChannelType.WEBHOOK), bad).toBe("must start with http:// or https://");
    expect(targetProblem("https://exa mple.com/x", NotificationChannelType.WEBHOOK)).toMatch(/^not a URL/);
    for (const good of ["http://alertmanager:9093", "HTTPS://hooks.slack.com/services/T0/B0/X", "http://127.0.0.1:8080/hook?x=1"])
      expect(targetProblem(good, NotificationChannelType.WEBHOOK), good).toBeUndefined();
  });

  it("puts the server's violations on the inputs of the channel they name", () => {
    // A webhook has a secret input; Slack has none, so what concerns its secret goes to its type.
    const fields = channelFields([webhook(), slack()]);
    const { byInput, other } = assignViolations(
      [
        { field: "rule.notification_channels[0].target", description: "names no host" },
        { field: "rule.notification_channels[0].secret", description: "too long" },
        { field: "rule.notification_channels[1].type", description: "unknown channel type 9" },
        { field: "rule.notification_channels[1].secret", description: "not for slack" },
        { field: "rule.notification_channels", description: "at most 10 channels" },
        { field: "rule.notification_channels[7].target", description: "a channel the form does not have" },
        { field: "rule.name", description: "not a channel's" },
      ],
      fields,
    );
    expect(byInput).toEqual({
      "channel-0-target": ["names no host"],
      "channel-0-secret": ["too long"],
      "channel-1-type": ["unknown channel type 9", "not for slack"],
      channels: ["at most 10 channels", "a channel the form does not have"],
    });
    expect(other.map((v) => v.field)).toEqual(["rule.name"]);
  });
});

describe("stored channels", () => {
  const stored = [
    create(NotificationChannelSchema, { type: NotificationChannelType.WEBHOOK, target: "https://ops.example.com/h", notifyOnResolve: true }),
    create(NotificationChannelSchema, { type: NotificationChannelType.ALERTMANAGER, target: "http://alertmanager:9093" }),
  ];
  const sent = (form: ChannelForm[]) => channelsFromForm(form).channels;

  it("fill the form without a secret, and are sent back only when changed", () => {
    const form = channelsToForm(stored);
    expect(form).toEqual([
      { type: String(NotificationChannelType.WEBHOOK), target: "https://ops.example.com/h", secret: "", notifyOnResolve: true },
      { type: String(NotificationChannelType.ALERTMANAGER), target: "http://alertmanager:9093", secret: "", notifyOnResolve: false },
    ]);
    expect(channelsDiffer(stored, sent(form))).toBe(false);
    // A new secret is a change (a blank one keeps the stored secret, so it is not).
    expect(channelsDiffer(stored, sent([{ ...form[0], secret: "new" }, form[1]]))).toBe(true);
    expect(channelsDiffer(stored, sent([{ ...form[0], notifyOnResolve: false }, form[1]]))).toBe(true);
    expect(channelsDiffer(stored, sent([{ ...form[0], target: "https://ops.example.com/other" }, form[1]]))).toBe(true);
    expect(channelsDiffer(stored, sent([form[1], form[0]]))).toBe(true);
    expect(channelsDiffer(stored, sent([form[0]]))).toBe(true);
    expect(channelsDiffer(stored, sent([]))).toBe(true);
  });

  it("are shown by type and host, never by their URL", () => {
    const show = (type: NotificationChannelType, target: string) => channelSummary(create(NotificationChannelSchema, { type, target }));
    const slackHook = show(NotificationChannelType.SLACK, "https://hooks.slack.com/services/T000/B000/XXXX");
    expect(slackHook).toBe("Slack: hooks.slack.com");
    expect(slackHook).not.toContain("XXXX");
    expect(show(NotificationChannelType.WEBHOOK, "https://user:pw@ops.example.com:8443/h?token=t")).toBe("Webhook: ops.example.com:8443");
    expect(show(NotificationChannelType.ALERTMANAGER, "http://alertmanager:9093")).toBe("Alertmanager: alertmanager:9093");
    expect(show(NotificationChannelType.WEBHOOK, "not a url/with/secret")).toBe("Webhook: invalid URL");
    expect(channelTypeLabel(NotificationChannelType.EMAIL)).toBe("E-mail");
    expect(channelTypeLabel(42 as NotificationChannelType)).toBe("type 42");
  });
});
