// A live collection kept by a `Watch*` server stream, following the platform's watch
// semantics (persys.common.v1): a snapshot of ADDED events closed by a BOOKMARK, then changes;
// each event carries a revision to resume after. When the stream breaks the collection is kept,
// the view says it is reconnecting, and the watch resumes after the last revision, so no change
// is missed. OUT_OF_RANGE (history compacted) starts over with a fresh snapshot.
import { Code, ConnectError } from "@connectrpc/connect";
import { WatchEventType } from "../gen/persys/common/v1/common_pb";
import { Backoff, type BackoffOptions, sleep } from "./backoff";

/** One event of a watch stream, as every Watch*Response carries it. */
export interface WatchEvent<T> {
  type: WatchEventType;
  revision: bigint;
  item?: T;
}

/** Where a live view stands ("paused": its stream is closed while the tab is hidden). */
export type LiveStatus = "connecting" | "live" | "reconnecting" | "paused";

/** What a view shows: the items, whether they are complete yet, and the stream's status. */
export interface WatchSnapshot<T> {
  items: ReadonlyMap<string, T>;
  /** True once the first snapshot has ended (an empty map then means "there are none"). */
  synced: boolean;
  status: LiveStatus;
  /** The last error that broke the stream, while reconnecting. */
  error?: string;
}

/** The pure part: applies events to a collection. */
export class WatchState<T> {
  items = new Map<string, T>();
  /** Items of a snapshot in progress, swapped in at its BOOKMARK. */
  private pending: Map<string, T> | null = null;
  revision = 0n;
  synced = false;

  constructor(private readonly key: (item: T) => string) {}

  /** Prepares for a stream opened from `revision` (0 means a new snapshot). */
  open(): bigint {
    if (this.revision === 0n) this.pending = new Map();
    return this.revision;
  }

  /** Forgets the revision, so the next stream starts with a snapshot (after OUT_OF_RANGE). */
  restart(): void {
    this.revision = 0n;
  }

  /** Applies one event; returns whether what a view shows changed. */
  apply(e: WatchEvent<T>): boolean {
    if (e.revision > this.revision) this.revision = e.revision;
    const target = this.pending ?? this.items;
    switch (e.type) {
      case WatchEventType.ADDED:
      case WatchEventType.MODIFIED:
        if (e.item) target.set(this.key(e.item), e.item);
        return this.pending === null;
      case WatchEventType.DELETED:
        if (e.item) target.delete(this.key(e.item));
        return this.pending === null;
      case WatchEventType.BOOKMARK:
        if (this.pending) {
          this.items = this.pending;
          this.pending = null;
          this.synced = true;
          return true;
        }
        return false;
      default:
        return false;
    }
  }
}

/** How to open the stream and what to do with it. */
export interface WatchOptions<T> {
  /**
   * Opens the stream after `sinceRevision`; calls `connected` when the server has answered
   * (its response headers), which may be long before the first change of a resumed watch.
   */
  open: (sinceRevision: bigint, signal: AbortSignal, connected: () => void) => AsyncIterable<WatchEvent<T>>;
  key: (item: T) => string;
  /** Called with a fresh snapshot whenever what a view shows changed. */
  onChange: (s: WatchSnapshot<T>) => void;
  /** Errors after which retrying is pointless (e.g. the session ended); the watch stops. */
  fatal?: (e: ConnectError) => boolean;
  /** Called with such an error. */
  onFatal?: (e: ConnectError) => void;
  backoff?: BackoffOptions;
  signal: AbortSignal;
  /**
   * The collection to keep, e.g. across a pause: its items are shown at once and the stream
   * resumes after its revision. A new one when unset.
   */
  state?: WatchState<T>;
}

/** Runs a watch until `signal` aborts, reconnecting after every break. */
export async function runWatch<T>(o: WatchOptions<T>): Promise<void> {
  const state = o.state ?? new WatchState<T>(o.key);
  const backoff = new Backoff(o.backoff ?? { initialMs: 500, maxMs: 15_000 });
  let status: LiveStatus = "connecting";
  let error: string | undefined;
  const emit = () => o.onChange({ items: new Map(state.items), synced: state.synced, status, error });
  emit();
  while (!o.signal.aborted) {
    try {
      const since = state.open();
      const connected = () => {
        // A resumed watch is live once the server answers; a new one at its snapshot's end.
        if (status !== "live" && state.synced && since !== 0n) {
          status = "live";
          error = undefined;
          emit();
        }
      };
      for await (const e of o.open(since, o.signal, connected)) {
        const changed = state.apply(e);
        backoff.reset();
        if (status !== "live" && (state.synced || e.type === WatchEventType.BOOKMARK)) {
          status = "live";
          error = undefined;
          emit();
        } else if (changed) emit();
      }
      // The server ended the stream (e.g. its maximum stream time): resume at once.
      error = "the server closed the stream";
    } catch (err) {
      if (o.signal.aborted) return;
      const e = ConnectError.from(err);
      if (o.fatal?.(e)) {
        o.onFatal?.(e);
        return;
      }
      if (e.code === Code.OutOfRange) state.restart();
      error = e.rawMessage || Code[e.code];
    }
    status = "reconnecting";
    emit();
    try {
      await sleep(backoff.next(), o.signal);
    } catch {
      return;
    }
  }
}
