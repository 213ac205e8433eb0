import { useEffect, useRef, useState } from "preact/hooks";
import { scheduler } from "../api";
import { Ago, Badge, bytes, cpu, Empty, LiveIndicator, PageTitle, ProblemBox } from "../components";
import { EventType } from "../gen/persys/common/v1/common_pb";
import { DesiredState, type Workload, WorkloadPhase } from "../gen/persys/scheduler/v1/workload_pb";
import { useLogs, useWorkloads } from "../live";
import { type Problem, problemOf } from "../logic/errors";
import { phaseLabel, phaseOf, phaseTone } from "../logic/states";
import { Link, navigate } from "../router";
import type { Session } from "../session";
import { WorkloadExec } from "./WorkloadExec";
import { WorkloadMetrics } from "./WorkloadMetrics";

/** Lines the log view renders at most (the buffer keeps more, for search and download). */
const SHOWN_LINES = 2000;

function Actions(props: { w: Workload }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const { id } = props.w;
  const act = async (f: () => Promise<unknown>, after?: () => void) => {
    setBusy(true);
    setProblem(null);
    try {
      await f();
      after?.();
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  const stopped = props.w.desiredState === DesiredState.STOPPED;
  const deleting = props.w.desiredState === DesiredState.DELETED;
  return (
    <div class="actions">
      {stopped ? (
        <button disabled={busy || deleting} onClick={() => act(() => scheduler.startWorkload({ id }))}>
          Start
        </button>
      ) : (
        <>
          <button disabled={busy || deleting} onClick={() => act(() => scheduler.stopWorkload({ id }))}>
            Stop
          </button>
          <button disabled={busy || deleting} onClick={() => act(() => scheduler.restartWorkload({ id }))}>
            Restart
          </button>
        </>
      )}
      {confirming ? (
        <>
          <button class="danger" disabled={busy} onClick={() => act(() => scheduler.deleteWorkload({ id }), () => setConfirming(false))}>
            Confirm delete
          </button>
          <button disabled={busy} onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </>
      ) : (
        <button class="danger" disabled={busy || deleting} onClick={() => setConfirming(true)}>
          Delete
        </button>
      )}
      <ProblemBox problem={problem} />
    </div>
  );
}

function Logs(props: { w: Workload }) {
  const replicas = Math.max(1, props.w.spec?.replicas ?? 1);
  const [replica, setReplica] = useState(0);
  const running = phaseOf(props.w) === WorkloadPhase.RUNNING || phaseOf(props.w) === WorkloadPhase.STARTING;
  const logs = useLogs(props.w.id, replica, running);
  const [query, setQuery] = useState("");
  const [paused, setPaused] = useState(false);
  const box = useRef<HTMLPreElement>(null);
  const lines = logs.buffer.view(query);
  const shown = lines.slice(-SHOWN_LINES);
  useEffect(() => {
    if (!paused && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [logs.version, paused, query]);
  const togglePause = () => {
    if (paused) logs.buffer.resume();
    else logs.buffer.pause();
    setPaused(!paused);
  };
  const download = () => {
    const url = URL.createObjectURL(new Blob([logs.buffer.text()], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `${props.w.name || props.w.id}-${replica}.log`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  return (
    <section aria-labelledby="logs-h" class="logs">
      <div class="page-title">
        <h2 id="logs-h">Logs</h2>
        <div class="actions">
          <LiveIndicator status={logs.status} error={logs.error} label="Logs" />
          {replicas > 1 ? (
            <label>
              Replica{" "}
              <select value={replica} onChange={(e) => setReplica(Number(e.currentTarget.value))}>
                {Array.from({ length: replicas }, (_, i) => (
                  <option key={i} value={i}>
                    {i}
                  </option>
                ))}
              </select>
            </label>
          ) : null}
          <label>
            <span class="sr-only">Search the logs</span>
            <input type="search" placeholder="Search the logs" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
          </label>
          <button aria-pressed={paused} onClick={togglePause}>
            {paused ? `Resume${logs.buffer.newSincePause ? ` (${logs.buffer.newSincePause} new)` : ""}` : "Pause"}
          </button>
          <button onClick={download}>Download</button>
        </div>
      </div>
      <pre ref={box} class="log" role="log" aria-label="Output" tabIndex={0} data-testid="log">
        {shown.length === 0 ? (
          <span class="muted">{query ? "No line matches the search." : logs.status === "ended" ? "No output." : "Waiting for output…"}</span>
        ) : (
          shown.map((l) => (
            <div key={l.seq} class={l.stream === "stderr" ? "line stderr" : "line"}>
              {l.text}
            </div>
          ))
        )}
      </pre>
      {logs.buffer.dropped ? <p class="muted small">Older lines were dropped ({logs.buffer.dropped}); download keeps the last {logs.buffer.capacity}.</p> : null}
    </section>
  );
}

/** One workload: status, instances, events, live logs, and actions for those allowed. */
export function WorkloadPage(props: { id: string; session: Session }) {
  const watch = useWorkloads({ workloadId: props.id });
  const w = watch.items.get(props.id);
  const [seen, setSeen] = useState(false);
  useEffect(() => {
    if (w) setSeen(true);
  }, [w]);
  if (watch.synced && !w)
    return (
      <>
        <PageTitle>{seen ? "Workload deleted" : "Workload not found"}</PageTitle>
        <Empty>
          {seen ? "This workload was deleted." : <>There is no workload <code>{props.id}</code> you may see.</>}{" "}
          <Link href="/workloads">See all workloads</Link>.
        </Empty>
      </>
    );
  if (!w) return <p class="muted">Loading workload…</p>;
  const s = props.session;
  const mayChange = s.isAdmin || (s.canWrite && w.ownerId === s.user.id);
  const res = w.spec?.resources?.requests;
  return (
    <>
      <PageTitle
        actions={
          <>
            <LiveIndicator status={watch.status} error={watch.error} />
            {mayChange ? <Actions w={w} /> : null}
          </>
        }
      >
        {w.name || w.id}{" "}
        <Badge tone={phaseTone(phaseOf(w))}>
          <span data-testid="phase">{phaseLabel(phaseOf(w))}</span>
        </Badge>
      </PageTitle>
      {w.status?.message ? <p class="status-message">{w.status.message}</p> : null}
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{w.id}</code>
        </dd>
        <dt>Image</dt>
        <dd>
          <code>{w.spec?.image}</code>
        </dd>
        <dt>Command</dt>
        <dd>{w.spec?.command.length ? <code>{w.spec.command.join(" ")}</code> : "image default"}</dd>
        <dt>Requests</dt>
        <dd>
          CPU {cpu(res?.cpuMillis)}, memory {bytes(res?.memoryBytes)}
        </dd>
        <dt>Ready</dt>
        <dd>
          {w.status?.readyReplicas ?? 0}/{Math.max(1, w.spec?.replicas ?? 1)}
        </dd>
        <dt>Created</dt>
        <dd>
          <Ago ts={w.createdAt} />
        </dd>
      </dl>
      <section aria-labelledby="inst-h">
        <h2 id="inst-h">Instances</h2>
        {(w.status?.instances.length ?? 0) === 0 ? (
          <Empty>No instance yet: {w.status?.reason || "waiting to be placed"}.</Empty>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Replica</th>
                <th scope="col">Node</th>
                <th scope="col">Phase</th>
                <th scope="col">Reason</th>
                <th scope="col">Restarts</th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {w.status!.instances.map((i) => (
                <tr key={i.instanceId}>
                  <td>{i.replicaIndex}</td>
                  <td>{i.nodeId ? <Link href={`/nodes/${i.nodeId}`}>{i.nodeId}</Link> : "—"}</td>
                  <td>
                    <Badge tone={phaseTone(i.phase)}>{phaseLabel(i.phase)}</Badge>
                  </td>
                  <td>{i.reason || "—"}</td>
                  <td>{i.restartCount}</td>
                  <td>
                    <Ago ts={i.startedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <Logs w={w} />
      {mayChange && phaseOf(w) === WorkloadPhase.RUNNING ? <WorkloadExec w={w} /> : null}
      <WorkloadMetrics w={w} />
      <section aria-labelledby="ev-h">
        <h2 id="ev-h">Events</h2>
        {w.events.length === 0 ? (
          <Empty>No events yet.</Empty>
        ) : (
          <ul class="events">
            {[...w.events].reverse().map((e) => (
              <li key={e.id}>
                <Ago ts={e.time} /> <Badge tone={e.type === EventType.WARNING ? "warn" : "idle"}>{e.reason}</Badge> {e.message}
                {e.count > 1 ? <span class="muted"> (×{e.count})</span> : null}
              </li>
            ))}
          </ul>
        )}
      </section>
      {mayChange ? null : <p class="muted small">{s.canWrite ? "Only its owner and admins can change this workload." : "You have read-only access."}</p>}
      <p>
        <button class="link" onClick={() => navigate("/workloads")}>
          Back to workloads
        </button>
      </p>
    </>
  );
}
