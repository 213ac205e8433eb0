// Commands on a node (ChatOps) for the node page: the "run a command" form read into a
// RunCommand request, the words of a record's status, and the line a finished command ends on.
// Only what cannot be sent (unbalanced quotes, a timeout that cannot be read) is refused here;
// whether the node allows the command is the node's to say.
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type CommandRecord, CommandStatus } from "../gen/persys/metrics/v1/command_pb";
import { parseDuration } from "./alerts";
import type { Violation } from "./errors";
import { shellWords } from "./form";
import type { Tone } from "./states";

/** The form's inputs, as typed. */
export interface CommandForm {
  command: string;
  shell: boolean;
  timeout: string;
}

export const EMPTY_COMMAND: CommandForm = { command: "", shell: false, timeout: "30s" };

/** The server's field paths each input answers for. */
export const COMMAND_FIELDS: Record<keyof CommandForm, readonly string[]> = {
  command: ["argv", "argv[0]", "shell"],
  shell: [],
  timeout: ["timeout"],
};

/** What RunCommand is sent, or why the form cannot be. */
export function commandFromForm(
  f: CommandForm,
  nodeId: string,
): { request: { nodeId: string; argv: string[]; shell: string; timeout: ReturnType<typeof durationFromMs> } } | { violations: Violation[] } {
  const violations: Violation[] = [];
  let argv: string[] = [];
  const line = f.command.trim();
  if (!line) violations.push({ field: "argv", description: "type a command, e.g. df -h /" });
  else if (!f.shell) {
    const words = shellWords(line);
    if (words === null) violations.push({ field: "argv", description: "a quote is not closed" });
    else argv = words;
  }
  const seconds = parseDuration(f.timeout);
  if (seconds === undefined || seconds <= 0 || seconds > 600)
    violations.push({ field: "timeout", description: "between 1s and 10m, e.g. 30s" });
  if (violations.length) return { violations };
  return { request: { nodeId, argv, shell: f.shell ? line : "", timeout: durationFromMs(seconds! * 1000) } };
}

const LABELS: Record<CommandStatus, string> = {
  [CommandStatus.UNSPECIFIED]: "Unknown",
  [CommandStatus.RUNNING]: "Running",
  [CommandStatus.COMPLETED]: "Completed",
  [CommandStatus.FAILED]: "Failed",
  [CommandStatus.TIMED_OUT]: "Timed out",
  [CommandStatus.CANCELED]: "Canceled",
  [CommandStatus.REJECTED]: "Refused",
};

/** A command status's word. */
export const commandStatusLabel = (s: CommandStatus) => LABELS[s] ?? "Unknown";

/** How a record reads at a glance: a completed command with exit 0 is good, any other end is not. */
export function commandTone(r: CommandRecord): Tone {
  switch (r.status) {
    case CommandStatus.RUNNING:
      return "busy";
    case CommandStatus.COMPLETED:
      return r.exitCode === 0 ? "ok" : "warn";
    case CommandStatus.CANCELED:
      return "idle";
    default:
      return "bad";
  }
}

/** The line a finished command ends on, e.g. "Completed with exit code 0 in 12 ms". */
export function commandSummary(r: CommandRecord): string {
  const ms = r.duration ? Number(r.duration.seconds) * 1000 + Math.round(r.duration.nanos / 1e6) : undefined;
  const took = ms === undefined ? "" : ms < 1000 ? ` in ${ms} ms` : ` in ${(ms / 1000).toFixed(1)} s`;
  switch (r.status) {
    case CommandStatus.COMPLETED:
      return `Completed with exit code ${r.exitCode ?? "?"}${took}${r.outputTruncated ? " (output over the cap was dropped)" : ""}`;
    case CommandStatus.TIMED_OUT:
      return `Killed at its timeout${took}`;
    case CommandStatus.REJECTED:
      return `Refused: ${r.errorMessage}`;
    case CommandStatus.RUNNING:
      return "Running…";
    default:
      return `${commandStatusLabel(r.status)}: ${r.errorMessage || "no detail"}`;
  }
}
