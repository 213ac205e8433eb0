import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { CommandRecordSchema, CommandStatus } from "../gen/persys/metrics/v1/command_pb";
import { commandFromForm, commandSummary, commandTone } from "./commands";

describe("commandFromForm", () => {
  it("splits argv as a shell would and sends a shell line whole", () => {
    const r = commandFromForm({ command: `df -h "/var/lib docker"`, shell: false, timeout: "1m" }, "n1");
    expect(r).toEqual({ request: { nodeId: "n1", argv: ["df", "-h", "/var/lib docker"], shell: "", timeout: durationFromMs(60_000) } });
    const s = commandFromForm({ command: " journalctl | tail ", shell: true, timeout: "30s" }, "n1");
    expect("request" in s && s.request).toMatchObject({ argv: [], shell: "journalctl | tail" });
  });

  it("refuses what cannot be sent, under the server's field names", () => {
    const r = commandFromForm({ command: `echo "open`, shell: false, timeout: "11m" }, "n1");
    expect(r).toEqual({
      violations: [
        { field: "argv", description: "a quote is not closed" },
        { field: "timeout", description: "between 1s and 10m, e.g. 30s" },
      ],
    });
    expect(commandFromForm({ command: "  ", shell: false, timeout: "soon" }, "n1")).toMatchObject({ violations: [{ field: "argv" }, { field: "timeout" }] });
  });
});

describe("commandSummary", () => {
  const rec = (status: CommandStatus, extra = {}) => create(CommandRecordSchema, { status, ...extra });
  it("says how a command ended", () => {
    expect(commandSummary(rec(CommandStatus.COMPLETED, { exitCode: 3, duration: durationFromMs(12) }))).toBe("Completed with exit code 3 in 12 ms");
    expect(commandSummary(rec(CommandStatus.TIMED_OUT, { duration: durationFromMs(1500) }))).toBe("Killed at its timeout in 1.5 s");
    expect(commandSummary(rec(CommandStatus.REJECTED, { errorMessage: "`cat` is not allowed" }))).toBe("Refused: `cat` is not allowed");
    expect(commandSummary(rec(CommandStatus.FAILED))).toBe("Failed: no detail");
  });
  it("tones a clean exit good and anything else not", () => {
    expect(commandTone(rec(CommandStatus.COMPLETED, { exitCode: 0 }))).toBe("ok");
    expect(commandTone(rec(CommandStatus.COMPLETED, { exitCode: 1 }))).toBe("warn");
    expect(commandTone(rec(CommandStatus.REJECTED))).toBe("bad");
  });
});
