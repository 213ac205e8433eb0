// A rule's notification channels in the rule form: each one's inputs parsed into a
// NotificationChannel, what cannot be delivered (no URL, not http or https, e-mail) refused under
// the server's field path (`rule.notification_channels[0].target`), and a channel shown by its
// type and host only (a Slack webhook's URL is its credential). Secrets are write-only: the
// server returns them empty, and a channel sent back without one keeps the one it had (same
// type and URL).
import { create } from "@bufbuild/protobuf";
import { type NotificationChannel, NotificationChannelSchema, NotificationChannelType } from "../gen/persys/metrics/v1/alert_pb";
import type { Violation } from "./errors";

/** Most channels on one rule (the server refuses more). */
export const MAX_CHANNELS = 10;

/** The types a rule can use, in the form's order, with what their URL is. */
export const CHANNEL_TYPES: readonly { type: NotificationChannelType; label: string; target: string; example: string }[] = [
  { type: NotificationChannelType.WEBHOOK, label: "Webhook", target: "the URL to POST to", example: "https://ops.example.com/hooks/persys" },
  { type: NotificationChannelType.SLACK, label: "Slack", target: "the Slack incoming webhook's URL", example: "https://hooks.slack.com/services/…" },
  { type: NotificationChannelType.ALERTMANAGER, label: "Alertmanager", target: "Alertmanager's base URL", example: "http://alertmanager:9093" },
];

/** A channel type's word. */
export function channelTypeLabel(t: NotificationChannelType): string {
  if (t === NotificationChannelType.EMAIL) return "E-mail";
  return CHANNEL_TYPES.find((c) => c.type === t)?.label ?? `type ${t}`;
}

/** What the user typed for one channel. */
export interface ChannelForm {
  type: string;
  target: string;
  /** Webhooks only; empty on a stored channel keeps its secret. */
  secret: string;
  /** Hidden for Alertmanager, which is always told of resolves; kept as stored. */
  notifyOnResolve: boolean;
}

/** A new channel: a webhook, not told of resolves (as the API's default). */
export const EMPTY_CHANNEL: ChannelForm = { type: String(NotificationChannelType.WEBHOOK), target: "", secret: "", notifyOnResolve: false };

/** Whether the channel signs with a secret (webhooks) and so shows the secret input. */
export const hasSecret = (c: ChannelForm) => Number(c.type) === NotificationChannelType.WEBHOOK;

/** Whether the channel is told of resolves whatever it asks (Alertmanager ends alerts so). */
export const alwaysResolves = (c: ChannelForm) => Number(c.type) === NotificationChannelType.ALERTMANAGER;

/** The server's path of channel `i`. */
const pathOf = (i: number) => `rule.notification_channels[${i}]`;

/** The name of channel `i`'s input `part`, e.g. "channel-0-target" (its id is "r-" before it). */
export const channelInput = (i: number, part: "type" | "target" | "secret") => `channel-${i}-${part}`;

/**
 * The field paths each channel input edits, for assignViolations: the list as a whole goes to
 * "channels"; anything on a channel other than its URL (or secret, when it has the input) to
 * its type.
 */
export function channelFields(channels: readonly ChannelForm[]): Record<string, readonly string[]> {
  const fields: Record<string, readonly string[]> = { channels: ["rule.notification_channels"] };
  channels.forEach((c, i) => {
    fields[channelInput(i, "type")] = [pathOf(i), `${pathOf(i)}.type`];
    fields[channelInput(i, "target")] = [`${pathOf(i)}.target`];
    if (hasSecret(c)) fields[channelInput(i, "secret")] = [`${pathOf(i)}.secret`];
  });
  return fields;
}

/** Why `target` cannot be delivered to by a channel of type `type`; undefined when it can. */
export function targetProblem(target: string, type: NotificationChannelType): string | undefined {
  const t = target.trim();
  const known = CHANNEL_TYPES.find((c) => c.type === type);
  if (t === "") return known ? `required: ${known.target}, e.g. ${known.example}` : "required: an http or https URL";
  if (!/^https?:\/\//i.test(t)) return "must start with http:// or https://";
  let url: URL;
  try {
    url = new URL(t);
  } catch {
    return "not a URL; use http://host/path or https://host/path";
  }
  return url.hostname ? undefined : "names no host";
}

/** The channels as the API takes them, or the violations that stop them from being sent. */
export function channelsFromForm(channels: readonly ChannelForm[]): { channels: NotificationChannel[]; violations: Violation[] } {
  const violations: Violation[] = [];
  if (channels.length > MAX_CHANNELS)
    violations.push({ field: "rule.notification_channels", description: `at most ${MAX_CHANNELS} channels` });
  const out = channels.map((c, i) => {
    const type = Number(c.type) as NotificationChannelType;
    if (type === NotificationChannelType.EMAIL)
      violations.push({ field: `${pathOf(i)}.type`, description: "e-mail is not delivered yet: choose Webhook, Slack or Alertmanager" });
    else if (!CHANNEL_TYPES.some((k) => k.type === type))
      violations.push({ field: `${pathOf(i)}.type`, description: "choose Webhook, Slack or Alertmanager" });
    const why = targetProblem(c.target, type);
    if (why) violations.push({ field: `${pathOf(i)}.target`, description: why });
    return create(NotificationChannelSchema, {
      type,
      target: c.target.trim(),
      secret: hasSecret(c) ? c.secret : "",
      notifyOnResolve: c.notifyOnResolve,
    });
  });
  return { channels: out, violations };
}

/** A stored rule's channels as the form shows them (secrets are never read back). */
export function channelsToForm(channels: readonly NotificationChannel[]): ChannelForm[] {
  return channels.map((c) => ({ type: String(c.type), target: c.target, secret: "", notifyOnResolve: c.notifyOnResolve }));
}

/** Whether `edited` changes `stored`'s channels: their order, types, URLs or resolves, or a new secret. */
export function channelsDiffer(stored: readonly NotificationChannel[], edited: readonly NotificationChannel[]): boolean {
  if (stored.length !== edited.length) return true;
  return edited.some((e, i) => {
    const s = stored[i];
    return e.secret !== "" || e.type !== s.type || e.target !== s.target || e.notifyOnResolve !== s.notifyOnResolve;
  });
}

/** A URL's host (and port), never its path or credentials; "invalid URL" when it has none. */
export function targetHost(target: string): string {
  try {
    return new URL(target).host || "invalid URL";
  } catch {
    return "invalid URL";
  }
}

/** A channel as a list shows it: "Webhook: ops.example.com". */
export const channelSummary = (c: NotificationChannel) => `${channelTypeLabel(c.type)}: ${targetHost(c.target)}`;
