import { describe, expect, it } from "vitest";
import { type ChannelLike, type LockFn, REFRESH_LOCK, type SharedToken, type TabMessage, TabSync } from "./tabs";

const MINUTE = 60_000;
const NOW = 1_000_000_000;

/** An exclusive lock shared by the "tabs" of one test, as navigator.locks is by an origin's. */
function locks(): { lock: LockFn; names: string[] } {
  const tails = new Map<string, Promise<unknown>>();
  const names: string[] = [];
  const lock: LockFn = (name, fn) => {
    names.push(name);
    const run = (tails.get(name) ?? Promise.resolve()).then(fn, fn);
    tails.set(
      name,
      run.catch(() => {}),
    );
    return run;
  };
  return { lock, names };
}

/** A BroadcastChannel between the tabs of one test: a message reaches every other tab, later. */
function bus(): () => ChannelLike & { sent: TabMessage[] } {
  const members: (ChannelLike & { sent: TabMessage[] })[] = [];
  return () => {
    const me: ChannelLike & { sent: TabMessage[] } = {
      sent: [],
      onmessage: null,
      postMessage(m) {
        me.sent.push(m);
        for (const other of members)
          if (other !== me) {
            const data = structuredClone(m);
            queueMicrotask(() => other.onmessage?.({ data }));
          }
      },
    };
    members.push(me);
    return me;
  };
}

/**
 * The gateway's Refresh with the cookie: it rotates the cookie, and a cookie presented again
 * (used already) ends the session (its whole family). The browser's cookie jar is shared by the
 * tabs; a request reads it when it is sent and the answer sets it when it arrives.
 */
function gateway() {
  let cookie: string | undefined = "c0";
  const used = new Set<string>();
  let ended = false;
  let n = 0;
  const refresh = async (): Promise<SharedToken> => {
    const sent = cookie;
    await new Promise((r) => setTimeout(r, 5)); // on the wire
    if (!sent || ended) throw new Error("unauthenticated");
    if (used.has(sent)) {
      ended = true;
      cookie = undefined;
      throw new Error("refresh token already used");
    }
    used.add(sent);
    n += 1;
    cookie = `c${n}`;
    return { userId: "u1", access: `access-${n}`, accessExpiresMs: NOW + 15 * MINUTE + n };
  };
  return { refresh, state: () => ({ cookie, ended, refreshes: n }) };
}

describe("TabSync", () => {
  it("serializes two tabs' refreshes with one lock, so the cookie is never presented twice", async () => {
    const { lock, names } = locks();
    const gw = gateway();
    const a = new TabSync({ lock, now: () => NOW });
    const b = new TabSync({ lock, now: () => NOW });
    const [ra, rb] = await Promise.all([a.refresh("u1", NOW + MINUTE, gw.refresh), b.refresh("u1", NOW + MINUTE, gw.refresh)]);
    expect(names).toEqual([REFRESH_LOCK, REFRESH_LOCK]);
    expect(gw.state()).toEqual({ cookie: "c2", ended: false, refreshes: 2 });
    expect([ra.shared.access, rb.shared.access]).toEqual(["access-1", "access-2"]);
  });

  it("without the lock the same two refreshes end the session (what the lock prevents)", async () => {
    const gw = gateway();
    const a = new TabSync({ now: () => NOW });
    const b = new TabSync({ now: () => NOW });
    const results = await Promise.allSettled([a.refresh("u1", 0, gw.refresh), b.refresh("u1", 0, gw.refresh)]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected"]);
    expect(gw.state().ended).toBe(true);
  });

  it("lets the tab that waited for the lock use the token the first one shared, without refreshing", async () => {
    const { lock } = locks();
    const join = bus();
    const gw = gateway();
    const a = new TabSync({ lock, channel: join(), now: () => NOW });
    const b = new TabSync({ lock, channel: join(), now: () => NOW });
    const seen: SharedToken[] = [];
    b.handlers = { token: (t) => seen.push(t) };
    const [ra, rb] = await Promise.all([a.refresh("u1", NOW + MINUTE, gw.refresh), b.refresh("u1", NOW + MINUTE, gw.refresh)]);
    expect(gw.state().refreshes).toBe(1);
    expect(ra.fresh?.access).toBe("access-1");
    expect(rb).toEqual({ shared: { userId: "u1", access: "access-1", accessExpiresMs: NOW + 15 * MINUTE + 1 }, fresh: undefined });
    expect(seen.map((t) => t.access)).toEqual(["access-1"]);
  });

  it("lets a tab resuming after a reload (user unknown) use a shared token, and refreshes otherwise", async () => {
    const { lock } = locks();
    const join = bus();
    const gw = gateway();
    const a = new TabSync({ lock, channel: join(), now: () => NOW });
    const b = new TabSync({ lock, channel: join(), now: () => NOW });
    expect((await b.refresh(undefined, 0, gw.refresh)).fresh?.access).toBe("access-1");
    await Promise.resolve();
    expect(await a.refresh(undefined, 0, gw.refresh)).toMatchObject({ shared: { access: "access-1" }, fresh: undefined });
    expect(gw.state().refreshes).toBe(1);
  });

  it("does not use a shared token of another user, one no newer than its own, or one about to expire", () => {
    let now = NOW;
    const join = bus();
    const a = new TabSync({ channel: join() });
    const b = new TabSync({ channel: join(), now: () => now });
    a.publish({ userId: "u2", access: "x", accessExpiresMs: NOW + 10 * MINUTE });
    return Promise.resolve().then(() => {
      expect(b.usable("u1", 0)).toBeUndefined();
      expect(b.usable(undefined, 0)?.access).toBe("x");
      expect(b.usable("u2", NOW + 10 * MINUTE)).toBeUndefined();
      expect(b.usable("u2", NOW + 5 * MINUTE)?.access).toBe("x");
      now = NOW + 9.5 * 60_000; // within the refresh margin
      expect(b.usable("u2", 0)).toBeUndefined();
    });
  });

  it("tells the other tabs of a logout, and forgets the shared token", async () => {
    const join = bus();
    const a = new TabSync({ channel: join(), now: () => NOW });
    const b = new TabSync({ channel: join(), now: () => NOW });
    let loggedOut = 0;
    b.handlers = { logout: () => loggedOut++ };
    a.publish({ userId: "u1", access: "x", accessExpiresMs: NOW + 10 * MINUTE });
    await Promise.resolve();
    expect(b.usable("u1", 0)?.access).toBe("x");
    a.logout();
    await Promise.resolve();
    expect(loggedOut).toBe(1);
    expect(b.usable("u1", 0)).toBeUndefined();
  });

  it("ignores what is not one of its messages on the channel", () => {
    const channel: ChannelLike = { onmessage: null, postMessage: () => {} };
    const t = new TabSync({ channel, now: () => NOW });
    let calls = 0;
    t.handlers = { token: () => calls++, logout: () => calls++ };
    for (const data of [null, "logout", { type: "token", access: 1 }, { type: "other" }]) channel.onmessage?.({ data });
    expect(calls).toBe(0);
    expect(t.usable(undefined, 0)).toBeUndefined();
  });

  it("releases the lock when a refresh fails, so the next tab can go on", async () => {
    const { lock } = locks();
    const a = new TabSync({ lock, now: () => NOW });
    const b = new TabSync({ lock, now: () => NOW });
    const failed = a.refresh("u1", 0, () => Promise.reject(new Error("network")));
    const next = b.refresh("u1", 0, async () => ({ userId: "u1", access: "ok", accessExpiresMs: NOW + 15 * MINUTE }));
    await expect(failed).rejects.toThrow("network");
    expect((await next).fresh?.access).toBe("ok");
  });
});
