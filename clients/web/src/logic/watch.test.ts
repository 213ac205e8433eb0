import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { WatchEventType } from "../gen/persys/common/v1/common_pb";
import { Backoff } from "./backoff";
import { runWatch, type WatchEvent, type WatchSnapshot, WatchState } from "./watch";

interface Item {
  id: string;
  v: number;
}
const ev = (type: WatchEventType, revision: number, item?: Item): WatchEvent<Item> => ({
  type,
  revision: BigInt(revision),
  item,
});
const { ADDED, MODIFIED, DELETED, BOOKMARK } = WatchEventType;

describe("WatchState", () => {
  it("shows a snapshot only once its bookmark arrives, then applies changes", () => {
    const s = new WatchState<Item>((i) => i.id);
    expect(s.open()).toBe(0n);
    expect(s.apply(ev(ADDED, 3, { id: "a", v: 1 }))).toBe(false);
    expect(s.items.size).toBe(0);
    expect(s.apply(ev(BOOKMARK, 5))).toBe(true);
    expect(s.synced).toBe(true);
    expect([...s.items.keys()]).toEqual(["a"]);
    expect(s.apply(ev(MODIFIED, 6, { id: "a", v: 2 }))).toBe(true);
    expect(s.items.get("a")?.v).toBe(2);
    expect(s.apply(ev(DELETED, 7, { id: "a", v: 2 }))).toBe(true);
    expect(s.items.size).toBe(0);
    expect(s.revision).toBe(7n);
    // A reconnect resumes after the last revision and keeps the items.
    expect(s.open()).toBe(7n);
  });

  it("replaces everything with a new snapshot after a restart (compacted history)", () => {
    const s = new WatchState<Item>((i) => i.id);
    s.open();
    s.apply(ev(ADDED, 1, { id: "gone", v: 1 }));
    s.apply(ev(BOOKMARK, 1));
    s.restart();
    expect(s.open()).toBe(0n);
    s.apply(ev(ADDED, 9, { id: "new", v: 1 }));
    expect([...s.items.keys()]).toEqual(["gone"]);
    s.apply(ev(BOOKMARK, 9));
    expect([...s.items.keys()]).toEqual(["new"]);
  });
});

describe("runWatch", () => {
  it("reconnects after a broken stream from the last revision and says it is reconnecting", async () => {
    const abort = new AbortController();
    const opened: bigint[] = [];
    const seen: WatchSnapshot<Item>[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const run = runWatch<Item>({
      key: (i) => i.id,
      backoff: { initialMs: 1, maxMs: 2 },
      signal: abort.signal,
      onChange: (s) => {
        seen.push(s);
        if (s.items.get("b")) done();
      },
      async *open(since, signal, connected) {
        opened.push(since);
        connected();
        if (opened.length === 1) {
          yield ev(ADDED, 1, { id: "a", v: 1 });
          yield ev(BOOKMARK, 2);
          throw new ConnectError("connection reset", Code.Unavailable);
        }
        yield ev(ADDED, 3, { id: "b", v: 1 });
        // Open until the view goes away, like a real stream.
        await new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      },
    });
    await finished;
    abort.abort();
    await run;
    expect(opened).toEqual([0n, 2n]);
    const statuses = seen.map((s) => s.status);
    expect(statuses[0]).toBe("connecting");
    expect(statuses).toContain("reconnecting");
    const reconnecting = seen.find((s) => s.status === "reconnecting")!;
    expect(reconnecting.error).toBe("connection reset");
    // The items stay on screen while reconnecting.
    expect([...reconnecting.items.keys()]).toEqual(["a"]);
    expect(seen.at(-1)?.status).toBe("live");
    expect([...seen.at(-1)!.items.keys()].sort()).toEqual(["a", "b"]);
  });

  it("starts over with a snapshot after OUT_OF_RANGE, and stops on a fatal error", async () => {
    const abort = new AbortController();
    const opened: bigint[] = [];
    let fatal: ConnectError | undefined;
    await runWatch<Item>({
      key: (i) => i.id,
      backoff: { initialMs: 1, maxMs: 1 },
      signal: abort.signal,
      onChange: () => {},
      fatal: (e) => e.code === Code.Unauthenticated,
      onFatal: (e) => (fatal = e),
      async *open(since) {
        opened.push(since);
        if (opened.length === 1) {
          yield ev(BOOKMARK, 4);
          throw new ConnectError("compacted", Code.OutOfRange);
        }
        throw new ConnectError("token expired", Code.Unauthenticated);
      },
    });
    expect(opened).toEqual([0n, 0n]);
    expect(fatal?.rawMessage).toBe("token expired");
  });
});

describe("Backoff", () => {
  it("grows to the cap, never below half of it, and resets", () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([50, 100, 200, 400, 500]);
    b.reset();
    expect(b.next()).toBe(50);
    const top = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999 });
    expect(top.next()).toBeLessThanOrEqual(100);
  });
});

describe("runWatch with a kept state", () => {
  it("shows the kept items at once and resumes after their revision", async () => {
    const state = new WatchState<Item>((i) => i.id);
    state.open();
    state.apply(ev(ADDED, 4, { id: "a", v: 1 }));
    state.apply(ev(BOOKMARK, 9));
    const abort = new AbortController();
    const seen: WatchSnapshot<Item>[] = [];
    const opened: bigint[] = [];
    await runWatch<Item>({
      key: (i) => i.id,
      state,
      signal: abort.signal,
      open: async function* (since) {
        opened.push(since);
        yield ev(MODIFIED, 10, { id: "a", v: 2 });
        abort.abort();
      },
      onChange: (s) => seen.push(s),
    });
    expect(opened).toEqual([9n]);
    expect(seen[0].items.get("a")?.v).toBe(1);
    expect(seen[0].synced).toBe(true);
    expect(seen.at(-1)?.items.get("a")?.v).toBe(2);
    expect(state.revision).toBe(10n);
  });
});
