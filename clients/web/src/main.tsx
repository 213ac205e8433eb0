// The dashboard's entry: the login page until there is a session, then the layout and the page
// the path names.
import { render } from "preact";
import { logout, resume } from "./auth";
import { Empty, PageTitle } from "./components";
import { Role } from "./gen/persys/common/v1/common_pb";
import { Account } from "./pages/Account";
import { Admin } from "./pages/Admin";
import { Alerts } from "./pages/Alerts";
import { ApiKeys } from "./pages/ApiKeys";
import { Dora } from "./pages/Dora";
import { NodePage, Nodes } from "./pages/Nodes";
import { Login } from "./pages/Login";
import { Overview } from "./pages/Overview";
import { Personas } from "./pages/Personas";
import { ProjectPage, Projects } from "./pages/Projects";
import { RunWorkload } from "./pages/RunWorkload";
import { WorkloadPage } from "./pages/Workload";
import { Workloads } from "./pages/Workloads";
import { Link, match, navigate, usePath } from "./router";
import { type Session, useSession } from "./session";
import "./style.css";

const NAV = [
  { href: "/", label: "Overview" },
  { href: "/nodes", label: "Nodes" },
  { href: "/workloads", label: "Workloads" },
  { href: "/alerts", label: "Alerts" },
  { href: "/dora", label: "DORA" },
  { href: "/personas", label: "Personas" },
  { href: "/projects", label: "Projects" },
  { href: "/keys", label: "API keys" },
  { href: "/admin", label: "Admin", admin: true },
];

function Page(props: { path: string; session: Session }) {
  const { path, session } = props;
  let m: Record<string, string> | null;
  if (match("/account", path)) return <Account session={session} roleName={ROLE_NAMES[session.user.role] ?? "unknown role"} />;
  if (match("/", path)) return <Overview session={session} />;
  if (match("/nodes", path)) return <Nodes session={session} />;
  if ((m = match("/nodes/:id", path))) return <NodePage id={m.id} session={session} />;
  if (match("/workloads", path)) return <Workloads session={session} />;
  if (match("/personas", path)) return <Personas />;
  if (match("/projects", path)) return <Projects />;
  if ((m = match("/projects/:namespace/:name", path))) return <ProjectPage namespace={m.namespace} name={m.name} />;
  if (match("/alerts", path)) return <Alerts session={session} />;
  if (match("/dora", path)) return <Dora session={session} />;
  if (match("/keys", path)) return <ApiKeys session={session} />;
  if (match("/admin", path)) return <Admin session={session} />;
  if (match("/workloads/new", path))
    return session.canWrite ? (
      <RunWorkload />
    ) : (
      <>
        <PageTitle>Run a workload</PageTitle>
        <Empty>You have read-only access: ask an admin for the member role to run workloads.</Empty>
      </>
    );
  if ((m = match("/workloads/:id", path))) return <WorkloadPage key={m.id} id={m.id} session={session} />;
  return (
    <>
      <PageTitle>Page not found</PageTitle>
      <Empty>
        Nothing lives at <code>{path}</code>. <Link href="/">Go to the overview</Link>.
      </Empty>
    </>
  );
}

const ROLE_NAMES: Record<number, string> = { [Role.ADMIN]: "admin", [Role.MEMBER]: "member", [Role.VIEWER]: "viewer" };

function App() {
  const { session, notice, restoring } = useSession();
  const path = usePath();
  if (restoring)
    return (
      <main id="main" class="login">
        <p role="status">Resuming your session…</p>
      </main>
    );
  if (!session) return <Login notice={notice} />;
  const onLogout = () => {
    navigate("/", true);
    void logout();
  };
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          Persys
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.filter((n) => !n.admin || session.isAdmin).map((n) => {
              const current = n.href === "/" ? path === "/" : path.startsWith(n.href);
              return (
                <li key={n.href}>
                  <Link href={n.href} aria-current={current ? "page" : undefined}>
                    {n.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </nav>
        <div class="user">
          <Link href="/account" data-testid="whoami" title="Your account: change your password">
            {session.user.username} <span class="muted">({ROLE_NAMES[session.user.role] ?? "unknown role"})</span>
          </Link>
          <button onClick={onLogout}>Log out</button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page key={path} path={path} session={session} />
      </main>
    </>
  );
}

void resume();
render(<App />, document.getElementById("app")!);
