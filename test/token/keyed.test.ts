/**
 * KeyedTokenCache alone: one cache per key, made on first use, in a bounded LRU
 * whose evicted entries stop their background renewal.
 */
import t from "tap";
import { type CachePolicy, KeyedTokenCache } from "../../src/token/cache.js";
import type { Token, TokenSource } from "../../src/token/token-source.js";
import { FakeTime } from "../helpers/fake-time.js";

const HOUR = 3600_000;
const POLICY: CachePolicy = { renewBeforeMs: 600_000, minRemainingMs: 120_000, minBackoffMs: 1_000, maxBackoffMs: 30_000 };

/** A source per key that answers at once, counting its calls. */
function sources(clock: FakeTime): { make(key: string): () => TokenSource; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  return {
    calls,
    make: (key) => () => ({
      async token(): Promise<Token> {
        calls.set(key, (calls.get(key) ?? 0) + 1);
        return { value: `${key}-${calls.get(key)}`, obtainedAt: clock.now(), expiresAt: clock.now() + HOUR };
      },
    }),
  };
}

t.test("one cache per key, made on first use, sharing the label, events and time", async (t) => {
  const clock = new FakeTime();
  const refreshes: { label: string; key: string }[] = [];
  const k = new KeyedTokenCache(
    "STS",
    POLICY,
    10,
    { onRefresh: (e) => refreshes.push({ label: e.label, key: e.key }) },
    {
      clock,
      jitter: clock,
      timers: clock,
    },
  );
  t.teardown(() => k.close());
  const s = sources(clock);
  t.equal(k.find("a"), undefined, "find does not make one");
  t.notOk(k.has("a"));
  const a = k.get("a", s.make("a"));
  t.equal(k.get("a", s.make("other")), a, "the same cache for the same key; make is not called again");
  t.equal(k.find("a"), a);
  const tok = await a.token();
  t.equal(tok.value, "a-1");
  t.equal(tok.expiresAt, clock.now() + HOUR, "made on the cache's clock");
  t.same(refreshes, [{ label: "STS", key: "a" }], "events carry the label and the key");
  t.same(a.state().label, "STS");
  await k.get("b", s.make("b")).token();
  t.equal(k.size, 2);
  t.same(
    k.entries().map((c) => c.key),
    ["b", "a"],
    "entries, most recently used first",
  );
});

t.test("bounded: the least recently used key is evicted, and its renewal stops", async (t) => {
  const clock = new FakeTime();
  const k = new KeyedTokenCache("STS", POLICY, 2, {}, { clock, jitter: clock, timers: clock });
  t.teardown(() => k.close());
  const s = sources(clock);
  await k.get("a", s.make("a")).token();
  await k.get("b", s.make("b")).token();
  t.equal(clock.pending, 2, "a renewal timer each");
  k.find("a");
  await k.get("c", s.make("c")).token();
  t.equal(k.size, 2);
  t.notOk(k.has("b"), "b, the least recently used, is evicted");
  t.ok(k.has("a") && k.has("c"));
  t.equal(clock.pending, 2, "the evicted cache's timer is cancelled");
  k.close();
  t.equal(k.size, 0);
  t.equal(clock.pending, 0, "close stops every renewal");
});

t.test("pinned keys: no flood of other keys evicts them, and they count towards the bound", async (t) => {
  const clock = new FakeTime();
  const k = new KeyedTokenCache("impersonation", POLICY, 4, {}, { clock, jitter: clock, timers: clock, pinned: ["sa default"] });
  t.teardown(() => k.close());
  const s = sources(clock);
  t.equal(k.find("sa default"), undefined, "a pinned key has no cache until first use");
  t.notOk(k.has("sa default"));
  const pinned = k.get("sa default", s.make("sa default"));
  const first = await pinned.token();
  for (let i = 0; i < 300; i++) k.get(`variant ${i}`, s.make(`variant ${i}`));
  t.equal(k.find("sa default"), pinned, "still there after 300 other keys");
  t.equal(k.get("sa default", s.make("again")), pinned, "and not made again");
  t.equal(k.size, 4, "pinned plus three variants: the bound holds");
  t.ok(k.has("variant 299") && !k.has("variant 296"), "the variants are evicted, least recently used first");
  t.equal(pinned.peek(), first, "its token is still cached");
  t.equal(k.entries()[0], pinned);
  k.close();
  t.equal(k.size, 0);
  t.equal(clock.pending, 0, "close stops the pinned cache's renewal too");
});

t.test("a bound below the pinned keys still leaves room for one variant", async (t) => {
  const k = new KeyedTokenCache("STS", POLICY, 1, {}, { pinned: ["a"] });
  t.teardown(() => k.close());
  const s = sources(new FakeTime());
  k.get("a", s.make("a"));
  k.get("x", s.make("x"));
  k.get("y", s.make("y"));
  t.ok(k.has("a") && k.has("y") && !k.has("x"));
});
