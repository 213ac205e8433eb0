// Hooks that keep views live: watches of nodes and workloads, and a followed log stream, each
// closed when its view goes away and reopened after a break.
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { alertService, metricsQuery, personaService, projectService, scheduler } from "./api";
import type { Alert } from "./gen/persys/metrics/v1/alert_pb";
import type { HostMetrics } from "./gen/persys/metrics/v1/host_metrics_pb";
import type { ApplicationPersona } from "./gen/persys/reconciler/v1/application_persona_pb";
import type { Build } from "./gen/persys/reconciler/v1/build_pb";
import type { ClusterPersona } from "./gen/persys/reconciler/v1/cluster_persona_pb";
import type { Environment } from "./gen/persys/reconciler/v1/environment_pb";
import { PersonaKind } from "./gen/persys/reconciler/v1/persona_service_pb";
import type { Project } from "./gen/persys/reconciler/v1/project_pb";
import type { Node } from "./gen/persys/scheduler/v1/node_pb";
import type { Workload } from "./gen/persys/scheduler/v1/workload_pb";
import { Backoff, sleep } from "./logic/backoff";
import { ChunkDedup, LogBuffer } from "./logic/logs";
import { HostHistory } from "./logic/metrics";
import { resourceVersion } from "./logic/personas";
import { objectKey, watchEvent } from "./logic/projects";
import { type LiveStatus, runWatch, type WatchEvent, type WatchSnapshot, WatchState } from "./logic/watch";
import { expire } from "./session";

const fatal = (e: ConnectError) => e.code === Code.Unauthenticated || e.code === Code.PermissionDenied;
const onFatal = (e: ConnectError) => {
  if (e.code === Code.Unauthenticated) expire("Your session ended. Log in again.");
};

async function* mapEvents<R, T>(
  stream: AsyncIterable<R>,
  f: (r: R) => WatchEvent<T>,
): AsyncIterable<WatchEvent<T>> {
  for await (const r of stream) yield f(r);
}

/** How long a tab stays hidden before its live views close their streams. */
export const HIDDEN_PAUSE_MS = 5_000;

/**
 * False once the page has been hidden (another tab, a minimised window) for HIDDEN_PAUSE_MS,
 * true again as soon as it is visible: live views close their streams meanwhile, so hidden tabs
 * do not hold the browser's few connections to the gateway (six per origin over HTTP/1.1).
 */
export function useVisible(): boolean {
  const [visible, setVisible] = useState(true);
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const changed = () => {
      clearTimeout(timer);
      if (document.visibilityState === "hidden") timer = setTimeout(() => setVisible(false), HIDDEN_PAUSE_MS);
      else setVisible(true);
    };
    document.addEventListener("visibilitychange", changed);
    changed();
    return () => {
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", changed);
    };
  }, []);
  return visible;
}

function useWatch<T>(
  open: (since: bigint, signal: AbortSignal, connected: () => void) => AsyncIterable<WatchEvent<T>>,
  key: (t: T) => string,
  deps: unknown[],
  /** More answers that no retry changes, besides the session's (e.g. a service's configuration). */
  alsoFatal: (e: ConnectError) => boolean = () => false,
): WatchSnapshot<T> & { problem?: string; problemCode?: Code } {
  const [snap, setSnap] = useState<WatchSnapshot<T> & { problem?: string; problemCode?: Code }>({
    items: new Map(),
    synced: false,
    status: "connecting",
  });
  const visible = useVisible();
  // The collection outlives a pause (it resumes after its revision), not a change of filter.
  const kept = useRef<{ deps: string; state: WatchState<T> }>();
  const depsKey = JSON.stringify(deps);
  if (kept.current?.deps !== depsKey) kept.current = { deps: depsKey, state: new WatchState<T>(key) };
  useEffect(() => {
    if (!visible) {
      setSnap((s) => ({ ...s, status: "paused", error: undefined }));
      return;
    }
    const abort = new AbortController();
    void runWatch<T>({
      open,
      key,
      state: kept.current!.state,
      signal: abort.signal,
      fatal: (e) => fatal(e) || alsoFatal(e),
      onFatal: (e) => {
        onFatal(e);
        setSnap((s) => ({ ...s, problem: e.rawMessage, problemCode: e.code }));
      },
      onChange: (s) => {
        if (!abort.signal.aborted) setSnap(s);
      },
    });
    return () => abort.abort();
  }, [...deps, visible]);
  return snap;
}

/** Every node, live. */
export function useNodes() {
  return useWatch<Node>(
    (since, signal, connected) =>
      mapEvents(scheduler.watchNodes({ sinceRevision: since }, { signal, onHeader: connected }), (r) => ({
        type: r.type,
        revision: r.revision,
        item: r.node,
      })),
    (n) => n.id,
    [],
  );
}

/** Workloads, live: all of them, one (`workloadId`) or those on a node (`nodeId`). */
export function useWorkloads(filter: { workloadId?: string; nodeId?: string } = {}) {
  return useWatch<Workload>(
    (since, signal, connected) =>
      mapEvents(
        scheduler.watchWorkloads(
          { sinceRevision: since, workloadId: filter.workloadId ?? "", nodeId: filter.nodeId ?? "" },
          { signal, onHeader: connected },
        ),
        (r) => ({ type: r.type, revision: r.revision, item: r.workload }),
      ),
    (w) => w.id,
    [filter.workloadId, filter.nodeId],
  );
}

/** Where a log stream stands; "ended" when there is nothing (more) to follow. */
export type LogStatus = LiveStatus | "ended";

/**
 * Follows an instance's output into a LogBuffer; `version` changes whenever it does. While the
 * workload is not `running`, a stream that ends is the end ("ended"); while it runs, the stream
 * is reopened from the last chunk's time. The buffer is kept across both. A live stream is not
 * reopened when the workload starts running (a driver that cannot resume from a time, like the
 * process driver, would send the output again); an ended one is.
 */
export function useLogs(workloadId: string, replica: number, running: boolean) {
  const key = `${workloadId}/${replica}`;
  const kept = useRef<{ key: string; buffer: LogBuffer; dedup: ChunkDedup }>();
  if (kept.current?.key !== key) kept.current = { key, buffer: new LogBuffer(), dedup: new ChunkDedup() };
  const buffer = useRef<LogBuffer>(kept.current.buffer);
  buffer.current = kept.current.buffer;
  const [state, setState] = useState<{ version: number; status: LogStatus; error?: string }>({
    version: 0,
    status: "connecting",
  });
  const isRunning = useRef(running);
  isRunning.current = running;
  // Bumped to reopen an ended stream when the workload runs (again).
  const [epoch, setEpoch] = useState(0);
  useEffect(() => {
    if (running && state.status === "ended") setEpoch((e) => e + 1);
  }, [running]);
  // Closed while the tab is hidden; reopened from the last chunk's time when it is shown.
  const visible = useVisible();
  useEffect(() => {
    if (!visible) {
      setState((s) => ({ ...s, status: "paused", error: undefined }));
      return;
    }
    const abort = new AbortController();
    const dedup = kept.current!.dedup;
    const backoff = new Backoff({ initialMs: 500, maxMs: 15_000 });
    let version = 0;
    let frame = 0;
    const bump = (status: LogStatus, error?: string) => {
      if (!abort.signal.aborted) setState({ version: ++version, status, error });
    };
    void (async () => {
      let status: LogStatus = "connecting";
      let error: string | undefined;
      while (!abort.signal.aborted) {
        try {
          const from = dedup.resumeFromMs;
          const stream = scheduler.streamLogs(
            {
              workloadId,
              replicaIndex: replica,
              follow: true,
              // All retained output first (the buffer keeps the last lines); not tail_lines: the
              // process driver sends a tail without its last newline, which would glue the
              // first followed line onto it.
              since: from === undefined ? undefined : timestampFromMs(from),
            },
            {
              signal: abort.signal,
              onHeader: () => {
                status = "live";
                bump(status);
              },
            },
          );
          for await (const r of stream) {
            const c = r.chunk;
            if (!c) continue;
            backoff.reset();
            if (!dedup.accept(c.time ? timestampMs(c.time) : undefined, c.stream, c.data)) continue;
            buffer.current.push(c.stream, c.data);
            status = "live";
            // Many chunks in a burst: one render per animation frame.
            if (!frame)
              frame = requestAnimationFrame(() => {
                frame = 0;
                bump(status);
              });
          }
          if (!isRunning.current) return bump("ended");
          error = "the log stream ended";
        } catch (err) {
          if (abort.signal.aborted) return;
          const e = ConnectError.from(err);
          if (fatal(e)) {
            onFatal(e);
            return bump("ended", e.rawMessage);
          }
          if (e.code === Code.NotFound) return bump("ended", e.rawMessage);
          error = e.rawMessage || Code[e.code];
        }
        status = "reconnecting";
        bump(status, error);
        try {
          await sleep(backoff.next(), abort.signal);
        } catch {
          return;
        }
      }
    })();
    return () => {
      abort.abort();
      cancelAnimationFrame(frame);
    };
  }, [workloadId, replica, epoch, visible]);
  return { buffer: buffer.current, ...state };
}

/** Every ApplicationPersona the reconciler serves, live. */
export function usePersonas() {
  return useWatch<ApplicationPersona>(
    (since, signal, connected) =>
      mapEvents(
        personaService.watchPersonaEvents(
          { sinceResourceVersion: since === 0n ? "" : since.toString(), kinds: [PersonaKind.APPLICATION] },
          { signal, onHeader: connected },
        ),
        (r) => ({
          type: r.type,
          revision: resourceVersion(r.resourceVersion),
          item: r.object.case === "applicationPersona" ? r.object.value : undefined,
        }),
      ),
    (p) => `${p.metadata?.namespace ?? ""}/${p.metadata?.name ?? ""}`,
    [],
  );
}

/** The cluster's personas (normally one), live: a restricted reconciler refuses, saying why. */
export function useClusterPersonas() {
  return useWatch<ClusterPersona>(
    (since, signal, connected) =>
      mapEvents(
        personaService.watchPersonaEvents(
          { sinceResourceVersion: since === 0n ? "" : since.toString(), kinds: [PersonaKind.CLUSTER] },
          { signal, onHeader: connected },
        ),
        (r) => ({
          type: r.type,
          revision: resourceVersion(r.resourceVersion),
          item: r.object.case === "clusterPersona" ? r.object.value : undefined,
        }),
      ),
    (p) => p.metadata?.name ?? "",
    [],
    // A reconciler restricted to one namespace reads no ClusterPersona: retrying changes nothing.
    (e) => e.code === Code.FailedPrecondition,
  );
}

// A reconciler without Kapsa projects (--projects) answers UNIMPLEMENTED: retrying changes nothing.
const projectsOff = (e: ConnectError) => e.code === Code.Unimplemented;

/** Kapsa projects, live: every one, or `namespace/name` only. */
export function useProjects(only?: { namespace: string; name: string }) {
  return useWatch<Project>(
    (since, signal, connected) =>
      mapEvents(
        projectService.watchProjects(
          { sinceResourceVersion: since === 0n ? "" : since.toString(), namespace: only?.namespace ?? "", name: only?.name ?? "" },
          { signal, onHeader: connected },
        ),
        (r) => watchEvent(r.type, r.resourceVersion, r.project),
      ),
    objectKey,
    [only?.namespace, only?.name],
    projectsOff,
  );
}

/** The environments of the project `namespace/name` (they live in its own namespace), live. */
export function useEnvironments(project: string) {
  return useWatch<Environment>(
    (since, signal, connected) =>
      mapEvents(
        projectService.watchEnvironments({ sinceResourceVersion: since === 0n ? "" : since.toString(), project }, { signal, onHeader: connected }),
        (r) => watchEvent(r.type, r.resourceVersion, r.environment),
      ),
    objectKey,
    [project],
    projectsOff,
  );
}

/** The builds (kpack Images) of the project `namespace/name`, live. */
export function useBuilds(project: string) {
  return useWatch<Build>(
    (since, signal, connected) =>
      mapEvents(
        projectService.watchBuilds({ sinceResourceVersion: since === 0n ? "" : since.toString(), project }, { signal, onHeader: connected }),
        (r) => watchEvent(r.type, r.resourceVersion, r.build),
      ),
    objectKey,
    [project],
    projectsOff,
  );
}

/** Alerts, live: the open ones first (the snapshot), then every change, resolutions included. */
export function useAlerts() {
  return useWatch<Alert>(
    (since, signal, connected) =>
      mapEvents(alertService.watchAlerts({ sinceRevision: since }, { signal, onHeader: connected }), (r) => ({
        type: r.type,
        revision: r.revision,
        item: r.alert,
      })),
    (a) => a.id,
    [],
  );
}

/**
 * Host metrics of `nodeIds` (every node when empty), live: the newest sample of each node, then
 * each sample as the pipeline stores it, kept per node in a HostHistory of `keep` samples. A
 * burst of samples is one render per animation frame, and with `renderEveryMs` samples are
 * rendered together at most that often (many nodes' samples arriving one by one); `version`
 * changes with each render.
 */
export function useHostMetrics(nodeIds: readonly string[] = [], keep = 60, includeContainers = false, enabled = true, renderEveryMs = 0) {
  const history = useRef<HostHistory>();
  history.current ??= new HostHistory(keep);
  const [state, setState] = useState<{ version: number; status: LiveStatus; synced: boolean; problem?: string; error?: string }>({
    version: 0,
    status: "connecting",
    synced: false,
  });
  const key = nodeIds.join(",");
  const visible = useVisible();
  useEffect(() => {
    if (!visible || !enabled) {
      setState((s) => ({ ...s, status: "paused", error: undefined }));
      return;
    }
    const abort = new AbortController();
    let version = 0;
    let frame = 0;
    let wait: ReturnType<typeof setTimeout> | undefined;
    let renderedAt = 0;
    let last: { status: LiveStatus; synced: boolean; error?: string } = { status: "connecting", synced: false };
    void runWatch<HostMetrics>({
      open: (since, signal, connected) =>
        mapEvents(metricsQuery.watchHostMetrics({ sinceRevision: since, nodeIds: [...nodeIds], includeContainers }, { signal, onHeader: connected }), (r) => ({
          type: r.type,
          revision: r.revision,
          item: r.metrics,
        })),
      key: (m) => m.nodeId,
      signal: abort.signal,
      fatal,
      onFatal: (e) => {
        onFatal(e);
        setState((s) => ({ ...s, problem: e.rawMessage }));
      },
      onChange: (snap) => {
        if (abort.signal.aborted) return;
        // The watch keeps each node's newest sample; the history takes the ones newer than it has.
        for (const m of snap.items.values()) history.current!.push(m);
        last = { status: snap.status, synced: snap.synced, error: snap.error };
        if (frame || wait !== undefined) return;
        const render = () => {
          wait = undefined;
          frame = requestAnimationFrame((t) => {
            frame = 0;
            renderedAt = t;
            setState({ version: ++version, ...last });
          });
        };
        // Samples of many nodes arrive one by one: shown together at most every renderEveryMs.
        const due = renderedAt + renderEveryMs - performance.now();
        if (renderEveryMs > 0 && due > 0) wait = setTimeout(render, due);
        else render();
      },
    });
    return () => {
      abort.abort();
      cancelAnimationFrame(frame);
      clearTimeout(wait);
    };
  }, [key, visible, includeContainers, enabled]);
  return { history: history.current, ...state };
}
