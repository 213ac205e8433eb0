// Commands on a node, for admins (ChatOps): a form that runs one and shows its output as it
// comes and how it ended, and the node's command history. The node's agent decides what may
// run (its --host-commands list; nothing by default), and says so when it refuses.
import { useEffect, useRef, useState } from "preact/hooks";
import { commandService } from "../api";
import { Ago, Badge, CommandOutput, Empty, FormField, ProblemBox, RunButtons } from "../components";
import type { CommandRecord } from "../gen/persys/metrics/v1/command_pb";
import { useFormProblems } from "../forms";
import { COMMAND_FIELDS, type CommandForm, commandFromForm, commandStatusLabel, commandSummary, commandTone, EMPTY_COMMAND } from "../logic/commands";
import { problemOf } from "../logic/errors";

const decoder = () => new TextDecoder("utf-8", { fatal: false });

export function NodeCommands(props: { nodeId: string }) {
  const [form, setForm] = useState<CommandForm>(EMPTY_COMMAND);
  const [output, setOutput] = useState("");
  const [result, setResult] = useState<CommandRecord | null>(null);
  const [running, setRunning] = useState(false);
  const [history, setHistory] = useState<CommandRecord[] | null>(null);
  const [version, setVersion] = useState(0);
  const abort = useRef<AbortController | null>(null);
  const { problem, byInput, other, show, clear } = useFormProblems(COMMAND_FIELDS, "c-");
  const [listProblem, setListProblem] = useState<ReturnType<typeof problemOf> | null>(null);

  useEffect(() => {
    const a = new AbortController();
    commandService
      .listCommandHistory({ nodeId: props.nodeId, page: { pageSize: 20, pageToken: "" } }, { signal: a.signal })
      .then((r) => setHistory(r.commands))
      .catch((err) => {
        if (!a.signal.aborted) setListProblem(problemOf(err));
      });
    return () => a.abort();
  }, [props.nodeId, version]);
  useEffect(() => () => abort.current?.abort(), []);

  const run = async (e: Event) => {
    e.preventDefault();
    const built = commandFromForm(form, props.nodeId);
    if ("violations" in built) return show({ message: "The command cannot be sent yet.", code: 3, violations: built.violations });
    clear();
    setOutput("");
    setResult(null);
    setRunning(true);
    const a = new AbortController();
    abort.current = a;
    const text = decoder();
    try {
      for await (const m of commandService.runCommand(built.request, { signal: a.signal })) {
        if (m.payload.case === "output") {
          const chunk = text.decode(m.payload.value.data, { stream: true });
          setOutput((o) => o + chunk);
        } else if (m.payload.case === "started" || m.payload.case === "finished") setResult(m.payload.value);
      }
    } catch (err) {
      if (!a.signal.aborted) show(problemOf(err));
    } finally {
      setRunning(false);
      abort.current = null;
      setVersion((v) => v + 1);
    }
  };

  return (
    <section aria-labelledby="commands-h" data-testid="node-commands">
      <h2 id="commands-h">Commands</h2>
      <p class="muted small">
        Runs on the node as an unprivileged user, in its own process group, killed at its timeout. Only what the node's agent allows
        runs (<code>--host-commands</code>; shell lines only with <code>--host-shell</code>).
      </p>
      <form class="card" onSubmit={run} aria-label="Run on this node" noValidate>
        <div class="row">
          <FormField
            id="c-command"
            label="Command"
            value={form.command}
            placeholder="df -h /"
            errors={byInput.command}
            onInput={(v) => setForm({ ...form, command: v })}
          />
          <FormField id="c-timeout" label="Timeout" value={form.timeout} errors={byInput.timeout} onInput={(v) => setForm({ ...form, timeout: v })} />
        </div>
        <label class="small">
          <input type="checkbox" checked={form.shell} onChange={(e) => setForm({ ...form, shell: (e.currentTarget as HTMLInputElement).checked })} /> Run
          through /bin/sh
        </label>
        <ProblemBox problem={problem} other={other} />
        <RunButtons running={running} onCancel={() => abort.current?.abort()} />
      </form>
      {result || output ? (
        <CommandOutput
          testId="command"
          label="Command output"
          output={output}
          result={result ? { tone: commandTone(result), word: commandStatusLabel(result.status), summary: commandSummary(result) } : undefined}
        />
      ) : null}
      <h3>History</h3>
      <ProblemBox problem={listProblem} />
      {history === null ? (
        listProblem ? null : (
          <p class="muted">Loading the history…</p>
        )
      ) : history.length === 0 ? (
        <Empty>No command has been run on this node.</Empty>
      ) : (
        <table data-testid="command-history">
          <caption class="sr-only">Commands run on this node, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Command</th>
              <th scope="col">By</th>
              <th scope="col">Status</th>
              <th scope="col">Exit</th>
            </tr>
          </thead>
          <tbody>
            {history.map((r) => (
              <tr key={r.id} title={r.errorMessage || undefined}>
                <td>
                  <Ago ts={r.startedAt} />
                </td>
                <td>
                  <code>{r.shell ? `sh -c ${r.command}` : r.command}</code>
                </td>
                <td>{r.username || r.userId}</td>
                <td>
                  <Badge tone={commandTone(r)}>{commandStatusLabel(r.status)}</Badge>
                </td>
                <td>{r.exitCode ?? "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
