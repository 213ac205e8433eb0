// The signed-in session. The access token is in memory only: nothing is written to
// localStorage or sessionStorage. On the gateway's own origin the refresh token is an HttpOnly
// cookie the gateway sets (script never sees it; the token here is then empty), so a reload
// resumes the session through Refresh; on another origin (the Vite dev server) it is kept in
// this module's closure and a reload means logging in again. The access token is refreshed a
// minute before it expires (coordinated with the other tabs: see auth.ts and logic/tabs.ts), or
// replaced earlier by a newer one another tab shared; logout revokes the session.
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { useEffect, useState } from "preact/hooks";
import { Role } from "./gen/persys/common/v1/common_pb";
import type { User } from "./gen/persys/gateway/v1/user_pb";

/** What the app knows about the signed-in user. */
export interface Session {
  user: User;
  /** Admins see node actions (cordon, drain); viewers see no write action at all. */
  isAdmin: boolean;
  canWrite: boolean;
}

export interface Tokens {
  access: string;
  refresh: string;
  accessExpiresMs: number;
}

let session: Session | null = null;
let tokens: Tokens | null = null;
let notice = "";
let restoring = false;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let refresher: Refresher | undefined;
const listeners = new Set<() => void>();
const changed = () => listeners.forEach((l) => l());

/** Returns the access token for the transport, if signed in. */
export function accessToken(): string | undefined {
  return tokens?.access;
}

/** A function that trades the current tokens of `user` for new ones (AuthService.Refresh). */
export type Refresher = (current: Tokens, user: User) => Promise<Tokens>;

/** Starts a session after a Login (or a resume, or a password change). */
export function begin(user: User, t: Tokens, r: Refresher): void {
  tokens = t;
  refresher = r;
  const role = user.role;
  session = { user, isAdmin: role === Role.ADMIN, canWrite: role === Role.ADMIN || role === Role.MEMBER };
  notice = "";
  schedule();
  changed();
}

function schedule(): void {
  clearTimeout(refreshTimer);
  if (!tokens) return;
  const inMs = Math.max(5_000, tokens.accessExpiresMs - Date.now() - 60_000);
  refreshTimer = setTimeout(async () => {
    const [t, s, r] = [tokens, session, refresher];
    if (!t || !s || !r) return;
    try {
      const next = await r(t, s.user);
      // Logged out (or another session begun) meanwhile: that one stands.
      if (session !== s || !tokens) return;
      // Another tab's token may have been adopted meanwhile: keep the one that lasts longer.
      if (next.accessExpiresMs >= tokens.accessExpiresMs) tokens = next;
      schedule();
    } catch {
      if (session === s) expire("Your session ended. Log in again.");
    }
  }, inMs);
}

/**
 * Takes an access token another tab of the same origin got for the same session (they share
 * the refresh cookie) when it outlives this tab's: this tab then need not refresh yet.
 */
export function adopt(userId: string, access: string, accessExpiresMs: number): void {
  if (!session || !tokens || session.user.id !== userId || accessExpiresMs <= tokens.accessExpiresMs) return;
  tokens = { access, refresh: tokens.refresh, accessExpiresMs };
  schedule();
}

/** Ends the session locally (the server already ended it, or it expired) with a notice. */
export function expire(message: string): void {
  if (!session) return;
  clearTimeout(refreshTimer);
  session = null;
  tokens = null;
  notice = message;
  changed();
}

/**
 * Ends the session and returns the refresh token to revoke ("" when it is the cookie), or
 * undefined when there was no session.
 */
export function end(): string | undefined {
  const refresh = tokens?.refresh;
  clearTimeout(refreshTimer);
  session = null;
  tokens = null;
  notice = "You are logged out.";
  changed();
  return refresh;
}

/** Converts a Login or Refresh response into tokens. */
export function tokensOf(r: { accessToken: string; refreshToken: string; accessExpiresAt?: Parameters<typeof timestampMs>[0] }): Tokens {
  return {
    access: r.accessToken,
    refresh: r.refreshToken,
    accessExpiresMs: r.accessExpiresAt ? timestampMs(r.accessExpiresAt) : Date.now() + 15 * 60_000,
  };
}

/** Marks whether a stored session is being resumed (the app waits before showing the login). */
export function setRestoring(on: boolean): void {
  restoring = on;
  changed();
}

/** Returns the session (null when signed out) and the last notice, re-rendering on change. */
export function useSession(): { session: Session | null; notice: string; restoring: boolean } {
  const [, tick] = useState(0);
  useEffect(() => {
    const l = () => tick((n) => n + 1);
    listeners.add(l);
    // A change between the first render and this subscription (a resume that failed at once)
    // would otherwise go unseen.
    l();
    return () => void listeners.delete(l);
  }, []);
  return { session, notice, restoring };
}
