// Admin: users (create, change role, disable, enable, delete) and the audit log (newest first,
// by actor, a page at a time). Every call here is refused by the gateway to non-admins; the
// page says so before trying.
import { useEffect, useRef, useState } from "preact/hooks";
import { userService } from "../api";
import { Ago, Badge, Empty, PageTitle, ProblemBox } from "../components";
import { Role } from "../gen/persys/common/v1/common_pb";
import type { AuditEvent, User } from "../gen/persys/gateway/v1/user_pb";
import { PageTokens, ROLES } from "../logic/admin";
import { listAll, useAction, useFormProblems } from "../forms";
import { type Problem, problemOf } from "../logic/errors";
import type { Session } from "../session";

/** The admin page. */
export function Admin(props: { session: Session }) {
  if (!props.session.isAdmin)
    return (
      <>
        <PageTitle>Admin</PageTitle>
        <Empty>Users and the audit log are for admins. Your own API keys are under API keys.</Empty>
      </>
    );
  return <AdminPage self={props.session.user.id} />;
}

function AdminPage(props: { self: string }) {
  const [users, setUsers] = useState<User[] | null>(null);
  const [version, setVersion] = useState(0);
  const reload = () => setVersion((v) => v + 1);
  const { problem, setProblem, act } = useAction(reload);

  useEffect(() => {
    const abort = new AbortController();
    void (async () => {
      try {
        const all = await listAll(async (token) => {
          const r = await userService.listUsers({ page: { pageSize: 500, pageToken: token } }, { signal: abort.signal });
          return { items: r.users, next: r.page?.nextPageToken ?? "" };
        });
        setUsers(all);
      } catch (err) {
        if (!abort.signal.aborted) setProblem(problemOf(err));
      }
    })();
    return () => abort.abort();
  }, [version]);

  return (
    <>
      <PageTitle>Admin</PageTitle>
      <section aria-labelledby="users-h">
        <h2 id="users-h">Users</h2>
        <ProblemBox problem={problem} />
        {users === null ? (
          problem ? null : (
            <p class="muted">Loading users…</p>
          )
        ) : (
          <table data-testid="users">
            <caption class="sr-only">Users</caption>
            <thead>
              <tr>
                <th scope="col">Username</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.id} data-user={u.username}>
                  <td>
                    {u.username}
                    {u.id === props.self ? <span class="muted"> (you)</span> : null}
                  </td>
                  <td>
                    <select
                      aria-label={`Role of ${u.username}`}
                      value={String(u.role)}
                      onChange={(e) => void act(() => userService.updateUser({ id: u.id, role: Number(e.currentTarget.value) as Role }))}
                    >
                      {ROLES.map((r) => (
                        <option key={r.role} value={String(r.role)}>
                          {r.label}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>
                    <Badge tone={u.disabled ? "idle" : "ok"}>{u.disabled ? "disabled" : "enabled"}</Badge>
                  </td>
                  <td>
                    <Ago ts={u.createdAt} />
                  </td>
                  <td class="actions">
                    <button
                      onClick={() => act(() => userService.updateUser({ id: u.id, disabled: !u.disabled }))}
                      aria-label={`${u.disabled ? "Enable" : "Disable"} ${u.username}`}
                    >
                      {u.disabled ? "Enable" : "Disable"}
                    </button>
                    <button
                      class="danger"
                      onClick={() => {
                        if (confirm(`Delete ${u.username}? Their sessions and API keys end; the audit log keeps their name.`))
                          void act(() => userService.deleteUser({ id: u.id }));
                      }}
                      aria-label={`Delete ${u.username}`}
                    >
                      Delete
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <NewUser onCreated={reload} />
      </section>
      <AuditLog users={users ?? []} version={version} />
    </>
  );
}

const USER_FIELDS = { username: ["username"], password: ["password"], role: ["role"] };

function NewUser(props: { onCreated: () => void }) {
  const [form, setForm] = useState({ username: "", password: "", role: String(Role.MEMBER) });
  const [busy, setBusy] = useState(false);
  const { problem, byInput, other, show, clear } = useFormProblems(USER_FIELDS, "u-");

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      await userService.createUser({ username: form.username.trim(), password: form.password, role: Number(form.role) as Role });
      setForm({ username: "", password: "", role: String(Role.MEMBER) });
      clear();
      props.onCreated();
    } catch (err) {
      show(problemOf(err));
    } finally {
      setBusy(false);
    }
  };

  const field = (k: keyof typeof form, label: string, input: preact.JSX.Element) => (
    <div class={`field${byInput[k] ? " invalid" : ""}`}>
      <label for={`u-${k}`}>{label}</label>
      {input}
      {byInput[k] ? (
        <span class="error" id={`ue-${k}`}>
          {byInput[k].join("; ")}
        </span>
      ) : null}
    </div>
  );
  const attrs = (k: keyof typeof form) => ({
    id: `u-${k}`,
    value: form[k],
    "aria-invalid": byInput[k] ? true : undefined,
    "aria-describedby": byInput[k] ? `ue-${k}` : undefined,
    onInput: (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value }),
  });

  return (
    <form class="card" onSubmit={submit} aria-labelledby="new-user-h" noValidate>
      <h3 id="new-user-h">New user</h3>
      <div class="row">
        {field("username", "Username", <input {...attrs("username")} autoComplete="off" placeholder="jane" />)}
        {field("password", "Initial password", <input {...attrs("password")} type="password" autoComplete="new-password" />)}
        {field(
          "role",
          "Role",
          <select {...attrs("role")} onChange={attrs("role").onInput}>
            {ROLES.map((r) => (
              <option key={r.role} value={String(r.role)}>
                {r.label}: {r.description}
              </option>
            ))}
          </select>,
        )}
      </div>
      <ProblemBox problem={problem} other={other} />
      <div class="actions">
        <button class="primary" type="submit" disabled={busy}>
          {busy ? "Creating…" : "Create user"}
        </button>
      </div>
    </form>
  );
}

function AuditLog(props: { users: User[]; version: number }) {
  const [actor, setActor] = useState("");
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [turn, setTurn] = useState(0);
  const pages = useRef(new PageTokens());

  useEffect(() => {
    const abort = new AbortController();
    userService
      .listAuditEvents({ actorId: actor, page: { pageSize: 50, pageToken: pages.current.current } }, { signal: abort.signal })
      .then((r) => {
        pages.current.answered(r.page?.nextPageToken ?? "");
        setEvents(r.events);
        setProblem(null);
      })
      .catch((err) => !abort.signal.aborted && setProblem(problemOf(err)));
    return () => abort.abort();
  }, [actor, turn, props.version]);

  const go = (f: () => void) => {
    f();
    setTurn((t) => t + 1);
  };

  return (
    <section aria-labelledby="audit-h">
      <div class="page-title">
        <h2 id="audit-h">Audit log</h2>
        <div class="actions">
          <label>
            By{" "}
            <select
              value={actor}
              onChange={(e) => {
                pages.current.reset();
                setActor(e.currentTarget.value);
              }}
            >
              <option value="">anyone</option>
              {props.users.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.username}
                </option>
              ))}
            </select>
          </label>
          <button onClick={() => go(() => pages.current.reset())}>Newest</button>
        </div>
      </div>
      <ProblemBox problem={problem} />
      {events === null ? null : events.length === 0 ? (
        <Empty>No audit events{actor ? " by this user" : ""}.</Empty>
      ) : (
        <table data-testid="audit">
          <caption class="sr-only">Audit events, newest first</caption>
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Target</th>
              <th scope="col">Result</th>
              <th scope="col">From</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr key={e.id}>
                <td>
                  <Ago ts={e.time} />
                </td>
                <td>{e.actorName || "—"}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>{e.target || "—"}</td>
                <td>
                  <Badge tone={e.success ? "ok" : "bad"}>{e.success ? "ok" : "failed"}</Badge>
                  {e.detail ? <div class="muted small">{e.detail}</div> : null}
                </td>
                <td class="muted small">{e.peer}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav class="pager" aria-label="Audit pages">
        <button disabled={!pages.current.hasPrevious} onClick={() => go(() => pages.current.previous())}>
          Newer
        </button>
        <span>Page {pages.current.index + 1}</span>
        <button disabled={!pages.current.hasNext} onClick={() => go(() => pages.current.next())}>
          Older
        </button>
      </nav>
    </section>
  );
}

