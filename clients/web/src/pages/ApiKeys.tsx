// API keys: the caller's own (admins: every key), newest first; create one (its secret shown
// once, never again: only a hash is stored) and revoke one.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { useEffect, useRef, useState } from "preact/hooks";
import { apiKeyService, userService } from "../api";
import { Ago, Badge, Empty, PageTitle, ProblemBox } from "../components";
import type { ApiKey } from "../gen/persys/gateway/v1/api_key_pb";
import { listAll, useAction } from "../forms";
import { EXPIRIES, expiryFrom, keyState, PageTokens } from "../logic/admin";
import { assignViolations, type Problem, problemOf } from "../logic/errors";
import type { Session } from "../session";

/** The API keys page. */
export function ApiKeys(props: { session: Session }) {
  const [keys, setKeys] = useState<ApiKey[] | null>(null);
  const [version, setVersion] = useState(0);
  const pages = useRef(new PageTokens());
  const reload = () => setVersion((v) => v + 1);
  const { problem, setProblem, act } = useAction(reload);
  // Admins see every user's keys: whose each one is, by name.
  const [owners, setOwners] = useState<Map<string, string>>(new Map());
  useEffect(() => {
    if (!props.session.isAdmin) return;
    const abort = new AbortController();
    listAll(async (token) => {
      const r = await userService.listUsers({ page: { pageSize: 500, pageToken: token } }, { signal: abort.signal });
      return { items: r.users, next: r.page?.nextPageToken ?? "" };
    })
      .then((users) => setOwners(new Map(users.map((u) => [u.id, u.username]))))
      .catch(() => {
        // Ids stand in for names.
      });
    return () => abort.abort();
  }, [props.session.isAdmin]);

  useEffect(() => {
    const abort = new AbortController();
    apiKeyService
      .listApiKeys({ page: { pageSize: 50, pageToken: pages.current.current } }, { signal: abort.signal })
      .then((r) => {
        pages.current.answered(r.page?.nextPageToken ?? "");
        setKeys(r.apiKeys);
      })
      .catch((err) => !abort.signal.aborted && setProblem(problemOf(err)));
    return () => abort.abort();
  }, [version]);

  const revoke = async (k: ApiKey) => {
    if (!confirm(`Revoke the key ${k.name} (${k.prefix}…)? Programs using it stop working at once.`)) return;
    await act(() => apiKeyService.revokeApiKey({ id: k.id }));
  };

  const now = Date.now();
  return (
    <>
      <PageTitle>API keys</PageTitle>
      <p class="muted">
        {props.session.isAdmin ? "Every user's keys (you are an admin). " : "Your keys. "}A key acts as its owner: send it as{" "}
        <code>authorization: Bearer &lt;key&gt;</code>, or give it to <code>persys --token</code> / <code>PERSYS_TOKEN</code>.
      </p>
      <NewKey onCreated={reload} />
      <ProblemBox problem={problem} />
      {keys === null ? (
        problem ? null : (
          <p class="muted">Loading keys…</p>
        )
      ) : keys.length === 0 ? (
        <Empty>No API key yet. Create one above for a script or CI job.</Empty>
      ) : (
        <table data-testid="keys">
          <caption class="sr-only">API keys</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              {props.session.isAdmin ? <th scope="col">Owner</th> : null}
              <th scope="col">Prefix</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => {
              const s = keyState(k, now);
              return (
                <tr key={k.id}>
                  <td>{k.name}</td>
                  {props.session.isAdmin ? <td>{owners.get(k.ownerId) ?? k.ownerId}</td> : null}
                  <td>
                    <code>{k.prefix}…</code>
                  </td>
                  <td>
                    <Badge tone={s.tone}>{s.label}</Badge>
                  </td>
                  <td>
                    <Ago ts={k.createdAt} />
                  </td>
                  <td>{k.expiresAt ? new Date(timestampMs(k.expiresAt)).toLocaleDateString() : "never"}</td>
                  <td>{k.lastUsedAt ? <Ago ts={k.lastUsedAt} /> : "never"}</td>
                  <td>
                    {s.label === "revoked" ? null : (
                      <button class="danger" onClick={() => revoke(k)} aria-label={`Revoke key ${k.name}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {pages.current.hasPrevious || pages.current.hasNext ? (
        <nav class="pager" aria-label="Pages">
          <button disabled={!pages.current.hasPrevious} onClick={() => (pages.current.previous(), reload())}>
            Previous
          </button>
          <button disabled={!pages.current.hasNext} onClick={() => (pages.current.next(), reload())}>
            Next
          </button>
        </nav>
      ) : null}
    </>
  );
}

function NewKey(props: { onCreated: () => void }) {
  const [name, setName] = useState("");
  const [expiry, setExpiry] = useState("90");
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [nameError, setNameError] = useState<string[] | undefined>();
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [copied, setCopied] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    setNameError(undefined);
    try {
      const r = await apiKeyService.createApiKey({ name: name.trim(), expiresAt: expiryFrom(expiry, Date.now()) });
      setCreated({ name: r.apiKey?.name ?? name, secret: r.secret });
      setCopied(false);
      setName("");
      props.onCreated();
    } catch (err) {
      const p = problemOf(err);
      const a = assignViolations(p.violations, { name: ["name"] });
      setNameError(a.byInput.name);
      setProblem({ ...p, violations: a.other });
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      {created ? (
        <div class="card secret" role="status" data-testid="new-secret">
          <h2>Key “{created.name}” created</h2>
          <p>
            Copy the key now: <strong>it is shown only this once</strong> (Persys keeps only a hash of it).
          </p>
          <p>
            <code data-testid="secret">{created.secret}</code>{" "}
            <button
              onClick={() =>
                void navigator.clipboard?.writeText(created.secret).then(
                  () => setCopied(true),
                  () => setCopied(false),
                )
              }
            >
              {copied ? "Copied" : "Copy"}
            </button>{" "}
            <button onClick={() => setCreated(null)}>Done</button>
          </p>
        </div>
      ) : null}
      <form class="card" onSubmit={submit} aria-labelledby="new-key-h" noValidate>
        <h2 id="new-key-h">New key</h2>
        <div class="row">
          <div class={`field${nameError ? " invalid" : ""}`}>
            <label for="k-name">Name</label>
            <input
              id="k-name"
              value={name}
              placeholder="ci-deployer"
              aria-invalid={nameError ? true : undefined}
              aria-describedby={nameError ? "ke-name" : undefined}
              onInput={(e) => setName(e.currentTarget.value)}
            />
            {nameError ? (
              <span class="error" id="ke-name">
                {nameError.join("; ")}
              </span>
            ) : null}
          </div>
          <div class="field">
            <label for="k-expiry">Expires</label>
            <select id="k-expiry" value={expiry} onChange={(e) => setExpiry(e.currentTarget.value)}>
              {EXPIRIES.map((x) => (
                <option key={x.days} value={x.days}>
                  {x.label}
                </option>
              ))}
            </select>
          </div>
        </div>
        <ProblemBox problem={problem} />
        <div class="actions">
          <button class="primary" type="submit" disabled={busy}>
            {busy ? "Creating…" : "Create key"}
          </button>
        </div>
      </form>
    </>
  );
}
