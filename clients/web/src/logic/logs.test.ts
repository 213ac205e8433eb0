import { describe, expect, it } from "vitest";
import { OutputStream } from "../gen/persys/common/v1/common_pb";
import { ChunkDedup, LogBuffer } from "./logs";

const enc = (s: string) => new TextEncoder().encode(s);
const { STDOUT, STDERR } = OutputStream;

describe("LogBuffer", () => {
  it("joins chunks split inside lines and inside UTF-8 characters", () => {
    const b = new LogBuffer();
    const bytes = enc("héllo\nwor");
    // Split between the two bytes of "é".
    expect(b.push(STDOUT, bytes.slice(0, 2))).toBe(0);
    expect(b.push(STDOUT, bytes.slice(2))).toBe(1);
    expect(b.push(STDOUT, enc("ld\r\n"))).toBe(1);
    expect(b.view().map((l) => l.text)).toEqual(["héllo", "world"]);
  });

  it("keeps stdout and stderr apart and shows an unfinished line", () => {
    const b = new LogBuffer();
    b.push(STDOUT, enc("out-"));
    b.push(STDERR, enc("err\n"));
    b.push(STDOUT, enc("line\nprompt> "));
    expect(b.view().map((l) => `${l.stream}:${l.text}`)).toEqual(["stderr:err", "stdout:out-line", "stdout:prompt> "]);
  });

  it("keeps the last lines up to its capacity", () => {
    const b = new LogBuffer(3);
    b.push(STDOUT, enc("1\n2\n3\n4\n5\n"));
    expect(b.view().map((l) => l.text)).toEqual(["3", "4", "5"]);
    expect(b.dropped).toBe(2);
  });

  it("freezes the view while paused, counts what arrives, and shows it on resume", () => {
    const b = new LogBuffer();
    b.push(STDOUT, enc("a\n"));
    b.pause();
    b.push(STDOUT, enc("b\nc\n"));
    expect(b.view().map((l) => l.text)).toEqual(["a"]);
    expect(b.newSincePause).toBe(2);
    b.resume();
    expect(b.view().map((l) => l.text)).toEqual(["a", "b", "c"]);
    expect(b.newSincePause).toBe(0);
  });

  it("searches case-insensitively, also in a paused view", () => {
    const b = new LogBuffer();
    b.push(STDOUT, enc("GET /health 200\nPOST /login 401\nget /metrics 200\n"));
    expect(b.view("get").map((l) => l.text)).toEqual(["GET /health 200", "get /metrics 200"]);
    b.pause();
    expect(b.view(" 401 ").map((l) => l.text)).toEqual(["POST /login 401"]);
    expect(b.text()).toBe("GET /health 200\nPOST /login 401\nget /metrics 200");
  });
});

describe("ChunkDedup", () => {
  it("drops chunks a resumed stream sends again, keeps new ones at the same time", () => {
    const d = new ChunkDedup();
    expect(d.resumeFromMs).toBeUndefined();
    expect(d.accept(1000, STDOUT, enc("a\n"))).toBe(true);
    expect(d.accept(2000, STDOUT, enc("b\n"))).toBe(true);
    expect(d.resumeFromMs).toBe(2000);
    // Resumed with since = 2000: the chunk at 2000 comes again.
    expect(d.accept(2000, STDOUT, enc("b\n"))).toBe(false);
    expect(d.accept(2000, STDERR, enc("b\n"))).toBe(true);
    expect(d.accept(1500, STDOUT, enc("old\n"))).toBe(false);
    expect(d.accept(undefined, STDOUT, enc("untimed\n"))).toBe(true);
    expect(d.accept(3000, STDOUT, enc("b\n"))).toBe(true);
  });
});
