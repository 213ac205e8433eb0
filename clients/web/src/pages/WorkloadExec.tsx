// Exec in a running instance of a workload, for its owner and admins: a command (split as a
// shell would, run without one), its output as it comes, and how it ended. Every exec is in
// the gateway's audit log.
import { useEffect, useRef, useState } from "preact/hooks";
import { scheduler } from "../api";
import { CommandOutput, FormField, ProblemBox, RunButtons } from "../components";
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
    <FormField id={`x-${k}`} label={label} value={form[k]} placeholder={placeholder} errors={byInput[k]} onInput={(v) => setForm({ ...form, [k]: v })} />
  );
  const ok = exit ? exit.exitCode === 0 && !exit.timedOut : false;
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
        <RunButtons running={running} onCancel={() => abort.current?.abort()} />
      </form>
      {output !== null && (output || exit) ? (
        <CommandOutput
          testId="exec"
          label="Exec output"
          output={output}
          result={exit ? { tone: ok ? "ok" : "warn", word: ok ? "Done" : "Failed", summary: execSummary(exit) } : undefined}
        />
      ) : null}
    </section>
  );
}
