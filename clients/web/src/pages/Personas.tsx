import { Badge, Empty, LiveIndicator, PageTitle } from "../components";
import { FindingSeverity } from "../gen/persys/analyzer/v1/finding_pb";
import type { ApplicationPersona } from "../gen/persys/reconciler/v1/application_persona_pb";
import { usePersonas } from "../live";
import {
  baselineText,
  byNamespaceAndName,
  healthLabel,
  issueCounts,
  personaPhaseLabel,
  personaPhaseTone,
} from "../logic/personas";

/** Application personas (the reconciler's, through the gateway), live. */
export function Personas() {
  const personas = usePersonas();
  const list = [...personas.items.values()].sort(byNamespaceAndName);
  return (
    <>
      <PageTitle actions={<LiveIndicator status={personas.status} error={personas.error} />}>Personas</PageTitle>
      {!personas.synced ? (
        personas.error ? (
          <Empty>
            The reconciler does not answer: {personas.error}. It runs beside a Kubernetes cluster:{" "}
            <code>persys-stack --kubeconfig ~/.kube/config</code>, or the Helm chart's <code>reconciler.enabled</code>.
          </Empty>
        ) : (
          <p class="muted">Loading personas…</p>
        )
      ) : list.length === 0 ? (
        <Empty>
          No application personas yet. Describe an app with <code>dorgu generate</code> and apply it with{" "}
          <code>dorgu persona apply</code>.
        </Empty>
      ) : (
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
            {list.map((p) => (
              <PersonaRow key={`${p.metadata?.namespace}/${p.metadata?.name}`} persona={p} />
            ))}
          </tbody>
        </table>
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
