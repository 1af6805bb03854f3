/**
 * Where the token layer gets the time, its jitter and its timers, as oauth2's
 * `timeNow`: tests hand in their own instead of patching Date.now for everyone.
 */

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

/** A source of jitter: a number in [0, 1). */
export interface Jitter {
  random(): number;
}

export interface Timers {
  /** Runs `fn` once after `ms`; the returned function cancels it. Must not keep the process alive. */
  after(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = { now: () => Date.now() };

export const systemJitter: Jitter = { random: () => Math.random() };

export const systemTimers: Timers = {
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};
