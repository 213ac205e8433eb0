// The signed-in user's account: who they are, and a form to change their password (every other
// session of theirs ends; this one goes on). The gateway checks the current password and the
// new one's length; the page only checks that the new one was typed the same twice.
import { useState } from "preact/hooks";
import { changePassword } from "../auth";
import { FormField, PageTitle, ProblemBox } from "../components";
import { useFormProblems } from "../forms";
import { problemOf } from "../logic/errors";
import type { Session } from "../session";

const FIELDS = { current: ["current_password"], next: ["new_password"], again: ["again"] };
type Field = keyof typeof FIELDS;

export function Account(props: { session: Session; roleName: string }) {
  const [form, setForm] = useState<Record<Field, string>>({ current: "", next: "", again: "" });
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(false);
  const { problem, byInput, other, show, clear } = useFormProblems(FIELDS, "pw-");

  const submit = async (e: Event) => {
    e.preventDefault();
    setDone(false);
    if (form.next !== form.again)
      return show({ message: "The new password cannot be saved yet.", code: 3, violations: [{ field: "again", description: "differs from the new password" }] });
    clear();
    setBusy(true);
    try {
      await changePassword(props.session.user, form.current, form.next);
      setForm({ current: "", next: "", again: "" });
      setDone(true);
    } catch (err) {
      show(problemOf(err));
    } finally {
      setBusy(false);
    }
  };
  const input = (k: Field, label: string, autocomplete: string) => (
    <FormField
      id={`pw-${k}`}
      type="password"
      label={label}
      value={form[k]}
      autocomplete={autocomplete}
      errors={byInput[k]}
      onInput={(v) => setForm({ ...form, [k]: v })}
    />
  );
  return (
    <>
      <PageTitle>Your account</PageTitle>
      <dl class="facts">
        <dt>User</dt>
        <dd>{props.session.user.username}</dd>
        <dt>Role</dt>
        <dd>{props.roleName}</dd>
      </dl>
      <section aria-labelledby="pw-h">
        <h2 id="pw-h">Change your password</h2>
        <p class="muted small">At least 12 characters. Your other sessions (other browsers, the CLI) end; this one goes on.</p>
        <form class="card" onSubmit={submit} aria-label="Change your password" noValidate>
          {input("current", "Current password", "current-password")}
          {input("next", "New password", "new-password")}
          {input("again", "New password again", "new-password")}
          <ProblemBox problem={problem} other={other} />
          {done ? (
            <p role="status" data-testid="password-changed">
              Your password was changed; your other sessions have ended.
            </p>
          ) : null}
          <div class="actions">
            <button class="primary" type="submit" disabled={busy}>
              {busy ? "Saving…" : "Change password"}
            </button>
          </div>
        </form>
      </section>
    </>
  );
}
