// Exec in a running instance of a workload, for its owner and admins: a command (split as a
// shell would, run without one), its output as it comes, and how it ended. Every exec is in
// the gateway's audit log.
import { useEffect, useRef, useState } from "preact/hooks";
import { scheduler } from "../api";
import { Badge, ProblemBox } from "../components";
import type { ExecExit, Workload } from "../gen/persys/scheduler/v1/workload_pb";
import { useFormProblems } from "../forms";
import { problemOf } from "../logic/errors";
import { EMPTY_EXEC, EXEC_FIELDS, type ExecForm, execFromForm, execSummary } from "../logic/exec";

export function WorkloadExec(props: { w: Workload }) {
  const replicas = Math.max(1, props.w.spec?.replicas ?? 1);
  const [replica, setReplica] = useState(0);
  const [form, setForm] = useState<ExecForm>(EMPTY_EXEC);
  const [output, setOutput] = useState<string | null>(null);
  const [exit, setExit] = useState<ExecExit | null>(null);
  const [running, setRunning] = useState(false);
  const abort = useRef<AbortController | null>(null);
  const { problem, byInput, other, show, clear } = useFormProblems(EXEC_FIELDS, "x-");
  useEffect(() => () => abort.current?.abort(), []);

  const run = async (e: Event) => {
    e.preventDefault();
    const built = execFromForm(form, props.w.id, replica);
    if ("violations" in built) return show({ message: "The command cannot be sent yet.", code: 3, violations: built.violations });
    clear();
    setOutput("");
    setExit(null);
    setRunning(true);
    const a = new AbortController();
    abort.current = a;
    const text = new TextDecoder("utf-8", { fatal: false });
    try {
      for await (const m of scheduler.execWorkload(built.request, { signal: a.signal })) {
        if (m.payload.case === "output") {
          const chunk = text.decode(m.payload.value.data, { stream: true });
          setOutput((o) => (o ?? "") + chunk);
        } else if (m.payload.case === "exit") setExit(m.payload.value);
      }
    } catch (err) {
      if (!a.signal.aborted) show(problemOf(err));
    } finally {
      setRunning(false);
      abort.current = null;
    }
  };

  const field = (k: keyof ExecForm, label: string, placeholder?: string) => (
    <div class={`field${byInput[k] ? " invalid" : ""}`}>
      <label for={`x-${k}`}>{label}</label>
      <input
        id={`x-${k}`}
        name={k}
        value={form[k]}
        placeholder={placeholder}
        onInput={(e) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value })}
        {...(byInput[k] ? { "aria-invalid": true, "aria-describedby": `xe-${k}` } : {})}
      />
      {byInput[k] ? (
        <span class="error" id={`xe-${k}`}>
          {byInput[k]!.join("; ")}
        </span>
      ) : null}
    </div>
  );
  return (
    <section aria-labelledby="exec-h" data-testid="workload-exec">
      <h2 id="exec-h">Exec</h2>
      <p class="muted small">Runs one command in the running instance, without a shell (use sh -c '…' for one), killed at its timeout.</p>
      <form class="card" onSubmit={run} aria-label="Run in this workload" noValidate>
        <div class="row">
          {field("command", "Command", "cat /etc/os-release")}
          {field("timeout", "Timeout")}
          {replicas > 1 ? (
            <div class="field">
              <label for="x-replica">Replica</label>
              <select id="x-replica" value={replica} onChange={(e) => setReplica(Number(e.currentTarget.value))}>
                {Array.from({ length: replicas }, (_, i) => (
                  <option key={i} value={i}>
                    {i}
                  </option>
                ))}
              </select>
            </div>
          ) : null}
        </div>
        <ProblemBox problem={problem} other={other} />
        <div class="actions">
          <button class="primary" type="submit" disabled={running}>
            {running ? "Running…" : "Run"}
          </button>
          {running ? (
            <button type="button" onClick={() => abort.current?.abort()}>
              Cancel
            </button>
          ) : null}
        </div>
      </form>
      {output !== null && (output || exit) ? (
        <div class="card">
          <pre class="command-output" data-testid="exec-output" role="log" aria-label="Exec output" tabIndex={0}>
            {output}
          </pre>
          {exit ? (
            <p data-testid="exec-result" role="status">
              <Badge tone={exit.exitCode === 0 && !exit.timedOut ? "ok" : "warn"}>{exit.exitCode === 0 && !exit.timedOut ? "Done" : "Failed"}</Badge>{" "}
              {execSummary(exit)}
            </p>
          ) : null}
        </div>
      ) : null}
    </section>
  );
}
