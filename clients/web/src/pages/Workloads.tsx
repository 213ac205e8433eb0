import { timestampMs } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import { Ago, Badge, Empty, LiveIndicator, PageTitle, Pager } from "../components";
import type { WorkloadPhase } from "../gen/persys/scheduler/v1/workload_pb";
import { useNodes, useWorkloads } from "../live";
import { phaseLabel, phaseOf, phaseTone, WORKLOAD_PHASES } from "../logic/states";
import { Link } from "../router";
import type { Session } from "../session";

const PAGE = 50;

/** Every workload the user may see, live, filtered by phase and text, 50 to a page. */
export function Workloads(props: { session: Session }) {
  const workloads = useWorkloads();
  const nodes = useNodes();
  const [phase, setPhase] = useState<string>("");
  const [text, setText] = useState("");
  const [page, setPage] = useState(0);
  const q = text.trim().toLowerCase();
  const list = [...workloads.items.values()]
    .filter((w) => phase === "" || phaseOf(w) === (Number(phase) as WorkloadPhase))
    .filter((w) => !q || w.name.toLowerCase().includes(q) || w.id.startsWith(q) || (w.spec?.image ?? "").toLowerCase().includes(q))
    .sort((a, b) => (b.createdAt ? timestampMs(b.createdAt) : 0) - (a.createdAt ? timestampMs(a.createdAt) : 0));
  const pages = Math.max(1, Math.ceil(list.length / PAGE));
  const shown = list.slice(Math.min(page, pages - 1) * PAGE, (Math.min(page, pages - 1) + 1) * PAGE);
  return (
    <>
      <PageTitle
        actions={
          <>
            <LiveIndicator status={workloads.status} error={workloads.error} />
            {props.session.canWrite ? (
              <Link class="button primary" href="/workloads/new">
                Run workload
              </Link>
            ) : null}
          </>
        }
      >
        Workloads
      </PageTitle>
      <div class="filters" role="search">
        <label>
          Phase{" "}
          <select value={phase} onChange={(e) => (setPhase(e.currentTarget.value), setPage(0))}>
            <option value="">All</option>
            {WORKLOAD_PHASES.map((p) => (
              <option key={p} value={String(p)}>
                {phaseLabel(p)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search{" "}
          <input type="search" placeholder="name, id or image" value={text} onInput={(e) => (setText(e.currentTarget.value), setPage(0))} />
        </label>
      </div>
      {!workloads.synced ? (
        <p class="muted">Loading workloads…</p>
      ) : workloads.items.size === 0 ? (
        <Empty>
          No workloads yet.{" "}
          {props.session.canWrite ? (
            <>
              <Link href="/workloads/new">Run one</Link>, or from a terminal: <code>persys workload run nginx:1.27 --name web</code>.
            </>
          ) : (
            "Members and admins can run them."
          )}
        </Empty>
      ) : list.length === 0 ? (
        <Empty>No workload matches these filters.</Empty>
      ) : (
        <>
          <table>
            <caption class="sr-only">Workloads</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Image</th>
                <th scope="col">Phase</th>
                <th scope="col">Ready</th>
                <th scope="col">Node</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((w) => {
                const node = nodes.items.get(w.status?.nodeId ?? "");
                const replicas = Math.max(1, w.spec?.replicas ?? 1);
                return (
                  <tr key={w.id}>
                    <td>
                      <Link href={`/workloads/${w.id}`}>{w.name || w.id}</Link>
                    </td>
                    <td>
                      <code>{w.spec?.image}</code>
                    </td>
                    <td>
                      <Badge tone={phaseTone(phaseOf(w))}>{phaseLabel(phaseOf(w))}</Badge>
                    </td>
                    <td>
                      {w.status?.readyReplicas ?? 0}/{replicas}
                    </td>
                    <td>{w.status?.nodeId ? <Link href={`/nodes/${w.status.nodeId}`}>{node?.hostname || w.status.nodeId}</Link> : "—"}</td>
                    <td>
                      <Ago ts={w.createdAt} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <Pager page={Math.min(page, pages - 1)} pages={pages} onPage={setPage} />
        </>
      )}
    </>
  );
}
