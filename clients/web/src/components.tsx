// Small shared pieces of the pages.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import type { Problem } from "./logic/errors";
import { WINDOWS } from "./logic/metrics";
import type { Tone } from "./logic/states";
import type { LogStatus } from "./live";
import { useSession } from "./session";

/** A state or phase as a coloured word (colour is never the only signal: the word is there). */
export function Badge(props: { tone: Tone; children: ComponentChildren }) {
  return <span class={`badge tone-${props.tone}`}>{props.children}</span>;
}

/** Whether a live view is live, connecting or reconnecting, announced politely to readers. */
export function LiveIndicator(props: { status: LogStatus; error?: string; label?: string }) {
  const text =
    props.status === "live"
      ? "Live"
      : props.status === "connecting"
        ? "Connecting…"
        : props.status === "ended"
          ? "Ended"
          : props.status === "paused"
            ? "Paused while the tab is hidden"
            : "Reconnecting…";
  return (
    <span class={`live live-${props.status}`} role="status" aria-live="polite" data-testid={props.label ? `live-${props.label}` : undefined}>
      <span class="dot" aria-hidden="true" />
      {props.label ? `${props.label}: ${text}` : text}
      {props.status === "reconnecting" && props.error ? <span class="muted"> ({props.error})</span> : null}
    </span>
  );
}

/** A page's heading, focused when the page opens so keyboard and reader users start there. */
export function PageTitle(props: { children: ComponentChildren; actions?: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => ref.current?.focus(), []);
  return (
    <div class="page-title">
      <h1 tabIndex={-1} ref={ref}>
        {props.children}
      </h1>
      {props.actions ? <div class="actions">{props.actions}</div> : null}
    </div>
  );
}

/** A failed call: the server's message and any violations no input claimed. */
export function ProblemBox(props: { problem: Problem | null; other?: { field: string; description: string }[] }) {
  if (!props.problem) return null;
  const other = props.other ?? props.problem.violations;
  return (
    <div class="problem" role="alert">
      <p>{props.problem.message}</p>
      {other.length ? (
        <ul>
          {other.map((v) => (
            <li key={v.field}>
              <code>{v.field}</code>: {v.description}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

/** What to do when a list is empty. */
export function Empty(props: { children: ComponentChildren }) {
  return <div class="empty">{props.children}</div>;
}

/** For members: personas and projects come only from the namespaces that name them. */
export function MemberScope() {
  const { session } = useSession();
  if (!session || session.isAdmin || !session.canWrite) return null;
  return (
    <p class="muted" data-testid="member-scope">
      As a member you see the namespaces whose <code>persys.io/members</code> annotation names you; a cluster admin adds
      you with <code>kubectl annotate namespace NS persys.io/members=...</code>.
    </p>
  );
}

/** Returns a time as "12s ago", "5m ago", ... with the exact time in a tooltip. */
export function Ago(props: { ts?: Timestamp }) {
  if (!props.ts) return <span class="muted">—</span>;
  const ms = timestampMs(props.ts);
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const text = s < 60 ? `${s}s ago` : s < 3600 ? `${Math.floor(s / 60)}m ago` : s < 86400 ? `${Math.floor(s / 3600)}h ago` : `${Math.floor(s / 86400)}d ago`;
  return <time dateTime={new Date(ms).toISOString()} title={new Date(ms).toLocaleString()}>{text}</time>;
}

/** Formats millicores. */
export function cpu(m?: bigint): string {
  if (m === undefined) return "—";
  return m % 1000n === 0n ? `${m / 1000n}` : `${Number(m) / 1000}`;
}

/** Formats bytes in binary units. */
export function bytes(b?: bigint): string {
  if (b === undefined) return "—";
  const n = Number(b);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** Previous/next buttons over `pages` pages, `page` (0-based) shown; nothing for one page. */
export function Pager(props: { page: number; pages: number; onPage: (page: number) => void }) {
  const { page, pages, onPage } = props;
  if (pages <= 1) return null;
  return (
    <nav class="pager" aria-label="Pages">
      <button disabled={page === 0} onClick={() => onPage(page - 1)}>
        Previous
      </button>
      <span>
        Page {page + 1} of {pages}
      </span>
      <button disabled={page >= pages - 1} onClick={() => onPage(page + 1)}>
        Next
      </button>
    </nav>
  );
}

/** What to do when the metrics pipeline does not answer (`error` says why). */
export function NoMetricsPipeline(props: { error?: string }) {
  return (
    <Empty>
      The metrics pipeline does not answer{props.error ? `: ${props.error}` : ""}. It runs in <code>persys-stack</code> (on SQLite,
      or PostgreSQL with <code>--metrics-database-url</code>), as the compose file's <code>metrics</code> service, or with the
      Helm chart's <code>metrics.enabled</code>.
    </Empty>
  );
}

/** What to do when the reconciler does not answer (`error` says why): it needs a Kubernetes cluster. */
export function NoReconciler(props: { error?: string }) {
  return (
    <Empty>
      The reconciler does not answer: {props.error}. It runs beside a Kubernetes cluster:{" "}
      <code>persys-stack --kubeconfig ~/.kube/config</code>, or the Helm chart's <code>reconciler.enabled</code>.
    </Empty>
  );
}

/** A metrics section's title row: its heading, the time windows (1 h … 7 d) and whether it is live. */
export function MetricsHeading(props: {
  id: string;
  window: string;
  onWindow: (label: string) => void;
  live: { status: LogStatus; error?: string };
}) {
  return (
    <div class="page-title">
      <h2 id={props.id}>Metrics</h2>
      <div class="actions">
        <div class="windows" role="group" aria-label="Time window">
          {WINDOWS.map((x) => (
            <button key={x.label} aria-pressed={x.label === props.window} onClick={() => props.onWindow(x.label)}>
              {x.label}
            </button>
          ))}
        </div>
        <LiveIndicator status={props.live.status} error={props.live.error} label="Metrics" />
      </div>
    </div>
  );
}

/** The problem a metrics section shows: its query's, or else its live watch's refusal. */
export function metricsProblem(query: Problem | undefined, watchRefusal: string | undefined): Problem | undefined {
  return query ?? (watchRefusal ? { message: watchRefusal, code: Code.PermissionDenied, violations: [] } : undefined);
}

/** A labelled text input with the violations that concern it (`aria-invalid`, described by them). */
export function FormField(props: {
  id: string;
  label: string;
  value: string;
  onInput: (value: string) => void;
  errors?: string[];
  type?: string;
  placeholder?: string;
  autocomplete?: string;
}) {
  const errorId = `${props.id}-error`;
  return (
    <div class={`field${props.errors ? " invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      <input
        id={props.id}
        type={props.type ?? "text"}
        value={props.value}
        placeholder={props.placeholder}
        autocomplete={props.autocomplete}
        onInput={(e) => props.onInput((e.currentTarget as HTMLInputElement).value)}
        {...(props.errors ? { "aria-invalid": true, "aria-describedby": errorId } : {})}
      />
      {props.errors ? (
        <span class="error" id={errorId}>
          {props.errors.join("; ")}
        </span>
      ) : null}
    </div>
  );
}

/** A command form's buttons: Run (Running… while it runs) and, meanwhile, Cancel. */
export function RunButtons(props: { running: boolean; onCancel: () => void }) {
  return (
    <div class="actions">
      <button class="primary" type="submit" disabled={props.running}>
        {props.running ? "Running…" : "Run"}
      </button>
      {props.running ? (
        <button type="button" onClick={props.onCancel}>
          Cancel
        </button>
      ) : null}
    </div>
  );
}

/** A command's output as it comes, then how it ended. */
export function CommandOutput(props: {
  testId: string;
  label: string;
  output: string;
  result?: { tone: Tone; word: string; summary: string };
}) {
  return (
    <div class="card">
      <pre class="command-output" data-testid={`${props.testId}-output`} role="log" aria-label={props.label} tabIndex={0}>
        {props.output}
      </pre>
      {props.result ? (
        <p data-testid={`${props.testId}-result`} role="status">
          <Badge tone={props.result.tone}>{props.result.word}</Badge> {props.result.summary}
        </p>
      ) : null}
    </div>
  );
}
