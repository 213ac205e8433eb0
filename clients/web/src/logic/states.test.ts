import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { NodeSchema, NodeState } from "../gen/persys/scheduler/v1/node_pb";
import { WorkloadPhase, WorkloadSchema, WorkloadStatusSchema } from "../gen/persys/scheduler/v1/workload_pb";
import { countNodes, countWorkloads, phaseLabel, phaseTone } from "./states";

const node = (state: NodeState) => create(NodeSchema, { id: String(Math.random()), state });
const workload = (phase?: WorkloadPhase) =>
  create(WorkloadSchema, { status: phase === undefined ? undefined : create(WorkloadStatusSchema, { phase }) });

describe("counts by state", () => {
  it("counts nodes per state and lists every state, healthy first", () => {
    const c = countNodes([node(NodeState.READY), node(NodeState.READY), node(NodeState.DOWN)]);
    expect(c.map((r) => [r.label, r.count])).toEqual([
      ["Ready", 2],
      ["Cordoned", 0],
      ["Draining", 0],
      ["Not ready", 0],
      ["Down", 1],
    ]);
    expect(c.find((r) => r.key === NodeState.DOWN)?.tone).toBe("bad");
  });

  it("counts workloads by aggregated phase; a workload without status is Unknown, listed last", () => {
    const c = countWorkloads([workload(WorkloadPhase.RUNNING), workload(WorkloadPhase.PENDING), workload()]);
    const byLabel = Object.fromEntries(c.map((r) => [r.label, r.count]));
    expect(byLabel).toMatchObject({ Running: 1, Pending: 1, Failed: 0, Unknown: 1 });
    expect(c.at(-1)?.label).toBe("Unknown");
    expect(c.reduce((s, r) => s + r.count, 0)).toBe(3);
  });

  it("names and tones phases", () => {
    expect(phaseLabel(WorkloadPhase.LOST)).toBe("Lost");
    expect(phaseTone(WorkloadPhase.STARTING)).toBe("busy");
    expect(phaseTone(WorkloadPhase.FAILED)).toBe("bad");
  });
});
