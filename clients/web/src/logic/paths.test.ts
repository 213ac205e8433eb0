import { describe, expect, it } from "vitest";
import { match } from "./paths";

describe("match", () => {
  it("matches fixed parts and decodes parameters", () => {
    expect(match("/workloads/:id", "/workloads/a%20b")).toEqual({ id: "a b" });
    expect(match("/workloads/new", "/workloads/new")).toEqual({});
    expect(match("/workloads/:id", "/nodes/x")).toBeNull();
    expect(match("/", "/")).toEqual({});
    expect(match("/nodes", "/nodes/x")).toBeNull();
  });
});
