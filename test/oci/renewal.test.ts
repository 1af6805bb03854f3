import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { BudgetExceededError } from "../../src/server/budget.js";
import { type CachePolicy, CachingTokenSource } from "../../src/token/cache.js";
import { BackoffError, BelowFloorError } from "../../src/token/errors.js";
import type { Token, TokenSource } from "../../src/token/token-source.js";
import { HopError } from "../../src/upstream/hop-error.js";
import { calls, claimsOf, startStack } from "../helpers/stack.js";

const SUBJECT = "/oci2gcp/v1/subject-token";

// ---- the daemon against the emulator ------------------------------------------------------

t.test("200 concurrent requests on a cold daemon: one federation, one exchange", async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  const results = await Promise.all(Array.from({ length: 200 }, () => s.get(SUBJECT)));
  t.equal(results.filter((r) => r.status === 200).length, 200, "all 200 succeed");
  t.equal(new Set(results.map((r) => JSON.parse(r.text).access_token)).size, 1, "all get the same token");
  const c = await calls(s.emu);
  t.equal(c["oci.federation"], 1, "one federation call");
  t.equal(c["oci.identityDomain.token"], 1, "one identity-domain call");
  t.ok(c["oci.metadata"]! <= 10, `the metadata service was read for one build, not per request (${c["oci.metadata"]} reads)`);
});

interface Seen {
  token: string;
  exp: number;
  /** When the response arrived (ms). */
  at: number;
}

t.test("short lifetimes: renewed ahead of expiry, once per cycle, never an expired token", async (t) => {
  const DOMAIN_S = 6;
  const FEDERATION_S = 10;
  const s = await startStack({ overrides: { "cache.subjectRenewBeforeSeconds": 3, "cache.subjectMinRemainingSeconds": 1 } });
  t.teardown(() => s.close());
  const set = await fetch(`${s.emu.url}/_emulator/settings`, {
    method: "POST",
    body: JSON.stringify({ oci: { federationTokenSeconds: FEDERATION_S, domainTokenSeconds: DOMAIN_S } }),
  });
  t.equal(set.status, 200, "emulator settings applied");

  const seen: Seen[] = [];
  const failures: string[] = [];
  const started = Date.now();
  const DURATION = 20_000;
  // Four clients, each asking again as soon as it has its answer, with small pauses.
  await Promise.all(
    Array.from({ length: 4 }, async (_, i) => {
      await sleep(i * 25);
      while (Date.now() - started < DURATION) {
        const r = await s.get(SUBJECT);
        const at = Date.now();
        if (r.status !== 200) {
          failures.push(`${r.status} ${r.text}`);
        } else {
          const b = JSON.parse(r.text) as { access_token: string; expires_in: number };
          seen.push({ token: b.access_token, exp: claimsOf(b.access_token).exp as number, at });
        }
        await sleep(40);
      }
    }),
  );
  const c = await calls(s.emu);

  t.same(failures, [], "no request failed");
  t.ok(seen.length > 50, `many answers (${seen.length})`);
  const expired = seen.filter((x) => x.exp * 1000 <= x.at);
  t.same(
    expired.map((x) => `${x.exp * 1000 - x.at} ms`),
    [],
    "no answer carried an expired token",
  );
  t.comment(`least time left on arrival: ${Math.min(...seen.map((x) => x.exp * 1000 - x.at))} ms (floor 1 s at hand-out)`);

  // Distinct tokens in order of first appearance.
  seen.sort((a, b) => a.at - b.at);
  const firsts: Seen[] = [];
  for (const x of seen) if (!firsts.some((f) => f.token === x.token)) firsts.push(x);
  for (let i = 1; i < firsts.length; i++) {
    const prev = firsts[i - 1]!;
    const next = firsts[i]!;
    t.ok(prev.exp * 1000 > next.at, `token ${i + 1} appeared ${prev.exp * 1000 - next.at} ms before token ${i} expired`);
    // Issued (iat, whole seconds) no sooner than half a lifetime after the previous one: one renewal per cycle.
    const gap = next.exp - prev.exp; // every token lives DOMAIN_S, so this is the gap between their iat
    t.ok(gap >= DOMAIN_S / 2 - 1, `one renewal per cycle: token ${i + 1} issued ${gap} s after token ${i}`);
  }
  // A renewal every half lifetime (about 3 s) over 20 s: 6 or 7 in all, fewer on a loaded machine, never a storm.
  t.ok(firsts.length >= 4 && firsts.length <= 9, `${firsts.length} distinct domain tokens in ${DURATION} ms`);
  const exchanges = c["oci.identityDomain.token"]!;
  t.ok(
    exchanges >= firsts.length && exchanges <= firsts.length + 1,
    `one exchange per token (${exchanges} exchanges, ${firsts.length} tokens)`,
  );
  // Security tokens of 10 s renewed 3 s ahead: about every 7 s.
  const fed = c["oci.federation"]!;
  t.ok(fed >= 2 && fed <= 5, `federation renewed once per cycle (${fed} calls in ${DURATION} ms)`);
  t.same(s.leaks(), [], "no secret in the logs");
});

// ---- CachingTokenSource with a fake source and a fake clock --------------------------------

/** The caches' clock in these tests, moved by hand; timers stay real (the cache's timers are set far ahead). */
const clock = {
  at: 1_800_000_000_000,
  now(): number {
    return clock.at;
  },
  advance(ms: number): void {
    clock.at += ms;
  },
};
const CLOCK = { clock };

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
function tok(lifeMs: number): Token {
  serial += 1;
  return { value: `token-${serial}`, obtainedAt: clock.now(), expiresAt: clock.now() + lifeMs };
}

const HOUR = 3600_000;
const POLICY: CachePolicy = { renewBeforeMs: 600_000, minRemainingMs: 120_000, minBackoffMs: 1_000, maxBackoffMs: 30_000 };

/** Settles what is pending on the microtask queue. */
const flush = () => new Promise<void>((r) => setImmediate(r));

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

t.test("cache: single flight under 100 concurrent callers", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", POLICY, "", {}, CLOCK);
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

t.test("cache: background renewal in the window, old token served meanwhile", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", POLICY, "", {}, CLOCK);
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

t.test("cache: a failed renewal keeps the old token while above the floor, never crosses it, never caches the error", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", POLICY, "", {}, CLOCK);
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

t.test("cache: backoff after a failure; Retry-After honoured; admit not consulted during backoff", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "STS", POLICY, "", {}, CLOCK);
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

t.test("cache: admit is consulted only when a blocking upstream call would start", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "impersonation", POLICY, "", {}, CLOCK);
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

t.test("cache: margins shrink for short tokens (renew at half, floor at a quarter)", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", POLICY, "", {}, CLOCK);
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

t.test("cache: an upstream token already below the floor is an error, not a token", async (t) => {
  const src = new FakeSource();
  const c = new CachingTokenSource(src, "identity domain", POLICY, "", {}, CLOCK);
  t.teardown(() => c.close());
  src.auto = () => ({ value: "nearly-dead", obtainedAt: clock.now() - HOUR, expiresAt: clock.now() + 60_000 });
  const e = await c.token().catch((x: unknown) => x);
  t.type(e, BelowFloorError);
  t.equal((e as BelowFloorError).label, "identity domain");
  t.match((e as BelowFloorError).message, /below the minimum remaining lifetime/);
  t.equal(c.peek(), undefined);
});

t.test("cache: the renewal timer runs only while the token is in use (real time)", async (t) => {
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
