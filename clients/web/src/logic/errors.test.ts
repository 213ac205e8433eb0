import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb";
import { assignViolations, problemOf } from "./errors";

describe("problemOf", () => {
  it("reads field violations from a BadRequest detail", () => {
    const detail = create(BadRequestSchema, {
      fieldViolations: [
        { field: "name", description: "1-63 lowercase letters" },
        { field: "spec.image", description: "required" },
      ],
    });
    const err = new ConnectError("name: 1-63 lowercase letters", Code.InvalidArgument, undefined, [
      { desc: BadRequestSchema, value: detail },
    ]);
    const p = problemOf(err);
    expect(p.code).toBe(Code.InvalidArgument);
    expect(p.message).toBe("name: 1-63 lowercase letters");
    expect(p.violations).toEqual([
      { field: "name", description: "1-63 lowercase letters" },
      { field: "spec.image", description: "required" },
    ]);
  });

  it("decodes a detail as the transport hands it over (type name and bytes of the Any)", () => {
    const bytes = toBinary(BadRequestSchema, create(BadRequestSchema, { fieldViolations: [{ field: "x", description: "y" }] }));
    const err = new ConnectError("bad", Code.InvalidArgument);
    err.details.push({ type: "google.rpc.BadRequest", value: bytes });
    expect(problemOf(err).violations).toEqual([{ field: "x", description: "y" }]);
  });

  it("has no violations for other errors and keeps the message", () => {
    const p = problemOf(new ConnectError("`bob` is a viewer and can only read", Code.PermissionDenied));
    expect(p).toEqual({ message: "`bob` is a viewer and can only read", code: Code.PermissionDenied, violations: [] });
    expect(problemOf(new TypeError("Failed to fetch")).code).toBe(Code.Unknown);
  });
});

describe("assignViolations", () => {
  const inputs = {
    name: ["name"],
    image: ["spec.image"],
    env: ["spec.env"],
    cpu: ["spec.resources"],
    cpuLimit: ["spec.resources.limits.cpu_millis"],
  };

  it("maps paths to inputs by the longest prefix at a boundary", () => {
    const { byInput, other } = assignViolations(
      [
        { field: "name", description: "bad name" },
        { field: "spec.env[2].name", description: "bad env" },
        { field: "spec.resources.requests", description: "over limits" },
        { field: "spec.resources.limits.cpu_millis", description: "too big" },
        { field: "spec.imagePullPolicy", description: "not image" },
        { field: "spec.network", description: "not allowed" },
      ],
      inputs,
    );
    expect(byInput).toEqual({
      name: ["bad name"],
      env: ["bad env"],
      cpu: ["over limits"],
      cpuLimit: ["too big"],
    });
    // `spec.imagePullPolicy` shares a prefix with `spec.image` but not a boundary.
    expect(other.map((v) => v.field)).toEqual(["spec.imagePullPolicy", "spec.network"]);
  });
});
