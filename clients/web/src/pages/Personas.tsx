import { Fragment } from "preact";
import { useState } from "preact/hooks";
import { Badge, Empty, LiveIndicator, MemberScope, NoReconciler, PageTitle, Pager } from "../components";
import { FindingSeverity } from "../gen/persys/analyzer/v1/finding_pb";
import type { ApplicationPersona } from "../gen/persys/reconciler/v1/application_persona_pb";
import { useClusterPersonas, usePersonas } from "../live";
import {
  baselineText,
  envRows,
  byNamespaceAndName,
  clusterFacts,
  clusterPhaseLabel,
  clusterPhaseTone,
  filterPersonas,
  healthLabel,
  issueCounts,
  namespacesOf,
  PERSONA_PHASES,
  personaPhaseLabel,
  personaPhaseTone,
} from "../logic/personas";

const PAGE = 50;

/** Application personas (the reconciler's, through the gateway), live, filtered, 50 to a page. */
export function Personas() {
  const personas = usePersonas();
  const [namespace, setNamespace] = useState("");
  const [phase, setPhase] = useState("");
  const [text, setText] = useState("");
  const [page, setPage] = useState(0);
  const all = [...personas.items.values()].sort(byNamespaceAndName);
  const list = filterPersonas(all, { namespace, phase: phase === "" ? undefined : Number(phase), text });
  const pages = Math.max(1, Math.ceil(list.length / PAGE));
  const current = Math.min(page, pages - 1);
  const shown = list.slice(current * PAGE, (current + 1) * PAGE);
  return (
    <>
      <PageTitle actions={<LiveIndicator status={personas.status} error={personas.error} />}>Personas</PageTitle>
      <ClusterCard />
      <div class="filters" role="search">
        <label>
          Namespace{" "}
          <select value={namespace} onChange={(e) => (setNamespace(e.currentTarget.value), setPage(0))}>
            <option value="">All</option>
            {namespacesOf(all).map((ns) => (
              <option key={ns} value={ns}>
                {ns}
              </option>
            ))}
          </select>
        </label>
        <label>
          Phase{" "}
          <select value={phase} onChange={(e) => (setPhase(e.currentTarget.value), setPage(0))}>
            <option value="">All</option>
            {PERSONA_PHASES.map((p) => (
              <option key={p} value={String(p)}>
                {personaPhaseLabel(p)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search{" "}
          <input type="search" placeholder="name or namespace" value={text} onInput={(e) => (setText(e.currentTarget.value), setPage(0))} />
        </label>
      </div>
      {!personas.synced ? (
        personas.error ? (
          <NoReconciler error={personas.error} />
        ) : (
          <p class="muted">Loading personas…</p>
        )
      ) : all.length === 0 ? (
        <Empty>
          No application personas yet. Describe an app with <code>dorgu generate</code> and apply it with{" "}
          <code>dorgu persona apply</code>.
          <MemberScope />
        </Empty>
      ) : list.length === 0 ? (
        <Empty>No persona matches these filters.</Empty>
      ) : (
        <>
          <table>
            <caption class="sr-only">Application personas</caption>
            <thead>
              <tr>
                <th scope="col">Persona</th>
                <th scope="col">Phase</th>
                <th scope="col">Health</th>
                <th scope="col">Workload</th>
                <th scope="col">Validation</th>
                <th scope="col">Baseline</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((p) => (
                <PersonaRow key={`${p.metadata?.namespace}/${p.metadata?.name}`} persona={p} />
              ))}
            </tbody>
          </table>
          <Pager page={current} pages={pages} onPage={setPage} />
        </>
      )}
    </>
  );
}

/** The cluster persona: what the cluster is meant to be and what discovery found, live. */
function ClusterCard() {
  const clusters = useClusterPersonas();
  const all = [...clusters.items.values()];
  return (
    <section class="card" aria-labelledby="cluster-h" data-testid="cluster-persona">
      <h2 id="cluster-h">Cluster</h2>
      {clusters.problem ? (
        <p class="muted">No cluster persona here: {clusters.problem}.</p>
      ) : !clusters.synced ? (
        <p class="muted">{clusters.error ? `The reconciler does not answer: ${clusters.error}.` : "Loading the cluster persona…"}</p>
      ) : all.length === 0 ? (
        <p class="muted">
          No ClusterPersona yet: the reconciler makes one at its first discovery (<code>--cluster-persona</code>).
        </p>
      ) : (
        all.map((cp) => (
          <div key={cp.metadata?.name} data-cluster={cp.metadata?.name}>
            <p>
              <strong>{cp.spec?.name || cp.metadata?.name}</strong>{" "}
              <Badge tone={clusterPhaseTone(cp.status?.phase)}>{clusterPhaseLabel(cp.status?.phase)}</Badge>
              {cp.spec?.description ? <span class="muted"> {cp.spec.description}</span> : null}
            </p>
            <dl class="facts">
              {clusterFacts(cp).map(([k, v]) => (
                <Fragment key={k}>
                  <dt>{k}</dt>
                  <dd data-fact={k}>{v}</dd>
                </Fragment>
              ))}
            </dl>
          </div>
        ))
      )}
    </section>
  );
}

function PersonaRow(props: { persona: ApplicationPersona }) {
  const p = props.persona;
  const s = p.status;
  const { errors, warnings } = issueCounts(p);
  const health = s?.health;
  const issues = (s?.validation?.issues ?? []).filter((i) => i.severity !== FindingSeverity.INFO);
  const recs = s?.recommendations ?? [];
  const name = `${p.metadata?.namespace}/${p.metadata?.name}`;
  const env = envRows(p);
  const missing = env.filter((e) => e.missing).length;
  return (
    <tr data-persona={name}>
      <td>
        <strong>{p.metadata?.name}</strong> <span class="muted">{p.metadata?.namespace}</span>
        {issues.length + recs.length > 0 ? (
          <details>
            <summary>
              {issues.length} issue{issues.length === 1 ? "" : "s"}, {recs.length} recommendation{recs.length === 1 ? "" : "s"}
            </summary>
            <ul>
              {issues.map((i, n) => (
                <li key={`i${n}`}>
                  <Badge tone={i.severity === FindingSeverity.ERROR ? "bad" : "warn"}>
                    {i.severity === FindingSeverity.ERROR ? "error" : "warning"}
                  </Badge>{" "}
                  {i.message}
                  {i.suggestion ? <span class="muted"> — {i.suggestion}</span> : null}
                </li>
              ))}
              {recs.map((r, n) => (
                <li key={`r${n}`}>
                  <Badge tone={r.priority === "high" ? "bad" : r.priority === "medium" ? "warn" : "idle"}>{r.priority}</Badge>{" "}
                  {r.message}
                  {r.action ? <span class="muted"> — {r.action}</span> : null}
                </li>
              ))}
            </ul>
          </details>
        ) : null}
      </td>
      <td>
        <Badge tone={personaPhaseTone(s?.phase)}>{personaPhaseLabel(s?.phase)}</Badge>
        {env.length > 0 ? (
          <details data-env={name}>
            <summary>
              {env.length} environment variable{env.length === 1 ? "" : "s"}
              {missing > 0 ? `, ${missing} missing` : ""}
            </summary>
            <table>
              <thead>
                <tr>
                  <th scope="col">Variable</th>
                  <th scope="col">Needed</th>
                  <th scope="col">Set by</th>
                  <th scope="col">Default, read at</th>
                </tr>
              </thead>
              <tbody>
                {env.map((e) => (
                  <tr key={e.name}>
                    <td>
                      <code>{e.name}</code>
                    </td>
                    <td>{e.need}</td>
                    <td>{e.missing ? <Badge tone="warn">{e.source}</Badge> : e.source}</td>
                    <td class="breakable">{e.detail || <span class="muted">—</span>}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        ) : null}
      </td>
      <td>
        {healthLabel(health?.status)}
        {health?.desiredReplicas ? (
          <span class="muted">
            {" "}
            {health.readyReplicas}/{health.desiredReplicas}
          </span>
        ) : null}
      </td>
      <td>{s?.matchedWorkload ? `${s.matchedWorkload.kind}/${s.matchedWorkload.name}` : <span class="muted">none</span>}</td>
      <td>
        {!s?.matchedWorkload ? (
          <span class="muted">not checked</span>
        ) : errors + warnings === 0 ? (
          "passed"
        ) : (
          `${errors} errors, ${warnings} warnings`
        )}
      </td>
      <td>{baselineText(p) || <span class="muted">—</span>}</td>
    </tr>
  );
}
