// DORA: the four keys (deployment frequency, lead time for changes, change failure rate, time
// to restore) over a window, each with its band, week by week; and the deployments behind them,
// newest first, a page at a time, each unfolding into its images, commits and warnings. Admins
// can queue another DevLake push of a deployment whose push failed. All from the metrics
// pipeline's DoraService, behind the gateway; every role reads (members see their own rollouts
// and the deployments without an owner).
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { doraService } from "../api";
import { Ago, Badge, Empty, NoMetricsPipeline, PageTitle, ProblemBox } from "../components";
import {
  type Deployment,
  DeploymentEnvironment,
  DeploymentStatus,
  DevlakePushState,
  type DoraPerformanceLevel,
} from "../gen/persys/metrics/v1/dora_pb";
import type { GetDoraMetricsResponse } from "../gen/persys/metrics/v1/dora_service_pb";
import { useAction } from "../forms";
import {
  benchmarkLabel,
  DEFAULT_WINDOW_DAYS,
  DORA_WINDOWS,
  devlakeOf,
  durationText,
  ENVIRONMENTS,
  environmentLabel,
  firstLine,
  frequencyText,
  levelLabel,
  levelTone,
  percentText,
  repoPath,
  shortSha,
  statusOf,
  utcDate,
  weekRows,
  windowRange,
} from "../logic/dora";
import { type Problem, problemOf } from "../logic/errors";
import type { Session } from "../session";

/** Deployments a page of the list asks for. */
const PAGE = 50;

/** What the keys and the list are computed over. */
interface Scope {
  days: number;
  component: string;
  environment: DeploymentEnvironment;
  /** Bumped by "Refresh". */
  version: number;
}

/** The filters of a list request: the first page's, which later pages repeat. */
interface ListFilter {
  range: { start: Timestamp };
  component: string;
  environment: DeploymentEnvironment;
}

/** The DORA page: open to every role; retrying a DevLake push is for admins. */
export function Dora(props: { session: Session }) {
  const [days, setDays] = useState(DEFAULT_WINDOW_DAYS);
  const [typed, setTyped] = useState("");
  const [component, setComponent] = useState("");
  const [environment, setEnvironment] = useState(DeploymentEnvironment.PRODUCTION);
  const [version, setVersion] = useState(0);
  const [unavailable, setUnavailable] = useState<string | null>(null);

  // The component filter is asked for once typing pauses, not on every key.
  useEffect(() => {
    const t = setTimeout(() => setComponent(typed.trim()), 350);
    return () => clearTimeout(t);
  }, [typed]);

  const scope: Scope = { days, component, environment, version };
  return (
    <>
      <PageTitle actions={<button onClick={() => setVersion((v) => v + 1)}>Refresh</button>}>DORA</PageTitle>
      <div class="filters" role="search">
        <label>
          Window{" "}
          <select value={String(days)} onChange={(e) => setDays(Number(e.currentTarget.value))}>
            {DORA_WINDOWS.map((w) => (
              <option key={w.days} value={String(w.days)}>
                {w.label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Component{" "}
          <input type="search" placeholder="all components" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
        </label>
        <label>
          Environment{" "}
          <select value={String(environment)} onChange={(e) => setEnvironment(Number(e.currentTarget.value) as DeploymentEnvironment)}>
            {ENVIRONMENTS.map((e) => (
              <option key={e.environment} value={String(e.environment)}>
                {e.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <FourKeys scope={scope} onUnavailable={setUnavailable} />
      {unavailable === null ? <Deployments scope={scope} isAdmin={props.session.isAdmin} /> : null}
    </>
  );
}

function FourKeys(props: { scope: Scope; onUnavailable: (error: string | null) => void }) {
  const { days, component, environment, version } = props.scope;
  const [metrics, setMetrics] = useState<GetDoraMetricsResponse | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    doraService
      .getDoraMetrics({ range: windowRange(days, Date.now()), component, environment }, { signal: abort.signal })
      .then((r) => {
        setMetrics(r);
        setProblem(null);
        props.onUnavailable(null);
      })
      .catch((err) => {
        if (abort.signal.aborted) return;
        const p = problemOf(err);
        setMetrics(null);
        setProblem(p);
        props.onUnavailable(p.code === Code.Unavailable ? p.message : null);
      });
    return () => abort.abort();
  }, [days, component, environment, version]);

  if (problem?.code === Code.Unavailable) return <NoMetricsPipeline error={problem.message} />;
  const m = metrics;
  const bench = m ? benchmarkLabel(m.benchmark) : "";
  const total = Number(m?.deploymentsTotal ?? 0n);
  const failed = Number(m?.deploymentsFailed ?? 0n);
  return (
    <section aria-labelledby="keys-h">
      <h2 id="keys-h">Four keys</h2>
      <ProblemBox problem={problem} />
      {!m ? (
        problem ? null : (
          <p class="muted">Computing the four keys…</p>
        )
      ) : (
        <>
          <p class="muted small" data-testid="keys-scope">
            {total} deployment{total === 1 ? "" : "s"} ({failed} failed) to {environmentLabel(environment)}
            {component ? ` of ${component}` : ""} from {utcDate(m.range?.start)} to {utcDate(m.range?.end)} (UTC)
            {m.computedAt ? <>, computed <Ago ts={m.computedAt} /></> : null}.
          </p>
          <div class="keys">
            <KeyCard
              id="frequency"
              title="Deployment frequency"
              value={frequencyText(m.deploymentFrequencyPerDay)}
              detail={`${total - failed} successful deployment${total - failed === 1 ? "" : "s"} in ${days} days`}
              level={m.deploymentFrequencyLevel}
              benchmark={bench}
            />
            <KeyCard
              id="lead-time"
              title="Lead time for changes"
              value={durationText(m.leadTimeMedian)}
              detail={m.leadTimeMedian ? `median; 90th percentile ${durationText(m.leadTimeP90)}` : "no dated commit first deployed in the window"}
              level={m.leadTimeLevel}
              benchmark={bench}
            />
            <KeyCard
              id="change-failure-rate"
              title="Change failure rate"
              value={percentText(m.changeFailureRate)}
              detail={`${failed} of ${total} deployment${total === 1 ? "" : "s"} failed`}
              level={m.changeFailureRateLevel}
              benchmark={bench}
            />
            <KeyCard
              id="time-to-restore"
              title="Time to restore"
              value={durationText(m.timeToRestoreMedian)}
              detail={`${m.timeToRestoreMedian ? "median" : "nothing restored"}; ${m.unrestoredFailures} unrestored`}
              level={m.timeToRestoreLevel}
              benchmark={bench}
            />
          </div>
          <Weeks metrics={m} />
        </>
      )}
    </section>
  );
}

function KeyCard(props: { id: string; title: string; value: string; detail: string; level: DoraPerformanceLevel; benchmark: string }) {
  return (
    <section class="card key" aria-labelledby={`key-${props.id}-h`} data-testid={`key-${props.id}`}>
      <h3 id={`key-${props.id}-h`}>{props.title}</h3>
      <p class="value" data-testid={`key-${props.id}-value`}>
        {props.value}
      </p>
      <p class="muted small">{props.detail}</p>
      <p>
        <Badge tone={levelTone(props.level)}>{levelLabel(props.level)}</Badge>
        {props.benchmark ? <span class="muted small"> {props.benchmark}</span> : null}
      </p>
    </section>
  );
}

function Weeks(props: { metrics: GetDoraMetricsResponse }) {
  const rows = weekRows(props.metrics.weeks);
  if (rows.length === 0) return null;
  return (
    <details class="weeks">
      <summary data-testid="weeks-summary">Week by week ({rows.length} weeks)</summary>
      <table data-testid="weeks">
        <caption class="sr-only">Week by week, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Week of (Monday, UTC)</th>
            <th scope="col">Deployments</th>
            <th scope="col">Failed</th>
            <th scope="col">Lead time (median)</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((w) => (
            <tr key={w.start}>
              <td>{w.start}</td>
              <td>{w.deployments}</td>
              <td>{w.failed}</td>
              <td>{w.leadTime}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}

function Deployments(props: { scope: Scope; isAdmin: boolean }) {
  const { days, component, environment, version } = props.scope;
  const [list, setList] = useState<Deployment[] | null>(null);
  const [next, setNext] = useState("");
  const [total, setTotal] = useState<number | undefined>(undefined);
  const [loadingMore, setLoadingMore] = useState(false);
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const { problem, setProblem, act } = useAction();
  // The first page's request: later pages ask with the same filters (a token belongs to them).
  const query = useRef<ListFilter | null>(null);
  const more = useRef<AbortController | null>(null);

  useEffect(() => {
    const abort = new AbortController();
    more.current?.abort();
    const q: ListFilter = {
      range: windowRange(days, Date.now()),
      component,
      environment,
    };
    query.current = q;
    doraService
      .listDeployments({ ...q, page: { pageSize: PAGE } }, { signal: abort.signal })
      .then((r) => {
        setList(r.deployments);
        setNext(r.page?.nextPageToken ?? "");
        setTotal(r.page?.totalSize === undefined ? undefined : Number(r.page.totalSize));
        setProblem(null);
      })
      .catch((err) => {
        if (!abort.signal.aborted) setProblem(problemOf(err));
      });
    return () => abort.abort();
  }, [days, component, environment, version]);

  const loadMore = async () => {
    if (!query.current || !next) return;
    const abort = new AbortController();
    more.current = abort;
    setLoadingMore(true);
    try {
      const r = await doraService.listDeployments({ ...query.current, page: { pageSize: PAGE, pageToken: next } }, { signal: abort.signal });
      // Deployments recorded meanwhile shift the pages: one already shown is not listed twice.
      setList((l) => {
        const seen = new Set((l ?? []).map((d) => d.id));
        return [...(l ?? []), ...r.deployments.filter((d) => !seen.has(d.id))];
      });
      setNext(r.page?.nextPageToken ?? "");
    } catch (err) {
      if (!abort.signal.aborted) setProblem(problemOf(err));
    } finally {
      if (more.current === abort) setLoadingMore(false);
    }
  };

  const toggle = (id: string) =>
    setOpen((o) => {
      const n = new Set(o);
      if (!n.delete(id)) n.add(id);
      return n;
    });

  const retry = (d: Deployment) =>
    act(async () => {
      const r = await doraService.retryDevlakePush({ id: d.id });
      const updated = r.deployment;
      if (updated) setList((l) => (l ?? []).map((x) => (x.id === updated.id ? updated : x)));
    });

  return (
    <section aria-labelledby="deployments-h">
      <h2 id="deployments-h">Deployments</h2>
      <ProblemBox problem={problem} />
      {list === null ? (
        problem ? null : (
          <p class="muted">Loading deployments…</p>
        )
      ) : list.length === 0 ? (
        <Empty>
          No deployment to {environmentLabel(environment)}
          {component ? ` of ${component}` : ""} in the last {days} days. Deployments come from the reconciler's ArgoCD watcher, from
          Persys workloads (with the pipeline's <code>--scheduler</code>), or from CI with <code>persys dora record</code>.
        </Empty>
      ) : (
        <>
          <table data-testid="deployments">
            <caption class="sr-only">Deployments, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Deployed</th>
                <th scope="col">Component</th>
                <th scope="col">Cluster</th>
                <th scope="col">Environment</th>
                <th scope="col">Revision</th>
                <th scope="col">Status</th>
                <th scope="col">Commits</th>
                <th scope="col">Lead time</th>
                <th scope="col">DevLake</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {list.map((d, i) => (
                <DeploymentRows
                  key={d.id}
                  deployment={d}
                  index={i}
                  open={open.has(d.id)}
                  onToggle={() => toggle(d.id)}
                  onRetry={props.isAdmin ? () => retry(d) : undefined}
                />
              ))}
            </tbody>
          </table>
          <nav class="pager" aria-label="Deployment pages">
            <span>
              {list.length}
              {total !== undefined ? ` of ${total}` : ""} shown
            </span>
            {next ? (
              <button onClick={() => void loadMore()} disabled={loadingMore}>
                {loadingMore ? "Loading…" : "More"}
              </button>
            ) : null}
          </nav>
        </>
      )}
    </section>
  );
}

/** A deployment's row, and below it, when open, its details. */
function DeploymentRows(props: { deployment: Deployment; index: number; open: boolean; onToggle: () => void; onRetry?: () => void }) {
  const d = props.deployment;
  const status = statusOf(d.status);
  const push = devlakeOf(d.devlake?.state);
  const name = `${d.component} ${shortSha(d.revision)} on ${d.cluster}`;
  const detailsId = `deployment-details-${props.index}`;
  return (
    <>
      <tr
        class="clickable"
        data-deployment={d.id}
        onClick={(e) => {
          // Buttons and links in the row do their own thing.
          if ((e.target as HTMLElement).closest("button, a")) return;
          props.onToggle();
        }}
      >
        <td>
          <When ts={d.deployedAt} />
        </td>
        <td>{d.component}</td>
        <td>{d.cluster}</td>
        <td>{environmentLabel(d.environment)}</td>
        <td>
          <code title={d.revision}>{shortSha(d.revision)}</code>
        </td>
        <td>
          <Badge tone={status.tone}>{status.label}</Badge>
        </td>
        <td>
          {d.resolving ? (
            <span class="muted">resolving…</span>
          ) : (
            <>
              {d.commits.length}
              {d.commitsTruncated ? <span class="muted small"> (truncated)</span> : null}
            </>
          )}
        </td>
        <td>{d.resolving ? <span class="muted">—</span> : durationText(d.leadTime)}</td>
        <td>
          <span title={d.devlake?.lastError || undefined}>
            <Badge tone={push.tone}>{push.label}</Badge>
          </span>
        </td>
        <td>
          <div class="actions">
            <button
              onClick={props.onToggle}
              aria-expanded={props.open}
              aria-controls={props.open ? detailsId : undefined}
              aria-label={`Details of ${name}`}
            >
              Details
            </button>
            {props.onRetry && d.devlake?.state === DevlakePushState.FAILED ? (
              <button onClick={props.onRetry} aria-label={`Retry DevLake push of ${name}`}>
                Retry DevLake push
              </button>
            ) : null}
          </div>
        </td>
      </tr>
      {props.open ? (
        <tr class="details" id={detailsId}>
          <td colSpan={10}>
            <DeploymentDetails deployment={d} />
          </td>
        </tr>
      ) : null}
    </>
  );
}

function DeploymentDetails(props: { deployment: Deployment }) {
  const d = props.deployment;
  const push = d.devlake;
  return (
    <div class="deployment" data-testid="deployment-details">
      <dl class="facts">
        <dt>Application</dt>
        <dd>
          {d.application || "—"}
          {d.argocdNamespace ? <span class="muted"> (namespace {d.argocdNamespace})</span> : null}
        </dd>
        <dt>Revision</dt>
        <dd>
          <code>{d.revision}</code>
        </dd>
        {d.sourceRepoUrl || d.sourcePath ? (
          <>
            <dt>Source</dt>
            <dd>
              {d.sourceRepoUrl ? repoPath(d.sourceRepoUrl) : ""}
              {d.sourcePath ? <span class="muted"> {d.sourcePath}</span> : null}
            </dd>
          </>
        ) : null}
        <dt>ArgoCD</dt>
        <dd>
          {d.syncStatus || "—"}, {d.healthStatus || "—"}
          {d.status === DeploymentStatus.FAILED ? <span class="muted"> (a failed deployment)</span> : null}
        </dd>
        <dt>Recorded</dt>
        <dd>
          <Ago ts={d.recordedAt} />
        </dd>
        <dt>DevLake</dt>
        <dd>
          {devlakeOf(push?.state).label}
          {push?.attempts ? `, ${push.attempts} attempt${push.attempts === 1 ? "" : "s"}` : ""}
          {push?.sentAt ? <>, sent <Ago ts={push.sentAt} /></> : null}
          {push?.lastError ? <div class="muted small">{push.lastError}</div> : null}
        </dd>
      </dl>
      <h3>Images</h3>
      {d.images.length === 0 ? (
        <p class="muted">No image recorded.</p>
      ) : (
        <ul class="plain">
          {d.images.map((i) => (
            <li key={i.image}>
              <code>{i.image}</code>
              {i.commitSha ? (
                <>
                  {" "}
                  → commit <code>{shortSha(i.commitSha)}</code>
                </>
              ) : null}
              {i.skipReason ? <div class="muted small">No commit from it: {i.skipReason}</div> : null}
            </li>
          ))}
        </ul>
      )}
      <h3>Commits</h3>
      {d.resolving ? (
        <p class="muted">Still being resolved.</p>
      ) : d.commits.length === 0 ? (
        <p class="muted">No commit found.</p>
      ) : (
        <ul class="plain commits">
          {d.commits.map((c) => (
            <li key={`${c.repoUrl}@${c.sha}`}>
              <code title={c.sha}>{shortSha(c.sha)}</code> {firstLine(c.message) || <span class="muted">(no message)</span>}
              <div class="muted small">
                {repoPath(c.repoUrl)}
                {c.author ? ` · ${c.author}` : ""} · <When ts={c.authoredAt} />
              </div>
            </li>
          ))}
          {d.commitsTruncated ? <li class="muted small">More commits were delivered than were fetched; the oldest are missing.</li> : null}
        </ul>
      )}
      {d.warnings.length ? (
        <>
          <h3>Warnings</h3>
          <ul>
            {d.warnings.map((w, n) => (
              <li key={n}>{w}</li>
            ))}
          </ul>
        </>
      ) : null}
    </div>
  );
}

/** A time as the reader's local date and time. */
function When(props: { ts?: Timestamp }) {
  if (!props.ts) return <span class="muted">—</span>;
  const date = new Date(timestampMs(props.ts));
  return (
    <time dateTime={date.toISOString()} title={date.toISOString()}>
      {date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })}
    </time>
  );
}
