import { useState } from "preact/hooks";
import { scheduler } from "../api";
import { Sparkline } from "../chart";
import { Ago, Badge, bytes, cpu, Empty, LiveIndicator, PageTitle, Pager, ProblemBox } from "../components";
import type { Node } from "../gen/persys/scheduler/v1/node_pb";
import { useHostMetrics, useNodes, useWorkloads } from "../live";
import { type Problem, problemOf } from "../logic/errors";
import { type HostHistory, percent } from "../logic/metrics";
import { nodeStateLabel, nodeTone, phaseLabel, phaseTone } from "../logic/states";
import { Link } from "../router";
import type { Session } from "../session";
import { NodeCommands } from "./NodeCommands";
import { NodeMetrics } from "./NodeMetrics";

/** A node's live CPU and memory: sparklines of the last samples and the newest value. */
function LiveUsage(props: { history: HostHistory; nodeId: string; what: "cpu" | "memory" }) {
  const values = props.history.values(props.nodeId).map((v) => v[props.what]);
  const now = values.at(-1);
  if (values.length === 0) return <span class="muted">no samples</span>;
  const name = props.what === "cpu" ? "CPU" : "Memory";
  return (
    <span data-testid={`spark-${props.what}`}>
      <Sparkline values={values} label={`${name} over the last ${values.length} samples, now ${percent(now)}`} />
      {percent(now)}
    </span>
  );
}

/** Every node, live; for admins with their live CPU and memory (host metrics are theirs). */
export function Nodes(props: { session: Session }) {
  const nodes = useNodes();
  const [page, setPage] = useState(0);
  const all = [...nodes.items.values()].sort((a, b) => a.hostname.localeCompare(b.hostname) || a.id.localeCompare(b.id));
  const pages = Math.max(1, Math.ceil(all.length / PAGE));
  const at = Math.min(page, pages - 1);
  const list = all.slice(at * PAGE, (at + 1) * PAGE);
  return (
    <>
      <PageTitle actions={<LiveIndicator status={nodes.status} error={nodes.error} />}>Nodes</PageTitle>
      {!nodes.synced ? (
        <p class="muted">Loading nodes…</p>
      ) : list.length === 0 ? (
        <Empty>
          No node has joined yet. On the machine to add, run an agent with a join token from <code>persys token create</code>{" "}
          (admins).
        </Empty>
      ) : props.session.isAdmin ? (
        <NodesWithMetrics list={list} />
      ) : (
        <NodesTable list={list} />
      )}
      <Pager page={at} pages={pages} onPage={setPage} />
    </>
  );
}

/** Nodes on a page. */
const PAGE = 50;

function NodesWithMetrics(props: { list: Node[] }) {
  // Every node's samples come on one stream, each node's every 5 s at its own moment: the
  // table is redrawn with what arrived at most once a second, not once per node.
  const metrics = useHostMetrics([], 60, false, true, 1000);
  return <NodesTable list={props.list} history={metrics.history} />;
}

function NodesTable(props: { list: Node[]; history?: HostHistory }) {
  const { history } = props;
  return (
    <table>
      <caption class="sr-only">Nodes</caption>
      <thead>
        <tr>
          <th scope="col">Node</th>
          <th scope="col">State</th>
          <th scope="col">Drivers</th>
          {history ? (
            <>
              <th scope="col">CPU (live)</th>
              <th scope="col">Memory (live)</th>
            </>
          ) : null}
          <th scope="col">CPU free / allocatable</th>
          <th scope="col">Memory free / allocatable</th>
          <th scope="col">Instances</th>
          <th scope="col">Last heartbeat</th>
        </tr>
      </thead>
      <tbody>
        {props.list.map((n) => (
          <tr key={n.id}>
            <td>
              <Link href={`/nodes/${n.id}`}>{n.hostname || n.id}</Link>
            </td>
            <td>
              <Badge tone={nodeTone(n.state)}>{nodeStateLabel(n.state)}</Badge>
            </td>
            <td>{n.drivers.join(", ") || "—"}</td>
            {history ? (
              <>
                <td>
                  <LiveUsage history={history} nodeId={n.id} what="cpu" />
                </td>
                <td>
                  <LiveUsage history={history} nodeId={n.id} what="memory" />
                </td>
              </>
            ) : null}
            <td>
              {cpu(n.available?.cpuMillis)} / {cpu(n.allocatable?.cpuMillis)}
            </td>
            <td>
              {bytes(n.available?.memoryBytes)} / {bytes(n.allocatable?.memoryBytes)}
            </td>
            <td>{n.instanceCount}</td>
            <td>
              <Ago ts={n.lastHeartbeat} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function NodeActions(props: { node: Node }) {
  const [problem, setProblem] = useState<Problem | null>(null);
  const [busy, setBusy] = useState(false);
  const act = async (f: () => Promise<unknown>) => {
    setBusy(true);
    setProblem(null);
    try {
      await f();
    } catch (err) {
      setProblem(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  const id = props.node.id;
  return (
    <div class="actions">
      {props.node.cordoned ? (
        <button disabled={busy} onClick={() => act(() => scheduler.uncordonNode({ id }))}>
          Uncordon
        </button>
      ) : (
        <>
          <button disabled={busy} onClick={() => act(() => scheduler.cordonNode({ id, reason: "from the dashboard" }))}>
            Cordon
          </button>
          <button disabled={busy} onClick={() => act(() => scheduler.drainNode({ id, reason: "from the dashboard" }))}>
            Drain
          </button>
        </>
      )}
      <ProblemBox problem={problem} />
    </div>
  );
}

/** One node: its details, its instances, and for admins cordon, drain and uncordon. */
export function NodePage(props: { id: string; session: Session }) {
  const nodes = useNodes();
  const workloads = useWorkloads({ nodeId: props.id });
  const n = nodes.items.get(props.id);
  if (nodes.synced && !n)
    return (
      <>
        <PageTitle>Node not found</PageTitle>
        <Empty>
          There is no node <code>{props.id}</code>. <Link href="/nodes">See all nodes</Link>.
        </Empty>
      </>
    );
  if (!n) return <p class="muted">Loading node…</p>;
  const instances = [...workloads.items.values()].flatMap((w) =>
    (w.status?.instances ?? []).filter((i) => i.nodeId === n.id).map((i) => ({ w, i })),
  );
  return (
    <>
      <PageTitle
        actions={
          <>
            <LiveIndicator status={nodes.status} error={nodes.error} />
            {props.session.isAdmin ? <NodeActions node={n} /> : null}
          </>
        }
      >
        {n.hostname || n.id} <Badge tone={nodeTone(n.state)}>{nodeStateLabel(n.state)}</Badge>
      </PageTitle>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{n.id}</code>
        </dd>
        <dt>State reason</dt>
        <dd>{n.stateReason || "—"}</dd>
        <dt>Addresses</dt>
        <dd>{n.addresses.join(", ") || "—"}</dd>
        <dt>System</dt>
        <dd>
          {n.info?.osImage || n.info?.os} {n.info?.arch} (kernel {n.info?.kernelVersion || "?"}), agent {n.info?.agentVersion || "?"}
        </dd>
        <dt>Drivers</dt>
        <dd>{n.drivers.join(", ") || "—"}</dd>
        <dt>CPU (cores) free / allocatable / capacity</dt>
        <dd>
          {cpu(n.available?.cpuMillis)} / {cpu(n.allocatable?.cpuMillis)} / {cpu(n.capacity?.cpuMillis)}
        </dd>
        <dt>Memory free / allocatable / capacity</dt>
        <dd>
          {bytes(n.available?.memoryBytes)} / {bytes(n.allocatable?.memoryBytes)} / {bytes(n.capacity?.memoryBytes)}
        </dd>
        <dt>Labels</dt>
        <dd>
          {Object.entries(n.labels)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ") || "—"}
        </dd>
        <dt>Last heartbeat</dt>
        <dd>
          <Ago ts={n.lastHeartbeat} />
        </dd>
      </dl>
      {props.session.isAdmin ? <NodeMetrics nodeId={n.id} /> : null}
      {props.session.isAdmin ? <NodeCommands nodeId={n.id} /> : null}
      <section aria-labelledby="instances-h">
        <h2 id="instances-h">Instances on this node</h2>
        {workloads.synced && instances.length === 0 ? (
          <Empty>No workload instance runs on this node.</Empty>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">Workload</th>
                <th scope="col">Replica</th>
                <th scope="col">Phase</th>
                <th scope="col">Restarts</th>
              </tr>
            </thead>
            <tbody>
              {instances.map(({ w, i }) => (
                <tr key={i.instanceId}>
                  <td>
                    <Link href={`/workloads/${w.id}`}>{w.name || w.id}</Link>
                  </td>
                  <td>{i.replicaIndex}</td>
                  <td>
                    <Badge tone={phaseTone(i.phase)}>{phaseLabel(i.phase)}</Badge>
                  </td>
                  <td>{i.restartCount}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {workloads.synced ? null : <p class="muted">Loading instances…</p>}
      </section>
    </>
  );
}
