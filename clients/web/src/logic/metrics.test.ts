import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { HostMetricsSchema } from "../gen/persys/metrics/v1/host_metrics_pb";
import { SeriesSchema } from "../gen/persys/metrics/v1/query_service_pb";
import {
  addSeries,
  ChartData,
  containerValues,
  HostHistory,
  hostValues,
  percent,
  rangeFor,
  rate,
  seriesName,
  size,
  sparklinePoints,
  WINDOWS,
} from "./metrics";

const sample = (node: string, ms: number, rx: number, tx: number, cpu = 10) =>
  create(HostMetricsSchema, {
    nodeId: node,
    time: timestampFromMs(ms),
    cpu: { usagePercent: cpu },
    memory: { usagePercent: 50 },
    disks: [{ mountPoint: "/", usagePercent: 70 }],
    network: [
      { name: "lo", rxBytes: BigInt(rx * 100), txBytes: BigInt(tx * 100) },
      { name: "eth0", rxBytes: BigInt(rx), txBytes: BigInt(tx) },
    ],
  });

describe("metrics windows", () => {
  it("keeps every window to a few hundred points, and minute steps on whole minutes", () => {
    for (const w of WINDOWS) {
      expect(w.rangeS / w.stepS).toBeLessThanOrEqual(400);
      const { startMs, endMs } = rangeFor(w, Date.UTC(2026, 11, 4, 12, 34, 56, 789));
      expect(endMs - startMs).toBeGreaterThanOrEqual(w.rangeS * 1000);
      expect(endMs - startMs).toBeLessThan(w.rangeS * 1000 + w.stepS * 1000);
      expect(startMs % (w.stepS * 1000)).toBe(0);
      if (w.stepS >= 60) expect(startMs % 60_000).toBe(0);
      if (w.stepS >= 3600) expect(startMs % 3_600_000).toBe(0);
    }
    expect(WINDOWS.map((w) => w.label)).toEqual(["1h", "6h", "24h", "7d"]);
  });
});

describe("host values", () => {
  it("reads a sample and turns counters into rates without loopback", () => {
    const first = hostValues(sample("n", 10_000, 1000, 500));
    expect(first).toMatchObject({ t: 10, cpu: 10, memory: 50, disks: { "/": 70 } });
    expect(first.rx).toBeUndefined();
    const next = hostValues(sample("n", 15_000, 6000, 1500), sample("n", 10_000, 1000, 500));
    expect(next.rx).toBe(1000);
    expect(next.tx).toBe(200);
  });

  it("gives no rate across a counter reset or a clock that went back", () => {
    expect(hostValues(sample("n", 15_000, 10, 10), sample("n", 10_000, 1000, 500)).rx).toBeUndefined();
    expect(hostValues(sample("n", 10_000, 6000, 1500), sample("n", 15_000, 1000, 500)).rx).toBeUndefined();
  });

  it("keeps the last samples per node, newest last, and ignores repeats", () => {
    const h = new HostHistory(3);
    for (let i = 0; i < 5; i++) expect(h.push(sample("a", i * 5000, i * 100, 0, i))).toBe(true);
    expect(h.push(sample("a", 10_000, 0, 0))).toBe(false);
    expect(h.push(sample("b", 0, 0, 0, 99))).toBe(true);
    expect(h.values("a").map((v) => v.cpu)).toEqual([2, 3, 4]);
    expect(h.values("a").map((v) => v.rx)).toEqual([20, 20, 20]);
    expect(h.values("b").map((v) => v.cpu)).toEqual([99]);
    expect(h.latest("a")?.cpu?.usagePercent).toBe(4);
    expect(h.values("nobody")).toEqual([]);
  });
});

describe("container values", () => {
  const withContainers = (ms: number, rx: number) =>
    create(HostMetricsSchema, {
      nodeId: "n",
      time: timestampFromMs(ms),
      containers: [
        { containerId: "c1", workloadId: "w", instanceId: "i1", cpuPercent: 150, memoryUsageBytes: 2048n, networkRxBytes: BigInt(rx), networkTxBytes: 10n },
        { containerId: "c2", workloadId: "other", instanceId: "i2", cpuPercent: 1, memoryUsageBytes: 1n },
      ],
    });

  it("reads only the workload's containers, and turns their counters into rates", () => {
    const first = containerValues(withContainers(10_000, 1000), "w");
    expect(first).toEqual([{ t: 10, instanceId: "i1", cpu: 150, memoryBytes: 2048 }]);
    const next = containerValues(withContainers(15_000, 6000), "w", withContainers(10_000, 1000));
    expect(next[0]).toMatchObject({ rx: 1000, tx: 0 });
    expect(containerValues(withContainers(15_000, 10), "w", withContainers(10_000, 1000))[0].rx).toBeUndefined();
    expect(containerValues(withContainers(15_000, 10), "nobody")).toEqual([]);
  });

  it("formats sizes", () => {
    expect([size(undefined), size(512), size(2048), size(15 * 1024 * 1024)]).toEqual(["—", "512 B", "2.0 KiB", "15 MiB"]);
  });
});

describe("chart data", () => {
  it("aligns series on one axis with gaps, sums interfaces and trims", () => {
    const d = new ChartData();
    const eth0 = create(SeriesSchema, {
      labels: { interface: "eth0" },
      points: [
        { time: timestampFromMs(60_000), value: 1 },
        { time: timestampFromMs(120_000), value: 2 },
      ],
    });
    const eth1 = create(SeriesSchema, { labels: { interface: "eth1" }, points: [{ time: timestampFromMs(60_000), value: 10 }] });
    addSeries(d, eth0, "rx", true);
    addSeries(d, eth1, "rx", true);
    d.add(90, "tx", 5);
    d.add(91, "tx", Number.NaN);
    expect(d.aligned()).toEqual([
      [60, 90, 120],
      [11, null, 2],
      [null, 5, null],
    ]);
    expect(d.last("rx")).toBe(2);
    expect(d.max("rx")).toBe(11);
    d.trim(90);
    expect(d.size).toBe(2);
    expect(seriesName(eth0, "x")).toBe("eth0");
    expect(seriesName(create(SeriesSchema, { labels: { mount: "/data" } }), "x")).toBe("/data");
    expect(seriesName(create(SeriesSchema, {}), "CPU")).toBe("CPU");
  });

  it("formats rates, percentages and sparklines", () => {
    expect(rate(undefined)).toBe("—");
    expect(rate(512)).toBe("512 B/s");
    expect(rate(1536)).toBe("1.5 KiB/s");
    expect(rate(50 * 1024 * 1024)).toBe("50 MiB/s");
    expect(percent(3.14159)).toBe("3.1 %");
    expect(percent(42.6)).toBe("43 %");
    expect(sparklinePoints([], 100, 20)).toBe("");
    expect(sparklinePoints([0, 50, undefined, 100], 30, 20)).toBe("0.0,20.0 10.0,10.0 30.0,0.0");
    // Values above the scale's top raise it instead of leaving the box.
    expect(sparklinePoints([200], 30, 20)).toBe("0.0,0.0");
  });
});
