import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Ago, Badge, Empty, LiveIndicator, PageTitle } from "../components";
import { EventType } from "../gen/persys/common/v1/common_pb";
import { AlertState } from "../gen/persys/metrics/v1/alert_pb";
import { useAlerts, useNodes, useWorkloads } from "../live";
import { alertStateLabel, alertStateTone, countByState } from "../logic/alerts";
import { type Count, countNodes, countWorkloads } from "../logic/states";
import { Link } from "../router";
import type { Session } from "../session";

/** Counts by state: the ones with members, and always the healthy one (`primary`). */
function Counts<K>(props: { title: string; counts: Count<K>[]; id: string; primary: string }) {
  const total = props.counts.reduce((s, c) => s + c.count, 0);
  return (
    <section class="card" aria-labelledby={props.id}>
      <h2 id={props.id}>
        {props.title} <span class="muted">({total})</span>
      </h2>
      <ul class="counts">
        {props.counts
          .filter((c) => c.count > 0 || c.label === props.primary)
          .map((c) => (
            <li key={String(c.key)} data-testid={`${props.id}-${c.label}`}>
              <span class="count">{c.count}</span> <Badge tone={c.tone}>{c.label}</Badge>
            </li>
          ))}
      </ul>
    </section>
  );
}

/** Open alerts by state (admins: alerts cover every node), live; says so when there are no metrics. */
function AlertsCard() {
  const alerts = useAlerts();
  const counts = countByState(alerts.items.values());
  return (
    <section class="card" aria-labelledby="alerts-h">
      <h2 id="alerts-h">
        <Link href="/alerts">Alerts</Link>
      </h2>
      {!alerts.synced ? (
        <p class="muted">{alerts.error ? `No metrics pipeline answers (${alerts.error}).` : "Loading alerts…"}</p>
      ) : (
        <ul class="counts">
          {[AlertState.FIRING, AlertState.PENDING, AlertState.ACKNOWLEDGED].map((s) => (
            <li key={s} data-testid={`alerts-${alertStateLabel(s)}`}>
              <span class="count">{counts.get(s) ?? 0}</span> <Badge tone={alertStateTone(s)}>{alertStateLabel(s)}</Badge>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** The overview: nodes by state, workloads by phase and recent events, all live. */
export function Overview(props: { session: Session }) {
  const nodes = useNodes();
  const workloads = useWorkloads();
  const events = [...workloads.items.values()]
    .flatMap((w) => w.events.map((e) => ({ e, w })))
    .sort((a, b) => (b.e.time ? timestampMs(b.e.time) : 0) - (a.e.time ? timestampMs(a.e.time) : 0))
    .slice(0, 10);
  return (
    <>
      <PageTitle
        actions={
          <>
            <LiveIndicator status={nodes.status} error={nodes.error} label="Nodes" />
            <LiveIndicator status={workloads.status} error={workloads.error} label="Workloads" />
          </>
        }
      >
        Overview
      </PageTitle>
      <div class="grid">
        {nodes.synced && nodes.items.size === 0 ? (
          <section class="card" aria-labelledby="nodes-h">
            <h2 id="nodes-h">Nodes</h2>
            <Empty>
              No node has joined yet. Start an agent with a join token (<code>persys token create</code>); with{" "}
              <code>scripts/dev</code> the built-in agent joins within seconds.
            </Empty>
          </section>
        ) : (
          <Counts title="Nodes" id="nodes" primary="Ready" counts={countNodes(nodes.items.values())} />
        )}
        {workloads.synced && workloads.items.size === 0 ? (
          <section class="card" aria-labelledby="workloads-h">
            <h2 id="workloads-h">Workloads</h2>
            <Empty>
              Nothing runs yet.{" "}
              {props.session.canWrite ? <Link href="/workloads/new">Run a workload</Link> : "A member or admin can run one."}
            </Empty>
          </section>
        ) : (
          <Counts title="Workloads" id="workloads" primary="Running" counts={countWorkloads(workloads.items.values())} />
        )}
        {props.session.isAdmin ? <AlertsCard /> : null}
      </div>
      <section class="card" aria-labelledby="events-h">
        <h2 id="events-h">Recent events</h2>
        {events.length === 0 ? (
          <Empty>No events yet: they appear here as workloads are scheduled, start and stop.</Empty>
        ) : (
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Workload</th>
                <th scope="col">Reason</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {events.map(({ e, w }) => (
                <tr key={`${w.id}/${e.id}`}>
                  <td>
                    <Ago ts={e.time} />
                  </td>
                  <td>
                    <Link href={`/workloads/${w.id}`}>{w.name || w.id}</Link>
                  </td>
                  <td>
                    <Badge tone={e.type === EventType.WARNING ? "warn" : "idle"}>{e.reason}</Badge>
                  </td>
                  <td>{e.message}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
