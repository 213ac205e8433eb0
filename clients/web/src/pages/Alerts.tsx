// Alerts, live from the metrics pipeline's WatchAlerts (open ones, then every change), with the
// recently resolved from ListAlerts; acknowledge a firing alert; the alert rules with enable,
// disable and delete, and a form for a new rule whose mistakes come back on its inputs, with its
// notification channels (./RuleChannels); the silences (./Silences).
import { useEffect, useState } from "preact/hooks";
import { alertService } from "../api";
import { Ago, Badge, Empty, LiveIndicator, NoMetricsPipeline, PageTitle, Pager, ProblemBox } from "../components";
import { type Alert, AlertState, type AlertRule } from "../gen/persys/metrics/v1/alert_pb";
import { useAlerts } from "../live";
import {
  alertStateLabel,
  alertStateTone,
  COMPARATORS,
  comparatorSymbol,
  countByState,
  EMPTY_RULE,
  filterAlerts,
  RULE_METRICS,
  type RuleForm,
  type RuleInput,
  ruleCondition,
  ruleFields,
  ruleFromForm,
  ruleRepeat,
  ruleToForm,
  changedFields,
  severityLabel,
} from "../logic/alerts";
import { listAll, useAction, useFormProblems } from "../forms";
import { problemOf } from "../logic/errors";
import { AlertSeverity } from "../gen/persys/metrics/v1/alert_pb";
import { Link } from "../router";
import { ChannelsCell, ChannelsEditor } from "./RuleChannels";
import { Silences } from "./Silences";
import type { Session } from "../session";

const PAGE = 50;

const SHOW: Record<string, { label: string; states: AlertState[] }> = {
  open: { label: "Open", states: [AlertState.FIRING, AlertState.PENDING, AlertState.ACKNOWLEDGED] },
  firing: { label: "Firing", states: [AlertState.FIRING] },
  pending: { label: "Pending", states: [AlertState.PENDING] },
  acknowledged: { label: "Acknowledged", states: [AlertState.ACKNOWLEDGED] },
  resolved: { label: "Resolved", states: [AlertState.RESOLVED] },
  all: { label: "All", states: [] },
};

/** The Alerts page: admins only (alerts watch every node's host metrics). */
export function Alerts(props: { session: Session }) {
  if (!props.session.isAdmin)
    return (
      <>
        <PageTitle>Alerts</PageTitle>
        <Empty>Alerts and alert rules cover every node's host metrics, so only admins see them. Ask an admin.</Empty>
      </>
    );
  return (
    <>
      <AlertList />
      <Silences />
      <Rules />
    </>
  );
}

function AlertList() {
  const live = useAlerts();
  const [resolved, setResolved] = useState<Alert[]>([]);
  const [show, setShow] = useState("open");
  const [page, setPage] = useState(0);
  const { problem, act } = useAction();

  // The latest resolved alerts (the watch's snapshot holds open ones only).
  useEffect(() => {
    const abort = new AbortController();
    alertService
      .listAlerts({ states: [AlertState.RESOLVED], page: { pageSize: 100 } }, { signal: abort.signal })
      .then((r) => setResolved(r.alerts))
      .catch(() => {
        // The watch says what is wrong, if anything is.
      });
    return () => abort.abort();
  }, []);

  const merged = new Map(resolved.map((a) => [a.id, a]));
  for (const [id, a] of live.items) merged.set(id, a);
  const list = filterAlerts(merged.values(), SHOW[show].states);
  const counts = countByState(merged.values());
  const pages = Math.max(1, Math.ceil(list.length / PAGE));
  const at = Math.min(page, pages - 1);

  const acknowledge = (a: Alert) => act(() => alertService.acknowledgeAlert({ id: a.id, comment: "from the dashboard" }));

  return (
    <>
      <PageTitle actions={<LiveIndicator status={live.status} error={live.error} label="Alerts" />}>Alerts</PageTitle>
      {live.problem ? <ProblemBox problem={{ message: live.problem, code: 7, violations: [] }} /> : null}
      <div class="filters">
        <label>
          Show{" "}
          <select
            value={show}
            onChange={(e) => {
              setShow(e.currentTarget.value);
              setPage(0);
            }}
          >
            {Object.entries(SHOW).map(([k, v]) => (
              <option key={k} value={k}>
                {v.label}
                {v.states.length === 1 ? ` (${counts.get(v.states[0]) ?? 0})` : ""}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ProblemBox problem={problem} />
      {!live.synced ? (
        live.error ? (
          <NoMetricsPipeline error={live.error} />
        ) : (
          <p class="muted">Loading alerts…</p>
        )
      ) : list.length === 0 ? (
        <Empty>
          {show === "open"
            ? "Nothing is firing. Alerts open when a rule's condition holds on a node's metrics; add rules below."
            : `No ${SHOW[show].label.toLowerCase()} alerts.`}
        </Empty>
      ) : (
        <table data-testid="alerts">
          <caption class="sr-only">Alerts</caption>
          <thead>
            <tr>
              <th scope="col">State</th>
              <th scope="col">Severity</th>
              <th scope="col">Rule</th>
              <th scope="col">Node</th>
              <th scope="col">Value</th>
              <th scope="col">Since</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list.slice(at * PAGE, (at + 1) * PAGE).map((a) => (
              <tr key={a.id}>
                <td>
                  <Badge tone={alertStateTone(a.state)}>{alertStateLabel(a.state)}</Badge>
                </td>
                <td>{severityLabel(a.severity)}</td>
                <td>
                  {a.ruleName}
                  {a.message ? <div class="muted small">{a.message}</div> : null}
                </td>
                <td>{a.nodeId ? <Link href={`/nodes/${a.nodeId}`}>{a.nodeId}</Link> : "—"}</td>
                <td>
                  {a.value.toFixed(2)} {comparatorSymbol(a.comparator)} {a.threshold}
                </td>
                <td>
                  <Ago ts={a.state === AlertState.RESOLVED ? a.resolvedAt : (a.firedAt ?? a.pendingSince)} />
                  {a.state === AlertState.ACKNOWLEDGED && a.acknowledgedBy ? (
                    <div class="muted small">acknowledged by {a.acknowledgedBy}</div>
                  ) : null}
                  {a.silencedBy ? (
                    <div class="muted small" title={`silence ${a.silencedBy}`}>
                      silenced: nobody notified
                    </div>
                  ) : null}
                </td>
                <td>
                  {a.state === AlertState.FIRING ? (
                    <button onClick={() => acknowledge(a)} aria-label={`Acknowledge ${a.ruleName} on ${a.nodeId}`}>
                      Acknowledge
                    </button>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Pager page={at} pages={pages} onPage={setPage} />
    </>
  );
}

function Rules() {
  const [rules, setRules] = useState<AlertRule[] | null>(null);
  const [version, setVersion] = useState(0);
  const [editing, setEditing] = useState<AlertRule | null>(null);
  const reload = () => setVersion((v) => v + 1);
  const { problem, setProblem, act } = useAction(reload);

  useEffect(() => {
    const abort = new AbortController();
    void (async () => {
      try {
        const all = await listAll(async (token) => {
          const r = await alertService.listAlertRules({ page: { pageSize: 500, pageToken: token } }, { signal: abort.signal });
          return { items: r.rules, next: r.page?.nextPageToken ?? "" };
        });
        setRules(all.sort((a, b) => a.name.localeCompare(b.name)));
      } catch (err) {
        if (!abort.signal.aborted) setProblem(problemOf(err));
      }
    })();
    return () => abort.abort();
  }, [version]);

  return (
    <section aria-labelledby="rules-h">
      <h2 id="rules-h">Rules</h2>
      <ProblemBox problem={problem} />
      {rules === null ? (
        problem ? null : (
          <p class="muted">Loading rules…</p>
        )
      ) : rules.length === 0 ? (
        <Empty>No alert rule yet. Add one below, e.g. CPU usage above 90 % for 5 minutes.</Empty>
      ) : (
        <table data-testid="rules">
          <caption class="sr-only">Alert rules</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Condition</th>
              <th scope="col">Severity</th>
              <th scope="col">Enabled</th>
              <th scope="col">Notifies</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {rules.map((r) => (
              <tr key={r.id}>
                <td>
                  {r.name}
                  {r.description ? <div class="muted small">{r.description}</div> : null}
                </td>
                <td>{ruleCondition(r)}</td>
                <td>{severityLabel(r.severity)}</td>
                <td>{r.enabled ? "yes" : "no"}</td>
                <td>
                  <ChannelsCell channels={r.notificationChannels} repeat={ruleRepeat(r)} />
                </td>
                <td class="actions">
                  <button
                    onClick={() => {
                      setEditing(r);
                      requestAnimationFrame(() => document.getElementById("r-name")?.focus());
                    }}
                    aria-label={`Edit rule ${r.name}`}
                  >
                    Edit
                  </button>
                  <button
                    onClick={() =>
                      act(() =>
                        alertService.updateAlertRule({
                          rule: { id: r.id, enabled: !r.enabled },
                          updateMask: { paths: ["enabled"] },
                          expectedRevision: r.revision,
                        }),
                      )
                    }
                    aria-label={`${r.enabled ? "Disable" : "Enable"} rule ${r.name}`}
                  >
                    {r.enabled ? "Disable" : "Enable"}
                  </button>
                  <button
                    class="danger"
                    onClick={() => {
                      if (confirm(`Delete the rule ${r.name}? Its open alerts resolve.`)) void act(() => alertService.deleteAlertRule({ id: r.id }));
                    }}
                    aria-label={`Delete rule ${r.name}`}
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <RuleEditor
        key={editing ? `${editing.id}@${editing.revision}` : "new"}
        editing={editing}
        onDone={() => {
          setEditing(null);
          reload();
        }}
      />
    </section>
  );
}

type Key = RuleInput;

const HELP: Partial<Record<Key, string>> = {
  forDuration: "e.g. 0s, 30s, 5m, 1h",
  resolveThreshold: "Hysteresis: the alert resolves only past this value",
  repeatInterval: "While firing and not acknowledged (webhook and Slack), e.g. 1h; empty: never",
};

/** The "new rule" form, or with `editing` the same form filled with a rule, saving what changed. */
function RuleEditor(props: { editing: AlertRule | null; onDone: () => void }) {
  const { editing } = props;
  const [form, setForm] = useState<RuleForm>(editing ? ruleToForm(editing) : EMPTY_RULE);
  const [busy, setBusy] = useState(false);
  const { problem, byInput, other, show, clear } = useFormProblems(ruleFields(form), "r-");

  const submit = async (e: Event) => {
    e.preventDefault();
    const built = ruleFromForm(form);
    if ("violations" in built) return show({ message: "Some fields need fixing.", code: 3, violations: built.violations });
    setBusy(true);
    try {
      if (editing) {
        const paths = changedFields(editing, built.rule);
        if (paths.length)
          await alertService.updateAlertRule({
            rule: { ...built.rule, id: editing.id },
            updateMask: { paths },
            // Refused if someone else changed the rule since this page read it.
            expectedRevision: editing.revision,
          });
      } else {
        await alertService.createAlertRule({ rule: built.rule });
      }
      setForm(EMPTY_RULE);
      clear();
      props.onDone();
    } catch (err) {
      show(problemOf(err));
    } finally {
      setBusy(false);
    }
  };

  const wrap = (k: Key, label: string, input: preact.JSX.Element) => {
    const errors = byInput[k];
    const help = HELP[k];
    return (
      <div class={`field${errors ? " invalid" : ""}`}>
        <label for={`r-${k}`}>{label}</label>
        {input}
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
  const attrs = (k: Key) => ({
    id: `r-${k}`,
    name: k,
    value: form[k],
    "aria-invalid": byInput[k] ? true : undefined,
    "aria-describedby": [HELP[k] ? `rh-${k}` : "", byInput[k] ? `re-${k}` : ""].filter(Boolean).join(" ") || undefined,
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <form class="card" onSubmit={submit} aria-labelledby="new-rule-h" noValidate>
      <h3 id="new-rule-h">{editing ? `Edit rule ${editing.name}` : "New rule"}</h3>
      <div class="row">
        {wrap("name", "Name", <input {...attrs("name")} placeholder="hot-cpu" />)}
        {wrap(
          "metric",
          "Metric",
          <select {...attrs("metric")} onChange={attrs("metric").onInput}>
            {RULE_METRICS.map((m) => (
              <option key={m.metric} value={String(m.metric)}>
                {m.label}
                {m.unit ? ` (${m.unit})` : ""}
              </option>
            ))}
          </select>,
        )}
        {wrap(
          "severity",
          "Severity",
          <select {...attrs("severity")} onChange={attrs("severity").onInput}>
            {[AlertSeverity.INFO, AlertSeverity.WARNING, AlertSeverity.CRITICAL].map((s) => (
              <option key={s} value={String(s)}>
                {severityLabel(s)}
              </option>
            ))}
          </select>,
        )}
      </div>
      <div class="row">
        {wrap(
          "comparator",
          "Fires when the value is",
          <select {...attrs("comparator")} onChange={attrs("comparator").onInput}>
            {COMPARATORS.map((c) => (
              <option key={c.comparator} value={String(c.comparator)}>
                {c.symbol}
              </option>
            ))}
          </select>,
        )}
        {wrap("threshold", "Threshold", <input {...attrs("threshold")} inputMode="decimal" placeholder="90" />)}
        {wrap("forDuration", "For at least", <input {...attrs("forDuration")} placeholder="5m" />)}
      </div>
      <div class="row">
        {wrap(
          "resolveThreshold",
          "Resolves at (optional)",
          <input {...attrs("resolveThreshold")} inputMode="decimal" />,
        )}
        {wrap("description", "Description (optional)", <input {...attrs("description")} />)}
      </div>
      <ChannelsEditor
        channels={form.channels}
        onChange={(channels) => setForm({ ...form, channels })}
        onRemove={clear}
        byInput={byInput}
        editing={editing !== null}
      />
      <div class="row">{wrap("repeatInterval", "Notify again every", <input {...attrs("repeatInterval")} placeholder="1h" />)}</div>
      <ProblemBox problem={problem} other={other} />
      <div class="actions">
        <button class="primary" type="submit" disabled={busy}>
          {busy ? "Saving…" : editing ? "Save rule" : "Create rule"}
        </button>
        {editing ? (
          <button type="button" onClick={props.onDone}>
            Cancel
          </button>
        ) : null}
      </div>
    </form>
  );
}
