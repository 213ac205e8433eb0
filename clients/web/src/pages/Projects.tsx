import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { type ComponentChildren, Fragment } from "preact";
import { useState } from "preact/hooks";
import { Ago, Badge, Empty, LiveIndicator, MemberScope, NoReconciler, PageTitle, Pager } from "../components";
import type { Condition } from "../gen/persys/common/v1/common_pb";
import type { Build } from "../gen/persys/reconciler/v1/build_pb";
import type { Environment } from "../gen/persys/reconciler/v1/environment_pb";
import { BuildStrategy, EnvironmentType, type Project } from "../gen/persys/reconciler/v1/project_pb";
import { useBuilds, useEnvironments, useProjects } from "../live";
import {
  buildPhaseLabel,
  buildPhaseTone,
  byEnvironment,
  byKey,
  byNewestBuild,
  conditionBadge,
  conditionOf,
  environmentPhaseLabel,
  environmentPhaseTone,
  environmentTypeLabel,
  environmentUrl,
  expiresText,
  failingConditions,
  orderedConditions,
  PROJECTS_NOT_ENABLED,
  projectRow,
  shortCommit,
  shortImage,
} from "../logic/projects";
import { Link } from "../router";

const PAGE = 50;

/** Why there is nothing to show: projects are off, the reconciler refused or does not answer, or it is loading. */
function NotThere(props: { live: { synced: boolean; error?: string; problem?: string; problemCode?: Code }; loading: string }) {
  const { live } = props;
  if (live.problemCode === Code.Unimplemented)
    return (
      <Empty>
        <span data-testid="projects-not-enabled">{PROJECTS_NOT_ENABLED}.</span> With <code>persys-stack</code>:{" "}
        <code>--kubeconfig ~/.kube/config --kapsa-projects</code>.
      </Empty>
    );
  if (live.problem) return <Empty>The reconciler refused: {live.problem}.</Empty>;
  if (live.error) return <NoReconciler error={live.error} />;
  return <p class="muted">{props.loading}</p>;
}

/** Kapsa projects (the reconciler's ProjectService, through the gateway), live, 50 to a page. */
export function Projects() {
  const projects = useProjects();
  const [page, setPage] = useState(0);
  const all = [...projects.items.values()].sort(byKey);
  const pages = Math.max(1, Math.ceil(all.length / PAGE));
  const current = Math.min(page, pages - 1);
  const shown = all.slice(current * PAGE, (current + 1) * PAGE);
  return (
    <>
      <PageTitle actions={projects.problem ? null : <LiveIndicator status={projects.status} error={projects.error} />}>Projects</PageTitle>
      {!projects.synced ? (
        <NotThere live={projects} loading="Loading projects…" />
      ) : all.length === 0 ? (
        <Empty>
          No projects yet. A project is a Kubernetes object: apply a <code>kapsa-project.io/v1alpha1</code> <code>Project</code>{" "}
          (repository, build, registry, domain, environments) with <code>kubectl apply</code> or GitOps.
          <MemberScope />
        </Empty>
      ) : (
        <>
          <table data-testid="projects">
            <caption class="sr-only">Projects</caption>
            <thead>
              <tr>
                <th scope="col">Namespace</th>
                <th scope="col">Name</th>
                <th scope="col">Repository</th>
                <th scope="col">Ready</th>
                <th scope="col">Environments</th>
                <th scope="col">Latest image</th>
                <th scope="col">Latest commit</th>
                <th scope="col">Age</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((p) => (
                <ProjectTableRow key={`${p.metadata?.namespace}/${p.metadata?.name}`} project={p} />
              ))}
            </tbody>
          </table>
          <Pager page={current} pages={pages} onPage={setPage} />
        </>
      )}
    </>
  );
}

function ProjectTableRow(props: { project: Project }) {
  const r = projectRow(props.project);
  return (
    <tr data-project={r.key}>
      <td>{r.namespace}</td>
      <td>
        <Link href={`/projects/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`}>{r.name}</Link>
        {r.buildFailed ? (
          <>
            {" "}
            <Badge tone="bad">build failed</Badge>
          </>
        ) : null}
      </td>
      <td>{r.repository ? <code>{r.repository}</code> : <span class="muted">—</span>}</td>
      <td title={r.ready.message || undefined}>
        <Badge tone={r.ready.tone}>{r.ready.label}</Badge>
        {r.ready.reason ? <span class="muted small"> {r.ready.reason}</span> : null}
      </td>
      <td>{r.environments}</td>
      <td>{r.latestImage ? <code title={r.latestImage}>{shortImage(r.latestImage)}</code> : <span class="muted">none yet</span>}</td>
      <td>{r.latestCommit ? <code>{r.latestCommit}</code> : <span class="muted">—</span>}</td>
      <td>
        <Ago ts={props.project.metadata?.creationTimestamp} />
      </td>
    </tr>
  );
}

const STRATEGIES: Record<number, string> = { [BuildStrategy.BUILDPACK]: "buildpack", [BuildStrategy.DOCKERFILE]: "dockerfile" };

/** One project: its conditions (failing ones first and prominent), facts, environments and builds, live. */
export function ProjectPage(props: { namespace: string; name: string }) {
  const { namespace, name } = props;
  const key = `${namespace}/${name}`;
  const projects = useProjects({ namespace, name });
  const p = projects.items.get(key);
  return (
    <>
      <PageTitle actions={projects.problem ? null : <LiveIndicator status={projects.status} error={projects.error} />}>
        Project {name} <span class="muted small">{namespace}</span>
      </PageTitle>
      <p>
        <Link href="/projects">All projects</Link>
      </p>
      {!projects.synced ? (
        <NotThere live={projects} loading="Loading the project…" />
      ) : !p ? (
        <Empty>
          There is no project <code>{key}</code> (any more). <Link href="/projects">See every project</Link>.
        </Empty>
      ) : (
        <>
          <Failing conditions={p.status?.conditions ?? []} />
          <ProjectFacts project={p} />
          <Conditions conditions={p.status?.conditions ?? []} />
          <Environments project={key} />
          <Builds project={key} />
        </>
      )}
    </>
  );
}

/** The conditions that are False (BuildSucceeded=False among them), above everything else. */
function Failing(props: { conditions: readonly Condition[] }) {
  const failing = failingConditions(props.conditions);
  if (!failing.length) return null;
  return (
    <div class="problem" data-testid="failing-conditions">
      {failing.map((c) => (
        <p key={c.type} data-condition={c.type} class="breakable">
          <strong>
            {c.type} is False{c.reason ? ` (${c.reason})` : ""}
          </strong>
          {c.message ? `: ${c.message}` : ""}
        </p>
      ))}
    </div>
  );
}

function ProjectFacts(props: { project: Project }) {
  const { spec, status } = props.project;
  const repo = spec?.repository;
  const facts: [string, ComponentChildren][] = [
    ["Repository", repo?.url ? <code>{repo.url}</code> : "—"],
    ["Branch", repo?.branch || "main"],
    ["Build", STRATEGIES[spec?.build?.strategy ?? 0] ?? "—"],
    ["Registry", spec?.registry ? `${spec.registry.name} · ${spec.registry.imageRepository}` : "—"],
    ["Domain", spec?.domain ? `${spec.domain.subdomain} from ${spec.domain.domainPoolRef}` : "—"],
    ["Latest commit", status?.latestCommit ? <code title={status.latestCommit}>{shortCommit(status.latestCommit)}</code> : "none yet"],
    ["Latest image", status?.latestImage ? <code>{status.latestImage}</code> : "none yet"],
    ["Last polled", <Ago ts={status?.lastPolledAt} />],
    ["Created", <Ago ts={props.project.metadata?.creationTimestamp} />],
  ];
  return (
    <dl class="facts" data-testid="project-facts">
      {facts.map(([k, v]) => (
        <Fragment key={k}>
          <dt>{k}</dt>
          <dd data-fact={k} class="breakable">
            {v}
          </dd>
        </Fragment>
      ))}
    </dl>
  );
}

function Conditions(props: { conditions: readonly Condition[] }) {
  const list = orderedConditions(props.conditions);
  return (
    <section aria-labelledby="conditions-h">
      <h2 id="conditions-h">Conditions</h2>
      {!list.length ? (
        <Empty>No conditions yet: the Project controller has not reconciled this project.</Empty>
      ) : (
        <table data-testid="conditions">
          <thead>
            <tr>
              <th scope="col">Condition</th>
              <th scope="col">Status</th>
              <th scope="col">Reason</th>
              <th scope="col">Message</th>
              <th scope="col">Since</th>
            </tr>
          </thead>
          <tbody>
            {list.map((c) => {
              const b = conditionBadge(c);
              return (
                <tr key={c.type} data-condition={c.type}>
                  <td>{c.type}</td>
                  <td>
                    <Badge tone={b.tone}>{b.label}</Badge>
                  </td>
                  <td>{c.reason || <span class="muted">—</span>}</td>
                  <td class="breakable">{c.message || <span class="muted">—</span>}</td>
                  <td>
                    <Ago ts={c.lastTransitionTime} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Environments(props: { project: string }) {
  const envs = useEnvironments(props.project);
  const list = [...envs.items.values()].sort(byEnvironment);
  return (
    <section aria-labelledby="envs-h">
      <div class="page-title">
        <h2 id="envs-h">Environments</h2>
        {envs.problem ? null : <LiveIndicator status={envs.status} error={envs.error} label="Environments" />}
      </div>
      {!envs.synced ? (
        <NotThere live={envs} loading="Loading environments…" />
      ) : !list.length ? (
        <Empty>No environments yet: the Project controller makes one per declared environment and per preview branch.</Empty>
      ) : (
        <table data-testid="environments">
          <thead>
            <tr>
              <th scope="col">Environment</th>
              <th scope="col">Type</th>
              <th scope="col">Phase</th>
              <th scope="col">Branch</th>
              <th scope="col">Image</th>
              <th scope="col">URL</th>
              <th scope="col">Expires</th>
            </tr>
          </thead>
          <tbody>
            {list.map((e) => (
              <EnvironmentRow key={e.metadata?.name} env={e} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function EnvironmentRow(props: { env: Environment }) {
  const e = props.env;
  const s = e.status;
  const ready = conditionOf(s?.conditions ?? [], "Ready");
  const url = environmentUrl(e);
  const expires = e.spec?.type === EnvironmentType.PREVIEW && s?.expiresAt ? timestampMs(s.expiresAt) : undefined;
  return (
    <tr data-environment={e.metadata?.name}>
      <td>
        <strong>{e.metadata?.name}</strong>
      </td>
      <td>{environmentTypeLabel(e.spec?.type)}</td>
      <td>
        <Badge tone={environmentPhaseTone(s?.phase)}>{environmentPhaseLabel(s?.phase)}</Badge>
        {ready?.message ? <div class="muted small breakable">{ready.message}</div> : null}
      </td>
      <td>{e.spec?.branch ? <code>{e.spec.branch}</code> : <span class="muted">—</span>}</td>
      <td>{s?.image ? <code title={s.image}>{shortImage(s.image)}</code> : <span class="muted">none yet</span>}</td>
      <td>
        {url ? (
          <a href={url} target="_blank" rel="noopener noreferrer">
            {url}
          </a>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
      <td>
        {expires === undefined ? (
          <span class="muted">—</span>
        ) : (
          <time dateTime={new Date(expires).toISOString()} title={new Date(expires).toLocaleString()}>
            {expiresText(expires, Date.now())}
          </time>
        )}
      </td>
    </tr>
  );
}

function Builds(props: { project: string }) {
  const builds = useBuilds(props.project);
  const list = [...builds.items.values()].sort(byNewestBuild);
  return (
    <section aria-labelledby="builds-h">
      <div class="page-title">
        <h2 id="builds-h">Builds</h2>
        {builds.problem ? null : <LiveIndicator status={builds.status} error={builds.error} label="Builds" />}
      </div>
      {!builds.synced ? (
        <NotThere live={builds} loading="Loading builds…" />
      ) : !list.length ? (
        <Empty>No builds yet: each tracked branch's head is built by kpack once the repository has been read.</Empty>
      ) : (
        <table data-testid="builds">
          <thead>
            <tr>
              <th scope="col">Build</th>
              <th scope="col">Branch</th>
              <th scope="col">Commit</th>
              <th scope="col">Phase</th>
              <th scope="col">Image</th>
              <th scope="col">Failure</th>
              <th scope="col">Finished</th>
            </tr>
          </thead>
          <tbody>
            {list.map((b) => (
              <BuildRow key={b.metadata?.name} build={b} />
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function BuildRow(props: { build: Build }) {
  const b = props.build;
  return (
    <tr data-build={b.metadata?.name}>
      <td>
        {b.metadata?.name}
        {b.buildNumber ? <span class="muted small"> #{String(b.buildNumber)}</span> : null}
      </td>
      <td>{b.branch ? <code>{b.branch}</code> : <span class="muted">—</span>}</td>
      <td>{b.commitSha ? <code title={b.commitSha}>{shortCommit(b.commitSha)}</code> : <span class="muted">—</span>}</td>
      <td>
        <Badge tone={buildPhaseTone(b.phase)}>{buildPhaseLabel(b.phase)}</Badge>
      </td>
      <td>{b.image ? <code title={b.image}>{shortImage(b.image)}</code> : <span class="muted">—</span>}</td>
      <td class="breakable">
        {b.reason || b.message ? (
          <>
            {b.reason ? <strong>{b.reason}</strong> : null}
            {b.reason && b.message ? ": " : null}
            {b.message}
          </>
        ) : (
          <span class="muted">—</span>
        )}
      </td>
      <td>
        <Ago ts={b.finishedAt} />
      </td>
    </tr>
  );
}
