// Silences on the Alerts page: the ones in force (or all), end one now, and a form for a new
// one whose mistakes come back on its inputs. A silenced alert still opens, fires and resolves;
// only its notifications are muted.
import { useEffect, useState } from "preact/hooks";
import { alertService } from "../api";
import { Ago, Empty, ProblemBox } from "../components";
import type { Silence } from "../gen/persys/metrics/v1/alert_pb";
import { useAction, useFormProblems } from "../forms";
import { EMPTY_SILENCE, matcherText, SILENCE_FIELDS, type SilenceForm, silenceFromForm } from "../logic/alerts";
import { problemOf } from "../logic/errors";

export function Silences() {
  const [silences, setSilences] = useState<Silence[] | null>(null);
  const [all, setAll] = useState(false);
  const [version, setVersion] = useState(0);
  const reload = () => setVersion((v) => v + 1);
  const { problem, setProblem, act } = useAction(reload);

  useEffect(() => {
    const abort = new AbortController();
    alertService
      .listSilences({ includeEnded: all }, { signal: abort.signal })
      .then((r) => setSilences(r.silences))
      .catch((err) => {
        if (!abort.signal.aborted) setProblem(problemOf(err));
      });
    return () => abort.abort();
  }, [version, all]);

  const ended = (s: Silence) =>
    s.expiredAt !== undefined || (s.endsAt !== undefined && Number(s.endsAt.seconds) * 1000 <= Date.now());

  return (
    <section aria-labelledby="silences-h">
      <h2 id="silences-h">Silences</h2>
      <p class="muted small">A silence mutes the notifications of the alerts it matches until it ends; they still open and resolve.</p>
      <label class="small">
        <input type="checkbox" checked={all} onChange={(e) => setAll((e.currentTarget as HTMLInputElement).checked)} /> Include ended silences
      </label>
      <ProblemBox problem={problem} />
      {silences === null ? (
        problem ? null : (
          <p class="muted">Loading silences…</p>
        )
      ) : silences.length === 0 ? (
        <Empty>{all ? "No silence yet." : "No silence in force."}</Empty>
      ) : (
        <table data-testid="silences">
          <caption class="sr-only">Silences</caption>
          <thead>
            <tr>
              <th scope="col">Matches</th>
              <th scope="col">Ends</th>
              <th scope="col">By</th>
              <th scope="col">Why</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {silences.map((s) => (
              <tr key={s.id}>
                <td>{s.matchers.map(matcherText).join(", ")}</td>
                <td>{s.expiredAt ? <>ended <Ago ts={s.expiredAt} /></> : <Ago ts={s.endsAt} />}</td>
                <td>{s.createdBy}</td>
                <td>{s.comment}</td>
                <td class="actions">
                  {ended(s) ? null : (
                    <button onClick={() => act(() => alertService.expireSilence({ id: s.id }))} aria-label={`End now silence ${s.matchers.map(matcherText).join(", ")}`}>
                      End now
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <SilenceEditor onDone={reload} />
    </section>
  );
}

type Key = keyof SilenceForm;

function SilenceEditor(props: { onDone: () => void }) {
  const [form, setForm] = useState<SilenceForm>(EMPTY_SILENCE);
  const [busy, setBusy] = useState(false);
  const { problem, byInput, other, show, clear } = useFormProblems(SILENCE_FIELDS, "s-");

  const submit = async (e: Event) => {
    e.preventDefault();
    const built = silenceFromForm(form, Date.now());
    if ("violations" in built) return show({ message: "Some fields need fixing.", code: 3, violations: built.violations });
    setBusy(true);
    try {
      await alertService.createSilence({ silence: built.silence });
      setForm(EMPTY_SILENCE);
      clear();
      props.onDone();
    } catch (err) {
      show(problemOf(err));
    } finally {
      setBusy(false);
    }
  };

  const field = (k: Key, label: string, help: string, input: preact.JSX.Element) => (
    <div class={`field${byInput[k] ? " invalid" : ""}`}>
      <label for={`s-${k}`}>{label}</label>
      {input}
      <span class="muted small" id={`sh-${k}`}>
        {help}
      </span>
      {byInput[k] ? (
        <span class="error" id={`se-${k}`}>
          {byInput[k]!.join("; ")}
        </span>
      ) : null}
    </div>
  );
  const attrs = (k: Key) => ({
    id: `s-${k}`,
    name: k,
    value: form[k],
    "aria-invalid": byInput[k] ? true : undefined,
    "aria-describedby": [`sh-${k}`, byInput[k] ? `se-${k}` : ""].filter(Boolean).join(" "),
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <form class="card" onSubmit={submit} aria-labelledby="new-silence-h" noValidate>
      <h3 id="new-silence-h">New silence</h3>
      <div class="row">
        {field(
          "matchers",
          "Matches",
          "name=value or name!=value, one a line: node_id, rule_name, severity, metric, or a label such as mount",
          <textarea {...attrs("matchers")} rows={2} placeholder="node_id=web-1" />,
        )}
        {field("duration", "For", "e.g. 30m, 2h, 24h", <input {...attrs("duration")} />)}
        {field("comment", "Why", "e.g. kernel upgrade on web-1", <input {...attrs("comment")} />)}
      </div>
      <ProblemBox problem={problem} other={other} />
      <div class="actions">
        <button class="primary" type="submit" disabled={busy}>
          {busy ? "Saving…" : "Create silence"}
        </button>
      </div>
    </form>
  );
}
