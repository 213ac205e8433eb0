// Time-series charts (uPlot on a canvas) and SVG sparklines. A chart is a figure with a caption
// that says in words what it shows now (screen readers cannot read a canvas); dragging across
// it zooms in, a double click zooms back out, and live points do not undo a zoom. uPlot itself is
// loaded with the first chart, not with the app.
import { useEffect, useRef } from "preact/hooks";
import type uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { type ChartData, sparklinePoints } from "./logic/metrics";

const COLOURS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2"];

/** A live time-series chart of `data`, redrawn when `version` changes. */
export function TimeChart(props: {
  id: string;
  title: string;
  data: ChartData;
  version: number;
  format: (v: number | undefined) => string;
  /** The y axis starts at 0 and reaches at least this (e.g. 100 for percentages). */
  yMax?: number;
  /** The window's start, in seconds: the x axis spans from it to now (or the newest point). */
  from: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoomed = useRef(false);
  const names = props.data.names.join("\u0000");
  const { format, yMax } = props;
  const from = useRef(props.from);
  from.current = props.from;
  // The data as of now, for a chart made after uPlot has loaded.
  const latest = useRef(props.data);
  latest.current = props.data;

  // (Re)built when the set of series changes; data alone goes through setData.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    let gone = false;
    let cleanup = () => {};
    void import("uplot").then(({ default: UPlot }) => {
      if (gone) return;
      const opts: uPlot.Options = {
        width: Math.max(200, el.clientWidth),
        height: 200,
        series: [
          {},
          ...props.data.names.map((n, i) => ({
            label: n,
            stroke: COLOURS[i % COLOURS.length],
            width: 1.5,
            value: (_u: uPlot, v: number | null) => format(v ?? undefined),
          })),
        ],
        scales: {
          x: { time: true, range: (_u, _min, max) => [from.current, Math.max(max ?? 0, Date.now() / 1000)] },
          y: { range: (_u, _min, max) => [0, Math.max(yMax ?? 0, max * 1.1 || 1)] },
        },
        axes: [{}, { size: 80, values: (_u, ticks) => ticks.map((t) => format(t)) }],
        cursor: { drag: { x: true, y: false } },
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width > 0) zoomed.current = true;
            },
          ],
        },
      };
      const u = new UPlot(opts, latest.current.aligned(), el);
      plot.current = u;
      const reset = () => {
        zoomed.current = false;
      };
      u.over.addEventListener("dblclick", reset);
      const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: 200 }));
      resize.observe(el);
      cleanup = () => {
        resize.disconnect();
        u.destroy();
        plot.current = null;
      };
    });
    return () => {
      gone = true;
      cleanup();
    };
  }, [names, yMax]);

  useEffect(() => {
    plot.current?.setData(props.data.aligned(), !zoomed.current);
  }, [props.version, props.from]);

  const summary = props.data.names
    .map((n) => `${props.data.names.length > 1 ? `${n}: ` : ""}${format(props.data.last(n))} now, peak ${format(props.data.max(n))}`)
    .join("; ");
  return (
    <figure class="chart" data-testid={`chart-${props.id}`} data-points={props.data.size}>
      <figcaption>
        <strong>{props.title}</strong> <span class="muted">{props.data.size ? summary : "no samples in this window yet"}</span>
      </figcaption>
      <div ref={box} aria-hidden="true" />
    </figure>
  );
}

/** A small line of `values` (newest last) on a 0–`max` scale, labelled for readers. */
export function Sparkline(props: { values: readonly (number | undefined)[]; label: string; max?: number }) {
  const w = 80;
  const h = 20;
  return (
    <svg class="sparkline" width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={props.label}>
      <polyline points={sparklinePoints(props.values, w, h, props.max)} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}
