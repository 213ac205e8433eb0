// A rule's notification channels: the rule form's list of them (add, remove; type, URL, a
// webhook's write-only secret, notify on resolve), whose mistakes come back on their inputs, and
// the rules list's cell naming each by type and host (never the URL: a Slack webhook's URL is
// its credential).
import type { NotificationChannel } from "../gen/persys/metrics/v1/alert_pb";
import {
  alwaysResolves,
  CHANNEL_TYPES,
  type ChannelForm,
  channelInput,
  channelSummary,
  channelTypeLabel,
  EMPTY_CHANNEL,
  hasSecret,
  MAX_CHANNELS,
} from "../logic/channels";

type Errors = Partial<Record<string, string[]>>;

/** The channels of the rule form; `onRemove` runs after one is removed (the others' paths shift). */
export function ChannelsEditor(props: {
  channels: ChannelForm[];
  onChange: (channels: ChannelForm[]) => void;
  onRemove: () => void;
  byInput: Errors;
  editing: boolean;
}) {
  const { channels, onChange, byInput } = props;
  const errors = byInput.channels;
  const add = () => {
    onChange([...channels, EMPTY_CHANNEL]);
    requestAnimationFrame(() => document.getElementById(`r-${channelInput(channels.length, "type")}`)?.focus());
  };
  const remove = (i: number) => {
    onChange(channels.filter((_, j) => j !== i));
    props.onRemove();
    requestAnimationFrame(() => document.getElementById("r-channel-add")?.focus());
  };
  return (
    <fieldset
      class="channels"
      id="r-channels"
      tabIndex={-1}
      aria-describedby={["rh-channels", errors ? "re-channels" : ""].filter(Boolean).join(" ")}
    >
      <legend>Notification channels</legend>
      <p class="muted small" id="rh-channels">
        Where the rule's alerts are delivered when they fire (at most {MAX_CHANNELS}); with none they are only shown here.
      </p>
      {errors ? (
        <p class="error" id="re-channels">
          {errors.join("; ")}
        </p>
      ) : null}
      {channels.map((c, i) => (
        <ChannelEditor
          key={i}
          index={i}
          channel={c}
          byInput={byInput}
          editing={props.editing}
          onChange={(next) => onChange(channels.map((old, j) => (j === i ? next : old)))}
          onRemove={() => remove(i)}
        />
      ))}
      <button type="button" id="r-channel-add" onClick={add} disabled={channels.length >= MAX_CHANNELS}>
        Add channel
      </button>
    </fieldset>
  );
}

/** One channel's inputs. */
function ChannelEditor(props: {
  index: number;
  channel: ChannelForm;
  byInput: Errors;
  editing: boolean;
  onChange: (c: ChannelForm) => void;
  onRemove: () => void;
}) {
  const { channel: c, byInput, onChange } = props;
  const n = props.index + 1;
  const known = CHANNEL_TYPES.find((t) => String(t.type) === c.type);
  const secretHelp = props.editing
    ? "Write-only, never shown: left blank, the stored secret is kept (if the type and URL stay the same)."
    : "Optional: signs each request (X-Persys-Signature). Write-only: it is never shown again.";

  const field = (part: "type" | "target" | "secret", label: string, help: string | null, input: (a: InputAttrs) => preact.JSX.Element) => {
    const k = channelInput(props.index, part);
    const errors = byInput[k];
    return (
      <div class={`field${errors ? " invalid" : ""}`}>
        <label for={`r-${k}`}>
          {label}
          <span class="sr-only"> of channel {n}</span>
        </label>
        {input({
          id: `r-${k}`,
          name: k,
          "aria-invalid": errors ? true : undefined,
          "aria-describedby": [help ? `rh-${k}` : "", errors ? `re-${k}` : ""].filter(Boolean).join(" ") || undefined,
        })}
        {help ? (
          <span class="muted small" id={`rh-${k}`}>
            {help}
          </span>
        ) : null}
        {errors ? (
          <span class="error" id={`re-${k}`}>
            {errors.join("; ")}
          </span>
        ) : null}
      </div>
    );
  };
  const text = (k: "target" | "secret") => (e: Event) => onChange({ ...c, [k]: (e.currentTarget as HTMLInputElement).value });

  return (
    <fieldset class="channel">
      <legend>Channel {n}</legend>
      <div class="row">
        {field("type", "Type", null, (a) => (
          <select {...a} value={c.type} onChange={(e) => onChange({ ...c, type: e.currentTarget.value })}>
            {CHANNEL_TYPES.map((t) => (
              <option key={t.type} value={String(t.type)}>
                {t.label}
              </option>
            ))}
            {known ? null : <option value={c.type}>{channelTypeLabel(Number(c.type))}</option>}
          </select>
        ))}
        {field("target", "URL", `e.g. ${known?.example ?? CHANNEL_TYPES[0].example}`, (a) => (
          <input {...a} type="url" value={c.target} onInput={text("target")} autoComplete="off" spellcheck={false} />
        ))}
        {hasSecret(c)
          ? field("secret", "Secret", secretHelp, (a) => (
              <input {...a} type="password" value={c.secret} onInput={text("secret")} autoComplete="new-password" />
            ))
          : null}
      </div>
      <div class="actions">
        {alwaysResolves(c) ? (
          <span class="muted small">Alertmanager is always told when an alert resolves.</span>
        ) : (
          <label class="small">
            <input
              type="checkbox"
              checked={c.notifyOnResolve}
              onChange={(e) => onChange({ ...c, notifyOnResolve: (e.currentTarget as HTMLInputElement).checked })}
            />{" "}
            Also notify when it resolves<span class="sr-only"> (channel {n})</span>
          </label>
        )}
        <button type="button" onClick={props.onRemove} aria-label={`Remove channel ${n}`}>
          Remove
        </button>
      </div>
    </fieldset>
  );
}

interface InputAttrs {
  id: string;
  name: string;
  "aria-invalid": true | undefined;
  "aria-describedby": string | undefined;
}

/** A rule's channels in the rules list: type and host each, and how often it repeats. */
export function ChannelsCell(props: { channels: readonly NotificationChannel[]; repeat: string }) {
  if (props.channels.length === 0) return <span class="muted">none</span>;
  return (
    <>
      <ul class="plain">
        {props.channels.map((c, i) => (
          <li key={i}>{channelSummary(c)}</li>
        ))}
      </ul>
      {props.repeat ? <div class="muted small">{props.repeat}</div> : null}
    </>
  );
}
