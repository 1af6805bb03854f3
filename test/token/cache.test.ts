/**
 * CachingTokenSource alone, with a fake source and fake time (clock, jitter and
 * timers handed in as its options): single flight, renewal ahead of expiry, the
 * floor, backoff, admission, and its own errors.
 */
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { BudgetExceededError } from "../../src/server/budget.js";
import { type CachePolicy, CachingTokenSource } from "../../src/token/cache.js";
import type { Timers } from "../../src/token/clock.js";
import { BackoffError, BelowFloorError } from "../../src/token/errors.js";
import type { Token, TokenSource } from "../../src/token/token-source.js";
import { HopError } from "../../src/upstream/hop-error.js";
import { FakeTime, flush } from "../helpers/fake-time.js";

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A source whose answers the test controls: each call waits for `next()` to be
 * settled by the test, or answers at once with `auto` when set.
 */
class FakeSource implements TokenSource {
  calls = 0;
  pending: Deferred<Token>[] = [];
  auto?: () => Token;
  failWith?: unknown;
  async token(): Promise<Token> {
    this.calls += 1;
    if (this.failWith !== undefined) throw this.failWith;
    if (this.auto) return this.auto();
    const d = deferred<Token>();
    this.pending.push(d);
    return d.promise;
  }
}

let serial = 0;
/** A token obtained now (on `clock`) that lives `lifeMs`. */
function tokAt(clock: { now(): number }, lifeMs: number): Token {
  serial += 1;
  return { value: `token-${serial}`, obtainedAt: clock.now(), expiresAt: clock.now() + lifeMs };
}

const HOUR = 3600_000;
const POLICY: CachePolicy = { renewBeforeMs: 600_000, minRemainingMs: 120_000, minBackoffMs: 1_000, maxBackoffMs: 30_000 };

/** Timers that never fire: the cache is driven by its callers alone. */
const NO_TIMERS: Timers = { after: () => () => {} };

/**
 * A cache on fake time, and a `tok` that makes tokens on the same clock. Its
 * background timers run as the clock advances when `timers` is set; otherwise
 * they never fire.
 */
function cacheOn<L>(src: TokenSource, label: L, policy = POLICY, o: { timers?: boolean } = {}) {
  const clock = new FakeTime();
  const c = new CachingTokenSource(src, label, policy, "", {}, { clock, jitter: clock, timers: o.timers ? clock : NO_TIMERS });
  return { c, clock, tok: (lifeMs: number) => tokAt(clock, lifeMs) };
}

/** The source's error itself: during a backoff the cache passes it on as the cause of its BackoffError. */
const upstreamError = (e: unknown): unknown => (e instanceof BackoffError ? e.cause : e);

function outcome<T>(p: Promise<T>): { state: "pending" | "resolved" | "rejected"; value?: T; error?: unknown } {
  const o: { state: "pending" | "resolved" | "rejected"; value?: T; error?: unknown } = { state: "pending" };
  p.then(
    (v) => {
      o.state = "resolved";
      o.value = v;
    },
    (e) => {
      o.state = "rejected";
      o.error = e;
    },
  );
  return o;
}

t.test("single flight under 100 concurrent callers", async (t) => {
  const src = new FakeSource();
  const { c, tok } = cacheOn(src, "identity domain");
  t.teardown(() => c.close());
  const waiting = Array.from({ length: 100 }, () => c.token());
  await flush();
  t.equal(src.calls, 1, "one upstream call for 100 callers");
  t.equal(c.state().refreshing, true);
  const first = tok(HOUR);
  src.pending[0]!.resolve(first);
  const got = await Promise.all(waiting);
  t.ok(
    got.every((x) => x === first),
    "all 100 get the token of that call",
  );
  const again = await Promise.all(Array.from({ length: 100 }, () => c.token()));
  t.ok(
    again.every((x) => x === first),
    "then served from the cache",
  );
  t.equal(src.calls, 1, "still one upstream call");
});

t.test("background renewal in the window, old token served meanwhile", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "identity domain");
  t.teardown(() => c.close());
  src.auto = () => tok(HOUR);
  const first = await c.token();
  src.auto = undefined;

  clock.advance(HOUR - POLICY.renewBeforeMs - 1000);
  t.equal(await c.token(), first, "before the window: cached");
  t.equal(src.calls, 1, "no renewal before the window");

  clock.advance(2000); // inside the window: 599 s left
  const during = await Promise.all(Array.from({ length: 50 }, () => c.token()));
  t.ok(
    during.every((x) => x === first),
    "callers get the old token at once, without waiting for the renewal",
  );
  await flush();
  t.equal(src.calls, 2, "one background renewal for 50 callers");
  t.equal(c.state().refreshing, true);
  const second = tok(HOUR);
  src.pending[0]!.resolve(second);
  await flush();
  t.equal(await c.token(), second, "the renewed token is served once it arrives");
  t.equal(c.state().refreshing, false);
  t.equal(src.calls, 2);
});

t.test("a failed renewal keeps the old token while above the floor, never crosses it, never caches the error", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "identity domain");
  t.teardown(() => c.close());
  src.auto = () => tok(HOUR);
  const first = await c.token();
  src.auto = undefined;
  const boom = new HopError("identity domain", "HTTP 503: temporarily_unavailable", { code: "refused", status: 503, retryable: true });
  src.failWith = boom;

  clock.advance(HOUR - 500_000); // in the window
  t.equal(await c.token(), first, "old token while the renewal fails");
  await flush();
  t.equal(src.calls, 2, "the renewal was tried");
  t.equal(c.failure, boom, "the failure is recorded");
  t.equal(c.peek(), first, "peek still has the old token");
  t.match(c.state().lastError, /HTTP 503/);

  // Still in the window, after the backoff: the next use tries again in the background.
  clock.advance(1_001);
  t.equal(await c.token(), first);
  await flush();
  t.equal(src.calls, 3, "retried after the backoff, in the background");

  // Just above the floor: still the old token.
  clock.advance(HOUR - POLICY.minRemainingMs - (clock.now() - first.obtainedAt) - 1);
  t.equal(first.expiresAt - clock.now(), POLICY.minRemainingMs + 1);
  t.equal(await c.token(), first, "1 ms above the floor: served");
  await flush();

  // At the floor: never served again, even though it has two minutes left.
  clock.advance(1);
  t.equal(c.peek(), undefined, "peek refuses a token at the floor");
  for (let i = 0; i < 3; i++) {
    const o = outcome(c.token());
    await flush();
    t.equal(o.state, "rejected", `call ${i + 1} at the floor is refused`);
    t.not(o.value, first, "the old token is not handed out");
    t.type(upstreamError(o.error), HopError);
    t.equal((upstreamError(o.error) as HopError).hop, "identity domain");
    t.match((o.error as Error).message, /HTTP 503: temporarily_unavailable/, "the error says what the upstream said");
    clock.advance(40_000);
  }

  // Recovery: a good answer replaces the failure; the error was never a token.
  src.failWith = undefined;
  src.auto = () => tok(HOUR);
  clock.advance(31_000);
  const fresh = await c.token();
  t.not(fresh, first);
  t.match(fresh.value, /^token-/, "a real token, not an error");
  t.equal(c.failure, undefined, "the error is cleared");
});

t.test("backoff after a failure; Retry-After honoured; admit not consulted during backoff", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "STS");
  t.teardown(() => c.close());
  src.failWith = new HopError("STS", "HTTP 500: internal", { code: "refused", status: 500, retryable: true });
  let admits = 0;
  const admit = () => {
    admits += 1;
    return undefined;
  };

  await t.rejects(c.token(admit), /HTTP 500/);
  t.equal(src.calls, 1);
  t.equal(admits, 1);

  // First backoff: between 0.5 and 1 s.
  clock.advance(499);
  const e = await c.token(admit).catch((x: unknown) => x);
  t.type(e, BackoffError, "during the backoff: a BackoffError");
  t.equal((e as BackoffError).label, "STS");
  t.type((e as BackoffError).cause, HopError, "whose cause is the upstream's HopError");
  t.equal(((e as BackoffError).cause as HopError).hop, "STS");
  t.equal((e as BackoffError).retryable, true);
  t.ok((e as BackoffError).retryAfterSeconds >= 1, "with a Retry-After");
  t.match((e as BackoffError).message, /^STS: HTTP 500: internal/, "repeating the upstream's error");
  t.equal(src.calls, 1, "no upstream call during the backoff");
  t.equal(admits, 1, "admit not consulted during the backoff");

  clock.advance(502);
  await t.rejects(c.token(admit));
  t.equal(src.calls, 2, "tried again after the backoff");
  // Second backoff: between 1 and 2 s.
  clock.advance(999);
  await t.rejects(c.token(admit));
  t.equal(src.calls, 2, "the backoff doubles");
  clock.advance(1002);
  await t.rejects(c.token(admit));
  t.equal(src.calls, 3);

  // An upstream that asks for 30 s is given 30 s.
  src.failWith = new HopError("STS", "HTTP 429: slow down", { code: "refused", status: 429, retryable: true, retryAfterSeconds: 30 });
  clock.advance(10_000);
  await t.rejects(c.token(admit));
  t.equal(src.calls, 4);
  clock.advance(29_000);
  const waitErr = (await c.token(admit).catch((x: unknown) => x)) as BackoffError;
  t.equal(src.calls, 4, "no call before the asked 30 s");
  t.equal(waitErr.retryAfterSeconds, 1, "Retry-After is the wait that remains (1 s of the 30), not the 30 again");
  clock.advance(1_001);
  src.failWith = undefined;
  src.auto = () => tok(HOUR);
  const ok = await c.token(admit);
  t.match(ok.value, /^token-/);
  t.equal(src.calls, 5);
});

t.test("admit is consulted only when a blocking upstream call would start", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "impersonation");
  t.teardown(() => c.close());
  let admits = 0;
  let allow = true;
  const admit = (label: string) => {
    admits += 1;
    return allow ? undefined : new BudgetExceededError(label as "impersonation");
  };

  // Cold: the first caller is charged, the 99 who join its call are not.
  const waiting = Array.from({ length: 100 }, () => c.token(admit));
  await flush();
  t.equal(admits, 1, "one admission for a cold start shared by 100 callers");
  src.pending.shift()!.resolve(tok(HOUR));
  const first = (await Promise.all(waiting))[0]!;

  // Warm: never charged.
  for (let i = 0; i < 20; i++) await c.token(admit);
  t.equal(admits, 1, "cached answers are not charged");

  // In the renewal window: background renewal, not charged.
  clock.advance(HOUR - 300_000);
  t.equal(await c.token(admit), first);
  await flush();
  t.equal(src.calls, 2, "background renewal started");
  t.equal(admits, 1, "background renewal not charged");
  src.pending.shift()!.resolve(tok(HOUR));
  await flush();

  // Below the floor: the call blocks on upstream, so it is charged; refused means no call.
  clock.advance(HOUR - 100_000);
  allow = false;
  const refused = await c.token(admit).catch((x: unknown) => x);
  t.type(refused, BudgetExceededError, "refused by the budget");
  t.equal((refused as BudgetExceededError).hop, "impersonation");
  t.equal(admits, 2, "charged once");
  t.equal(src.calls, 2, "no upstream call when refused");
  allow = true;
  const p = c.token(admit);
  const joiners = Array.from({ length: 10 }, () => c.token(admit));
  await flush();
  t.equal(admits, 3, "charged for the blocking call; those who join it are not");
  src.pending.shift()!.resolve(tok(HOUR));
  await Promise.all([p, ...joiners]);
  t.equal(src.calls, 3);
});

t.test("margins shrink for short tokens (renew at half, floor at a quarter)", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "identity domain");
  t.teardown(() => c.close());
  src.auto = () => tok(8_000);
  const first = await c.token();
  t.equal(src.calls, 1);
  clock.advance(3_900);
  t.equal(await c.token(), first);
  await flush();
  t.equal(src.calls, 1, "no renewal before half the lifetime");
  src.auto = undefined;
  clock.advance(200); // 4.1 s in: past half
  t.equal(await c.token(), first, "old token while renewing");
  await flush();
  t.equal(src.calls, 2, "renewal at half the lifetime");
  // The renewal hangs; at 6.0 s (2 s left = a quarter) the token is not served any more.
  clock.advance(1_899);
  t.equal(await c.token(), first, "above a quarter of the lifetime: served");
  clock.advance(1);
  const o = outcome(c.token());
  await flush();
  t.equal(o.state, "pending", "at the floor the caller waits for the renewal under way");
  const second = tok(8_000);
  src.pending.shift()!.resolve(second);
  await flush();
  t.equal(o.value, second, "and gets the new token");
  t.equal(src.calls, 2, "joined the renewal under way rather than starting another");
});

t.test("an upstream token already below the floor is an error, not a token", async (t) => {
  const src = new FakeSource();
  const { c, clock } = cacheOn(src, "identity domain");
  t.teardown(() => c.close());
  src.auto = () => ({ value: "nearly-dead", obtainedAt: clock.now() - HOUR, expiresAt: clock.now() + 60_000 });
  const e = await c.token().catch((x: unknown) => x);
  t.type(upstreamError(e), BelowFloorError);
  t.equal((upstreamError(e) as BelowFloorError).label, "identity domain");
  t.match((e as Error).message, /below the minimum remaining lifetime/);
  t.equal(c.peek(), undefined);
});

t.test("the renewal timer runs only while the token is in use (real time)", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", {
    renewBeforeMs: 300,
    minRemainingMs: 50,
    minBackoffMs: 100,
    maxBackoffMs: 1000,
  });
  t.teardown(() => c.close());
  src.auto = () => ({ value: "real-time", obtainedAt: Date.now(), expiresAt: Date.now() + 600 });
  await c.token();
  // Used after the refresh (usedSinceRefresh): the timer at 300 ms renews without any caller.
  await c.token();
  await sleep(450);
  t.equal(src.calls, 2, "renewed by the timer, no caller waiting");
  // Not used since: the next timer lets it lapse.
  await sleep(500);
  t.equal(src.calls, 2, "an idle token is not renewed");
  await c.token();
  t.equal(src.calls, 3, "renewed on next use");
});

t.test("the renewal timer runs only while the token is in use (fake timers)", async (t) => {
  const src = new FakeSource();
  const policy = { renewBeforeMs: 300, minRemainingMs: 50, minBackoffMs: 100, maxBackoffMs: 1000 };
  const { c, clock, tok } = cacheOn(src, "identity domain", policy, { timers: true });
  t.teardown(() => c.close());
  src.auto = () => tok(600);
  await c.token();
  t.equal(clock.pending, 1, "a renewal timer is set");
  // Used after the refresh (usedSinceRefresh): the timer at 300 ms renews without any caller.
  await c.token();
  clock.advance(299);
  await flush();
  t.equal(src.calls, 1, "not before the renewal point");
  clock.advance(1);
  await flush();
  t.equal(src.calls, 2, "renewed by the timer, no caller waiting");
  // Not used since: the next timer lets it lapse.
  clock.advance(500);
  await flush();
  t.equal(src.calls, 2, "an idle token is not renewed");
  t.equal(clock.pending, 0, "and no timer is left");
  await c.token();
  t.equal(src.calls, 3, "renewed on next use");
  c.close();
  t.equal(clock.pending, 0, "close cancels the timer");
});

t.test("the backoff's jitter comes from the jitter source: half to all of the base delay", async (t) => {
  for (const [jitter, waitMs] of [
    [0, 500],
    [0.999, 999.5],
  ] as const) {
    const src = new FakeSource();
    const { c, clock } = cacheOn(src, "STS");
    t.teardown(() => c.close());
    clock.jitter = jitter;
    src.failWith = new HopError("STS", "HTTP 500: internal", { code: "refused", status: 500, retryable: true });
    await t.rejects(c.token());
    clock.advance(Math.ceil(waitMs) - 1);
    await t.rejects(c.token());
    t.equal(src.calls, 1, `jitter ${jitter}: still in the backoff 1 ms before ${waitMs} ms`);
    clock.advance(1);
    await t.rejects(c.token());
    t.equal(src.calls, 2, `jitter ${jitter}: tried again after ${waitMs} ms`);
  }
});

t.test("an upstream's Retry-After is honoured up to the longest backoff, never beyond, and callers are told the true wait", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "impersonation");
  t.teardown(() => c.close());
  const dayLong = new HopError("impersonation", "HTTP 429: quota", {
    code: "refused",
    status: 429,
    retryable: true,
    retryAfterSeconds: 86_400,
  });
  src.failWith = dayLong;
  const first = await c.token().catch((x: unknown) => x);
  t.type(first, BackoffError, "the failed call is answered with the cache's backoff");
  t.equal((first as BackoffError).cause, dayLong, "the upstream's error is its cause");
  t.equal((first as BackoffError).retryAfterSeconds, POLICY.maxBackoffMs / 1000, "the wait told is the longest backoff, not a day");
  src.failWith = undefined;
  src.auto = () => tok(HOUR);

  clock.advance(POLICY.maxBackoffMs - 1_001);
  const later = await c.token().catch((x: unknown) => x);
  t.equal((later as BackoffError).retryAfterSeconds, 2, "what is told is what is left of the backoff");
  clock.advance(1_000);
  const last = await c.token().catch((x: unknown) => x);
  t.equal((last as BackoffError).retryAfterSeconds, 1, "1 ms before the next attempt: 1 s");
  t.equal(src.calls, 1, "no upstream call before the backoff ends");
  clock.advance(1);
  const ok = await c.token();
  t.match(ok.value, /^token-/, "at the end of the longest backoff the upstream is asked again, and the token served");
  t.equal(src.calls, 2);
});

t.test("a day-long Retry-After during a background renewal: the timer tries again after the longest backoff, by itself", async (t) => {
  const src = new FakeSource();
  const { c, clock, tok } = cacheOn(src, "STS", POLICY, { timers: true });
  t.teardown(() => c.close());
  src.auto = () => tok(HOUR);
  const first = await c.token();
  t.equal(await c.token(), first, "in use: renewed in the background");
  src.auto = undefined;
  src.failWith = new HopError("STS", "HTTP 429: later", { code: "refused", status: 429, retryable: true, retryAfterSeconds: 86_400 });
  clock.advance(HOUR - POLICY.renewBeforeMs);
  await flush();
  t.equal(src.calls, 2, "the renewal timer tried, and the upstream asked for a day");
  t.equal(await c.token(), first, "the old token is served meanwhile");
  src.failWith = undefined;
  src.auto = () => tok(HOUR);
  clock.advance(POLICY.maxBackoffMs - 1);
  await flush();
  t.equal(src.calls, 2, "not before the longest backoff");
  clock.advance(1);
  await flush();
  t.equal(src.calls, 3, "then again, with no caller asking");
  const renewed = c.peek();
  t.not(renewed, first, "recovered: a new token is cached");
  t.equal(c.failure, undefined, "and the failure is cleared");
});

t.test("failure is the source's own error, also when the source is another cache in backoff", async (t) => {
  const inner = new FakeSource();
  const boom = new HopError("OCI principal", "HTTP 401: NotAuthenticated", { code: "unauthenticated", status: 401 });
  inner.failWith = boom;
  const { c: innerCache } = cacheOn(inner, "OCI principal");
  const { c: outer } = cacheOn(innerCache, "identity domain");
  t.teardown(() => {
    innerCache.close();
    outer.close();
  });
  const e = await outer.token().catch((x: unknown) => x);
  t.type(e, BackoffError);
  t.equal((e as BackoffError).label, "identity domain");
  t.type((e as BackoffError).cause, BackoffError, "the inner cache's backoff is the cause");
  t.equal(outer.failure, boom, "failure looks through both backoffs");
  t.equal(innerCache.failure, boom);
  t.match(outer.state().lastError, /^OCI principal: HTTP 401: NotAuthenticated$/, "and the state's lastError says it in the same words");
});
