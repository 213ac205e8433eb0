import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ExecExitSchema } from "../gen/persys/scheduler/v1/workload_pb";
import { execFromForm, execSummary } from "./exec";

describe("exec form", () => {
  it("splits the command as a shell would and reads the timeout", () => {
    const r = execFromForm({ command: `sh -c 'echo "hi there"'`, timeout: "2m" }, "w-1", 1);
    expect("request" in r && r.request).toMatchObject({ workloadId: "w-1", replicaIndex: 1, command: ["sh", "-c", 'echo "hi there"'] });
    expect("request" in r && Number(r.request.timeout.seconds)).toBe(120);
  });

  it("refuses what cannot be sent, on the input it concerns", () => {
    const r = execFromForm({ command: "echo 'open", timeout: "forever" }, "w-1", 0);
    expect("violations" in r && r.violations.map((v) => v.field)).toEqual(["command", "timeout"]);
    const empty = execFromForm({ command: "  ", timeout: "11m" }, "w-1", 0);
    expect("violations" in empty && empty.violations.map((v) => v.description)).toEqual([
      "type a command, e.g. cat /etc/os-release",
      "between 1s and 10m, e.g. 60s",
    ]);
  });

  it("says how the command ended", () => {
    expect(execSummary(create(ExecExitSchema, { exitCode: 3, duration: { seconds: 1n, nanos: 500_000_000 } }))).toBe("Exited with code 3 after 1.5 s.");
    expect(execSummary(create(ExecExitSchema, { exitCode: -1, timedOut: true }))).toBe("Killed at its timeout.");
    expect(execSummary(create(ExecExitSchema, { exitCode: -1, outputTruncated: true }))).toBe("Killed by a signal; output past the server's cap was dropped.");
  });
});
