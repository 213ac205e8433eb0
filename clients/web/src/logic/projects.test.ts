import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { ConditionSchema, ConditionStatus, WatchEventType } from "../gen/persys/common/v1/common_pb";
import { BuildPhase, BuildSchema } from "../gen/persys/reconciler/v1/build_pb";
import { EnvironmentPhase, EnvironmentSchema } from "../gen/persys/reconciler/v1/environment_pb";
import { EnvironmentType, type Project, ProjectSchema } from "../gen/persys/reconciler/v1/project_pb";
import {
  buildPhaseLabel,
  buildPhaseTone,
  byEnvironment,
  byKey,
  byNewestBuild,
  conditionBadge,
  environmentPhaseLabel,
  environmentPhaseTone,
  environmentTypeLabel,
  environmentUrl,
  expiresText,
  failingConditions,
  objectKey,
  orderedConditions,
  projectRow,
  shortCommit,
  shortImage,
  watchEvent,
} from "./projects";
import { WatchState } from "./watch";

const condition = (type: string, status: ConditionStatus, reason = "", message = "") =>
  create(ConditionSchema, { type, status, reason, message });

const project = (ns: string, name: string, extra: object = {}) => create(ProjectSchema, { metadata: { namespace: ns, name }, ...extra });

describe("projects", () => {
  it("makes a row of what the controller reported", () => {
    const p = project("team-a", "api", {
      spec: { repository: { url: "https://git.example.com/api.git" } },
      status: {
        latestCommit: "0123456789abcdef0123456789abcdef01234567",
        latestImage: "registry.example.com/team/api@sha256:aaaa",
        environments: [
          { name: "prod", ready: true, type: EnvironmentType.PERMANENT },
          { name: "preview-x", ready: false, type: EnvironmentType.PREVIEW },
        ],
        conditions: [
          condition("Ready", ConditionStatus.TRUE, "Reconciled", "1/2 environment(s) running"),
          condition("BuildSucceeded", ConditionStatus.FALSE, "BuildFailed", "feature/x at 89abcde: build step exited 1"),
        ],
      },
    });
    expect(projectRow(p)).toEqual({
      key: "team-a/api",
      namespace: "team-a",
      name: "api",
      repository: "https://git.example.com/api.git",
      ready: { label: "True", tone: "ok", reason: "Reconciled", message: "1/2 environment(s) running" },
      environments: "1/2",
      latestImage: "registry.example.com/team/api@sha256:aaaa",
      latestCommit: "0123456",
      buildFailed: true,
    });
  });

  it("says a project the controller has not reached yet is not reconciled", () => {
    const row = projectRow(project("a", "b"));
    expect([row.ready.label, row.ready.tone, row.environments, row.latestCommit, row.buildFailed]).toEqual(["Not reconciled", "idle", "0/0", "", false]);
    expect(conditionBadge(condition("Ready", ConditionStatus.FALSE))).toEqual({ label: "False", tone: "bad" });
    expect(conditionBadge(condition("Ready", ConditionStatus.UNKNOWN))).toEqual({ label: "Unknown", tone: "warn" });
  });

  it("puts failing conditions first, BuildSucceeded=False among them", () => {
    const list = [
      condition("Ready", ConditionStatus.TRUE),
      condition("RepositoryAccessible", ConditionStatus.FALSE, "PollFailed", "unreachable"),
      condition("BuildSucceeded", ConditionStatus.FALSE, "BuildFailed"),
    ];
    expect(orderedConditions(list).map((c) => c.type)).toEqual(["BuildSucceeded", "RepositoryAccessible", "Ready"]);
    expect(failingConditions(list).map((c) => c.reason)).toEqual(["BuildFailed", "PollFailed"]);
    expect(failingConditions([condition("Ready", ConditionStatus.TRUE)])).toEqual([]);
  });

  it("shortens commits and images, keeping what tells them apart", () => {
    expect(shortCommit("89abcdef0123")).toBe("89abcde");
    expect(shortCommit("")).toBe("");
    expect(shortImage("registry.example.com/team/api@sha256:0123456789abcdef0123")).toBe("api@sha256:0123456789ab");
    expect(shortImage("registry.example.com:5000/team/api:89abcde")).toBe("api:89abcde");
    expect(shortImage("")).toBe("");
  });

  it("orders projects by namespace and name", () => {
    const list = [project("b", "a"), project("a", "z"), project("a", "b")].sort(byKey);
    expect(list.map(objectKey)).toEqual(["a/b", "a/z", "b/a"]);
  });

  it("folds the reconciler's watch events into the projects shown", () => {
    const s = new WatchState<Project>(objectKey);
    s.open();
    const api = project("team-a", "api");
    expect(s.apply(watchEvent(WatchEventType.ADDED, "100", api))).toBe(false);
    expect(s.apply(watchEvent<Project>(WatchEventType.BOOKMARK, "105", undefined))).toBe(true);
    expect([...s.items.keys()]).toEqual(["team-a/api"]);
    const failing = project("team-a", "api", { status: { conditions: [condition("Ready", ConditionStatus.FALSE)] } });
    expect(s.apply(watchEvent(WatchEventType.MODIFIED, "120", failing))).toBe(true);
    expect(projectRow(s.items.get("team-a/api")!).ready.label).toBe("False");
    expect(s.apply(watchEvent(WatchEventType.DELETED, "130", failing))).toBe(true);
    expect(s.items.size).toBe(0);
    // Resumed after the last resource version; an unreadable one starts over.
    expect(s.open()).toBe(130n);
    expect(watchEvent(WatchEventType.ADDED, "opaque/1", api).revision).toBe(0n);
  });
});

describe("environments", () => {
  const env = (name: string, type: EnvironmentType, extra: object = {}) =>
    create(EnvironmentSchema, { metadata: { namespace: "team-a-api", name }, spec: { type }, ...extra });

  it("names and colours phases and types", () => {
    expect([environmentPhaseLabel(EnvironmentPhase.RUNNING), environmentPhaseTone(EnvironmentPhase.RUNNING)]).toEqual(["Running", "ok"]);
    expect([environmentPhaseLabel(EnvironmentPhase.BUILDING), environmentPhaseTone(EnvironmentPhase.BUILDING)]).toEqual(["Building", "busy"]);
    expect(environmentPhaseTone(EnvironmentPhase.FAILED)).toBe("bad");
    expect(environmentPhaseLabel(undefined)).toBe("Not reconciled");
    expect(environmentTypeLabel(EnvironmentType.PREVIEW)).toBe("preview");
    expect(environmentTypeLabel(EnvironmentType.PERMANENT)).toBe("permanent");
  });

  it("lists permanent environments first, then previews, by name", () => {
    const list = [
      env("preview-b", EnvironmentType.PREVIEW),
      env("prod", EnvironmentType.PERMANENT),
      env("preview-a", EnvironmentType.PREVIEW),
      env("dev", EnvironmentType.PERMANENT),
    ].sort(byEnvironment);
    expect(list.map((e) => e.metadata?.name)).toEqual(["dev", "prod", "preview-a", "preview-b"]);
  });

  it("says when a preview goes", () => {
    const now = 1_000_000_000;
    expect(expiresText(now + 40_000, now)).toBe("in 40s");
    expect(expiresText(now + 12 * 60_000, now)).toBe("in 12m");
    expect(expiresText(now + 23 * 3_600_000 + 59 * 60_000, now)).toBe("in 23h");
    expect(expiresText(now + 7 * 86_400_000, now)).toBe("in 7d");
    expect(expiresText(now - 1, now)).toBe("expired");
  });

  it("links an http(s) URL only", () => {
    expect(environmentUrl(env("prod", EnvironmentType.PERMANENT, { status: { urls: ["https://api.apps.example.com"] } }))).toBe(
      "https://api.apps.example.com",
    );
    expect(environmentUrl(env("prod", EnvironmentType.PERMANENT, { status: { urls: ["javascript:alert(1)"] } }))).toBeUndefined();
    expect(environmentUrl(env("prod", EnvironmentType.PERMANENT))).toBeUndefined();
  });
});

describe("builds", () => {
  const build = (name: string, ms?: { started?: number; finished?: number; created?: number }) =>
    create(BuildSchema, {
      metadata: { namespace: "team-a-api", name, creationTimestamp: ms?.created ? timestampFromMs(ms.created) : undefined },
      startedAt: ms?.started ? timestampFromMs(ms.started) : undefined,
      finishedAt: ms?.finished ? timestampFromMs(ms.finished) : undefined,
    });

  it("names and colours phases", () => {
    expect([buildPhaseLabel(BuildPhase.FAILED), buildPhaseTone(BuildPhase.FAILED)]).toEqual(["Failed", "bad"]);
    expect([buildPhaseLabel(BuildPhase.SUCCEEDED), buildPhaseTone(BuildPhase.SUCCEEDED)]).toEqual(["Succeeded", "ok"]);
    expect(buildPhaseTone(BuildPhase.PENDING)).toBe("busy");
    expect(buildPhaseLabel(undefined)).toBe("Unknown");
  });

  it("orders newest first by the last change of state, as ListBuilds does", () => {
    const list = [
      build("build-old", { finished: 1_000 }),
      build("build-running", { started: 5_000 }),
      build("build-new", { finished: 9_000 }),
      build("build-queued", { created: 3_000 }),
      build("build-b"),
      build("build-a"),
    ].sort(byNewestBuild);
    expect(list.map((b) => b.metadata?.name)).toEqual(["build-new", "build-running", "build-queued", "build-old", "build-a", "build-b"]);
  });
});
