import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { Role } from "../gen/persys/common/v1/common_pb";
import { ApiKeySchema } from "../gen/persys/gateway/v1/api_key_pb";
import { expiryFrom, keyState, PageTokens, roleLabel } from "./admin";

describe("admin", () => {
  it("names roles", () => {
    expect([Role.ADMIN, Role.MEMBER, Role.VIEWER, Role.UNSPECIFIED].map(roleLabel)).toEqual(["admin", "member", "viewer", "unknown role"]);
  });

  it("tells active, expired and revoked keys apart", () => {
    const now = 1_000_000;
    expect(keyState(create(ApiKeySchema, {}), now).label).toBe("active");
    expect(keyState(create(ApiKeySchema, { expiresAt: timestampFromMs(now + 1) }), now).label).toBe("active");
    expect(keyState(create(ApiKeySchema, { expiresAt: timestampFromMs(now) }), now).label).toBe("expired");
    // Revoked wins over expired.
    expect(keyState(create(ApiKeySchema, { expiresAt: timestampFromMs(0), revokedAt: timestampFromMs(5) }), now)).toEqual({
      label: "revoked",
      tone: "idle",
    });
  });

  it("turns an expiry choice into a time", () => {
    expect(expiryFrom("", 0)).toBeUndefined();
    expect(expiryFrom("0", 0)).toBeUndefined();
    expect(expiryFrom("junk", 0)).toBeUndefined();
    expect(timestampMs(expiryFrom("30", 1000)!)).toBe(1000 + 30 * 86_400_000);
  });

  it("walks server pages forward and back with their tokens", () => {
    const p = new PageTokens();
    expect([p.current, p.hasPrevious, p.hasNext]).toEqual(["", false, false]);
    p.next();
    expect(p.index).toBe(0);
    p.answered("t1");
    expect(p.hasNext).toBe(true);
    p.next();
    expect([p.index, p.current, p.hasPrevious, p.hasNext]).toEqual([1, "t1", true, false]);
    p.answered("t2");
    p.next();
    p.answered("");
    expect([p.index, p.current, p.hasNext]).toEqual([2, "t2", false]);
    p.previous();
    expect([p.index, p.current, p.hasNext]).toEqual([1, "t1", true]);
    p.previous();
    p.previous();
    expect([p.index, p.current]).toEqual([0, ""]);
    p.reset();
    expect([p.index, p.current, p.hasNext]).toEqual([0, "", false]);
  });
});
