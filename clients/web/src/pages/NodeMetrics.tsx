// A node's charts: CPU, memory, disk and network over a chosen window, from the pipeline's
// QueryRange (server-side steps: at most a few hundred points however long the window), with
// live samples from WatchHostMetrics appended as they arrive.
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { metricsQuery } from "../api";
import { TimeChart } from "../chart";
import { MetricsHeading, metricsProblem, NoMetricsPipeline, ProblemBox } from "../components";
import { Metric } from "../gen/persys/metrics/v1/host_metrics_pb";
import { Rollup } from "../gen/persys/metrics/v1/query_service_pb";
import { useHostMetrics } from "../live";
import { type Problem, problemOf } from "../logic/errors";
import { addSeries, ChartData, percent, rangeFor, rate, seriesName, WINDOWS } from "../logic/metrics";

interface Charts {
  cpu: ChartData;
  memory: ChartData;
  disk: ChartData;
  network: ChartData;
}

/** Mount points on the disk chart, at most (the first the pipeline lists). */
const MAX_DISKS = 4;

const empty = (): Charts => ({ cpu: new ChartData(), memory: new ChartData(), disk: new ChartData(), network: new ChartData() });

/** The node page's metrics section. */
export function NodeMetrics(props: { nodeId: string }) {
  const [windowLabel, setWindowLabel] = useState("1h");
  const w = WINDOWS.find((x) => x.label === windowLabel) ?? WINDOWS[0];
  const charts = useRef<Charts>(empty());
  const [loaded, setLoaded] = useState<{ version: number; loading: boolean; problem?: Problem; drawMs?: number; from: number }>({
    version: 0,
    loading: true,
    from: Date.now() / 1000 - w.rangeS,
  });
  const ids = useMemo(() => [props.nodeId], [props.nodeId]);
  const live = useHostMetrics(ids, 2);
  const rangeEnd = useRef(0);

  // History for the window: one QueryRange for every metric.
  useEffect(() => {
    const abort = new AbortController();
    const started = performance.now();
    const { startMs, endMs } = rangeFor(w, Date.now());
    setLoaded((s) => ({ ...s, loading: true, problem: undefined }));
    void (async () => {
      try {
        const r = await metricsQuery.queryRange(
          {
            nodeIds: [props.nodeId],
            metrics: [
              Metric.CPU_USAGE_PERCENT,
              Metric.MEMORY_USAGE_PERCENT,
              Metric.DISK_USAGE_PERCENT,
              Metric.NETWORK_RX_BYTES_PER_SECOND,
              Metric.NETWORK_TX_BYTES_PER_SECOND,
            ],
            range: { start: timestampFromMs(startMs), end: timestampFromMs(endMs) },
            step: { seconds: BigInt(w.stepS) },
            rollup: Rollup.AVG,
          },
          { signal: abort.signal },
        );
        const c = empty();
        for (const s of r.series) {
          switch (s.metric) {
            case Metric.CPU_USAGE_PERCENT:
              addSeries(c.cpu, s, "CPU");
              break;
            case Metric.MEMORY_USAGE_PERCENT:
              addSeries(c.memory, s, "Memory");
              break;
            case Metric.DISK_USAGE_PERCENT: {
              const name = seriesName(s, "Disk");
              if (c.disk.names.length < MAX_DISKS || c.disk.names.includes(name)) addSeries(c.disk, s, name);
              break;
            }
            case Metric.NETWORK_RX_BYTES_PER_SECOND:
              if (s.labels.interface !== "lo") addSeries(c.network, s, "Received", true);
              break;
            case Metric.NETWORK_TX_BYTES_PER_SECOND:
              if (s.labels.interface !== "lo") addSeries(c.network, s, "Sent", true);
              break;
          }
        }
        charts.current = c;
        rangeEnd.current = endMs / 1000;
        setLoaded((s) => ({ version: s.version + 1, loading: false, from: startMs / 1000 }));
        // How long the window took to fetch and hand to the charts (drawn in the next frame).
        requestAnimationFrame(() => setLoaded((s) => ({ ...s, drawMs: Math.round(performance.now() - started) })));
      } catch (err) {
        if (!abort.signal.aborted) setLoaded((s) => ({ ...s, loading: false, problem: problemOf(err) }));
      }
    })();
    return () => abort.abort();
  }, [props.nodeId, windowLabel]);

  // Live samples after the range's end join the charts; the oldest points leave the window.
  const sample = live.history.values(props.nodeId).at(-1);
  useEffect(() => {
    if (!sample || sample.t <= rangeEnd.current) return;
    const c = charts.current;
    c.cpu.add(sample.t, "CPU", sample.cpu);
    c.memory.add(sample.t, "Memory", sample.memory);
    for (const [mount, p] of Object.entries(sample.disks))
      if (c.disk.names.length < MAX_DISKS || c.disk.names.includes(mount)) c.disk.add(sample.t, mount, p);
    c.network.add(sample.t, "Received", sample.rx);
    c.network.add(sample.t, "Sent", sample.tx);
    const from = sample.t - w.rangeS;
    for (const d of Object.values(c)) d.trim(from);
    setLoaded((s) => ({ ...s, version: s.version + 1, from: Math.max(s.from, from) }));
  }, [sample?.t]);

  const problem = metricsProblem(loaded.problem, live.problem);
  const c = charts.current;
  const newest = live.history.latest(props.nodeId);
  return (
    <section aria-labelledby="metrics-h" data-testid="node-metrics" data-draw-ms={loaded.drawMs}>
      <MetricsHeading id="metrics-h" window={windowLabel} onWindow={setWindowLabel} live={live} />
      {problem?.code === Code.Unavailable ? (
        <NoMetricsPipeline error={problem.message} />
      ) : problem ? (
        <ProblemBox problem={problem} />
      ) : loaded.loading && loaded.version === 0 ? (
        <p class="muted">Loading metrics…</p>
      ) : (
        <>
          {live.synced && !newest && c.cpu.size === 0 ? (
            <p class="muted">
              This node has sent no metrics yet. Its agent ships them when started with <code>--metrics-pipeline</code>.
            </p>
          ) : null}
          <p class="muted small">
            {newest?.time ? `Last sample ${new Date(timestampMs(newest.time)).toLocaleTimeString()}. ` : ""}Drag across a chart to
            zoom in; double-click to zoom out.
          </p>
          <div class="charts">
            <TimeChart id="cpu" title="CPU" data={c.cpu} version={loaded.version} format={percent} yMax={100} from={loaded.from} />
            <TimeChart id="memory" title="Memory" data={c.memory} version={loaded.version} format={percent} yMax={100} from={loaded.from} />
            <TimeChart id="disk" title="Disk usage" data={c.disk} version={loaded.version} format={percent} yMax={100} from={loaded.from} />
            <TimeChart id="network" title="Network" data={c.network} version={loaded.version} format={rate} from={loaded.from} />
          </div>
        </>
      )}
    </section>
  );
}
