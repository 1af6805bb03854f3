/**
 * withRetry, on fake jitter and a recorded sleep: retries what may succeed, with
 * jittered exponential backoff or the upstream's Retry-After, within one call.
 */
import t from "tap";
import { HopError } from "../../src/upstream/hop-error.js";
import { parseRetryAfter, type RetryPolicy, withRetry } from "../../src/upstream/retry.js";

const POLICY: RetryPolicy = { attempts: 3, baseDelayMs: 200, maxDelayMs: 5_000 };

function failing(errors: unknown[]): { attempt: (n: number) => Promise<string>; calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    attempt: async (n) => {
      calls.push(n);
      const e = errors[n - 1];
      if (e !== undefined) throw e;
      return `ok after ${n}`;
    },
  };
}

const retryable = (retryAfterSeconds?: number) =>
  new HopError("STS", "HTTP 503: busy", { code: "refused", status: 503, retryable: true, retryAfterSeconds });

t.test("retries what may succeed, with jittered exponential backoff from the jitter source", async (t) => {
  const slept: number[] = [];
  const f = failing([retryable(), retryable()]);
  const got = await withRetry(POLICY, f.attempt, { jitter: { random: () => 0.5 }, sleep: async (ms) => void slept.push(ms) });
  t.equal(got, "ok after 3");
  t.same(f.calls, [1, 2, 3]);
  t.same(slept, [100, 200], "half of 200 ms, then half of 400 ms");
});

t.test("does not retry what cannot change, nor past the attempts", async (t) => {
  const slept: number[] = [];
  const seams = { sleep: async (ms: number) => void slept.push(ms) };
  const denied = new HopError("impersonation", "HTTP 403: denied", { code: "permission_denied", status: 403 });
  const f = failing([denied]);
  await t.rejects(withRetry(POLICY, f.attempt, seams), denied);
  t.same(f.calls, [1], "a 403 is not retried");
  const g = failing([retryable(), retryable(), retryable()]);
  await t.rejects(withRetry(POLICY, g.attempt, seams));
  t.same(g.calls, [1, 2, 3], "three attempts in all");
  t.equal(slept.length, 2);
});

t.test("Retry-After: waited for within maxDelayMs; longer, thrown at once for the cache's backoff to wait", async (t) => {
  const slept: number[] = [];
  const seams = { jitter: { random: () => 0 }, sleep: async (ms: number) => void slept.push(ms) };
  const f = failing([retryable(3)]);
  t.equal(await withRetry(POLICY, f.attempt, seams), "ok after 2");
  t.same(slept, [3_000], "the 3 s asked for, not the shorter backoff");

  slept.length = 0;
  const long = retryable(86_400);
  const g = failing([long]);
  await t.rejects(withRetry(POLICY, g.attempt, seams), long);
  t.same(g.calls, [1], "no second attempt sooner than asked");
  t.same(slept, [], "and no wait inside the call: the caller is not held for a day, nor for maxDelayMs");
});

t.test("parseRetryAfter: delta-seconds, or an HTTP date on the given clock", async (t) => {
  const clock = { now: () => Date.parse("2030-01-01T00:00:00Z") };
  t.equal(parseRetryAfter("17"), 17);
  t.equal(parseRetryAfter(" 5 "), 5);
  t.equal(parseRetryAfter("Tue, 01 Jan 2030 00:01:30 GMT", clock), 90);
  t.equal(parseRetryAfter("Tue, 01 Jan 2030 00:00:00 GMT", { now: () => clock.now() + 10_000 }), 0, "a date past is no wait");
  t.equal(parseRetryAfter("soon"), undefined);
  t.equal(parseRetryAfter(undefined), undefined);
});
