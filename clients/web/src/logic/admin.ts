// Users, API keys and the audit log: role names, a key's state, the expiry a user picks, and
// the page tokens of a server-paginated list (so "Previous" goes back without a cursor the
// server would have to support).
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Role } from "../gen/persys/common/v1/common_pb";
import type { ApiKey } from "../gen/persys/gateway/v1/api_key_pb";
import type { Tone } from "./states";

/** Roles a user can be given, most powerful first. */
export const ROLES: readonly { role: Role; label: string; description: string }[] = [
  { role: Role.ADMIN, label: "admin", description: "everything, including users, nodes and host metrics" },
  { role: Role.MEMBER, label: "member", description: "runs and manages their own workloads" },
  { role: Role.VIEWER, label: "viewer", description: "reads, changes nothing" },
];

/** A role's name. */
export const roleLabel = (r: Role) => ROLES.find((x) => x.role === r)?.label ?? "unknown role";

/** Where an API key stands at `nowMs`. */
export function keyState(k: ApiKey, nowMs: number): { label: "active" | "expired" | "revoked"; tone: Tone } {
  if (k.revokedAt) return { label: "revoked", tone: "idle" };
  if (k.expiresAt && timestampMs(k.expiresAt) <= nowMs) return { label: "expired", tone: "warn" };
  return { label: "active", tone: "ok" };
}

/** Expiry choices of the "new key" form, in days ("" is never). */
export const EXPIRIES: readonly { days: string; label: string }[] = [
  { days: "30", label: "in 30 days" },
  { days: "90", label: "in 90 days" },
  { days: "365", label: "in a year" },
  { days: "", label: "never" },
];

/** The expiry `days` from `nowMs`, or none for "never". */
export function expiryFrom(days: string, nowMs: number): Timestamp | undefined {
  const d = Number(days);
  return days === "" || !Number.isFinite(d) || d <= 0 ? undefined : timestampFromMs(nowMs + d * 86_400_000);
}

/**
 * The tokens of the pages seen so far of a list the server pages with opaque tokens: page 0 is
 * the empty token; each answer tells the next page's.
 */
export class PageTokens {
  private tokens = [""];
  private nextToken = "";
  index = 0;

  /** The token to ask for the current page with. */
  get current(): string {
    return this.tokens[this.index];
  }

  /** Records the answer to the current page: the next page's token ("" on the last page). */
  answered(next: string): void {
    this.nextToken = next;
  }

  get hasNext(): boolean {
    return this.nextToken !== "";
  }

  get hasPrevious(): boolean {
    return this.index > 0;
  }

  /** Moves to the next page (when there is one). */
  next(): void {
    if (!this.hasNext) return;
    this.tokens = [...this.tokens.slice(0, this.index + 1), this.nextToken];
    this.index++;
    this.nextToken = "";
  }

  /** Moves to the previous page (when there is one). */
  previous(): void {
    if (this.index === 0) return;
    this.index--;
    this.nextToken = this.tokens[this.index + 1];
  }

  /** Back to the first page (after the filters changed: tokens belong to their filters). */
  reset(): void {
    this.tokens = [""];
    this.nextToken = "";
    this.index = 0;
  }
}
