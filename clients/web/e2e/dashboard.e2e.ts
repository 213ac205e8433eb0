// The dashboard end to end: the built app served by a real persys-stack's gateway, used in
// Debian's Chromium as a person would: log in, see the node, run a workload from the form, see
// it reach Running and its log lines arrive, pause and search them, stop and delete it, log
// out; a reload keeps the session (the refresh token is an HttpOnly cookie) until logout; a
// viewer sees no write or admin action; an invalid form shows the server's field
// violations; a broken stream shows "reconnecting" and recovers. Every page passes axe (no
// serious or critical violations) and is screenshotted into the artifacts directory. With the
// test bench's services, the Personas and Projects pages follow the real reconciler and Kapsa's
// controllers on its kube-apiserver, and the charts, alerts, commands and DORA pages the real
// metrics pipeline on its PostgreSQL.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { BrowserContext, Page, Request, Route } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Role } from "../src/gen/persys/common/v1/common_pb";
import { AuthService } from "../src/gen/persys/gateway/v1/auth_pb";
import { UserService } from "../src/gen/persys/gateway/v1/user_service_pb";
import { DeploymentEnvironment, DeploymentStatus } from "../src/gen/persys/metrics/v1/dora_pb";
import { DoraService } from "../src/gen/persys/metrics/v1/dora_service_pb";
import { SchedulerService } from "../src/gen/persys/scheduler/v1/scheduler_service_pb";
import { nodeStateLabel } from "../src/logic/states";
import { ImagePullPolicy } from "../src/gen/persys/scheduler/v1/workload_pb";
import { startAgents } from "./agents";
import { axe, launch } from "./browser";
import { measure } from "./frames";
import { startProxy } from "./proxy";
import { REPO, type Stack, startStack } from "./stack";

const ARTIFACTS = process.env.PERSYS_WEB_ARTIFACTS || join(process.env.CARGO_TARGET_DIR || join(REPO, "target"), "web-e2e");
const VIEWER = { username: "vera", password: "viewer-password-123" };
// The bench's Docker engine and image: a container workload whose metrics the workload page charts.
const DOCKER_IMAGE = process.env.DOCKER_HOST ? process.env.PERSYS_TEST_IMAGE : undefined;
// The test bench's kube-apiserver: with it the stack also runs the reconciler, cluster-wide
// with Kapsa's controllers (--kapsa-projects), and the Personas and Projects pages are tested
// against it. The test's objects live in a namespace of its own (and a project's namespace).
const KUBECONFIG = process.env.PERSYS_TEST_KUBECONFIG;
const KUBE_NS = `web-e2e-${process.pid}`;
// The project the Projects page is tested with, its own namespace (the Project controller's
// `<namespace>-<name>`), and the cluster-scoped Registry and DomainPool it names.
const PROJECT = "api";
const PROJECT_NS = `${KUBE_NS}-${PROJECT}`;
const KAPSA_NAME = `web-e2e-${process.pid}`;
const BASE_DOMAIN = `${KAPSA_NAME}.example.test`;
// The registry the project's images are pushed to (nothing is pushed: kpack is a stand-in).
const REGISTRY = `registry.${BASE_DOMAIN}`;
// The heads of the project's repository once it is there, and what kpack built of main.
const MAIN_COMMIT = "0123456789abcdef0123456789abcdef01234567";
const FEATURE_COMMIT = "89abcdef0123456789abcdef0123456789abcdef";
const BUILT_DIGEST = "1111111111111111111111111111111111111111111111111111111111111111";
const BUILT_IMAGE = `${REGISTRY}/team/api@sha256:${BUILT_DIGEST}`;
// kpack's Image as a stand-in CRD (no kpack controller): the test writes build results as
// kpack would. The one fixture the reconciler's, the CLI's and the authz matrix's tests apply.
const KPACK_CRD = join(REPO, "tests/e2e/fixtures/kpack-image-crd.json");
// Whether a ClusterPersona `cluster` existed before this run (else discovery makes it, and the
// run removes it after).
let clusterPersonaBefore = true;
// The Project's "git server": it answers every request 404, as a host does for a repository it
// does not have, and records what the Project controller asked.
let gitServer: Server | undefined;
// The test bench's PostgreSQL: with it the stack also runs the metrics pipeline on a database
// of this run's own, and the charts and the Alerts page are tested against it.
const PG_ADMIN_URL = process.env.PERSYS_TEST_PG_ADMIN_URL;
const METRICS_DB = `web_e2e_${process.pid}`;

/** psql against the test bench's PostgreSQL as its admin role. */
function psql(sql: string): string {
  return execFileSync(process.env.PERSYS_TEST_PSQL || "psql", [PG_ADMIN_URL!, "-v", "ON_ERROR_STOP=1", "-tAc", sql], { encoding: "utf8" });
}

/** psql against database `db` of the test bench's PostgreSQL. */
function psqlIn(db: string, sql: string): string {
  return execFileSync(process.env.PERSYS_TEST_PSQL || "psql", [databaseUrl(db), "-v", "ON_ERROR_STOP=1", "-tAc", sql], { encoding: "utf8" });
}

/** The admin URL with its database replaced by `db`. */
function databaseUrl(db: string): string {
  const u = new URL(PG_ADMIN_URL!);
  u.pathname = `/${db}`;
  return u.toString();
}

/** kubectl against the test bench, `input` on stdin. */
function kubectl(args: string[], input?: string): string {
  const bin = process.env.PERSYS_TEST_KUBECTL || "kubectl";
  return execFileSync(bin, ["--kubeconfig", KUBECONFIG!, ...args], { input, encoding: "utf8" });
}

/**
 * A smart-HTTP ref advertisement (`GET <repo>/info/refs?service=git-upload-pack`) of `branches`
 * (name → commit), `HEAD` on main, as `git http-backend` answers: pkt-lines (four hex digits of
 * length), the service header and a flush, one line a ref (the first with the capabilities),
 * a flush.
 */
function advertisement(branches: Record<string, string>): string {
  const pkt = (line: string) => `${(line.length + 4).toString(16).padStart(4, "0")}${line}`;
  const refs = Object.entries(branches).sort(([a], [b]) => (a < b ? -1 : 1));
  return [
    pkt("# service=git-upload-pack\n"),
    "0000",
    pkt(`${branches.main} HEAD\0multi_ack side-band-64k ofs-delta symref=HEAD:refs/heads/main object-format=sha1 agent=git/2.39.5\n`),
    ...refs.map(([name, commit]) => pkt(`${commit} refs/heads/${name}\n`)),
    "0000",
  ].join("");
}

/** Polls `check` every 200 ms until it returns a value, or fails after `ms` saying what it waited for. */
async function until<T>(what: string, ms: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}; the stack said:\n${stack?.log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let stack: Stack;
let context: BrowserContext;
let closeBrowser: () => Promise<void>;
let page: Page;
const cspViolations: string[] = [];
const figures: Record<string, number> = {};

async function shot(name: string) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function expectAccessible(name: string) {
  const violations = await axe(page);
  expect(violations, `axe on ${name}: ${JSON.stringify(violations, null, 1)}`).toEqual([]);
}

/** Follows a link of the main navigation. */
async function nav(name: string) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();
}

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  let kube: string[] = [];
  if (KUBECONFIG) {
    const crds = join(REPO, "deploy/helm/persys/crds/persys-crds.yaml");
    kubectl(["apply", "--server-side", "--force-conflicts", "-f", crds]);
    kubectl(["apply", "--server-side", "--force-conflicts", "-f", KPACK_CRD]);
    // kpack's CRD before the stack starts: the Project controller looks for it at its start.
    kubectl(["wait", "--for=condition=Established", "--timeout=60s", "-f", crds]);
    kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/images.kpack.io"]);
    kubectl(["create", "namespace", KUBE_NS]);
    clusterPersonaBefore = kubectl(["get", "clusterpersonas.dorgu.io", "-o", "name"]).split("\n").includes("clusterpersona.dorgu.io/cluster");
    kube = ["--kubeconfig", KUBECONFIG, "--kapsa-projects"];
  }
  let metrics: string[] = [];
  if (PG_ADMIN_URL) {
    psql(`CREATE DATABASE ${METRICS_DB}`);
    // The built-in agent may run `echo` on this machine (and nothing else).
    metrics = ["--metrics-database-url", databaseUrl(METRICS_DB), "--host-commands", "echo"];
  }
  stack = await startStack(resolve(import.meta.dirname, "../dist"), [...kube, ...metrics]);
  if (KUBECONFIG) {
    // The stack's reconciler runs the controllers only while it holds the Lease
    // `persys-reconciler` in `default` (it is cluster-wide): wait for it to lead, and make
    // sure no other reconciler on the bench does, or the Personas and Projects pages would
    // show another's work.
    const identity = await until("the stack's reconciler to lead", 60_000, () => /leading: controllers start.*?identity[=":]+([^\s",}]+)/.exec(stack.log())?.[1]);
    const lease = JSON.parse(kubectl(["get", "leases.coordination.k8s.io", "persys-reconciler", "-n", "default", "-o", "json"]));
    expect(lease.spec.holderIdentity, "the holder of default/persys-reconciler").toBe(identity);
  }
  // The viewer, made by the admin through the gateway (gRPC-web from Node, like the browser).
  const transport = createGrpcWebTransport({ baseUrl: stack.url });
  const { accessToken } = await createClient(AuthService, transport).login({ username: "admin", password: stack.adminPassword });
  const headers = { authorization: `Bearer ${accessToken}` };
  await createClient(UserService, transport).createUser({ ...VIEWER, role: Role.VIEWER }, { headers });
  // A workload the viewer will look at but must not be offered to change.
  await createClient(SchedulerService, transport).createWorkload(
    { name: "admins-sleeper", spec: { image: "process://", command: ["sleep", "600"] }, requestId: "web-e2e-sleeper" },
    { headers },
  );
  if (DOCKER_IMAGE)
    await createClient(SchedulerService, transport).createWorkload(
      {
        name: "admins-container",
        spec: { image: DOCKER_IMAGE, command: ["sleep", "600"], imagePullPolicy: ImagePullPolicy.NEVER },
        requestId: "web-e2e-container",
      },
      { headers },
    );
  ({ context, close: closeBrowser } = await launch());
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);
  page.on("console", (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
  });
});

// A failed test leaves what the page showed and what the stack said.
afterEach(async (ctx) => {
  if (ctx.task.result?.state !== "fail") return;
  const name = `failed-${ctx.task.name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60)}`;
  await page?.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }).catch(() => {});
  writeFileSync(join(ARTIFACTS, `${name}.stack.log`), stack?.log() ?? "");
  console.log(`web e2e: ${ctx.task.name} failed; see ${join(ARTIFACTS, name)}.png and .stack.log`);
});

afterAll(async () => {
  writeFileSync(join(ARTIFACTS, "figures.json"), JSON.stringify(figures, null, 2));
  // The benchmark's printed figures (docs/benchmarks.md).
  for (const [k, v] of Object.entries(figures)) console.log(`web bench: ${k} = ${v}`);
  console.log(`web e2e: screenshots in ${ARTIFACTS}`);
  await closeBrowser?.();
  if (KUBECONFIG && stack) {
    // The Project's finalizer is the running controller's: it deletes the project's namespace.
    try {
      kubectl(["delete", "projects.kapsa-project.io", "--all", "-n", KUBE_NS, "--timeout=30s"]);
    } catch {
      kubectl(["patch", "projects.kapsa-project.io", PROJECT, "-n", KUBE_NS, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    }
  }
  await stack?.stop();
  gitServer?.close();
  if (KUBECONFIG) {
    kubectl(["delete", "namespace", KUBE_NS, PROJECT_NS, "--wait=false", "--ignore-not-found"]);
    kubectl(["delete", "registries.kapsa-project.io,domainpools.kapsa-project.io", KAPSA_NAME, "--ignore-not-found"]);
    if (!clusterPersonaBefore) kubectl(["delete", "clusterpersonas.dorgu.io", "cluster", "--ignore-not-found"]);
  }
  if (PG_ADMIN_URL) psql(`DROP DATABASE IF EXISTS ${METRICS_DB} WITH (FORCE)`);
});

describe("the dashboard against persys-stack", () => {
  it("logs in, keeps the token out of storage, and shows the node on the overview", async () => {
    await page.goto(stack.url);
    await page.getByRole("heading", { name: "Log in to Persys" }).waitFor();
    const paint = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1);
    figures.login_first_contentful_paint_ms = Math.round(paint);
    await expectAccessible("login");
    await shot("login");

    // The overview's first meaningful paint: from the login click to the live node count.
    await page.getByLabel("Username").fill("admin");
    await page.getByLabel("Password").fill(stack.adminPassword);
    const t0 = Date.now();
    await page.getByRole("button", { name: "Log in" }).click();
    await expect.poll(() => page.getByTestId("nodes-Ready").textContent(), { timeout: 30_000 }).toMatch(/^1\s*Ready/);
    figures.login_to_overview_with_data_ms = Date.now() - t0;
    await expect.poll(() => page.getByTestId("whoami").textContent()).toBe("admin (admin)");
    await page.getByTestId("live-Nodes").getByText("Nodes: Live").waitFor();

    const stored = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length, cookie: document.cookie }));
    expect(stored).toEqual({ local: 0, session: 0, cookie: "" });
    // The refresh token is the gateway's HttpOnly, SameSite=Strict cookie, sent to AuthService only.
    const cookie = (await context.cookies()).find((c) => c.name === "persys_refresh");
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/persys.gateway.v1.AuthService/" });
    expect(cookie?.value.length).toBeGreaterThan(20);
    // So a reload resumes the session (through Refresh) instead of asking for the password.
    await page.reload();
    await expect.poll(() => page.getByTestId("whoami").textContent()).toBe("admin (admin)");
    await expect.poll(() => page.getByTestId("nodes-Ready").textContent()).toMatch(/^1\s*Ready/);
    // The cookie was rotated by that Refresh.
    const rotated = (await context.cookies()).find((c) => c.name === "persys_refresh");
    expect(rotated?.value).not.toBe(cookie?.value);
    await expectAccessible("overview");
    await shot("overview");

    await nav("Nodes");
    const row = page.getByRole("row").filter({ has: page.getByText("Ready") });
    await expect.poll(() => row.count()).toBe(1);
    await expect.poll(() => row.getByRole("cell").nth(2).textContent()).toContain("process");
    await expectAccessible("nodes");
    await shot("nodes");
    await row.getByRole("link").click();
    await page.getByRole("heading", { level: 2, name: "Instances on this node" }).waitFor();
    // The admin is offered the node actions.
    await page.getByRole("button", { name: "Cordon" }).waitFor();
    await expectAccessible("node");
    await shot("node");
  });

  it("shows the server's field violations next to the form's inputs", async () => {
    await nav("Workloads");
    await page.getByRole("link", { name: "Run workload" }).click();
    await page.getByRole("heading", { name: "Run a workload" }).waitFor();
    await expectAccessible("run form");
    // Neither is checked in the browser: both violations come from the scheduler.
    await page.getByLabel("Name").fill("Not_A_Valid_Name");
    await page.getByRole("button", { name: "Run", exact: true }).click();
    await expect.poll(() => page.getByTestId("error-name").textContent()).toContain("lowercase letters");
    await expect.poll(() => page.getByTestId("error-image").textContent()).toContain("required");
    expect(await page.getByLabel("Name").getAttribute("aria-invalid")).toBe("true");
    // The keyboard is taken to the first input in trouble.
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("f-name");
    await expectAccessible("run form with violations");
    await shot("run-form-violations");
  });

  it("runs a workload from the form, follows its logs live, stops and deletes it", async () => {
    await page.getByLabel("Name").fill("web-e2e-ticker");
    await page.getByLabel("Image").fill("process://");
    await page.getByLabel("Command").fill(`sh -c 'i=0; while true; do echo "tick-$i"; i=$((i+1)); sleep 0.3; done'`);
    await page.getByRole("button", { name: "Run", exact: true }).click();
    await page.waitForURL(/\/workloads\/[0-9a-f-]{36}$/);
    await expect.poll(() => page.getByTestId("phase").textContent(), { timeout: 60_000 }).toBe("Running");

    // Lines arrive while we watch.
    const log = page.getByTestId("log");
    // Each line on its own, from the first.
    await log.getByText("tick-0", { exact: true }).waitFor();
    await log.getByText("tick-2", { exact: true }).waitFor();
    await log.getByText("tick-6", { exact: true }).waitFor();
    await page.getByTestId("live-Logs").getByText("Logs: Live").waitFor();

    // Paused, the view stands still while new lines are counted; resumed, they show.
    await page.getByRole("button", { name: "Pause" }).click();
    const frozen = await log.locator(".line").count();
    await expect.poll(() => page.getByRole("button", { name: /^Resume/ }).textContent()).toMatch(/Resume \([3-9]\d* new\)|Resume \(\d{2,} new\)/);
    expect(await log.locator(".line").count()).toBe(frozen);
    await page.getByRole("button", { name: /^Resume/ }).click();
    await expect.poll(() => log.locator(".line").count()).toBeGreaterThan(frozen + 2);

    // Search keeps only matching lines.
    await page.getByPlaceholder("Search the logs").fill("tick-3");
    await expect.poll(() => log.locator(".line").allTextContents()).toEqual(expect.arrayContaining(["tick-3"]));
    expect((await log.locator(".line").allTextContents()).every((t) => t.includes("tick-3"))).toBe(true);
    await page.getByPlaceholder("Search the logs").fill("");
    await expectAccessible("workload");
    await shot("workload");

    // Hidden, the log stream closes; shown again, it resumes from the last line's time: every
    // line written meanwhile arrives, none twice.
    const setVisibility = (state: string) =>
      page.evaluate((v) => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => v });
        document.dispatchEvent(new Event("visibilitychange"));
      }, state);
    await setVisibility("hidden");
    await page.getByTestId("live-Logs").getByText("Logs: Paused while the tab is hidden").waitFor({ timeout: 15_000 });
    const paused = await log.locator(".line").count();
    await setVisibility("visible");
    await page.getByTestId("live-Logs").getByText("Logs: Live").waitFor();
    await expect.poll(() => log.locator(".line").count()).toBeGreaterThan(paused + 3);
    const lines = (await log.locator(".line").allTextContents()).filter((t) => t.startsWith("tick-"));
    expect(lines).toEqual(lines.map((_, i) => `tick-${i}`));

    await page.getByRole("button", { name: "Stop" }).click();
    await expect.poll(() => page.getByTestId("phase").textContent(), { timeout: 60_000 }).toBe("Stopped");
    await page.getByRole("button", { name: "Start" }).waitFor();
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("button", { name: "Confirm delete" }).click();
    await page.getByRole("heading", { name: "Workload deleted" }).waitFor({ timeout: 60_000 });

    await nav("Workloads");
    await page.getByRole("link", { name: "admins-sleeper" }).waitFor();
    expect(await page.getByRole("link", { name: "web-e2e-ticker" }).count()).toBe(0);
    await expectAccessible("workloads");
    await shot("workloads");
  });

  it("says it is reconnecting when its streams break, and is live again after", async () => {
    // Through a proxy that can cut every connection: a second tab. Cookies belong to the host,
    // not the port, so the tab resumes the session of the first one without a password.
    const proxy = await startProxy(stack.url);
    const tab = await context.newPage();
    try {
      await tab.goto(proxy.url);
      await expect.poll(() => tab.getByTestId("whoami").textContent()).toBe("admin (admin)");
      const live = tab.getByTestId("live-Nodes");
      await live.getByText("Nodes: Live").waitFor();
      proxy.cut();
      await live.getByText("Nodes: Reconnecting…").waitFor();
      // What the view showed stays while it reconnects.
      expect(await tab.getByTestId("nodes-Ready").textContent()).toMatch(/^1\s*Ready/);
      proxy.restore();
      await live.getByText("Nodes: Live").waitFor({ timeout: 30_000 });
      await expect.poll(() => tab.getByTestId("nodes-Ready").textContent()).toMatch(/^1\s*Ready/);
    } finally {
      await tab.close();
      await proxy.close();
    }
  });

  it("closes its streams while the tab is hidden, and catches up when it is shown again", async () => {
    const proxy = await startProxy(stack.url);
    const tab = await context.newPage();
    try {
      await tab.goto(`${proxy.url}/workloads`);
      await expect.poll(() => tab.getByTestId("whoami").textContent()).toBe("admin (admin)");
      await tab.getByRole("link", { name: "admins-sleeper" }).waitFor();
      const status = tab.getByRole("status").filter({ hasText: /Live|Paused/ }).first();
      await expect.poll(() => status.textContent()).toBe("Live");
      // Hidden (as when the user switches tabs): after a few seconds the view pauses.
      await tab.evaluate(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        document.dispatchEvent(new Event("visibilitychange"));
      });
      await expect.poll(() => status.textContent(), { timeout: 15_000 }).toBe("Paused while the tab is hidden");
      // A change made meanwhile sends the hidden tab nothing: its streams are closed.
      const before = proxy.bytesToClient();
      const transport = createGrpcWebTransport({ baseUrl: stack.url });
      const { accessToken } = await createClient(AuthService, transport).login({ username: "admin", password: stack.adminPassword });
      const headers = { authorization: `Bearer ${accessToken}` };
      const sched = createClient(SchedulerService, transport);
      const made = await sched.createWorkload(
        { name: "made-while-hidden", spec: { image: "process://", command: ["sleep", "600"] }, requestId: "web-e2e-hidden" },
        { headers },
      );
      await page.waitForTimeout(1500); // a negative check: nothing may arrive in this time
      expect(proxy.bytesToClient()).toBe(before);
      expect(await tab.getByRole("link", { name: "made-while-hidden" }).count()).toBe(0);
      // Shown again: live at once, and the change arrives (resumed after the last revision).
      await tab.evaluate(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
        document.dispatchEvent(new Event("visibilitychange"));
      });
      await tab.getByRole("link", { name: "made-while-hidden" }).waitFor({ timeout: 30_000 });
      await expect.poll(() => status.textContent()).toBe("Live");
      await sched.deleteWorkload({ id: made.workload!.id }, { headers });
    } finally {
      await tab.close();
      await proxy.close();
    }
  });

  it("keeps the session when two tabs refresh it at the same moment", async () => {
    // Two tabs of one browser share the refresh cookie, which the gateway rotates on every
    // Refresh and treats as stolen when it is presented twice (it ends the session). Both tabs
    // reload at once (a reload refreshes), and the first Refresh sent is held until another one
    // is sent (3 s at most), so that uncoordinated tabs would really present the same cookie at
    // once. Coordinated, the second tab waits for the first one's lock and then sends the
    // rotated cookie, or uses the token the first one shared and sends nothing.
    const tab = await context.newPage();
    const REFRESH = "**/persys.gateway.v1.AuthService/Refresh";
    let release: (() => void) | undefined;
    const hold = async (route: Route) => {
      if (release) {
        release();
        await route.continue();
        return;
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, 3000);
        release = () => {
          clearTimeout(t);
          r();
        };
      });
      release = undefined;
      await route.continue();
    };
    // The cookie each Refresh carried.
    const carried: Promise<string>[] = [];
    const record = (r: Request) => {
      if (r.url().endsWith("/persys.gateway.v1.AuthService/Refresh"))
        carried.push(r.allHeaders().then((h) => /(?:^|;\s*)persys_refresh=([^;]*)/.exec(h.cookie ?? "")?.[1] ?? "(none)"));
    };
    try {
      // Both on a page without streams: two pages' live views (three streams each) would take
      // all six HTTP/1.1 connections the browser opens to the gateway, and a reload would wait
      // for one.
      await page.goto(`${stack.url}/account`);
      await tab.goto(`${stack.url}/account`);
      for (const p of [page, tab]) await expect.poll(() => p.getByTestId("whoami").textContent()).toBe("admin (admin)");
      await context.route(REFRESH, hold);
      context.on("requestfinished", record);
      await Promise.all([page.reload(), tab.reload()]);
      for (const p of [page, tab]) await expect.poll(() => p.getByTestId("whoami").textContent(), { timeout: 15_000 }).toBe("admin (admin)");
      const cookies = await Promise.all(carried);
      expect(cookies.length).toBeGreaterThan(0);
      expect(cookies).not.toContain("(none)");
      // No cookie was presented twice...
      expect(new Set(cookies).size, `cookies presented: ${cookies.join(", ")}`).toBe(cookies.length);
      await context.unroute(REFRESH, hold);
      context.off("requestfinished", record);
      // ...so the session goes on: a later reload resumes it again, and the gateway saw no reuse.
      await tab.reload();
      await expect.poll(() => tab.getByTestId("whoami").textContent()).toBe("admin (admin)");
      await page.getByTestId("whoami").waitFor();
      const transport = createGrpcWebTransport({ baseUrl: stack.url });
      const { accessToken } = await createClient(AuthService, transport).login({ username: "admin", password: stack.adminPassword });
      const { events } = await createClient(UserService, transport).listAuditEvents({ page: { pageSize: 1000 } }, { headers: { authorization: `Bearer ${accessToken}` } });
      expect(events.filter((e) => e.action === "refresh.reuse")).toEqual([]);
    } finally {
      await context.unroute(REFRESH, hold);
      context.off("requestfinished", record);
      await tab.close();
    }
  });

  it("shows application personas live from the reconciler", async (ctx) => {
    if (!KUBECONFIG) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_KUBECONFIG is not set: the Personas page needs the test bench's kube-apiserver");
      ctx.skip();
    }
    const persona = (name: string) =>
      JSON.stringify({ apiVersion: "dorgu.io/v1", kind: "ApplicationPersona", metadata: { name, namespace: KUBE_NS }, spec: { name, type: "api" } });
    kubectl(["apply", "-f", "-"], persona("shop"));
    await nav("Personas");
    await page.getByRole("heading", { level: 1, name: "Personas" }).waitFor();
    // This stack's reconciler is cluster-wide: its discovery made the ClusterPersona `cluster`
    // when the cluster had none, and the section shows what discovery found: a phase and the
    // cluster's nodes as the API server lists them.
    const card = page.getByTestId("cluster-persona");
    const cluster = card.locator('[data-cluster="cluster"]');
    if (!clusterPersonaBefore) await cluster.waitFor({ timeout: 60_000 });
    await expect.poll(() => card.locator("[data-cluster]").count(), { timeout: 60_000 }).toBeGreaterThan(0);
    const shown = (await cluster.count()) ? cluster : card.locator("[data-cluster]").first();
    await expect.poll(() => shown.locator(".badge").textContent(), { timeout: 60_000 }).toMatch(/^(Ready|Degraded|Unknown|Discovering)$/);
    const nodesNow = () => {
      const nodes = JSON.parse(kubectl(["get", "nodes", "-o", "json"])).items as { status?: { conditions?: { type: string; status: string }[] } }[];
      const ready = nodes.filter((n) => n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")).length;
      return `${ready}/${nodes.length} ready`;
    };
    await expect
      .poll(async () => (await shown.locator('[data-fact="Nodes"]').textContent()) === nodesNow(), { timeout: 60_000 })
      .toBe(true);
    expect(await card.textContent()).not.toContain("No cluster persona here");
    // Cluster-wide, other namespaces' personas are listed too: this test looks at its own.
    await page.locator(`select option[value="${KUBE_NS}"]`).waitFor({ state: "attached", timeout: 60_000 });
    await page.getByLabel("Namespace").selectOption(KUBE_NS);
    const row = page.locator(`tr[data-persona="${KUBE_NS}/shop"]`);
    // No workload yet: the reconciler says Pending, and the page shows it without a reload.
    await expect.poll(() => row.getByText("Pending").count(), { timeout: 60_000 }).toBe(1);
    expect(await row.locator("td").nth(3).textContent()).toBe("none");
    // A Deployment for it appears: the row follows, live.
    kubectl(
      ["apply", "-f", "-"],
      JSON.stringify({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name: "shop", namespace: KUBE_NS, labels: { "app.kubernetes.io/name": "shop" } },
        spec: {
          replicas: 1,
          selector: { matchLabels: { pod: "shop" } },
          template: { metadata: { labels: { pod: "shop" } }, spec: { containers: [{ name: "shop", image: "registry.invalid/shop:1" }] } },
        },
      }),
    );
    await expect.poll(() => row.locator("td").nth(3).textContent(), { timeout: 60_000 }).toBe("Deployment/shop");
    // Its validation findings (no resources, no probes, root) are listed under the persona.
    await expect.poll(() => row.locator("td").nth(4).textContent(), { timeout: 30_000 }).toMatch(/\d+ errors, \d+ warnings/);
    await row.locator("summary").click();
    expect(await row.locator("details li").count()).toBeGreaterThan(0);
    // A second persona arrives on the open page.
    kubectl(["apply", "-f", "-"], persona("cart"));
    await page.locator(`tr[data-persona="${KUBE_NS}/cart"]`).waitFor();
    // Filters: by phase (none has failed), then by text.
    await page.getByLabel("Phase").selectOption({ label: "Failed" });
    await page.getByText("No persona matches these filters.").waitFor();
    await page.getByLabel("Phase").selectOption({ label: "All" });
    await page.getByLabel("Search").fill("car");
    await expect.poll(() => page.locator("tr[data-persona]").count()).toBe(1);
    expect(await page.locator(`tr[data-persona="${KUBE_NS}/cart"]`).count()).toBe(1);
    await page.getByLabel("Search").fill("");
    await expectAccessible("personas");
    await shot("personas");
  });

  it("shows Kapsa projects, their environments and builds live, as the controllers report them", async (ctx) => {
    if (!KUBECONFIG) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_KUBECONFIG is not set: the Projects page needs the test bench's kube-apiserver");
      ctx.skip();
    }
    const apply = (o: object) => kubectl(["apply", "--server-side", "--field-manager=persys-tests", "-f", "-"], JSON.stringify(o));
    // The Project's git host, over smart HTTP: first it has no such repository (404), then it
    // advertises the branches of `served` as `git http-backend` does. It records what the
    // Project controller asked.
    const polls: string[] = [];
    let served: Record<string, string> | undefined;
    gitServer = createServer((req, res) => {
      polls.push(req.url ?? "");
      if (!served || req.url !== "/team/api.git/info/refs?service=git-upload-pack") {
        res.writeHead(404, { "content-type": "text/plain" }).end("no such repository\n");
        return;
      }
      res.writeHead(200, { "content-type": "application/x-git-upload-pack-advertisement", "cache-control": "no-cache" }).end(advertisement(served));
    });
    await new Promise<void>((ready) => gitServer!.listen(0, "127.0.0.1", ready));
    const git = `http://127.0.0.1:${(gitServer.address() as AddressInfo).port}`;
    // A Registry without credentials and a DomainPool of this run's own (both cluster-scoped;
    // no cert-manager here, so the pool's ClusterIssuer does not exist), and a Project whose
    // repository is not there yet: the real controllers make its namespace and its
    // environment, and report the failed poll.
    apply({ apiVersion: "kapsa-project.io/v1alpha1", kind: "Registry", metadata: { name: KAPSA_NAME }, spec: { type: "docker", endpoint: `https://${REGISTRY}` } });
    apply({
      apiVersion: "kapsa-project.io/v1alpha1",
      kind: "DomainPool",
      metadata: { name: KAPSA_NAME },
      spec: { baseDomains: [BASE_DOMAIN], certManager: { issuerRef: { name: "letsencrypt" } } },
    });
    const repository = `${git}/team/api.git`;
    apply({
      apiVersion: "kapsa-project.io/v1alpha1",
      kind: "Project",
      metadata: { name: PROJECT, namespace: KUBE_NS },
      spec: {
        repository: { url: repository, pollInterval: 3600 },
        build: { strategy: "buildpack" },
        registry: { name: KAPSA_NAME, imageRepository: "team/api" },
        domain: { subdomain: "api", domainPoolRef: KAPSA_NAME },
        environments: [{ name: "prod", autoSync: true }],
        previewEnvironments: { enabled: true, ttl: "24h", branches: { include: ["feature/*"] } },
      },
    });

    await nav("Projects");
    await page.getByRole("heading", { level: 1, name: "Projects" }).waitFor();
    await page.locator(".page-title").getByRole("status").getByText("Live").waitFor();
    const row = page.locator(`tr[data-project="${KUBE_NS}/${PROJECT}"]`);
    await row.waitFor();
    expect(await row.locator("td").nth(2).textContent()).toBe(repository);
    // The controller's verdict arrives on the open page: reconciled, its one environment not
    // running (nothing was ever built), no image and no commit.
    await expect.poll(() => row.locator("td").nth(3).textContent(), { timeout: 60_000 }).toBe("True Reconciled");
    await expect.poll(() => row.locator("td").nth(4).textContent()).toBe("0/1");
    expect(await row.locator("td").nth(5).textContent()).toBe("none yet");
    expect(await row.locator("td").nth(6).textContent()).toBe("—");
    // Its namespace is the controller's, labelled for the project.
    const nsLabels = JSON.parse(kubectl(["get", "namespace", PROJECT_NS, "-o", "json"])).metadata.labels;
    expect(nsLabels).toMatchObject({ "kapsa-project.io/project": PROJECT, "kapsa-project.io/project-namespace": KUBE_NS });
    await expectAccessible("projects");
    await shot("projects");

    // The detail: the failed poll first and prominent, in the controller's words.
    await row.getByRole("link", { name: PROJECT }).click();
    await page.getByRole("heading", { level: 1, name: `Project ${PROJECT} ${KUBE_NS}` }).waitFor();
    const failing = page.getByTestId("failing-conditions");
    const refs = `${repository}/info/refs?service=git-upload-pack`;
    await expect
      .poll(() => failing.locator('[data-condition="RepositoryAccessible"]').textContent(), { timeout: 60_000 })
      .toContain(`RepositoryAccessible is False (PollFailed): GET ${refs}: repository not found`);
    expect(polls).toContain("/team/api.git/info/refs?service=git-upload-pack");
    const conditions = page.getByTestId("conditions");
    const condition = (type: string) => conditions.locator(`tr[data-condition="${type}"] td`);
    expect(await conditions.locator("tbody tr").first().getAttribute("data-condition")).toBe("RepositoryAccessible");
    // kpack is there and no branch could be read, so nothing waits for a build.
    expect(await condition("BuildSucceeded").nth(1).textContent()).toBe("True");
    expect(await page.locator('[data-fact="Repository"]').textContent()).toBe(repository);
    // Its environment, made by the Project controller with a host from the pool (allocated
    // although the pool's issuer does not exist), served over TLS, and phased by the
    // Environment controller: waiting for its first build.
    const prod = page.locator('tr[data-environment="prod"]');
    await prod.waitFor({ timeout: 60_000 });
    expect(await prod.locator("td").nth(1).textContent()).toBe("permanent");
    expect(await prod.locator("td").nth(3).textContent()).toBe("main");
    await expect.poll(() => prod.locator("td").nth(2).locator(".badge").textContent(), { timeout: 60_000 }).toBe("Pending");
    await expect.poll(() => prod.locator("td").nth(2).locator(".muted").textContent()).toBe("waiting for the first build");
    await expect.poll(() => prod.getByRole("link").getAttribute("href"), { timeout: 60_000 }).toBe(`https://api.${BASE_DOMAIN}`);
    const allocations = () =>
      (JSON.parse(kubectl(["get", "domainpools.kapsa-project.io", KAPSA_NAME, "-o", "json"])).status?.allocations ?? [])
        .map((a: { subdomain: string; baseDomain: string; project: string; environment: string }) => `${a.project} ${a.environment} ${a.subdomain}.${a.baseDomain}`)
        .sort();
    expect(allocations()).toEqual([`${KUBE_NS}/${PROJECT} prod api.${BASE_DOMAIN}`]);
    await page.getByTestId("live-Environments").getByText("Environments: Live").waitFor();
    await page.getByText("No builds yet").waitFor();

    // A second environment declared in the Project appears without a reload, then goes again.
    kubectl(["patch", "projects.kapsa-project.io", PROJECT, "-n", KUBE_NS, "--type=json", "-p", JSON.stringify([{ op: "add", path: "/spec/environments/-", value: { name: "staging", branch: "develop" } }])]);
    const staging = page.locator('tr[data-environment="staging"]');
    await staging.waitFor({ timeout: 60_000 });
    expect(await staging.locator("td").nth(3).textContent()).toBe("develop");
    await expect.poll(() => staging.getByRole("link").getAttribute("href"), { timeout: 60_000 }).toBe(`https://staging.api.${BASE_DOMAIN}`);
    await expect.poll(() => page.locator("tr[data-environment]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-environment")))).toEqual(["prod", "staging"]);
    // Taken out of the Project: the controller deletes it, the row goes, its host is released.
    kubectl(["patch", "projects.kapsa-project.io", PROJECT, "-n", KUBE_NS, "--type=json", "-p", JSON.stringify([{ op: "remove", path: "/spec/environments/1" }])]);
    await expect.poll(() => staging.count(), { timeout: 60_000 }).toBe(0);
    expect(await prod.count()).toBe(1);
    await expect.poll(allocations).toEqual([`${KUBE_NS}/${PROJECT} prod api.${BASE_DOMAIN}`]);

    // The repository appears with two branches, and a refresh is asked for (as
    // `kubectl annotate … kapsa-project.io/refresh`): the controller polls, and builds each
    // tracked branch with a kpack Image of its own; feature/x also gets a preview environment.
    served = { main: MAIN_COMMIT, "feature/x": FEATURE_COMMIT };
    kubectl(["annotate", "projects.kapsa-project.io", PROJECT, "-n", KUBE_NS, "kapsa-project.io/refresh=1", "--overwrite"]);
    await expect.poll(() => condition("RepositoryAccessible").nth(1).textContent(), { timeout: 60_000 }).toBe("True");
    expect(await condition("RepositoryAccessible").nth(3).textContent()).toBe("2 branch(es)");
    expect(await failing.count()).toBe(0);
    const main = page.locator('tr[data-build="build-main"]');
    const feature = page.locator('tr[data-build="build-feature-x"]');
    await main.waitFor({ timeout: 60_000 });
    await feature.waitFor();
    expect(await main.locator("td").nth(1).textContent()).toBe("main");
    expect(await main.locator("td").nth(2).textContent()).toBe(MAIN_COMMIT.slice(0, 7));
    expect(await feature.locator("td").nth(1).textContent()).toBe("feature/x");
    expect(await feature.locator("td").nth(2).textContent()).toBe(FEATURE_COMMIT.slice(0, 7));
    // kpack has not looked at them yet.
    expect(await main.locator("td").nth(3).textContent()).toBe("Pending");
    expect(await feature.locator("td").nth(3).textContent()).toBe("Pending");
    await page.getByTestId("live-Builds").getByText("Builds: Live").waitFor();
    const image = (name: string) => JSON.parse(kubectl(["get", "-n", PROJECT_NS, `images.kpack.io/${name}`, "-o", "json"]));
    expect(image("build-main").spec.tag).toBe(`${REGISTRY}/team/api:${MAIN_COMMIT.slice(0, 7)}`);
    const preview = page.locator('tr[data-environment="preview-feature-x"]');
    await preview.waitFor({ timeout: 60_000 });
    expect(await preview.locator("td").nth(1).textContent()).toBe("preview");
    expect(await preview.locator("td").nth(3).textContent()).toBe("feature/x");
    await expect.poll(() => preview.getByRole("link").getAttribute("href"), { timeout: 60_000 }).toBe(`https://feature-x.api.${BASE_DOMAIN}`);
    // Its 24 h start with the head's first sighting.
    await expect.poll(() => preview.locator("td").nth(6).textContent(), { timeout: 60_000 }).toMatch(/^in (23h|1d)$/);
    // Permanent environments first, then previews.
    expect(await page.locator("tr[data-environment]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-environment")))).toEqual(["prod", "preview-feature-x"]);

    // kpack reports (the test writes the Images' status as kpack does): feature/x fails...
    const finish = (name: string, ok: boolean) => {
      const lastTransitionTime = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      const ready = ok
        ? { type: "Ready", status: "True", lastTransitionTime }
        : { type: "Ready", status: "False", reason: "BuildFailed", message: "build step exited 1", lastTransitionTime };
      // For the Image's current generation (the revision the controller asked for).
      const status = {
        ...{ observedGeneration: image(name).metadata.generation, buildCounter: 1, latestBuildReason: "COMMIT", conditions: [ready] },
        ...(ok ? { latestImage: BUILT_IMAGE } : {}),
      };
      kubectl(["patch", "-n", PROJECT_NS, `images.kpack.io/${name}`, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status })]);
    };
    finish("build-feature-x", false);
    await expect.poll(() => feature.locator("td").nth(3).textContent()).toBe("Failed");
    expect(await feature.locator("td").nth(5).textContent()).toBe("BuildFailed: build step exited 1");
    // ...and the project says so first and prominently, in the controller's words.
    await expect
      .poll(() => failing.locator('[data-condition="BuildSucceeded"]').textContent(), { timeout: 60_000 })
      .toBe(`BuildSucceeded is False (BuildFailed): feature/x at ${FEATURE_COMMIT.slice(0, 7)}: BuildFailed: build step exited 1`);
    // main is built: prod rolls to its image, with a Deployment the Environment controller owns.
    finish("build-main", true);
    await expect.poll(() => main.locator("td").nth(3).textContent()).toBe("Succeeded");
    expect(await main.locator("td").nth(4).textContent()).toBe(`api@sha256:${BUILT_DIGEST.slice(0, 12)}`);
    await expect.poll(() => prod.locator("td").nth(4).textContent(), { timeout: 60_000 }).toBe(`api@sha256:${BUILT_DIGEST.slice(0, 12)}`);
    await expect.poll(() => page.locator('[data-fact="Latest image"]').textContent(), { timeout: 60_000 }).toBe(BUILT_IMAGE);
    expect(await page.locator('[data-fact="Latest commit"]').textContent()).toBe(MAIN_COMMIT.slice(0, 7));
    await expect.poll(() => prod.locator("td").nth(2).locator(".muted").textContent(), { timeout: 60_000 }).toBe("0/1 replicas available");
    expect(await prod.locator("td").nth(2).locator(".badge").textContent()).toBe("Pending");
    // A kubelet reports prod's pod ready (the test bench has no kubelet; the test writes the
    // pod's status as one would): prod is Running, and the project counts it.
    type Pod = { metadata: { name: string }; spec: { containers: { name: string; image: string }[] } };
    const pods = (): Pod[] => JSON.parse(kubectl(["get", "pods", "-n", PROJECT_NS, "-l", "kapsa-project.io/environment=prod", "-o", "json"])).items;
    await expect.poll(() => pods().length, { timeout: 60_000 }).toBe(1);
    const [pod] = pods();
    expect(pod.spec.containers[0].image).toBe(BUILT_IMAGE);
    const now = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const podStatus = {
      phase: "Running",
      conditions: ["PodScheduled", "Ready", "ContainersReady"].map((type) => ({ type, status: "True", lastTransitionTime: now })),
      containerStatuses: pod.spec.containers.map((c) => ({
        ...{ name: c.name, image: c.image, imageID: "", ready: true, restartCount: 0, started: true },
        state: { running: { startedAt: now } },
      })),
    };
    kubectl(["patch", "pod", pod.metadata.name, "-n", PROJECT_NS, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: podStatus })]);
    await expect.poll(() => prod.locator("td").nth(2).locator(".badge").textContent(), { timeout: 60_000 }).toBe("Running");
    expect(await prod.locator("td").nth(2).locator(".muted").textContent()).toBe(`1/1 replicas available, running ${BUILT_IMAGE}`);
    await expect.poll(() => condition("Ready").nth(3).textContent(), { timeout: 60_000 }).toBe("1/2 environment(s) running");
    // Long image references and URLs wrap: nothing is wider than the window.
    expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBe(0);
    await expectAccessible("project");
    await shot("project");

    // The list says it too: the failed build flagged, the latest image and commit.
    await page.getByRole("link", { name: "All projects" }).click();
    await expect.poll(() => row.locator("td").nth(4).textContent()).toBe("1/2");
    expect(await row.locator("td").nth(1).textContent()).toBe(`${PROJECT} build failed`);
    expect(await row.locator("td").nth(5).textContent()).toBe(`api@sha256:${BUILT_DIGEST.slice(0, 12)}`);
    expect(await row.locator("td").nth(6).textContent()).toBe(MAIN_COMMIT.slice(0, 7));
    await expectAccessible("projects with a build");
  });

  it("charts the node's metrics live, and fires, acknowledges and resolves an alert", async (ctx) => {
    if (!PG_ADMIN_URL) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_PG_ADMIN_URL is not set: the charts and alerts need the test bench's PostgreSQL");
      ctx.skip();
    }
    // The nodes list: live CPU and memory sparklines from the agent's samples (every 5 s).
    await nav("Nodes");
    const row = page.getByRole("row").filter({ has: page.getByText("Ready") });
    await expect.poll(() => row.getByTestId("spark-cpu").textContent(), { timeout: 30_000 }).toMatch(/\d %$/);
    await expect.poll(() => row.getByTestId("spark-memory").textContent()).toMatch(/\d %$/);
    expect(await row.getByRole("img", { name: /^CPU over the last \d+ samples, now / }).count()).toBe(1);
    await expectAccessible("nodes with metrics");

    // The node page's charts: history from QueryRange, then live points as samples arrive.
    await row.getByRole("link").click();
    const cpu = page.getByTestId("chart-cpu");
    const points = async () => Number(await cpu.getAttribute("data-points"));
    await expect.poll(points, { timeout: 30_000 }).toBeGreaterThan(0);
    const before = await points();
    await expect.poll(points, { timeout: 30_000 }).toBeGreaterThan(before);
    await expect.poll(() => cpu.locator("figcaption").textContent()).toMatch(/CPU\s*\d.* % now, peak /);
    expect(await page.getByTestId("chart-memory").locator("canvas").count()).toBeGreaterThan(0);
    await page.getByTestId("live-Metrics").getByText("Metrics: Live").waitFor();
    // Another window is read from the one-minute rollups.
    await page.getByRole("button", { name: "6h", exact: true }).click();
    await expect.poll(() => page.getByRole("button", { name: "6h", exact: true }).getAttribute("aria-pressed")).toBe("true");
    await expect.poll(points).toBeGreaterThan(0);
    // The benchmark's week: 7 days of one-minute rollups (what 5 s samples roll up to: 12 a
    // minute) for this node's five charted series, written where the pipeline keeps rollups,
    // before the agent's own samples, with their hours marked for the pipeline's hourly fold (as
    // a batch marks them). The 7 d window, in hours, must draw from ~168 points a series.
    const nodeId = decodeURIComponent(new URL(page.url()).pathname.split("/").pop()!);
    const weekEnd = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;
    psqlIn(
      METRICS_DB,
      `INSERT INTO metrics.samples_1m (node_id, metric, labels, bucket_ms, min, max, sum, count, last, last_ms)
       SELECT '${nodeId.replace(/'/g, "''")}', m.metric, m.labels::jsonb, b, v, v, v * 12, 12, v, b + 55000
       FROM generate_series(${weekEnd - 7 * 86_400_000}::bigint, ${weekEnd}::bigint, 60000) AS b,
            (VALUES (1, '{}'), (2, '{}'), (4, '{"mount": "/"}'), (6, '{"interface": "eth0"}'), (7, '{"interface": "eth0"}')) AS m(metric, labels),
            LATERAL (SELECT 20 + 10 * sin(b / 3600000.0) AS v) AS w
       ON CONFLICT DO NOTHING;
       INSERT INTO metrics.rollup_dirty (hour_ms)
       SELECT DISTINCT (b / 3600000) * 3600000 FROM generate_series(${weekEnd - 7 * 86_400_000}::bigint, ${weekEnd}::bigint, 60000) AS b
       ON CONFLICT DO NOTHING`,
    );
    await page.getByRole("button", { name: "7d", exact: true }).click();
    await expect.poll(points, { timeout: 30_000 }).toBeGreaterThan(160);
    await expect.poll(() => page.getByTestId("node-metrics").getAttribute("data-draw-ms")).toMatch(/^\d+$/);
    figures.node_page_7d_points_per_series = await points();
    figures.node_page_7d_query_to_draw_ms = Number(await page.getByTestId("node-metrics").getAttribute("data-draw-ms"));
    await shot("node-charts-7d");
    await page.getByRole("button", { name: "1h", exact: true }).click();
    await expectAccessible("node with charts");
    await shot("node-charts");

    // Alerts: none yet.
    await nav("Alerts");
    await page.getByText("Nothing is firing.").waitFor();
    await page.getByTestId("live-Alerts").getByText("Alerts: Live").waitFor();
    await page.getByText("No alert rule yet.").waitFor();
    // A rule the pipeline refuses: its violation comes back on the input (name is required).
    await page.getByLabel("Threshold").fill("0");
    await page.getByRole("button", { name: "Create rule" }).click();
    await expect.poll(() => page.locator("#re-name").textContent()).toBe("required");
    expect(await page.getByLabel("Name").getAttribute("aria-invalid")).toBe("true");
    // One that cannot be sent is stopped in the page.
    await page.getByLabel("Name").fill("web-e2e-cpu");
    await page.getByLabel("For at least").fill("soon");
    await page.getByRole("button", { name: "Create rule" }).click();
    await expect.poll(() => page.locator("#re-forDuration").textContent()).toMatch(/not a duration/);
    await expectAccessible("rule form with violations");
    // A rule on a low threshold: CPU ≥ 0 % holds on every sample, so it fires at once.
    await page.getByLabel("For at least").fill("0s");
    await page.getByLabel("Fires when the value is").selectOption({ label: "≥" });
    await page.getByLabel("Severity").selectOption({ label: "Critical" });
    await page.getByRole("button", { name: "Create rule" }).click();
    const rule = page.getByTestId("rules").getByRole("row").filter({ hasText: "web-e2e-cpu" });
    await expect.poll(() => rule.getByRole("cell").nth(1).textContent()).toBe("CPU usage (%) ≥ 0");
    const alert = page.getByTestId("alerts").getByRole("row").filter({ hasText: "web-e2e-cpu" });
    await expect.poll(() => alert.getByText("Firing", { exact: true }).count(), { timeout: 30_000 }).toBe(1);
    expect(await alert.getByRole("cell").nth(1).textContent()).toBe("Critical");
    // The overview counts it.
    await nav("Overview");
    await expect.poll(() => page.getByTestId("alerts-Firing").textContent()).toMatch(/^1\s*Firing/);
    await nav("Alerts");
    await expectAccessible("alerts firing");
    await shot("alerts");
    // Acknowledged by the admin, live.
    await alert.getByRole("button", { name: /^Acknowledge / }).click();
    await expect.poll(() => alert.getByText("Acknowledged", { exact: true }).count()).toBe(1);
    await alert.getByText("acknowledged by admin").waitFor();
    // A silence: refused with what to fix, then created, listed, and ended.
    await page.getByText("No silence in force.").waitFor();
    await page.getByRole("button", { name: "Create silence" }).click();
    await expect.poll(() => page.locator("#se-matchers").textContent()).toMatch(/at least one/);
    await page.getByLabel("Matches").fill(`node_id=${nodeId}`);
    await page.getByLabel("Why", { exact: true }).fill("e2e maintenance");
    await page.getByRole("button", { name: "Create silence" }).click();
    const silence = page.getByTestId("silences").getByRole("row").filter({ hasText: "e2e maintenance" });
    await expect.poll(() => silence.getByRole("cell").first().textContent()).toBe(`node_id=${nodeId}`);
    expect(await silence.getByRole("cell").nth(2).textContent()).toBe("admin");
    await expectAccessible("silences");
    await silence.getByRole("button", { name: /^End now silence / }).click();
    await page.getByText("No silence in force.").waitFor();
    // Edited to a threshold no sample reaches, the rule's alert resolves: it leaves the open
    // list and shows as resolved.
    await page.getByRole("button", { name: "Edit rule web-e2e-cpu" }).click();
    await expect.poll(() => page.getByLabel("Threshold").inputValue()).toBe("0");
    await page.getByLabel("Threshold").fill("1000");
    await page.getByRole("button", { name: "Save rule" }).click();
    await expect.poll(() => rule.getByRole("cell").nth(1).textContent()).toBe("CPU usage (%) ≥ 1000");
    await page.getByText("Nothing is firing.").waitFor({ timeout: 30_000 });
    await page.getByLabel("Show").selectOption("resolved");
    await expect.poll(() => alert.getByText("Resolved", { exact: true }).count()).toBe(1);
    // Disabled, it is kept but not evaluated.
    await page.getByRole("button", { name: "Disable rule web-e2e-cpu" }).click();
    await expect.poll(() => rule.getByRole("cell").nth(3).textContent()).toBe("no");
    // And the rule is deleted (after a confirmation).
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Delete rule web-e2e-cpu" }).click();
    await page.getByText("No alert rule yet.").waitFor();

    // A rule with a webhook channel, made in the form (on a threshold no sample reaches, so
    // nothing is delivered): a channel without a URL is refused on its input; the list names
    // the channel by type and host only, never the URL's path (a Slack URL is a credential).
    await page.getByLabel("Name").fill("web-e2e-hook");
    await page.getByLabel("Threshold").fill("1000");
    await page.getByRole("button", { name: "Add channel" }).click();
    await page.getByRole("button", { name: "Create rule" }).click();
    await expect.poll(() => page.locator("#re-channel-0-target").textContent()).toMatch(/^required: the URL to POST to/);
    expect(await page.getByLabel("URL of channel 1").getAttribute("aria-invalid")).toBe("true");
    await page.getByLabel("URL of channel 1").fill("https://hooks.example.com/persys/e2e-path");
    await page.getByLabel("Secret of channel 1").fill("e2e-signing-secret");
    await page.getByLabel("Also notify when it resolves (channel 1)").check();
    await page.getByLabel("Notify again every").fill("1h");
    await expectAccessible("rule form with a channel");
    await page.getByRole("button", { name: "Create rule" }).click();
    const hooked = page.getByTestId("rules").getByRole("row").filter({ hasText: "web-e2e-hook" });
    await expect.poll(() => hooked.getByRole("listitem").allTextContents()).toEqual(["Webhook: hooks.example.com"]);
    await hooked.getByText("again every 1h").waitFor();
    expect(await page.getByTestId("rules").textContent()).not.toContain("e2e-path");
    const secretStored = () =>
      psqlIn(METRICS_DB, "SELECT count(*) FROM metrics.alert_rules WHERE position(convert_to('e2e-signing-secret', 'UTF8') in payload) > 0").trim();
    expect(secretStored()).toBe("1");
    // Edited, the channel comes back without its write-only secret; saved with the secret left
    // blank (only "notify on resolve" changed), the stored secret is kept.
    await page.getByRole("button", { name: "Edit rule web-e2e-hook" }).click();
    await expect.poll(() => page.getByLabel("URL of channel 1").inputValue()).toBe("https://hooks.example.com/persys/e2e-path");
    expect(await page.getByLabel("Secret of channel 1").inputValue()).toBe("");
    expect(await page.getByLabel("Also notify when it resolves (channel 1)").isChecked()).toBe(true);
    await page.getByLabel("Also notify when it resolves (channel 1)").uncheck();
    await page.getByRole("button", { name: "Save rule" }).click();
    await page.getByRole("heading", { name: "New rule" }).waitFor();
    await expect.poll(() => hooked.getByRole("listitem").allTextContents()).toEqual(["Webhook: hooks.example.com"]);
    expect(secretStored()).toBe("1");
    await page.getByRole("button", { name: "Edit rule web-e2e-hook" }).click();
    await expect.poll(() => page.getByLabel("Also notify when it resolves (channel 1)").isChecked()).toBe(false);
    await page.getByRole("button", { name: "Cancel", exact: true }).click();
    page.once("dialog", (d) => void d.accept());
    await page.getByRole("button", { name: "Delete rule web-e2e-hook" }).click();
    await page.getByText("No alert rule yet.").waitFor();
  });

  it("runs a command on the node, shows its output and how it ended, and keeps it in the history", async (ctx) => {
    if (!PG_ADMIN_URL) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_PG_ADMIN_URL is not set: commands need the test bench's PostgreSQL");
      ctx.skip();
    }
    await nav("Nodes");
    await page.getByRole("row").filter({ has: page.getByText("Ready") }).getByRole("link").click();
    const section = page.getByTestId("node-commands");
    await section.getByRole("heading", { name: "Commands" }).waitFor();
    // What cannot be sent stays here, on its input.
    await section.getByLabel("Command", { exact: true }).fill(`echo "unclosed`);
    await section.getByRole("button", { name: "Run" }).click();
    await section.getByText("a quote is not closed").waitFor();
    expect(await section.getByLabel("Command", { exact: true }).getAttribute("aria-invalid")).toBe("true");
    // Allowed on this node: the output, then how it ended.
    await section.getByLabel("Command", { exact: true }).fill(`echo "hello from" the dashboard`);
    await section.getByRole("button", { name: "Run" }).click();
    await expect.poll(() => section.getByTestId("command-result").textContent(), { timeout: 30_000 }).toMatch(/^Completed\s*Completed with exit code 0 in \d/);
    expect(await section.getByTestId("command-output").textContent()).toBe("hello from the dashboard\n");
    // Not on the node's list: refused by the node's agent, nothing run.
    await section.getByLabel("Command", { exact: true }).fill("cat /etc/hostname");
    await section.getByRole("button", { name: "Run" }).click();
    await expect.poll(() => section.getByTestId("command-result").textContent(), { timeout: 30_000 }).toMatch(/Refused: .*not in this node's allowed host commands/);
    expect(await section.getByTestId("command-output").textContent()).toBe("");
    // The history, newest first, as the pipeline kept it.
    const rows = section.getByTestId("command-history").locator("tbody tr");
    await expect.poll(() => rows.locator("td:nth-child(2)").allTextContents()).toEqual(["cat /etc/hostname", "echo 'hello from' the dashboard"]);
    expect(await rows.locator("td:nth-child(4)").allTextContents()).toEqual(["Refused", "Completed"]);
    expect(await rows.locator("td:nth-child(5)").allTextContents()).toEqual(["—", "0"]);
    await expectAccessible("node commands");
    await shot("node-commands");
  });

  it("runs a command in a container workload and shows its output and how it ended", async (ctx) => {
    if (!DOCKER_IMAGE) {
      if (process.env.CI === "true") throw new Error("DOCKER_HOST / PERSYS_TEST_IMAGE are not set: exec needs the test bench's Docker engine");
      ctx.skip();
    }
    await nav("Workloads");
    await page.getByRole("link", { name: "admins-container" }).click();
    await expect.poll(() => page.getByTestId("phase").textContent(), { timeout: 60_000 }).toBe("Running");
    const exec = page.getByTestId("workload-exec");
    // What cannot be sent stays on its input.
    await exec.getByLabel("Command").fill("echo 'open");
    await exec.getByRole("button", { name: "Run", exact: true }).click();
    await expect.poll(() => page.locator("#x-command-error").textContent()).toBe("a quote is not closed");
    await exec.getByLabel("Command").fill(`echo "from exec" in the container`);
    await exec.getByRole("button", { name: "Run", exact: true }).click();
    await expect.poll(() => exec.getByTestId("exec-output").textContent(), { timeout: 30_000 }).toBe("from exec in the container\n");
    await expect.poll(() => exec.getByTestId("exec-result").textContent()).toMatch(/^Done Exited with code 0 after [\d.]+ s\.$/);
    await exec.getByLabel("Command").fill(`sh -c 'echo failing >&2; exit 3'`);
    await exec.getByRole("button", { name: "Run", exact: true }).click();
    await expect.poll(() => exec.getByTestId("exec-result").textContent(), { timeout: 30_000 }).toMatch(/^Failed Exited with code 3 /);
    expect(await exec.getByTestId("exec-output").textContent()).toBe("failing\n");
    await expectAccessible("workload exec");
    await shot("workload-exec");
  });

  it("shows the four keys and the deployments behind them on the DORA page", async (ctx) => {
    if (!PG_ADMIN_URL) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_PG_ADMIN_URL is not set: the DORA page needs the test bench's PostgreSQL");
      ctx.skip();
    }
    // Two deployments of one component, recorded by the admin through the gateway (as a CI job
    // with `persys dora record` would): a Degraded one three hours ago, restored by a Healthy
    // one an hour ago. No source repository and no SHA tag, so nothing is asked of GitHub.
    const transport = createGrpcWebTransport({ baseUrl: stack.url });
    const { accessToken } = await createClient(AuthService, transport).login({ username: "admin", password: stack.adminPassword });
    const dora = createClient(DoraService, transport);
    const record = (revision: string, healthStatus: string, agoMs: number) =>
      dora.recordDeployment(
        {
          application: "web-e2e-shop-e2e",
          cluster: "e2e",
          component: "web-e2e-shop",
          environment: DeploymentEnvironment.PRODUCTION,
          revision,
          syncStatus: "Synced",
          healthStatus,
          images: ["registry.invalid/web-e2e/shop:v1.2"],
          deployedAt: timestampFromMs(Date.now() - agoMs),
        },
        { headers: { authorization: `Bearer ${accessToken}` } },
      );
    const failed = await record("0f9e8d7c6b5a", "Degraded", 3 * 3_600_000);
    const healthy = await record("a1b2c3d4e5f6", "Healthy", 3_600_000);
    expect(failed.deployment?.status).toBe(DeploymentStatus.FAILED);
    expect(healthy.deployment?.status).toBe(DeploymentStatus.SUCCESS);

    await nav("DORA");
    await page.getByRole("heading", { level: 1, name: "DORA" }).waitFor();
    expect(await page.getByLabel("Window").inputValue()).toBe("90");
    expect(await page.getByLabel("Environment").inputValue()).toBe(String(DeploymentEnvironment.PRODUCTION));
    await page.getByLabel("Component").fill("web-e2e-shop");
    await expect.poll(() => page.getByTestId("keys-scope").textContent()).toMatch(/^2 deployments \(1 failed\) to Production of web-e2e-shop /);
    // The deployments, newest first: revision (8 characters) and status.
    const rows = page.getByTestId("deployments").locator("tr[data-deployment]");
    const cells = (n: number) => rows.locator(`td:nth-child(${n})`).allTextContents();
    await expect.poll(() => cells(5)).toEqual(["a1b2c3d4", "0f9e8d7c"]);
    expect(await cells(6)).toEqual(["Success", "Failed"]);
    expect(await cells(2)).toEqual(["web-e2e-shop", "web-e2e-shop"]);
    // The pipeline has no DevLake: once resolved (no commit found), the push is skipped.
    await expect
      .poll(
        async () => {
          await page.getByRole("button", { name: "Refresh" }).click();
          return cells(9);
        },
        { timeout: 30_000 },
      )
      .toEqual(["Skipped", "Skipped"]);
    expect(await cells(7)).toEqual(["0", "0"]);
    // The four keys: half the deployments failed; restored two hours after the failure; one
    // successful deployment in 90 days; no commit, so no lead time.
    await expect.poll(() => page.getByTestId("key-change-failure-rate-value").textContent()).toBe("50 %");
    const card = (id: string) => page.getByTestId(`key-${id}`);
    expect(await card("change-failure-rate").getByText("Low", { exact: true }).count()).toBe(1);
    expect(await card("change-failure-rate").textContent()).toContain("1 of 2 deployments failed");
    expect(await page.getByTestId("key-time-to-restore-value").textContent()).toBe("2 h");
    expect(await card("time-to-restore").textContent()).toContain("0 unrestored");
    expect(await card("time-to-restore").getByText("High", { exact: true }).count()).toBe(1);
    expect(await page.getByTestId("key-frequency-value").textContent()).toBe("0.3 per month");
    expect(await card("lead-time").getByText("not enough data", { exact: true }).count()).toBe(1);
    expect(await card("frequency").textContent()).toContain("DORA 2023 bands");
    // A deployment unfolds into its image (and why it gave no commit) and its DevLake state.
    const failedRow = rows.nth(1);
    await failedRow.getByRole("button", { name: "Details of web-e2e-shop 0f9e8d7c on e2e" }).click();
    expect(await failedRow.getByRole("button", { name: /^Details of / }).getAttribute("aria-expanded")).toBe("true");
    const details = page.getByTestId("deployment-details");
    await details.getByText("registry.invalid/web-e2e/shop:v1.2").waitFor();
    await details.getByText(/tag "v1\.2" is not a commit SHA/).waitFor();
    await details.getByText("DevLake is not configured (--devlake-url)").waitFor();
    expect(await details.textContent()).toContain("Synced, Degraded");
    // Nothing failed to reach DevLake, so there is nothing to retry.
    expect(await page.getByRole("button", { name: /^Retry DevLake push/ }).count()).toBe(0);
    await page.getByTestId("weeks-summary").click();
    await expect.poll(() => page.getByTestId("weeks").locator("tbody tr").count()).toBeGreaterThan(12);
    await expectAccessible("dora");
    await shot("dora");
    // Another environment has none of them.
    await page.getByLabel("Environment").selectOption({ label: "Staging" });
    await page.getByText(/^No deployment to Staging of web-e2e-shop in the last 90 days/).waitFor();
    await expect.poll(() => page.getByTestId("key-change-failure-rate").getByText("not enough data", { exact: true }).count()).toBe(1);
    await page.getByLabel("Environment").selectOption({ label: "Production" });
    await expect.poll(() => rows.count()).toBe(2);
  });

  it("manages users and API keys, and shows what was done in the audit log", async () => {
    await nav("Admin");
    const users = page.getByTestId("users");
    await users.locator('tr[data-user="vera"]').waitFor();
    await expectAccessible("admin");
    // A password the gateway refuses: its violation comes back under the input.
    await page.getByLabel("Username").fill("jane");
    await page.getByLabel("Initial password").fill("short");
    await page.getByRole("button", { name: "Create user" }).click();
    await expect.poll(() => page.locator("#ue-password").textContent()).toMatch(/at least 12 characters/);
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("u-password");
    await page.getByLabel("Initial password").fill("jane-password-123");
    await page.getByRole("button", { name: "Create user" }).click();
    const jane = users.locator('tr[data-user="jane"]');
    await jane.waitFor();
    expect(await jane.getByLabel("Role of jane").inputValue()).toBe(String(Role.MEMBER));
    // Demoted and disabled, as stored by the gateway (the list is read again after each change).
    await jane.getByLabel("Role of jane").selectOption({ label: "viewer" });
    await expect.poll(() => jane.getByLabel("Role of jane").inputValue()).toBe(String(Role.VIEWER));
    await jane.getByRole("button", { name: "Disable jane" }).click();
    await expect.poll(() => jane.getByText("disabled", { exact: true }).count()).toBe(1);
    const janeLogin = await createClient(AuthService, createGrpcWebTransport({ baseUrl: stack.url }))
      .login({ username: "jane", password: "jane-password-123" })
      .then(() => "logged in", (e) => ConnectError.from(e).code);
    expect(janeLogin).toBe(Code.Unauthenticated);
    await shot("admin");

    // An API key: its secret is shown once, works as a bearer token, and stops when revoked.
    await nav("API keys");
    await page.getByRole("button", { name: "Create key" }).click();
    await expect.poll(() => page.locator("#ke-name").textContent()).toMatch(/required/);
    await page.getByLabel("Name").fill("web-e2e-ci");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.getByTestId("secret").textContent())!;
    expect(secret.length).toBeGreaterThan(20);
    const whoami = () =>
      createClient(AuthService, createGrpcWebTransport({ baseUrl: stack.url }))
        .whoAmI({}, { headers: { authorization: `Bearer ${secret}` } })
        .then((r) => r.user?.username, (e) => ConnectError.from(e).code);
    expect(await whoami()).toBe("admin");
    const key = page.getByTestId("keys").getByRole("row").filter({ hasText: "web-e2e-ci" });
    await expect.poll(() => key.getByText("active", { exact: true }).count()).toBe(1);
    // An admin sees whose each key is.
    await expect.poll(() => key.getByRole("cell").nth(1).textContent()).toBe("admin");
    expect(await key.textContent()).not.toContain(secret);
    await expectAccessible("api keys with a new secret");
    await shot("api-keys");
    await page.getByRole("button", { name: "Done" }).click();
    expect(await page.getByTestId("secret").count()).toBe(0);
    page.once("dialog", (d) => void d.accept());
    await key.getByRole("button", { name: "Revoke key web-e2e-ci" }).click();
    await expect.poll(() => key.getByText("revoked", { exact: true }).count()).toBe(1);
    expect(await whoami()).toBe(Code.Unauthenticated);

    // The audit log has all of it, newest first, and filters by who acted.
    await nav("Admin");
    const audit = page.getByTestId("audit");
    await expect.poll(() => audit.locator("tbody tr").first().locator("td").nth(2).textContent()).toBe("api_key.revoke");
    const actions = await audit.locator("tbody tr td:nth-child(3)").allTextContents();
    for (const a of ["api_key.create", "user.update", "user.create", "login"]) expect(actions).toContain(a);
    // jane's only act: the login refused because she is disabled.
    await page.getByLabel("By").selectOption({ label: "jane" });
    await expect.poll(() => audit.locator("tbody tr").count()).toBe(1);
    expect(await audit.locator("tbody tr td").nth(2).textContent()).toBe("login");
    expect(await audit.locator("tbody tr td").nth(4).textContent()).toMatch(/^failed/);
    await page.getByLabel("By").selectOption({ label: "anyone" });
    await expectAccessible("audit log");
    // jane is deleted (after a confirmation).
    page.once("dialog", (d) => void d.accept());
    await jane.getByRole("button", { name: "Delete jane" }).click();
    await expect.poll(() => users.locator('tr[data-user="jane"]').count()).toBe(0);
  });

  it("logs out, and a viewer sees no write or admin action", async () => {
    // Another tab of the same session (it resumes it from the cookie): logged out with this one.
    const otherTab = await context.newPage();
    await otherTab.goto(`${stack.url}/workloads`);
    await expect.poll(() => otherTab.getByTestId("whoami").textContent()).toBe("admin (admin)");
    const before = (await context.cookies()).find((c) => c.name === "persys_refresh")?.value;
    expect(before).toBeTruthy();
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByText("You are logged out.").waitFor();
    await otherTab.getByText("You logged out in another tab.").waitFor();
    await otherTab.getByRole("heading", { name: "Log in to Persys" }).waitFor();
    await otherTab.close();
    // Logout's answer cleared the cookie...
    await expect.poll(async () => (await context.cookies()).filter((c) => c.name === "persys_refresh").length).toBe(0);
    // ...after revoking its session on the server: that token refreshes no more (one try only:
    // a successful refresh would rotate it).
    const auth = createClient(AuthService, createGrpcWebTransport({ baseUrl: stack.url }));
    const refreshed = await auth.refresh({ refreshToken: before! }).then(() => "refreshed", (e) => ConnectError.from(e).code);
    expect(refreshed).toBe(Code.Unauthenticated);
    // And a reload asks for the password.
    await page.reload();
    await page.getByRole("heading", { name: "Log in to Persys" }).waitFor();

    // The viewer logs in with the keyboard alone.
    await page.getByLabel("Username").focus();
    await page.keyboard.type(VIEWER.username);
    await page.keyboard.press("Tab");
    await page.keyboard.type(VIEWER.password);
    await page.keyboard.press("Enter");
    await expect.poll(() => page.getByTestId("whoami").textContent()).toBe("vera (viewer)");
    // The skip link (first in the page) takes the keyboard to the content; Tab walks the main
    // navigation and Enter follows a link.
    expect(await page.evaluate(() => document.querySelector("a, button, input")?.textContent)).toBe("Skip to content");
    await page.getByRole("link", { name: "Skip to content" }).focus();
    await page.keyboard.press("Enter");
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("main");
    await page.getByRole("link", { name: "Persys" }).focus();
    await page.keyboard.press("Tab");
    await expect.poll(() => page.evaluate(() => document.activeElement?.textContent)).toBe("Overview");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Nodes" }).waitFor();
    await nav("Workloads");
    await page.getByRole("link", { name: "admins-sleeper" }).click();
    await expect.poll(() => page.getByTestId("phase").textContent(), { timeout: 60_000 }).toBe("Running");
    await page.getByText("You have read-only access.").waitFor();
    for (const name of ["Stop", "Restart", "Delete", "Start"]) expect(await page.getByRole("button", { name }).count()).toBe(0);
    await nav("Workloads");
    await page.getByRole("heading", { name: "Workloads" }).waitFor();
    expect(await page.getByRole("link", { name: "Run workload" }).count()).toBe(0);
    await nav("Nodes");
    await page.getByRole("row").nth(1).getByRole("link").click();
    await page.getByRole("heading", { level: 2, name: "Instances on this node" }).waitFor();
    for (const name of ["Cordon", "Drain", "Uncordon"]) expect(await page.getByRole("button", { name }).count()).toBe(0);
    // Host metrics are the admins': no charts for a viewer, and the Alerts page says why.
    expect(await page.getByTestId("node-metrics").count()).toBe(0);
    // A workload's container metrics are the viewer's too, live (the pipeline sends a viewer
    // the containers of the samples, never the host's figures).
    if (PG_ADMIN_URL && DOCKER_IMAGE) {
      await nav("Workloads");
      await page.getByRole("link", { name: "admins-container" }).click();
      const memory = page.getByTestId("chart-ctr-memory");
      const points = async () => Number(await memory.getAttribute("data-points"));
      await expect.poll(points, { timeout: 60_000 }).toBeGreaterThan(0);
      const seen = await points();
      await expect.poll(points, { timeout: 30_000 }).toBeGreaterThan(seen);
      await expect.poll(() => memory.locator("figcaption").textContent()).toMatch(/^Memory\s*[\d.]+ (B|KiB|MiB) now, peak /);
      expect(await page.getByTestId("workload-exec").count()).toBe(0);
      await page.getByTestId("workload-metrics").getByTestId("live-Metrics").getByText("Metrics: Live").waitFor();
      await expectAccessible("workload with charts as viewer");
      await shot("workload-charts-viewer");
      await nav("Nodes");
      await page.getByRole("row").nth(1).getByRole("link").click();
      await page.getByRole("heading", { level: 2, name: "Instances on this node" }).waitFor();
    }
    expect(await page.getByTestId("node-commands").count()).toBe(0);
    await expectAccessible("node as viewer");
    await shot("node-viewer");
    await nav("Alerts");
    await page.getByText("only admins see them").waitFor();
    // No Admin link; the page itself says it is for admins. API keys are the viewer's own.
    expect(await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Admin" }).count()).toBe(0);
    await page.goto(`${stack.url}/admin`);
    await page.getByText("Users and the audit log are for admins.").waitFor();
    // DORA is read by every role: the viewer sees the deployments, and no retry.
    if (PG_ADMIN_URL) {
      await nav("DORA");
      await page.getByLabel("Component").fill("web-e2e-shop");
      await expect.poll(() => page.getByTestId("deployments").locator("tr[data-deployment]").count()).toBe(2);
      expect(await page.getByRole("button", { name: /^Retry DevLake push/ }).count()).toBe(0);
    }
    // Projects are read by every role: the viewer sees the project, its failed build, its
    // environments and its builds, and no button.
    if (KUBECONFIG) {
      await nav("Projects");
      const project = page.locator(`tr[data-project="${KUBE_NS}/${PROJECT}"]`);
      await expect.poll(() => project.locator("td").nth(4).textContent(), { timeout: 60_000 }).toBe("1/2");
      await project.getByRole("link", { name: PROJECT }).click();
      await page.getByTestId("failing-conditions").locator('[data-condition="BuildSucceeded"]').waitFor();
      await expect.poll(() => page.locator('tr[data-environment="prod"] td').nth(2).locator(".badge").textContent()).toBe("Running");
      await page.locator('tr[data-environment="preview-feature-x"]').waitFor();
      await expect.poll(() => page.locator('tr[data-build="build-feature-x"] td').nth(3).textContent()).toBe("Failed");
      expect(await page.locator('tr[data-build="build-main"] td').nth(3).textContent()).toBe("Succeeded");
      expect(await page.getByRole("main").getByRole("button").count()).toBe(0);
      await expectAccessible("project as viewer");
    }
    await nav("API keys");
    await page.getByText("No API key yet.").waitFor();
    expect(await page.getByRole("button", { name: /Acknowledge|Create rule/ }).count()).toBe(0);

    // Every user changes their own password: from the name in the header. Mistakes land on
    // their inputs (a wrong current password is the gateway's to say); the session goes on.
    const other = await auth.login({ username: VIEWER.username, password: VIEWER.password });
    await page.getByTestId("whoami").click();
    await page.getByRole("heading", { level: 1, name: "Your account" }).waitFor();
    const NEW = "a-changed-viewer-passphrase";
    await page.getByLabel("Current password").fill("not-her-password");
    await page.getByLabel("New password", { exact: true }).fill(NEW);
    await page.getByLabel("New password again").fill(`${NEW}-typo`);
    await page.getByRole("button", { name: "Change password" }).click();
    await expect.poll(() => page.locator("#pw-again-error").textContent()).toBe("differs from the new password");
    await page.getByLabel("New password again").fill(NEW);
    await page.getByRole("button", { name: "Change password" }).click();
    await expect.poll(() => page.locator("#pw-current-error").textContent()).toBe("wrong password; nothing was changed");
    await expectAccessible("account with violations");
    await page.getByLabel("Current password").fill(VIEWER.password);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByTestId("password-changed").waitFor();
    // This session goes on; the other one (logged in before) has ended.
    await nav("Overview");
    await expect.poll(() => page.getByTestId("whoami").textContent()).toBe("vera (viewer)");
    const ended = await auth.refresh({ refreshToken: other.refreshToken }).then(() => "refreshed", (e) => ConnectError.from(e).code);
    expect(ended).toBe(Code.Unauthenticated);
    await expect.poll(() => auth.login({ username: VIEWER.username, password: NEW }).then((r) => r.user?.username)).toBe("vera");

    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("heading", { name: "Log in to Persys" }).waitFor();
    expect(cspViolations).toEqual([]);
  });

  // Benchmark (docs/benchmarks.md): the Nodes page with 100 more real agents, each shipping its
  // host metrics every 5 s, as an admin sees it: the first page of 50 rows (of 101 nodes), each
  // with a CPU and a memory sparkline, while the page's one WatchHostMetrics stream carries
  // every node's samples. Frame timing is taken over 30 s with the agents running, then over
  // 10 s with them frozen (SIGSTOP: nothing arrives, the same page at rest). The figures are
  // printed, not asserted; the test asserts that every visible sparkline gained samples.
  it("keeps the sparklines of 100 agents' nodes live (benchmark: frames while they ship metrics)", async (ctx) => {
    if (!PG_ADMIN_URL) {
      if (process.env.CI === "true") throw new Error("PERSYS_TEST_PG_ADMIN_URL is not set: the sparklines need the test bench's PostgreSQL");
      ctx.skip();
    }
    const AGENTS = 100;
    const transport = createGrpcWebTransport({ baseUrl: stack.url });
    const { accessToken } = await createClient(AuthService, transport).login({ username: "admin", password: stack.adminPassword });
    const headers = { authorization: `Bearer ${accessToken}` };
    const sched = createClient(SchedulerService, transport);
    const { token } = await sched.createJoinToken({ description: "web e2e: sparklines benchmark", maxUses: AGENTS }, { headers });
    const agents = await startAgents(stack, token, AGENTS, "bench", join(stack.state, "..", "bench-agents"));
    try {
      // Every agent joined and is Ready (connected and heartbeating).
      let ready = 0;
      const deadline = Date.now() + 180_000;
      for (;;) {
        const { nodes } = await sched.listNodes({ page: { pageSize: 1000 } }, { headers });
        ready = nodes.filter((n) => n.hostname.startsWith("bench-") && nodeStateLabel(n.state) === "Ready").length;
        if (ready === AGENTS) break;
        if (Date.now() > deadline) throw new Error(`${ready} of ${AGENTS} agents' nodes Ready after 180 s; the first agent said:\n${agents.log(0)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      await page.goto(`${stack.url}/nodes`);
      const login = page.getByRole("heading", { name: "Log in to Persys" });
      await login.or(page.getByTestId("whoami")).first().waitFor();
      if (await login.isVisible()) {
        await page.getByLabel("Username").fill("admin");
        await page.getByLabel("Password").fill(stack.adminPassword);
        await page.getByRole("button", { name: "Log in" }).click();
      }
      await expect.poll(() => page.getByTestId("whoami").textContent()).toBe("admin (admin)");
      await page.getByRole("heading", { level: 1, name: "Nodes" }).waitFor();
      await page.getByText(`Page 1 of ${Math.ceil((AGENTS + 1) / 50)}`).waitFor();
      const rows = page.locator("main tbody tr");
      expect(await rows.count()).toBe(50);
      // Each visible node's samples (CPU and memory) arrive: 100 sparklines on the page.
      await expect.poll(() => page.getByTestId("spark-cpu").count(), { timeout: 60_000 }).toBe(50);
      await expect.poll(() => page.getByTestId("spark-memory").count(), { timeout: 30_000 }).toBe(50);
      // How many samples each visible CPU sparkline shows ("CPU over the last N samples, …").
      const samples = () =>
        rows.evaluateAll((trs) =>
          trs.map((tr) => {
            const label = tr.querySelector('[data-testid="spark-cpu"] svg')?.getAttribute("aria-label") ?? "";
            return Number(/over the last (\d+) samples/.exec(label)?.[1] ?? 0);
          }),
        );
      const before = await samples();
      const live = await measure(page, 30_000);
      const after = await samples();
      // Every visible sparkline gained samples while it was measured.
      expect(after.filter((n, i) => n <= before[i]), `samples before ${before}, after ${after}`).toEqual([]);
      await shot("nodes-100-agents");
      // The same page at rest: the agents frozen, nothing arriving (within the lease's 15 s,
      // so no node turns NotReady meanwhile).
      agents.pause();
      const idle = await measure(page, 10_000);
      agents.resume();
      // The machine's load alone: the agents running, the page on one without streams.
      await page.getByTestId("whoami").click();
      await page.getByRole("heading", { level: 1, name: "Your account" }).waitFor();
      const loadOnly = await measure(page, 10_000);
      figures.nodes_bench_agents_shipping = AGENTS;
      figures.nodes_bench_rows_on_page = 50;
      for (const [k, v] of Object.entries(live)) figures[`nodes_live_${k}`] = v;
      for (const [k, v] of Object.entries(idle)) figures[`nodes_idle_${k}`] = v;
      for (const [k, v] of Object.entries(loadOnly)) figures[`nodes_agents_only_${k}`] = v;
      figures.nodes_live_samples_gained_min = Math.min(...after.map((n, i) => n - before[i]));
    } finally {
      await agents.stop();
    }
  }, 300_000);
});
