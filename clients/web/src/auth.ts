// Logging in, resuming a session after a reload (from the gateway's cookie), logging out,
// changing one's password. With the cookie, the origin's tabs share one session: Refresh runs
// under a lock held across them (the gateway would end a session whose cookie is presented
// twice), the tokens one tab gets are shared with the others, and a logout logs out every tab
// (logic/tabs.ts).
import { authClient, cookieSessions, sessionHeaders } from "./api";
import type { User } from "./gen/persys/gateway/v1/user_pb";
import { browserTabSync } from "./logic/tabs";
import { adopt, begin, end, expire, type Refresher, setRestoring, type Tokens, tokensOf } from "./session";

/** AuthService.Refresh: with an empty token the gateway reads (and rotates) the cookie. */
const refreshWith = async (refreshToken: string) =>
  tokensOf(await authClient.refresh({ refreshToken }, { headers: sessionHeaders }));

// The cookie is the origin's, so its tabs coordinate; the Vite dev server's tabs each hold a
// refresh token of their own and need not.
const tabs = cookieSessions ? browserTabSync() : undefined;
if (tabs)
  tabs.handlers = {
    token: (t) => adopt(t.userId, t.access, t.accessExpiresMs),
    logout: () => expire("You logged out in another tab."),
  };

const tokensFrom = (t: { access: string; accessExpiresMs: number }): Tokens => ({ access: t.access, refresh: "", accessExpiresMs: t.accessExpiresMs });

const refresher: Refresher = async (current, user) => {
  if (!tabs) return refreshWith(current.refresh);
  const { shared } = await tabs.refresh(user.id, current.accessExpiresMs, async () => ({ userId: user.id, ...(await refreshWith("")) }));
  return tokensFrom(shared);
};

const whoAmI = async (access: string) => {
  const who = await authClient.whoAmI({}, { headers: { authorization: `Bearer ${access}` } });
  if (!who.user) throw new Error("the gateway sent no user");
  return who.user;
};

/** Logs in with a password (AuthService.Login). */
export async function login(username: string, password: string): Promise<void> {
  const r = await authClient.login({ username, password }, { headers: sessionHeaders });
  if (!r.user) throw new Error("the gateway sent no user");
  const t = tokensOf(r);
  tabs?.publish({ userId: r.user.id, ...t });
  begin(r.user, t, refresher);
}

/**
 * Resumes the session of the cookie, if there is one (a token another tab just got, or
 * Refresh); otherwise the login page shows.
 */
export async function resume(): Promise<void> {
  if (!tabs) return;
  setRestoring(true);
  try {
    const { shared, fresh } = await tabs.refresh(undefined, 0, async () => {
      const t = await refreshWith("");
      const user = await whoAmI(t.access);
      return { userId: user.id, user, ...t };
    });
    begin(fresh?.user ?? (await whoAmI(shared.access)), tokensFrom(shared), refresher);
  } catch {
    // No session to resume (no cookie, or it ended): log in.
  } finally {
    setRestoring(false);
  }
}

/** Logs out here at once (and in the origin's other tabs), then revokes the session on the server (and clears the cookie). */
export async function logout(): Promise<void> {
  const refreshToken = end();
  if (refreshToken === undefined) return;
  tabs?.logout();
  if (refreshToken || cookieSessions) await authClient.logout({ refreshToken }, { headers: sessionHeaders }).catch(() => {});
}

/**
 * Changes the signed-in user's password (AuthService.ChangePassword): every session of theirs
 * ends at the gateway, and this page (with the origin's other tabs) goes on with the new one it
 * answers with.
 */
export async function changePassword(user: User, currentPassword: string, newPassword: string): Promise<void> {
  const r = await authClient.changePassword({ currentPassword, newPassword }, { headers: sessionHeaders });
  const t = tokensOf(r);
  tabs?.publish({ userId: user.id, ...t });
  begin(user, t, refresher);
}
