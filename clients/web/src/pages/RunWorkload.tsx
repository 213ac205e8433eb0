import { useState } from "preact/hooks";
import { scheduler } from "../api";
import { PageTitle, ProblemBox } from "../components";
import { useFormProblems } from "../forms";
import { problemOf } from "../logic/errors";
import { buildRequest, EMPTY_FORM, FORM_FIELDS, type RunForm } from "../logic/form";
import { navigate } from "../router";

type Key = keyof RunForm;

const HELP: Partial<Record<Key, string>> = {
  image: "e.g. nginx:1.27, or process:// to run a host process (admins)",
  command: "overrides the image's entrypoint; quoted as in a shell",
  env: "one NAME=value per line",
  ports: "CONTAINER or HOST:CONTAINER, separated by spaces",
  cpu: "requested cores (0.5) or millicores (250m)",
  memory: "requested memory, e.g. 128Mi",
};

/** The "run workload" form; the server's field violations appear next to their inputs. */
export function RunWorkload() {
  const [form, setForm] = useState<RunForm>(EMPTY_FORM);
  const [busy, setBusy] = useState(false);
  const { problem, byInput, other, show } = useFormProblems(FORM_FIELDS, "f-");

  const submit = async (e: Event) => {
    e.preventDefault();
    const built = buildRequest(form, crypto.randomUUID());
    if (!built.request) {
      show({ message: "Some fields need fixing.", code: 3, violations: built.violations });
      return;
    }
    setBusy(true);
    try {
      const r = await scheduler.createWorkload(built.request);
      navigate(`/workloads/${r.workload?.id ?? ""}`);
    } catch (err) {
      show(problemOf(err));
      setBusy(false);
    }
  };

  const field = (k: Key, label: string, opts: { textarea?: boolean; placeholder?: string; required?: boolean } = {}) => {
    const errors = byInput[k];
    const described = [HELP[k] ? `h-${k}` : "", errors ? `e-${k}` : ""].filter(Boolean).join(" ") || undefined;
    const common = {
      id: `f-${k}`,
      name: k,
      value: form[k],
      "aria-invalid": errors ? true : undefined,
      "aria-describedby": described,
      required: opts.required,
      placeholder: opts.placeholder,
      onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
    };
    return (
      <div class={errors ? "field invalid" : "field"}>
        <label for={`f-${k}`}>{label}</label>
        {opts.textarea ? <textarea rows={3} {...common} /> : <input {...common} />}
        {HELP[k] ? (
          <small id={`h-${k}`} class="muted">
            {HELP[k]}
          </small>
        ) : null}
        {errors ? (
          <small id={`e-${k}`} class="error" data-testid={`error-${k}`}>
            {errors.join("; ")}
          </small>
        ) : null}
      </div>
    );
  };

  return (
    <>
      <PageTitle>Run a workload</PageTitle>
      <form class="run" onSubmit={submit} noValidate>
        {field("name", "Name", { placeholder: "web" })}
        {field("image", "Image", { required: true, placeholder: "nginx:1.27" })}
        {field("command", "Command", { placeholder: "sh -c 'echo hello; sleep 600'" })}
        {field("env", "Environment", { textarea: true })}
        {field("ports", "Ports", { placeholder: "8081:80" })}
        <div class="row">
          {field("cpu", "CPU")}
          {field("memory", "Memory")}
          {field("replicas", "Replicas")}
        </div>
        <div class="field">
          <label for="f-restart">Restart policy</label>
          <select id="f-restart" value={form.restart} onChange={(e) => setForm({ ...form, restart: e.currentTarget.value as RunForm["restart"] })}>
            <option value="always">Always</option>
            <option value="on-failure">On failure</option>
            <option value="never">Never</option>
          </select>
        </div>
        <ProblemBox problem={problem} other={other} />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Running…" : "Run"}
          </button>
          <button type="button" onClick={() => navigate("/workloads")}>
            Cancel
          </button>
        </div>
      </form>
    </>
  );
}
