// Host metrics for charts: the time windows a node page offers (each with a server-side step,
// so a week is a few hundred points, never 120,000), the values a live sample carries (network
// rates from consecutive counters, as the pipeline computes them), and series merged onto one
// time axis in the shape uPlot draws.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { HostMetrics } from "../gen/persys/metrics/v1/host_metrics_pb";
import type { Series } from "../gen/persys/metrics/v1/query_service_pb";

/** A time window of the node page's charts. */
export interface Window {
  label: string;
  /** Length, in seconds. */
  rangeS: number;
  /** One point per step, in seconds (whole minutes from 6 h on, whole hours for 7 d, so rollups serve them). */
  stepS: number;
}

/**
 * 1 h of raw 15 s steps; 6 h and 24 h from one-minute rollups; 7 d in hours, from one-hour
 * rollups. At most 360 points.
 */
export const WINDOWS: readonly Window[] = [
  { label: "1h", rangeS: 3600, stepS: 15 },
  { label: "6h", rangeS: 6 * 3600, stepS: 60 },
  { label: "24h", rangeS: 24 * 3600, stepS: 300 },
  { label: "7d", rangeS: 7 * 86400, stepS: 3600 },
];

/**
 * The range to ask for at `nowMs`: it ends now and starts on a whole step (so on a whole
 * minute when the step is minutes: the pipeline then reads its rollups, not raw samples).
 */
export function rangeFor(w: Window, nowMs: number): { startMs: number; endMs: number } {
  const stepMs = w.stepS * 1000;
  const startMs = Math.floor((nowMs - w.rangeS * 1000) / stepMs) * stepMs;
  return { startMs, endMs: nowMs };
}

/** What one sample says, in the units the charts use. */
export interface HostValues {
  /** Seconds since the epoch. */
  t: number;
  cpu?: number;
  memory?: number;
  /** Usage % by mount point. */
  disks: Record<string, number>;
  /** Bytes per second over every interface but loopback; unset without an earlier sample. */
  rx?: number;
  tx?: number;
}

/** Interfaces left out of network totals: loopback traffic is not the host's traffic. */
const isLoopback = (name: string) => name === "lo" || name.startsWith("lo:");

/**
 * Reads a sample; with the node's previous sample, network counters become rates (none when a
 * counter went back, i.e. an interface reset, or time did not advance).
 */
export function hostValues(sample: HostMetrics, previous?: HostMetrics): HostValues {
  const ms = sample.time ? timestampMs(sample.time) : 0;
  const disks: Record<string, number> = {};
  for (const d of sample.disks) disks[d.mountPoint] = d.usagePercent;
  const v: HostValues = { t: ms / 1000, cpu: sample.cpu?.usagePercent, memory: sample.memory?.usagePercent, disks };
  const prevMs = previous?.time ? timestampMs(previous.time) : undefined;
  if (previous && prevMs !== undefined && ms > prevMs) {
    const before = new Map(previous.network.map((n) => [n.name, n]));
    let rx = 0;
    let tx = 0;
    let any = false;
    for (const n of sample.network) {
      const p = before.get(n.name);
      if (isLoopback(n.name) || !p) continue;
      if (n.rxBytes < p.rxBytes || n.txBytes < p.txBytes) return v;
      rx += Number(n.rxBytes - p.rxBytes);
      tx += Number(n.txBytes - p.txBytes);
      any = true;
    }
    if (any) {
      const s = (ms - prevMs) / 1000;
      v.rx = rx / s;
      v.tx = tx / s;
    }
  }
  return v;
}

/** The last samples of each node, for sparklines: values, newest last, at most `keep`. */
export class HostHistory {
  private readonly byNode = new Map<string, { last: HostMetrics; values: HostValues[] }>();

  constructor(private readonly keep = 60) {}

  /** Adds a sample; returns false for one not newer than the node's last (a resumed stream's repeat). */
  push(sample: HostMetrics): boolean {
    const h = this.byNode.get(sample.nodeId);
    const ms = sample.time ? timestampMs(sample.time) : 0;
    if (h?.last.time && timestampMs(h.last.time) >= ms) return false;
    const v = hostValues(sample, h?.last);
    if (!h) {
      this.byNode.set(sample.nodeId, { last: sample, values: [v] });
      return true;
    }
    h.last = sample;
    h.values.push(v);
    if (h.values.length > this.keep) h.values.splice(0, h.values.length - this.keep);
    return true;
  }

  /** The node's values, oldest first. */
  values(nodeId: string): readonly HostValues[] {
    return this.byNode.get(nodeId)?.values ?? [];
  }

  /** The node's newest sample. */
  latest(nodeId: string): HostMetrics | undefined {
    return this.byNode.get(nodeId)?.last;
  }
}

/**
 * Several named series on one time axis, as uPlot wants them: `[times, ...values]`, times in
 * seconds ascending, `null` where a series has no point. Points after the range's end come
 * from live samples and are kept as they arrive.
 */
export class ChartData {
  private readonly points = new Map<number, Map<string, number>>();
  readonly names: string[] = [];

  /** Adds (or replaces) the value of `name` at `t` seconds; NaN and infinities are skipped. */
  add(t: number, name: string, value: number | undefined): void {
    if (value === undefined || !Number.isFinite(value)) return;
    if (!this.names.includes(name)) this.names.push(name);
    let at = this.points.get(t);
    if (!at) this.points.set(t, (at = new Map()));
    at.set(name, value);
  }

  /** Adds `value` to what `name` has at `t` (summing series, e.g. interfaces). */
  sum(t: number, name: string, value: number): void {
    if (!Number.isFinite(value)) return;
    this.add(t, name, (this.points.get(t)?.get(name) ?? 0) + value);
  }

  /** Forgets points before `minT` seconds. */
  trim(minT: number): void {
    for (const t of this.points.keys()) if (t < minT) this.points.delete(t);
  }

  get size(): number {
    return this.points.size;
  }

  /** The newest value of `name`. */
  last(name: string): number | undefined {
    let best: { t: number; v: number } | undefined;
    for (const [t, at] of this.points) {
      const v = at.get(name);
      if (v !== undefined && (!best || t > best.t)) best = { t, v };
    }
    return best?.v;
  }

  /** The largest value of `name`. */
  max(name: string): number | undefined {
    let m: number | undefined;
    for (const at of this.points.values()) {
      const v = at.get(name);
      if (v !== undefined && (m === undefined || v > m)) m = v;
    }
    return m;
  }

  /** uPlot's aligned data. */
  aligned(): [number[], ...(number | null)[][]] {
    const times = [...this.points.keys()].sort((a, b) => a - b);
    const columns = this.names.map((n) => times.map((t) => this.points.get(t)?.get(n) ?? null));
    return [times, ...columns];
  }
}

/** A series' name on a chart: the metric's own, or its labels (`/`, `eth0`). */
export function seriesName(s: Series, fallback: string): string {
  return s.labels.mount ?? s.labels.interface ?? fallback;
}

/** Adds a QueryRange series to `data` under `name`, or summed into it with `sum`. */
export function addSeries(data: ChartData, s: Series, name: string, sum = false): void {
  for (const p of s.points) {
    if (!p.time) continue;
    const t = timestampMs(p.time) / 1000;
    if (sum) data.sum(t, name, p.value);
    else data.add(t, name, p.value);
  }
}

/** Formats a rate in bytes per second. */
export function rate(bps: number | undefined): string {
  if (bps === undefined) return "—";
  const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
  let v = bps;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** Formats a percentage. */
export function percent(p: number | undefined): string {
  return p === undefined ? "—" : `${p >= 10 ? Math.round(p) : p.toFixed(1)} %`;
}

/** An SVG polyline's points for `values` in a `width` × `height` box; `max` tops the scale. */
export function sparklinePoints(values: readonly (number | undefined)[], width: number, height: number, max = 100): string {
  const known = values.map((v, i) => [i, v] as const).filter((p): p is readonly [number, number] => p[1] !== undefined);
  if (known.length === 0) return "";
  const top = Math.max(max, ...known.map((p) => p[1]));
  const dx = values.length > 1 ? width / (values.length - 1) : 0;
  return known
    .map(([i, v]) => `${(i * dx).toFixed(1)},${(height - (Math.max(0, v) / top) * height).toFixed(1)}`)
    .join(" ");
}

/** What one sample says of one of a workload's containers, in the units the charts use. */
export interface ContainerValues {
  /** Seconds since the epoch. */
  t: number;
  instanceId: string;
  /** Percent of one core (may exceed 100). */
  cpu: number;
  memoryBytes: number;
  /** Bytes per second; unset without the container's previous sample or after a reset. */
  rx?: number;
  tx?: number;
}

/**
 * The containers of workload `workloadId` in a node's sample; with the node's previous sample,
 * network counters become rates (as the pipeline computes them).
 */
export function containerValues(sample: HostMetrics, workloadId: string, previous?: HostMetrics): ContainerValues[] {
  const ms = sample.time ? timestampMs(sample.time) : 0;
  const prevMs = previous?.time ? timestampMs(previous.time) : undefined;
  const before = new Map((previous?.containers ?? []).map((c) => [c.containerId, c]));
  return sample.containers
    .filter((c) => c.workloadId === workloadId)
    .map((c) => {
      const v: ContainerValues = { t: ms / 1000, instanceId: c.instanceId, cpu: c.cpuPercent, memoryBytes: Number(c.memoryUsageBytes) };
      const p = before.get(c.containerId);
      if (p && prevMs !== undefined && ms > prevMs && c.networkRxBytes >= p.networkRxBytes && c.networkTxBytes >= p.networkTxBytes) {
        const s = (ms - prevMs) / 1000;
        v.rx = Number(c.networkRxBytes - p.networkRxBytes) / s;
        v.tx = Number(c.networkTxBytes - p.networkTxBytes) / s;
      }
      return v;
    });
}

/** Formats a size in bytes (memory on charts). */
export function size(b: number | undefined): string {
  if (b === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = b;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}
