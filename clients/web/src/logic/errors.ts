// What a failed call means for the user: the server's message, and its field violations
// (google.rpc.BadRequest in grpc-status-details-bin) mapped onto the form's inputs.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb";

/** One field violation as the server sent it. */
export interface Violation {
  field: string;
  description: string;
}

/** A failed call, ready to show. */
export interface Problem {
  /** The server's message (or a plain description of a network failure). */
  message: string;
  /** The gRPC code, e.g. Code.InvalidArgument. */
  code: Code;
  /** Field violations, in the order the server sent them. */
  violations: Violation[];
}

/** Returns what went wrong in a call, from any thrown value. */
export function problemOf(err: unknown): Problem {
  const e = ConnectError.from(err);
  const violations = e
    .findDetails(BadRequestSchema)
    .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  return { message: e.rawMessage || Code[e.code] || "request failed", code: e.code, violations };
}

/**
 * Assigns each violation to the form input it belongs to: `inputs` maps an input's name to the
 * field paths (prefixes) it edits, e.g. `env: ["spec.env"]` takes `spec.env[2].name`. A path is
 * matched by its longest prefix that ends at a path boundary (`.`, `[` or the end). Violations
 * no input claims are returned in `other`, so nothing the server said is lost.
 */
export function assignViolations(
  violations: readonly Violation[],
  inputs: Record<string, readonly string[]>,
): { byInput: Record<string, string[]>; other: Violation[] } {
  const byInput: Record<string, string[]> = {};
  const other: Violation[] = [];
  for (const v of violations) {
    let best: { input: string; len: number } | undefined;
    for (const [input, prefixes] of Object.entries(inputs)) {
      for (const p of prefixes) {
        const boundary = v.field.length === p.length || ".[".includes(v.field[p.length] ?? "");
        if (v.field.startsWith(p) && boundary && (!best || p.length > best.len)) best = { input, len: p.length };
      }
    }
    if (best) (byInput[best.input] ??= []).push(v.description);
    else other.push(v);
  }
  return { byInput, other };
}
