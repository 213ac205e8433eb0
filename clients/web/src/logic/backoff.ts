// Reconnect delays: exponential with full jitter, reset once a stream has delivered something,
// so a broken stream is retried quickly and a dead server is not hammered.

/** Parameters of a backoff. */
export interface BackoffOptions {
  /** First delay in ms. */
  initialMs: number;
  /** Largest delay in ms. */
  maxMs: number;
  /** Returns a number in [0, 1); Math.random by default. */
  random?: () => number;
}

/** Delays between attempts. */
export class Backoff {
  private attempt = 0;
  constructor(private readonly opts: BackoffOptions) {}

  /** Returns the delay before the next attempt and counts it. */
  next(): number {
    const cap = Math.min(this.opts.maxMs, this.opts.initialMs * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    // Never below half the cap: a reconnect is never a tight loop.
    return Math.round(cap / 2 + (cap / 2) * (this.opts.random ?? Math.random)());
  }

  /** Starts again from the first delay (after a success). */
  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
