import { useState } from "preact/hooks";
import { Badge, Empty, LiveIndicator, PageTitle, Pager } from "../components";
import { FindingSeverity } from "../gen/persys/analyzer/v1/finding_pb";
import type { ApplicationPersona } from "../gen/persys/reconciler/v1/application_persona_pb";
import { usePersonas } from "../live";
import {
  baselineText,
  byNamespaceAndName,
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
          <Empty>
            The reconciler does not answer: {personas.error}. It runs beside a Kubernetes cluster:{" "}
            <code>persys-stack --kubeconfig ~/.kube/config</code>, or the Helm chart's <code>reconciler.enabled</code>.
          </Empty>
        ) : (
          <p class="muted">Loading personas…</p>
        )
      ) : all.length === 0 ? (
        <Empty>
          No application personas yet. Describe an app with <code>dorgu generate</code> and apply it with{" "}
          <code>dorgu persona apply</code>.
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

function PersonaRow(props: { persona: ApplicationPersona }) {
  const p = props.persona;
  const s = p.status;
  const { errors, warnings } = issueCounts(p);
  const health = s?.health;
  const issues = (s?.validation?.issues ?? []).filter((i) => i.severity !== FindingSeverity.INFO);
  const recs = s?.recommendations ?? [];
  const name = `${p.metadata?.namespace}/${p.metadata?.name}`;
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
