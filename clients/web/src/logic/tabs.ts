// Coordination between the dashboard's tabs of one origin, which share the gateway's refresh
// cookie. The gateway rotates that cookie on every Refresh and treats a token presented twice
// as stolen (it ends the whole session), so two tabs must never refresh at once: Refresh runs
// under a Web Lock (`persys-refresh`) held across tabs, and the tab that gets it second sends
// the cookie the first one's answer rotated. A tab that refreshed (or logged in) shares the
// new access token over a BroadcastChannel, so the others need not refresh at all; a logout in
// one tab logs out the others. The lock and the channel are injected, so this is testable
// without a browser.

/** The Web Lock held across tabs while one of them refreshes. */
export const REFRESH_LOCK = "persys-refresh";
/** The BroadcastChannel the tabs share tokens and logouts on. */
export const TAB_CHANNEL = "persys-session";
/** Tokens are refreshed this long before they expire; a shared one closer to expiry is not used. */
export const REFRESH_MARGIN_MS = 60_000;

/** An access token a tab got, with whose it is. The refresh token is never shared (it is the cookie). */
export interface SharedToken {
  userId: string;
  access: string;
  accessExpiresMs: number;
}

/** What the tabs tell each other. */
export type TabMessage = ({ type: "token" } & SharedToken) | { type: "logout" };

/** Runs `fn` holding the lock `name` exclusively across the origin's tabs (navigator.locks.request). */
export type LockFn = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/** The part of a BroadcastChannel used here. */
export interface ChannelLike {
  postMessage(m: TabMessage): void;
  onmessage: ((e: { data: unknown }) => void) | null;
}

/** What a tab does when another one speaks. */
export interface TabHandlers {
  /** Another tab got (or logged in with) this token. */
  token?: (t: SharedToken) => void;
  /** Another tab logged out. */
  logout?: () => void;
}

/** Runs `fn` without any lock (no Web Locks in this context). */
const unlocked: LockFn = (_name, fn) => fn();

function isMessage(v: unknown): v is TabMessage {
  if (typeof v !== "object" || v === null) return false;
  const m = v as Record<string, unknown>;
  if (m.type === "logout") return true;
  return m.type === "token" && typeof m.userId === "string" && typeof m.access === "string" && typeof m.accessExpiresMs === "number";
}

/** One tab's side of the coordination. */
export class TabSync {
  /** The freshest token seen, this tab's own or another's. */
  private latest: SharedToken | undefined;
  private readonly lock: LockFn;
  private readonly channel: ChannelLike | undefined;
  private readonly now: () => number;
  handlers: TabHandlers = {};

  constructor(deps: { lock?: LockFn; channel?: ChannelLike; now?: () => number } = {}) {
    this.lock = deps.lock ?? unlocked;
    this.channel = deps.channel;
    this.now = deps.now ?? Date.now;
    if (this.channel)
      this.channel.onmessage = (e) => {
        if (!isMessage(e.data)) return;
        if (e.data.type === "logout") {
          this.latest = undefined;
          this.handlers.logout?.();
          return;
        }
        const { userId, access, accessExpiresMs } = e.data;
        const t = { userId, access, accessExpiresMs };
        this.remember(t);
        this.handlers.token?.(t);
      };
  }

  private remember(t: SharedToken): void {
    if (!this.latest || t.accessExpiresMs >= this.latest.accessExpiresMs) this.latest = t;
  }

  /**
   * A token another tab got that this one may use instead of refreshing: for `userId` (any user
   * when undefined: a tab resuming after a reload does not know whose the cookie is), expiring
   * after `mineExpiresMs` (this tab's own token) and not within the refresh margin.
   */
  usable(userId: string | undefined, mineExpiresMs: number): SharedToken | undefined {
    const t = this.latest;
    if (!t || (userId !== undefined && t.userId !== userId)) return undefined;
    if (t.accessExpiresMs <= mineExpiresMs || t.accessExpiresMs - this.now() <= REFRESH_MARGIN_MS) return undefined;
    return t;
  }

  /**
   * Refreshes holding the cross-tab lock: once it is held, a usable token another tab shared
   * meanwhile is returned as it is (`shared: true`); otherwise `refresh` runs (Refresh with the
   * cookie, as rotated by the last tab that held the lock) and its token is shared with the
   * other tabs before the lock is released.
   */
  async refresh<T extends SharedToken>(
    userId: string | undefined,
    mineExpiresMs: number,
    refresh: () => Promise<T>,
  ): Promise<{ shared: SharedToken; fresh: T | undefined }> {
    return this.lock(REFRESH_LOCK, async () => {
      const shared = this.usable(userId, mineExpiresMs);
      if (shared) return { shared, fresh: undefined };
      const fresh = await refresh();
      this.publish(fresh);
      return { shared: fresh, fresh };
    });
  }

  /** Tells the other tabs about a token this tab got (by Refresh, Login or a password change). */
  publish(t: SharedToken): void {
    const token = { userId: t.userId, access: t.access, accessExpiresMs: t.accessExpiresMs };
    this.remember(token);
    this.channel?.postMessage({ type: "token", ...token });
  }

  /** Tells the other tabs this one logged out (they log out too: the cookie is revoked). */
  logout(): void {
    this.latest = undefined;
    this.channel?.postMessage({ type: "logout" });
  }
}

/** The browser's lock and channel for this origin, where it has them. */
export function browserTabSync(): TabSync {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  // navigator.locks exists in secure contexts only (https, or http on localhost).
  const lock: LockFn | undefined = locks ? (name, fn) => locks.request(name, { mode: "exclusive" }, fn) as Promise<Awaited<ReturnType<typeof fn>>> : undefined;
  const channel = typeof BroadcastChannel !== "undefined" ? (new BroadcastChannel(TAB_CHANNEL) as unknown as ChannelLike) : undefined;
  return new TabSync({ lock, channel });
}
