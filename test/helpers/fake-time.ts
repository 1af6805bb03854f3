import type { Clock, Jitter, Timers } from "../../src/token/clock.js";

/**
 * A clock, a jitter source and timers that move only when the test says so:
 * hand it to a cache (or a counter) as its options, then `advance()`.
 */
export class FakeTime implements Clock, Jitter, Timers {
  /** What random() answers: a fixed value in [0, 1), so backoffs are exact. */
  jitter = 0.5;
  private queue: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  constructor(public at = 1_800_000_000_000) {}

  now(): number {
    return this.at;
  }

  random(): number {
    return this.jitter;
  }

  after(ms: number, fn: () => void): () => void {
    const entry = { at: this.at + Math.max(0, ms), seq: this.seq++, fn };
    this.queue.push(entry);
    return () => {
      this.queue = this.queue.filter((e) => e !== entry);
    };
  }

  /** Timers set and not yet run or cancelled. */
  get pending(): number {
    return this.queue.length;
  }

  /** Moves the clock by `ms`, running every timer that falls due on the way, at its own time, in order. */
  advance(ms: number): void {
    const end = this.at + ms;
    for (;;) {
      const due = this.queue.filter((e) => e.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.queue = this.queue.filter((e) => e !== due);
      this.at = due.at;
      due.fn();
    }
    this.at = end;
  }
}

/** Settles what is pending on the microtask queue (and what that starts). */
export const flush = (): Promise<void> => new Promise<void>((r) => setImmediate(r));
