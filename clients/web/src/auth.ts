// Logging in, resuming a session after a reload (from the gateway's cookie), logging out,
// changing one's password.
import { authClient, cookieSessions, sessionHeaders } from "./api";
import type { User } from "./gen/persys/gateway/v1/user_pb";
import { begin, end, setRestoring, tokensOf } from "./session";

const refresher = async (refreshToken: string) =>
  tokensOf(await authClient.refresh({ refreshToken }, { headers: sessionHeaders }));

/** Logs in with a password (AuthService.Login). */
export async function login(username: string, password: string): Promise<void> {
  const r = await authClient.login({ username, password }, { headers: sessionHeaders });
  if (!r.user) throw new Error("the gateway sent no user");
  begin(r.user, tokensOf(r), refresher);
}

/** Resumes the session of the cookie, if there is one; otherwise the login page shows. */
export async function resume(): Promise<void> {
  if (!cookieSessions) return;
  setRestoring(true);
  try {
    const tokens = await refresher("");
    const who = await authClient.whoAmI({}, { headers: { authorization: `Bearer ${tokens.access}` } });
    if (who.user) begin(who.user, tokens, refresher);
  } catch {
    // No session to resume (no cookie, or it ended): log in.
  } finally {
    setRestoring(false);
  }
}

/** Logs out here at once, then revokes the session on the server (and clears the cookie). */
export async function logout(): Promise<void> {
  const refreshToken = end();
  if (refreshToken === undefined) return;
  if (refreshToken || cookieSessions) await authClient.logout({ refreshToken }, { headers: sessionHeaders }).catch(() => {});
}

/**
 * Changes the signed-in user's password (AuthService.ChangePassword): every session of theirs
 * ends at the gateway, and this page goes on with the new one it answers with.
 */
export async function changePassword(user: User, currentPassword: string, newPassword: string): Promise<void> {
  const r = await authClient.changePassword({ currentPassword, newPassword }, { headers: sessionHeaders });
  begin(user, tokensOf(r), refresher);
}
