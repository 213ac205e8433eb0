// A workload's charts: CPU, memory and network of each of its containers over a chosen window,
// from the pipeline's QueryRange (by the workload_id label, which members may read for their
// own workloads and viewers for all), with live samples from WatchHostMetrics (which shows
// members and viewers only the containers of workloads they may see) appended as they arrive.
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { metricsQuery } from "../api";
import { TimeChart } from "../chart";
import { MetricsHeading, metricsProblem, NoMetricsPipeline, ProblemBox } from "../components";
import type { HostMetrics } from "../gen/persys/metrics/v1/host_metrics_pb";
import { Metric } from "../gen/persys/metrics/v1/host_metrics_pb";
import { Rollup } from "../gen/persys/metrics/v1/query_service_pb";
import type { Workload } from "../gen/persys/scheduler/v1/workload_pb";
import { useHostMetrics } from "../live";
import { type Problem, problemOf } from "../logic/errors";
import { addSeries, ChartData, containerValues, percent, rangeFor, rate, size, WINDOWS } from "../logic/metrics";

interface Charts {
  cpu: ChartData;
  memory: ChartData;
  network: ChartData;
}

const empty = (): Charts => ({ cpu: new ChartData(), memory: new ChartData(), network: new ChartData() });

/** The workload page's metrics section. */
export function WorkloadMetrics(props: { w: Workload }) {
  const { w } = props;
  const [windowLabel, setWindowLabel] = useState("1h");
  const win = WINDOWS.find((x) => x.label === windowLabel) ?? WINDOWS[0];
  const charts = useRef<Charts>(empty());
  const [loaded, setLoaded] = useState<{ version: number; loading: boolean; problem?: Problem; from: number }>({
    version: 0,
    loading: true,
    from: Date.now() / 1000 - win.rangeS,
  });
  const instances = w.status?.instances ?? [];
  // A series is named by its replica while the instance is known, else by its instance id.
  const replicaOf = new Map(instances.map((i) => [i.instanceId, i.replicaIndex]));
  const nameOf = (instanceId: string) => {
    const r = replicaOf.get(instanceId);
    return r === undefined ? `instance ${instanceId.slice(0, 8)}` : `replica ${r}`;
  };
  const nodesKey = [...new Set(instances.map((i) => i.nodeId).filter(Boolean))].sort().join(",");
  const nodeIds = useMemo(() => (nodesKey ? nodesKey.split(",") : []), [nodesKey]);
  // No node yet: nothing to watch (an empty list would mean every node).
  const live = useHostMetrics(nodeIds, 2, true, nodeIds.length > 0);
  const rangeEnd = useRef(0);
  const previous = useRef(new Map<string, HostMetrics>());

  useEffect(() => {
    const abort = new AbortController();
    const { startMs, endMs } = rangeFor(win, Date.now());
    setLoaded((s) => ({ ...s, loading: true, problem: undefined }));
    void (async () => {
      try {
        const r = await metricsQuery.queryRange(
          {
            metrics: [
              Metric.CONTAINER_CPU_PERCENT,
              Metric.CONTAINER_MEMORY_BYTES,
              Metric.CONTAINER_NETWORK_RX_BYTES_PER_SECOND,
              Metric.CONTAINER_NETWORK_TX_BYTES_PER_SECOND,
            ],
            matchLabels: { workload_id: w.id },
            range: { start: timestampFromMs(startMs), end: timestampFromMs(endMs) },
            step: { seconds: BigInt(win.stepS) },
            rollup: Rollup.AVG,
          },
          { signal: abort.signal },
        );
        const c = empty();
        for (const s of r.series) {
          const name = nameOf(s.labels.instance_id ?? "");
          switch (s.metric) {
            case Metric.CONTAINER_CPU_PERCENT:
              addSeries(c.cpu, s, name);
              break;
            case Metric.CONTAINER_MEMORY_BYTES:
              addSeries(c.memory, s, name);
              break;
            case Metric.CONTAINER_NETWORK_RX_BYTES_PER_SECOND:
              addSeries(c.network, s, `${name} received`);
              break;
            case Metric.CONTAINER_NETWORK_TX_BYTES_PER_SECOND:
              addSeries(c.network, s, `${name} sent`);
              break;
          }
        }
        charts.current = c;
        rangeEnd.current = endMs / 1000;
        setLoaded((s) => ({ version: s.version + 1, loading: false, from: startMs / 1000 }));
      } catch (err) {
        if (!abort.signal.aborted) setLoaded((s) => ({ ...s, loading: false, problem: problemOf(err) }));
      }
    })();
    return () => abort.abort();
  }, [w.id, windowLabel]);

  // Each node's newest sample: the workload's containers in it join the charts.
  const newest = nodeIds.map((n) => live.history.latest(n)).filter((m): m is HostMetrics => m !== undefined);
  const stamp = newest.map((m) => `${m.nodeId}@${m.time?.seconds}.${m.time?.nanos}`).join(",");
  useEffect(() => {
    const c = charts.current;
    let added = false;
    let latestT = 0;
    for (const m of newest) {
      const prev = previous.current.get(m.nodeId);
      if (prev?.time && m.time && prev.time.seconds === m.time.seconds && prev.time.nanos === m.time.nanos) continue;
      for (const v of containerValues(m, w.id, prev)) {
        if (v.t <= rangeEnd.current) continue;
        const name = nameOf(v.instanceId);
        c.cpu.add(v.t, name, v.cpu);
        c.memory.add(v.t, name, v.memoryBytes);
        c.network.add(v.t, `${name} received`, v.rx);
        c.network.add(v.t, `${name} sent`, v.tx);
        added = true;
        latestT = Math.max(latestT, v.t);
      }
      previous.current.set(m.nodeId, m);
    }
    if (!added) return;
    const from = latestT - win.rangeS;
    for (const d of Object.values(c)) d.trim(from);
    setLoaded((s) => ({ ...s, version: s.version + 1, from: Math.max(s.from, from) }));
  }, [stamp]);

  const problem = metricsProblem(loaded.problem, live.problem);
  const c = charts.current;
  const hostProcess = w.spec?.image.startsWith("process://") ?? false;
  return (
    <section aria-labelledby="wmetrics-h" data-testid="workload-metrics">
      <MetricsHeading id="wmetrics-h" window={windowLabel} onWindow={setWindowLabel} live={live} />
      {problem?.code === Code.Unavailable ? (
        <NoMetricsPipeline error={problem.message} />
      ) : problem ? (
        <ProblemBox problem={problem} />
      ) : loaded.loading && loaded.version === 0 ? (
        <p class="muted">Loading metrics…</p>
      ) : hostProcess && c.cpu.size === 0 ? (
        <p class="muted">Host processes (process://) have no container metrics.</p>
      ) : (
        <>
          {c.cpu.size === 0 && c.memory.size === 0 ? (
            <p class="muted">No sample of this workload's containers yet: their node's agent sends one every few seconds.</p>
          ) : null}
          <p class="muted small">CPU is in percent of one core. Drag across a chart to zoom in; double-click to zoom out.</p>
          <div class="charts">
            <TimeChart id="ctr-cpu" title="CPU" data={c.cpu} version={loaded.version} format={percent} from={loaded.from} />
            <TimeChart id="ctr-memory" title="Memory" data={c.memory} version={loaded.version} format={size} from={loaded.from} />
            <TimeChart id="ctr-network" title="Network" data={c.network} version={loaded.version} format={rate} from={loaded.from} />
          </div>
        </>
      )}
    </section>
  );
}
