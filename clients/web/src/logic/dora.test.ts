import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  DeploymentEnvironment,
  DeploymentStatus,
  DevlakePushState,
  DoraPerformanceLevel,
  DoraWeekSchema,
} from "../gen/persys/metrics/v1/dora_pb";
import {
  benchmarkLabel,
  DEFAULT_WINDOW_DAYS,
  DORA_WINDOWS,
  devlakeOf,
  durationMs,
  durationText,
  ENVIRONMENTS,
  environmentLabel,
  firstLine,
  frequencyText,
  humanDuration,
  levelLabel,
  levelTone,
  percentText,
  repoPath,
  shortSha,
  statusOf,
  utcDate,
  weekRows,
  windowRange,
} from "./dora";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

describe("dora", () => {
  it("offers 30, 90 and 180 days, 90 first picked, as a start and no end", () => {
    expect(DORA_WINDOWS.map((w) => w.label)).toEqual(["30 d", "90 d", "180 d"]);
    expect(DEFAULT_WINDOW_DAYS).toBe(90);
    const now = Date.UTC(2026, 5, 1, 12, 0, 0);
    const r = windowRange(90, now);
    expect(timestampMs(r.start)).toBe(Date.UTC(2026, 2, 3, 12, 0, 0));
    expect("end" in r).toBe(false);
    expect(timestampMs(windowRange(30, now).start)).toBe(now - 30 * DAY);
  });

  it("names environments, Production first", () => {
    expect(ENVIRONMENTS.map((e) => e.label)).toEqual(["Production", "Staging", "Testing", "Development"]);
    expect(ENVIRONMENTS[0].environment).toBe(DeploymentEnvironment.PRODUCTION);
    expect(environmentLabel(DeploymentEnvironment.STAGING)).toBe("Staging");
    expect(environmentLabel(DeploymentEnvironment.UNSPECIFIED)).toBe("Unknown");
  });

  it("says durations as a person would", () => {
    expect(humanDuration(undefined)).toBe("—");
    expect(humanDuration(0)).toBe("0 s");
    expect(humanDuration(-5_000)).toBe("0 s");
    expect(humanDuration(45_000)).toBe("45 s");
    expect(humanDuration(59_400)).toBe("59 s");
    expect(humanDuration(59_600)).toBe("1 min");
    expect(humanDuration(40 * MIN)).toBe("40 min");
    expect(humanDuration(59.6 * MIN)).toBe("1 h");
    expect(humanDuration(2.5 * HOUR)).toBe("2.5 h");
    expect(humanDuration(5 * HOUR)).toBe("5 h");
    expect(humanDuration(14.2 * HOUR)).toBe("14 h");
    expect(humanDuration(23.6 * HOUR)).toBe("1 d");
    expect(humanDuration(2.5 * DAY)).toBe("2.5 d");
    expect(humanDuration(45 * DAY)).toBe("45 d");
  });

  it("reads protobuf durations", () => {
    expect(durationMs(undefined)).toBeUndefined();
    expect(durationMs(create(DurationSchema, { seconds: 90n, nanos: 500_000_000 }))).toBe(90_500);
    expect(durationText(create(DurationSchema, { seconds: 18_000n }))).toBe("5 h");
    expect(durationText(create(DurationSchema, { seconds: 216_000n }))).toBe("2.5 d");
    expect(durationText(undefined)).toBe("—");
  });

  it("says frequencies per day, per week below one a day, per month below one a week", () => {
    expect(frequencyText(0)).toBe("none");
    expect(frequencyText(Number.NaN)).toBe("none");
    expect(frequencyText(1)).toBe("1 per day");
    expect(frequencyText(2.5)).toBe("2.5 per day");
    expect(frequencyText(12.34)).toBe("12 per day");
    expect(frequencyText(0.5)).toBe("3.5 per week");
    expect(frequencyText(3 / 7)).toBe("3 per week");
    expect(frequencyText(1 / 7)).toBe("1 per week");
    expect(frequencyText(1 / 90)).toBe("0.3 per month");
    expect(frequencyText(1 / 366)).toBe("0.1 per month");
    expect(frequencyText(1 / 1000)).toBe("< 0.1 per month");
  });

  it("says rates as percentages with at most one decimal", () => {
    expect(percentText(0.5)).toBe("50 %");
    expect(percentText(0)).toBe("0 %");
    expect(percentText(1)).toBe("100 %");
    expect(percentText(1 / 30)).toBe("3.3 %");
    expect(percentText(0.125)).toBe("12.5 %");
  });

  it("names the DORA bands and their benchmark", () => {
    expect(
      [
        DoraPerformanceLevel.ELITE,
        DoraPerformanceLevel.HIGH,
        DoraPerformanceLevel.MEDIUM,
        DoraPerformanceLevel.LOW,
        DoraPerformanceLevel.UNSPECIFIED,
      ].map(levelLabel),
    ).toEqual(["Elite", "High", "Medium", "Low", "not enough data"]);
    expect(levelLabel(42 as DoraPerformanceLevel)).toBe("not enough data");
    expect(levelTone(DoraPerformanceLevel.ELITE)).toBe("ok");
    expect(levelTone(DoraPerformanceLevel.LOW)).toBe("bad");
    expect(levelTone(DoraPerformanceLevel.UNSPECIFIED)).toBe("idle");
    expect(benchmarkLabel("dora-2023")).toBe("DORA 2023 bands");
    expect(benchmarkLabel("DORA-2024")).toBe("DORA 2024 bands");
    expect(benchmarkLabel("acme")).toBe("acme bands");
    expect(benchmarkLabel("")).toBe("");
  });

  it("names statuses and DevLake states", () => {
    expect(statusOf(DeploymentStatus.SUCCESS)).toEqual({ label: "Success", tone: "ok" });
    expect(statusOf(DeploymentStatus.FAILED)).toEqual({ label: "Failed", tone: "bad" });
    expect(statusOf(DeploymentStatus.UNSPECIFIED).label).toBe("Unknown");
    expect(
      [DevlakePushState.SENT, DevlakePushState.PENDING, DevlakePushState.FAILED, DevlakePushState.SKIPPED, undefined].map(
        (s) => devlakeOf(s).label,
      ),
    ).toEqual(["Sent", "Pending", "Failed", "Skipped", "Unknown"]);
    expect(devlakeOf(DevlakePushState.FAILED).tone).toBe("bad");
  });

  it("shortens revisions, repository URLs and commit messages", () => {
    expect(shortSha("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678")).toBe("a1b2c3d4");
    expect(shortSha("abc")).toBe("abc");
    expect(repoPath("https://github.com/acme/ui")).toBe("github.com/acme/ui");
    expect(repoPath("https://GitHub.com/acme/ui.git/")).toBe("github.com/acme/ui");
    expect(repoPath("git@github.com:acme/ui")).toBe("git@github.com:acme/ui");
    expect(firstLine("Fix the login form\n\nIt lost the focus.")).toBe("Fix the login form");
    expect(firstLine("One line\r\nmore")).toBe("One line");
    expect(firstLine("")).toBe("");
  });

  it("lists weeks newest first with their UTC Monday", () => {
    const weeks = [
      create(DoraWeekSchema, { weekStart: timestampFromMs(Date.UTC(2026, 2, 2)), deploymentsTotal: 3n, deploymentsFailed: 1n }),
      create(DoraWeekSchema, {
        weekStart: timestampFromMs(Date.UTC(2026, 2, 9)),
        deploymentsTotal: 4n,
        deploymentsFailed: 0n,
        leadTimeMedian: create(DurationSchema, { seconds: 2400n }),
      }),
    ];
    expect(weekRows(weeks)).toEqual([
      { start: "2026-03-09", deployments: 4, failed: 0, leadTime: "40 min" },
      { start: "2026-03-02", deployments: 3, failed: 1, leadTime: "—" },
    ]);
    expect(utcDate(undefined)).toBe("—");
  });
});
