// Frame timing of a page over a window, with the browser's performance APIs: the intervals
// between requestAnimationFrame callbacks (one a frame the page could paint; headless Chromium
// paces them at 60 Hz), the long tasks
// (`longtask`: main-thread tasks over 50 ms) and long animation frames
// (`long-animation-frame`: frames whose work took over 50 ms), and how many times the page's
// sparklines were redrawn (a MutationObserver on their polylines' points).
import type { Page } from "playwright-core";

/** What a window of frames looked like. */
export interface FrameStats {
  window_ms: number;
  frames: number;
  frame_p50_ms: number;
  frame_p99_ms: number;
  frame_max_ms: number;
  /** Frames of 60 Hz missed: an interval of n × 16.7 ms missed n − 1. */
  frames_dropped: number;
  /** Frame intervals over 50 ms: at least two frames of 60 Hz missed in a row. */
  frames_over_50ms: number;
  long_tasks: number;
  long_task_total_ms: number;
  long_animation_frames: number;
  sparkline_redraws: number;
  /** The renderer's main-thread time in the window (Chromium's Performance domain), ms. */
  task_ms: number;
  script_ms: number;
  style_and_layout_ms: number;
}

/** Measures `page` for `ms` (a fixed measurement window, not a wait for anything). */
export async function measure(page: Page, ms: number): Promise<FrameStats> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  const before = await metrics();
  const frames = await measureFrames(page, ms);
  const after = await metrics();
  await cdp.detach();
  const d = (k: string) => Math.round(((after[k] ?? 0) - (before[k] ?? 0)) * 1000);
  return {
    ...frames,
    task_ms: d("TaskDuration"),
    script_ms: d("ScriptDuration"),
    style_and_layout_ms: d("RecalcStyleDuration") + d("LayoutDuration"),
  };
}

function measureFrames(page: Page, ms: number): Promise<Omit<FrameStats, "task_ms" | "script_ms" | "style_and_layout_ms">> {
  return page.evaluate(async (windowMs) => {
    const intervals: number[] = [];
    const longTasks: number[] = [];
    let loafs = 0;
    let redraws = 0;
    const supported = PerformanceObserver.supportedEntryTypes;
    const observers: PerformanceObserver[] = [];
    if (supported.includes("longtask")) {
      const o = new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration)));
      o.observe({ type: "longtask" });
      observers.push(o);
    }
    if (supported.includes("long-animation-frame")) {
      const o = new PerformanceObserver((l) => (loafs += l.getEntries().length));
      o.observe({ type: "long-animation-frame" });
      observers.push(o);
    }
    const mutations = new MutationObserver((records) => {
      for (const r of records) if (r.target instanceof SVGPolylineElement || (r.target as Element).closest?.(".sparkline")) redraws++;
    });
    mutations.observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["points"] });
    await new Promise<void>((done) => {
      let last = -1;
      let start = -1;
      const tick = (t: number) => {
        if (start < 0) start = t;
        else intervals.push(t - last);
        last = t;
        if (t - start < windowMs) requestAnimationFrame(tick);
        else done();
      };
      requestAnimationFrame(tick);
    });
    observers.forEach((o) => o.disconnect());
    mutations.disconnect();
    const sorted = [...intervals].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
    const r1 = (v: number) => Math.round(v * 10) / 10;
    return {
      window_ms: Math.round(intervals.reduce((a, b) => a + b, 0)),
      frames: intervals.length,
      frame_p50_ms: r1(at(0.5)),
      frame_p99_ms: r1(at(0.99)),
      frame_max_ms: r1(sorted.at(-1) ?? 0),
      frames_dropped: intervals.reduce((n, i) => n + Math.max(0, Math.round(i / (1000 / 60)) - 1), 0),
      frames_over_50ms: intervals.filter((i) => i > 50).length,
      long_tasks: longTasks.length,
      long_task_total_ms: Math.round(longTasks.reduce((a, b) => a + b, 0)),
      long_animation_frames: loafs,
      sparkline_redraws: redraws,
    };
  }, ms);
}
