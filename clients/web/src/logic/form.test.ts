import { describe, expect, it } from "vitest";
import { RestartPolicy } from "../gen/persys/scheduler/v1/workload_pb";
import { assignViolations } from "./errors";
import { buildRequest, EMPTY_FORM, FORM_FIELDS, parseCpuMillis, parseMemoryBytes, shellWords } from "./form";

describe("shellWords", () => {
  it("splits like a shell without expanding", () => {
    expect(shellWords(`sh -c 'echo "hi there"; sleep 1'`)).toEqual(["sh", "-c", `echo "hi there"; sleep 1`]);
    expect(shellWords(`a "b c" d\\ e "" '$HOME'`)).toEqual(["a", "b c", "d e", "", "$HOME"]);
    expect(shellWords("   ")).toEqual([]);
    expect(shellWords(`echo 'open`)).toBeNull();
  });
});

describe("quantities", () => {
  it("reads CPU and memory as the CLI does", () => {
    expect(parseCpuMillis("250m")).toBe(250n);
    expect(parseCpuMillis("0.5")).toBe(500n);
    expect(parseCpuMillis("2")).toBe(2000n);
    expect(parseCpuMillis("1.5m")).toBeNull();
    expect(parseCpuMillis("lots")).toBeNull();
    expect(parseMemoryBytes("128Mi")).toBe(134217728n);
    expect(parseMemoryBytes("1G")).toBe(1000000000n);
    expect(parseMemoryBytes("1.5Gi")).toBe(1610612736n);
    expect(parseMemoryBytes("12 parsecs")).toBeNull();
  });
});

describe("buildRequest", () => {
  it("builds the request the form describes", () => {
    const r = buildRequest(
      {
        ...EMPTY_FORM,
        name: " web ",
        image: "process://",
        command: "sh -c 'echo hi; sleep 60'",
        env: "A=1\nB=x=y\n",
        ports: "8081:80, 9000",
        cpu: "250m",
        memory: "64Mi",
        replicas: "2",
        restart: "on-failure",
      },
      "req-1",
    );
    expect(r.violations).toEqual([]);
    const req = r.request!;
    expect(req.name).toBe("web");
    expect(req.requestId).toBe("req-1");
    expect(req.spec?.command).toEqual(["sh", "-c", "echo hi; sleep 60"]);
    expect(req.spec?.env.map((e) => [e.name, e.value])).toEqual([
      ["A", "1"],
      ["B", "x=y"],
    ]);
    expect(req.spec?.ports.map((p) => [p.hostPort, p.containerPort])).toEqual([
      [8081, 80],
      [0, 9000],
    ]);
    expect(req.spec?.resources?.requests?.cpuMillis).toBe(250n);
    expect(req.spec?.resources?.requests?.memoryBytes).toBe(67108864n);
    expect(req.spec?.replicas).toBe(2);
    expect(req.spec?.restartPolicy).toBe(RestartPolicy.ON_FAILURE);
  });

  it("leaves resources unset when none are asked for", () => {
    const r = buildRequest({ ...EMPTY_FORM, image: "busybox" }, "x");
    expect(r.request?.spec?.resources).toBeUndefined();
    expect(r.request?.spec?.replicas).toBe(1);
  });

  it("refuses what cannot be sent, under the inputs it came from", () => {
    const r = buildRequest({ ...EMPTY_FORM, command: "echo 'x", env: "NOEQUALS", ports: "http", cpu: "fast", memory: "lots" }, "x");
    expect(r.request).toBeNull();
    const { byInput, other } = assignViolations(r.violations, FORM_FIELDS);
    expect(Object.keys(byInput).sort()).toEqual(["command", "cpu", "env", "memory", "ports"]);
    expect(other).toEqual([]);
  });

  it("maps the server's violations for the scheduler's paths onto the inputs", () => {
    const { byInput, other } = assignViolations(
      [
        { field: "name", description: "n" },
        { field: "spec.image", description: "i" },
        { field: "spec.env[0].name", description: "e" },
        { field: "spec.ports[1].container_port", description: "p" },
        { field: "spec.resources.requests", description: "r" },
        { field: "spec.replicas", description: "x" },
        { field: "spec.network", description: "admins only" },
      ],
      FORM_FIELDS,
    );
    expect(byInput).toEqual({ name: ["n"], image: ["i"], env: ["e"], ports: ["p"], cpu: ["r"], replicas: ["x"] });
    expect(other.map((o) => o.field)).toEqual(["spec.network"]);
  });
});
