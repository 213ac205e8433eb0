// Names and grouping of node states and workload phases, for the overview's counts and the
// lists' badges.
import { NodeState, type Node } from "../gen/persys/scheduler/v1/node_pb";
import { WorkloadPhase, type Workload } from "../gen/persys/scheduler/v1/workload_pb";

/** Node states in the order the overview lists them (healthy first). */
export const NODE_STATES: readonly NodeState[] = [
  NodeState.READY,
  NodeState.CORDONED,
  NodeState.DRAINING,
  NodeState.NOT_READY,
  NodeState.DOWN,
];

/** Workload phases in lifecycle order, then the ends. */
export const WORKLOAD_PHASES: readonly WorkloadPhase[] = [
  WorkloadPhase.PENDING,
  WorkloadPhase.SCHEDULED,
  WorkloadPhase.STARTING,
  WorkloadPhase.RUNNING,
  WorkloadPhase.SUCCEEDED,
  WorkloadPhase.FAILED,
  WorkloadPhase.STOPPED,
  WorkloadPhase.LOST,
];

const NODE_LABELS: Record<NodeState, string> = {
  [NodeState.UNSPECIFIED]: "Unknown",
  [NodeState.READY]: "Ready",
  [NodeState.NOT_READY]: "Not ready",
  [NodeState.DOWN]: "Down",
  [NodeState.CORDONED]: "Cordoned",
  [NodeState.DRAINING]: "Draining",
};

const PHASE_LABELS: Record<WorkloadPhase, string> = {
  [WorkloadPhase.UNSPECIFIED]: "Unknown",
  [WorkloadPhase.PENDING]: "Pending",
  [WorkloadPhase.SCHEDULED]: "Scheduled",
  [WorkloadPhase.STARTING]: "Starting",
  [WorkloadPhase.RUNNING]: "Running",
  [WorkloadPhase.SUCCEEDED]: "Succeeded",
  [WorkloadPhase.FAILED]: "Failed",
  [WorkloadPhase.STOPPED]: "Stopped",
  [WorkloadPhase.LOST]: "Lost",
};

/** Tone of a badge: how worried the reader should be. */
export type Tone = "ok" | "busy" | "warn" | "bad" | "idle";

/** Returns the display name of a node state. */
export function nodeStateLabel(s: NodeState): string {
  return NODE_LABELS[s] ?? "Unknown";
}

/** Returns the display name of a workload phase. */
export function phaseLabel(p: WorkloadPhase): string {
  return PHASE_LABELS[p] ?? "Unknown";
}

/** Returns the tone of a node state. */
export function nodeTone(s: NodeState): Tone {
  switch (s) {
    case NodeState.READY:
      return "ok";
    case NodeState.CORDONED:
    case NodeState.DRAINING:
      return "warn";
    case NodeState.NOT_READY:
    case NodeState.DOWN:
      return "bad";
    default:
      return "idle";
  }
}

/** Returns the tone of a workload phase. */
export function phaseTone(p: WorkloadPhase): Tone {
  switch (p) {
    case WorkloadPhase.RUNNING:
    case WorkloadPhase.SUCCEEDED:
      return "ok";
    case WorkloadPhase.PENDING:
    case WorkloadPhase.SCHEDULED:
    case WorkloadPhase.STARTING:
      return "busy";
    case WorkloadPhase.FAILED:
    case WorkloadPhase.LOST:
      return "bad";
    default:
      return "idle";
  }
}

/** One row of a count-by-state summary. */
export interface Count<K> {
  key: K;
  label: string;
  count: number;
  tone: Tone;
}

/** Counts nodes by state, every known state listed (zeros included), unknown states last. */
export function countNodes(nodes: Iterable<Node>): Count<NodeState>[] {
  const counts = new Map<NodeState, number>();
  for (const n of nodes) counts.set(n.state, (counts.get(n.state) ?? 0) + 1);
  const keys = [...NODE_STATES, ...[...counts.keys()].filter((k) => !NODE_STATES.includes(k))];
  return keys.map((key) => ({ key, label: nodeStateLabel(key), count: counts.get(key) ?? 0, tone: nodeTone(key) }));
}

/** Returns a workload's aggregated phase. */
export function phaseOf(w: Workload): WorkloadPhase {
  return w.status?.phase ?? WorkloadPhase.UNSPECIFIED;
}

/** Counts workloads by aggregated phase, every known phase listed, unknown phases last. */
export function countWorkloads(workloads: Iterable<Workload>): Count<WorkloadPhase>[] {
  const counts = new Map<WorkloadPhase, number>();
  for (const w of workloads) counts.set(phaseOf(w), (counts.get(phaseOf(w)) ?? 0) + 1);
  const keys = [...WORKLOAD_PHASES, ...[...counts.keys()].filter((k) => !WORKLOAD_PHASES.includes(k))];
  return keys.map((key) => ({ key, label: phaseLabel(key), count: counts.get(key) ?? 0, tone: phaseTone(key) }));
}
