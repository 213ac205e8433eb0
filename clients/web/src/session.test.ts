import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Role } from "./gen/persys/common/v1/common_pb";
import { UserSchema } from "./gen/persys/gateway/v1/user_pb";
import { accessToken, adopt, begin, end, type Refresher } from "./session";

const MINUTE = 60_000;
const user = create(UserSchema, { id: "u1", username: "admin", role: Role.ADMIN });

describe("session", () => {
  afterEach(() => {
    end();
    vi.useRealTimers();
  });

  it("adopts another tab's token of the same user when it lasts longer, and then refreshes later", async () => {
    vi.useFakeTimers({ now: 0 });
    const refresher = vi.fn<Refresher>(async () => ({ access: "refreshed", refresh: "", accessExpiresMs: Date.now() + 15 * MINUTE }));
    begin(user, { access: "mine", refresh: "", accessExpiresMs: 15 * MINUTE }, refresher);
    adopt("someone-else", "theirs", 30 * MINUTE);
    adopt("u1", "older", 10 * MINUTE);
    expect(accessToken()).toBe("mine");
    adopt("u1", "shared", 20 * MINUTE);
    expect(accessToken()).toBe("shared");
    // Its own refresh was due a minute before 15 min; now it is a minute before 20 min.
    await vi.advanceTimersByTimeAsync(15 * MINUTE);
    expect(refresher).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(4 * MINUTE);
    expect(refresher).toHaveBeenCalledTimes(1);
    expect(refresher.mock.calls[0][0].access).toBe("shared");
    expect(accessToken()).toBe("refreshed");
  });

  it("keeps a token adopted while its own refresh was in flight when that one lasts longer", async () => {
    vi.useFakeTimers({ now: 0 });
    let answer!: (t: { access: string; refresh: string; accessExpiresMs: number }) => void;
    const refresher: Refresher = () => new Promise((r) => (answer = r));
    begin(user, { access: "mine", refresh: "", accessExpiresMs: 2 * MINUTE }, refresher);
    await vi.advanceTimersByTimeAsync(MINUTE);
    adopt("u1", "newer", 40 * MINUTE);
    answer({ access: "own", refresh: "", accessExpiresMs: 16 * MINUTE });
    await vi.advanceTimersByTimeAsync(0);
    expect(accessToken()).toBe("newer");
  });
});
