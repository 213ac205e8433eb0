import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FindingSchema, FindingSeverity } from "../gen/persys/analyzer/v1/finding_pb";
import { EnvNeed, EnvSource } from "../gen/persys/analyzer/v1/persona_pb";
import { ApplicationPersonaSchema, PersonaPhase } from "../gen/persys/reconciler/v1/application_persona_pb";
import { ClusterEnvironment, ClusterPersonaSchema, ClusterPhase } from "../gen/persys/reconciler/v1/cluster_persona_pb";
import {
  clusterFacts,
  clusterPhaseLabel,
  clusterPhaseTone,
  baselineText,
  byNamespaceAndName,
  envRows,
  filterPersonas,
  issueCounts,
  namespacesOf,
  personaPhaseLabel,
  personaPhaseTone,
  resourceVersion,
} from "./personas";

const persona = (ns: string, name: string, extra: object = {}) =>
  create(ApplicationPersonaSchema, { metadata: { namespace: ns, name }, ...extra });

describe("personas", () => {
  it("names and colours phases, an unreconciled persona included", () => {
    expect(personaPhaseLabel(PersonaPhase.ACTIVE)).toBe("Active");
    expect(personaPhaseTone(PersonaPhase.FAILED)).toBe("bad");
    expect(personaPhaseLabel(undefined)).toBe("Not reconciled");
    expect(personaPhaseTone(PersonaPhase.UNSPECIFIED)).toBe("idle");
  });

  it("counts errors and warnings, not infos", () => {
    const f = (severity: FindingSeverity) => create(FindingSchema, { severity });
    const p = persona("a", "b", {
      status: { validation: { issues: [f(FindingSeverity.ERROR), f(FindingSeverity.WARNING), f(FindingSeverity.WARNING), f(FindingSeverity.INFO)] } },
    });
    expect(issueCounts(p)).toEqual({ errors: 1, warnings: 2 });
    expect(issueCounts(persona("a", "c"))).toEqual({ errors: 0, warnings: 0 });
  });

  it("writes the baseline in one line, leaving out what is missing", () => {
    const p = persona("a", "b", {
      status: { learned: { resourceBaseline: { avgCpu: "250m", peakCpu: "500m", avgMemory: "258Mi", peakMemory: "512Mi" } } },
    });
    expect(baselineText(p)).toBe("CPU 250m avg / 500m peak · memory 258Mi avg / 512Mi peak");
    const memOnly = persona("a", "b", { status: { learned: { resourceBaseline: { peakMemory: "1.5Gi" } } } });
    expect(baselineText(memOnly)).toBe("memory – avg / 1.5Gi peak");
    expect(baselineText(persona("a", "b"))).toBe("");
  });

  it("orders by namespace, then name", () => {
    const list = [persona("b", "a"), persona("a", "z"), persona("a", "b")].sort(byNamespaceAndName);
    expect(list.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`)).toEqual(["a/b", "a/z", "b/a"]);
  });

  it("reads resource versions as revisions, an unreadable one as a fresh start", () => {
    expect(resourceVersion("12345")).toBe(12345n);
    expect(resourceVersion("")).toBe(0n);
    expect(resourceVersion("a/b")).toBe(0n);
  });

  it("filters by namespace, phase and text, and lists the namespaces once", () => {
    const list = [
      persona("shop", "web", { status: { phase: PersonaPhase.ACTIVE } }),
      persona("shop", "cart", { status: { phase: PersonaPhase.FAILED } }),
      persona("blog", "web"),
    ];
    const names = (ps: typeof list) => ps.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`);
    expect(names(filterPersonas(list, { namespace: "shop" }))).toEqual(["shop/web", "shop/cart"]);
    expect(names(filterPersonas(list, { phase: PersonaPhase.FAILED }))).toEqual(["shop/cart"]);
    expect(names(filterPersonas(list, { phase: PersonaPhase.UNSPECIFIED }))).toEqual(["blog/web"]);
    expect(names(filterPersonas(list, { text: " WEB " }))).toEqual(["shop/web", "blog/web"]);
    expect(names(filterPersonas(list, { text: "blo" }))).toEqual(["blog/web"]);
    expect(filterPersonas(list, {}).length).toBe(3);
    expect(namespacesOf(list)).toEqual(["blog", "shop"]);
  });

  it("lists the environment the persona records, saying what is missing and never a value", () => {
    const p = persona("shop", "ledger", {
      spec: {
        name: "ledger",
        env: [
          { name: "DATABASE_URL", need: EnvNeed.REQUIRED, source: EnvSource.SECRET, readAt: "src/app.yml:7" },
          { name: "KAFKA", need: EnvNeed.DEFAULTED, source: EnvSource.CONFIG_MAP, defaultValue: "kafka:9092", readAt: "src/app.yml:10" },
          { name: "REGION", need: EnvNeed.REQUIRED, source: EnvSource.MISSING, readAt: "src/app.yml:15" },
          { name: "TZ", source: EnvSource.IMAGE },
          { name: "DEBUG", need: EnvNeed.OPTIONAL, source: EnvSource.UNSET, readAt: "main.py:3" },
        ],
      },
    });
    expect(envRows(p)).toEqual([
      { name: "DATABASE_URL", need: "required", source: "Secret ledger-secrets", missing: false, detail: "src/app.yml:7" },
      { name: "KAFKA", need: "defaulted", source: "ConfigMap ledger-config", missing: false, detail: "default kafka:9092 · src/app.yml:10" },
      { name: "REGION", need: "required", source: "nothing yet: add it to ConfigMap ledger-config", missing: true, detail: "src/app.yml:15" },
      { name: "TZ", need: "set, not read", source: "the image", missing: false, detail: "" },
      { name: "DEBUG", need: "optional", source: "not set", missing: false, detail: "main.py:3" },
    ]);
    expect(envRows(persona("shop", "bare"))).toEqual([]);
  });
});

describe("cluster persona", () => {
  it("lists what discovery found, in words", () => {
    const cp = create(ClusterPersonaSchema, {
      metadata: { name: "prod" },
      spec: { environment: ClusterEnvironment.PRODUCTION },
      status: {
        phase: ClusterPhase.READY,
        platform: "Kind",
        kubernetesVersion: "v1.37.2",
        nodes: [{ name: "a", ready: true }, { name: "b", ready: false }],
        resourceSummary: { cpuUtilization: 42.4, allocatableCpu: "8", memoryUtilization: 10, allocatableMemory: "32Gi", runningPods: 12, totalPods: 220 },
        namespaces: { total: 9, active: 8, withPersonas: 3 },
        applicationCount: 5,
        addons: [
          { name: "argocd", installed: true, version: "v2.13", healthy: true },
          { name: "prometheus", installed: true, healthy: false },
          { name: "istio", installed: false },
        ],
      },
    });
    expect(clusterFacts(cp)).toEqual([
      ["Environment", "production"],
      ["Platform", "Kind v1.37.2"],
      ["Nodes", "1/2 ready"],
      ["CPU", "42 % of 8 requested"],
      ["Memory", "10 % of 32Gi requested"],
      ["Pods", "12 running of 220 slots"],
      ["Namespaces", "8 active, 3 with personas"],
      ["Applications", "5"],
      ["Add-ons", "argocd v2.13, prometheus (unhealthy)"],
    ]);
    expect([clusterPhaseLabel(ClusterPhase.READY), clusterPhaseTone(ClusterPhase.READY)]).toEqual(["Ready", "ok"]);
    expect(clusterPhaseLabel(undefined)).toBe("Not discovered");
  });

  it("says the environment even before the first discovery", () => {
    expect(clusterFacts(create(ClusterPersonaSchema, { metadata: { name: "new" } }))).toEqual([["Environment", "development"]]);
  });
});
