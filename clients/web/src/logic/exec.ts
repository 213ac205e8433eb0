// Exec in a workload's instance, for its owner and admins: the workload page's form read into
// an ExecWorkload request, and the line the command ends on. Only what cannot be sent (no
// command, an unclosed quote, a timeout that cannot be read) is refused here; whether the
// instance runs is the scheduler's to say.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { ExecExit } from "../gen/persys/scheduler/v1/workload_pb";
import { parseDuration } from "./alerts";
import type { Violation } from "./errors";
import { shellWords } from "./form";

/** The form's inputs, as typed. */
export interface ExecForm {
  command: string;
  timeout: string;
}

export const EMPTY_EXEC: ExecForm = { command: "", timeout: "60s" };

/** The server's field paths each input answers for. */
export const EXEC_FIELDS: Record<keyof ExecForm, readonly string[]> = {
  command: ["command", "command[0]"],
  timeout: ["timeout"],
};

/** What ExecWorkload is sent, or why the form cannot be. */
export function execFromForm(
  f: ExecForm,
  workloadId: string,
  replicaIndex: number,
): { request: { workloadId: string; replicaIndex: number; command: string[]; timeout: ReturnType<typeof durationFromMs> } } | { violations: Violation[] } {
  const violations: Violation[] = [];
  let command: string[] = [];
  const line = f.command.trim();
  if (!line) violations.push({ field: "command", description: "type a command, e.g. cat /etc/os-release" });
  else {
    const words = shellWords(line);
    if (words === null) violations.push({ field: "command", description: "a quote is not closed" });
    else command = words;
  }
  const seconds = parseDuration(f.timeout);
  if (seconds === undefined || seconds <= 0 || seconds > 600) violations.push({ field: "timeout", description: "between 1s and 10m, e.g. 60s" });
  if (violations.length) return { violations };
  return { request: { workloadId, replicaIndex, command, timeout: durationFromMs(seconds! * 1000) } };
}

/** How an exec ended, in words. */
export function execSummary(exit: ExecExit): string {
  const took = exit.duration ? `${(Number(exit.duration.seconds) + exit.duration.nanos / 1e9).toFixed(1)} s` : "";
  const parts = [exit.timedOut ? "Killed at its timeout" : exit.exitCode === -1 ? "Killed by a signal" : `Exited with code ${exit.exitCode}`];
  if (took) parts.push(`after ${took}`);
  let s = parts.join(" ");
  if (exit.outputTruncated) s += "; output past the server's cap was dropped";
  return `${s}.`;
}
