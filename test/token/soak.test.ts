/**
 * CachingTokenSource over a thousand and more renewal cycles, driven directly
 * with a fake upstream whose tokens live 20-50 ms, under constant load from
 * concurrent callers: no caller ever gets an expired token or an error, the
 * upstream is never called twice at once, and renewal happens ahead of expiry.
 * Then the same with an upstream that fails now and then: errors reach a caller
 * only when no token above the floor exists, and still never an expired token.
 * In real time on purpose: what it checks is the cache under the real scheduler,
 * its timers racing its callers and the process being descheduled.
 */
import t from "tap";
import { type CachePolicy, CachingTokenSource } from "../../src/token/cache.js";
import { BackoffError, BelowFloorError } from "../../src/token/errors.js";
import type { Token, TokenSource } from "../../src/token/token-source.js";
import { HopError } from "../../src/upstream/hop-error.js";
import { prng } from "../helpers/reliability.js";

const POLICY: CachePolicy = { renewBeforeMs: 60_000, minRemainingMs: 30_000, minBackoffMs: 2, maxBackoffMs: 20 };

class FakeUpstream implements TokenSource {
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  /** Calls made while the cache still held a token above its floor (renewals ahead of time). */
  ahead = 0;
  cache?: CachingTokenSource;
  private n = 0;

  constructor(
    private readonly rand: () => number,
    private readonly failureRate = 0,
  ) {}

  async token(): Promise<Token> {
    this.calls++;
    if (this.cache?.peek()) this.ahead++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, Math.floor(this.rand() * 4)));
      if (this.rand() < this.failureRate)
        throw new HopError("STS", "HTTP 503: injected", { code: "refused", status: 503, retryable: true });
      const now = Date.now();
      const life = 20 + Math.floor(this.rand() * 31);
      return { value: `tok-${++this.n}`, expiresAt: now + life, obtainedAt: now };
    } finally {
      this.inFlight--;
    }
  }
}

interface Outcome {
  handed: number;
  /** Tokens that did not have more than the floor left at the moment they were asked for. */
  belowFloorWhenAsked: number;
  /** Tokens past expiry when the caller looked at them, and how long the caller had been away. */
  expiredAtReceipt: { leftWhenAsked: number; waited: number }[];
  minLeftMs: number;
  errors: unknown[];
  /** Errors given while a token above the floor existed (there must be none). */
  errorsWithValidToken: number;
}

/** The floor the cache applies to a token (POLICY's is far above these lifetimes: a quarter of the lifetime). */
const floorOf = (tok: Token) => Math.min(POLICY.minRemainingMs, (tok.expiresAt - tok.obtainedAt) / 4);

/**
 * Callers in a loop until the upstream has been called `cycles` times. Each token
 * is checked against the time it was asked for (a cached token must have had more
 * than the floor left then; a token obtained for the caller must be newer than the
 * request and above the floor when obtained) and against the time it was received:
 * on a loaded machine the process can be descheduled between the two, so a token
 * found expired at receipt is reported with how long the caller was away, and is a
 * failure unless that absence exceeds the time the token had left when asked.
 */
async function soak(
  cache: CachingTokenSource,
  upstream: FakeUpstream,
  callers: number,
  cycles: number,
  rand: () => number,
  deadlineMs: number,
): Promise<Outcome> {
  const out: Outcome = {
    handed: 0,
    belowFloorWhenAsked: 0,
    expiredAtReceipt: [],
    minLeftMs: Infinity,
    errors: [],
    errorsWithValidToken: 0,
  };
  const end = Date.now() + deadlineMs;
  const caller = async () => {
    while (upstream.calls < cycles && Date.now() < end) {
      const askedAt = Date.now();
      try {
        const tok = await cache.token();
        const gotAt = Date.now();
        out.handed++;
        const fresh = tok.obtainedAt >= askedAt;
        if (fresh ? tok.expiresAt - tok.obtainedAt <= floorOf(tok) : tok.expiresAt - askedAt <= floorOf(tok)) out.belowFloorWhenAsked++;
        const left = tok.expiresAt - gotAt;
        out.minLeftMs = Math.min(out.minLeftMs, left);
        if (left <= 0)
          out.expiredAtReceipt.push({
            leftWhenAsked: tok.expiresAt - Math.max(askedAt, tok.obtainedAt),
            waited: gotAt - Math.max(askedAt, tok.obtainedAt),
          });
      } catch (e) {
        out.errors.push(e);
        if (cache.peek()) out.errorsWithValidToken++;
      }
      // Constant load: most callers come back at once, some after a millisecond or two.
      const pause = Math.floor(rand() * 3);
      await new Promise((r) => (pause ? setTimeout(r, pause) : setImmediate(r)));
    }
  };
  await Promise.all(Array.from({ length: callers }, caller));
  return out;
}

function checkTokens(t: Asserts, o: Outcome): void {
  t.equal(o.belowFloorWhenAsked, 0, "every token had more than the floor left when it was asked for (or was obtained for the caller)");
  if (o.expiredAtReceipt.length) t.comment(`process stalls seen by callers: ${JSON.stringify(o.expiredAtReceipt)}`);
  t.ok(
    o.expiredAtReceipt.every((x) => x.waited >= x.leftWhenAsked),
    "no expired token handed out (a token seen expired only ever expired while its caller was descheduled)",
  );
}

/** The cache's errors carry its label; the source's errors (a BackoffError's cause) are HopErrors naming the hop. */
function namesSts(e: unknown): boolean {
  if (e instanceof BackoffError) return e.label === "STS" && namesSts(e.cause);
  if (e instanceof BelowFloorError) return e.label === "STS";
  return e instanceof HopError && e.hop === "STS";
}

/** The assertions a helper uses, from whichever test calls it. */
type Asserts = Pick<typeof t, "ok" | "fail" | "equal" | "comment">;

t.test("1,000+ renewal cycles of 20-50 ms tokens under 25 concurrent callers", async (t) => {
  const rand = prng(20251126);
  const upstream = new FakeUpstream(rand);
  const cache = new CachingTokenSource(upstream, "STS", POLICY);
  upstream.cache = cache;
  const started = Date.now();
  const o = await soak(cache, upstream, 25, 1000, rand, 75_000);
  cache.close();
  t.comment(
    `${upstream.calls} renewals, ${o.handed} tokens handed out in ${Date.now() - started} ms, ` +
      `least time left at receipt ${o.minLeftMs} ms; cache ${JSON.stringify({ hits: cache.state().hits, misses: cache.state().misses })}`,
  );
  t.ok(upstream.calls >= 1000, `${upstream.calls} renewal cycles`);
  checkTokens(t, o);
  t.same(o.errors.map(String), [], "no caller error");
  t.equal(upstream.maxInFlight, 1, "never two upstream calls at once");
  // Renewal runs ahead of expiry: most upstream calls start while the current token
  // is still good, so callers do not wait for them (a cache renewing only when the
  // token runs out would score 0 here; a loaded machine delays some timers).
  t.ok(upstream.ahead / upstream.calls > 0.75, `${upstream.ahead} of ${upstream.calls} renewals started ahead of the floor`);
});

t.test("an upstream failing 20% of the time: old tokens are served, errors only when nothing valid is left", async (t) => {
  const rand = prng(7);
  const upstream = new FakeUpstream(rand, 0.2);
  const cache = new CachingTokenSource(upstream, "STS", POLICY);
  upstream.cache = cache;
  const o = await soak(cache, upstream, 25, 300, rand, 60_000);
  cache.close();
  t.comment(`${upstream.calls} upstream calls, ${o.handed} tokens handed out, ${o.errors.length} errors`);
  t.ok(upstream.calls >= 300);
  checkTokens(t, o);
  t.equal(o.errorsWithValidToken, 0, "no caller was refused while a token above the floor existed");
  t.ok(o.errors.every(namesSts), "errors are HopErrors naming the hop (or the cache's own errors, labelled with it)");
  t.equal(upstream.maxInFlight, 1, "never two upstream calls at once");
  t.ok(o.handed > o.errors.length * 5, "mostly served");
});
