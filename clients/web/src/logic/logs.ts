// The log view's buffer: chunks of raw output (split anywhere, even inside a UTF-8 character)
// become lines, the last `capacity` of them kept; a paused view keeps showing what it showed
// while new lines keep arriving underneath; search filters case-insensitively.
import { OutputStream } from "../gen/persys/common/v1/common_pb";

/** One line of output. */
export interface LogLine {
  /** Position in the whole stream, from 0: stable keys for the view. */
  seq: number;
  stream: "stdout" | "stderr";
  text: string;
}

/** Lines of a workload instance's output. */
export class LogBuffer {
  private lines: LogLine[] = [];
  private seq = 0;
  private readonly partial = { stdout: "", stderr: "" };
  private readonly decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
  private frozen: LogLine[] | null = null;
  /** Lines dropped from the front because the buffer was full. */
  dropped = 0;

  constructor(readonly capacity = 5000) {}

  /** Adds a chunk; returns the number of complete lines it finished. */
  push(stream: OutputStream, data: Uint8Array): number {
    const name = stream === OutputStream.STDERR ? "stderr" : "stdout";
    const text = this.partial[name] + this.decoders[name].decode(data, { stream: true });
    const parts = text.split("\n");
    this.partial[name] = parts.pop() ?? "";
    for (const p of parts) this.lines.push({ seq: this.seq++, stream: name, text: p.replace(/\r$/, "") });
    const over = this.lines.length - this.capacity;
    if (over > 0) {
      this.lines.splice(0, over);
      this.dropped += over;
    }
    return parts.length;
  }

  /** Freezes what `view` returns until `resume`. */
  pause(): void {
    this.frozen ??= this.all();
  }

  /** Shows everything again, including what arrived while paused. */
  resume(): void {
    this.frozen = null;
  }

  get paused(): boolean {
    return this.frozen !== null;
  }

  /** Lines that arrived since the pause. */
  get newSincePause(): number {
    if (!this.frozen) return 0;
    const last = this.frozen.at(-1)?.seq ?? -1;
    return this.all().filter((l) => l.seq > last).length;
  }

  /** Every kept line, with an unfinished last line of each stream shown as it is so far. */
  all(): LogLine[] {
    const tail: LogLine[] = [];
    for (const s of ["stdout", "stderr"] as const) {
      if (this.partial[s]) tail.push({ seq: this.seq + (s === "stdout" ? 0 : 1), stream: s, text: this.partial[s] });
    }
    return tail.length ? [...this.lines, ...tail] : this.lines.slice();
  }

  /** What the view shows: the frozen lines while paused, filtered by `query` if non-empty. */
  view(query = ""): LogLine[] {
    const lines = this.frozen ?? this.all();
    const q = query.trim().toLowerCase();
    return q ? lines.filter((l) => l.text.toLowerCase().includes(q)) : lines;
  }

  /** Returns every kept line as text, for a download. */
  text(): string {
    return this.all()
      .map((l) => l.text)
      .join("\n");
  }
}

/**
 * Drops the chunks a resumed log stream sends again. A follow stream resumes from the time of
 * the last chunk received (`since` is inclusive), so chunks stamped exactly then may repeat;
 * chunks without a time cannot be told apart and are kept.
 */
export class ChunkDedup {
  private lastMs = -1;
  private atLast = new Set<string>();

  /** Returns whether a chunk stamped `timeMs` with `data` is new, and records it. */
  accept(timeMs: number | undefined, stream: OutputStream, data: Uint8Array): boolean {
    if (timeMs === undefined) return true;
    if (timeMs < this.lastMs) return false;
    const key = `${stream}:${data.join(",")}`;
    if (timeMs === this.lastMs) {
      if (this.atLast.has(key)) return false;
      this.atLast.add(key);
      return true;
    }
    this.lastMs = timeMs;
    this.atLast = new Set([key]);
    return true;
  }

  /** Time to resume from, if any chunk had one. */
  get resumeFromMs(): number | undefined {
    return this.lastMs < 0 ? undefined : this.lastMs;
  }
}
