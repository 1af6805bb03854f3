/**
 * The flood guard's counter: fixed windows per client key, bounded in size,
 * and the store interface @fastify/rate-limit calls, sharing the same counts.
 */
import t from "tap";
import { clientKeyOf, FloodCounter } from "../../src/server/flood.js";

/** A clock the test moves by hand. */
function manualClock(start: number): { at: number; now(): number } {
  return {
    at: start,
    now() {
      return this.at;
    },
  };
}

t.test("counts per key within a window, then starts a new window", async (t) => {
  const clock = manualClock(1_000_000);
  const f = new FloodCounter(3, 60_000, 100, { clock });
  t.same([f.admit("a"), f.admit("a"), f.admit("a"), f.admit("a")], [true, true, true, false], "the fourth in the window is over the limit");
  t.ok(f.admit("b"), "another key has its own count");
  clock.at += 59_999;
  t.notOk(f.admit("a"), "still the same window 1 ms before its end");
  clock.at += 1;
  t.ok(f.admit("a"), "a new window at its end");
  t.same(f.count("a"), { current: 2, ttl: 60_000 }, "count and time left of the new window");
});

t.test("the store @fastify/rate-limit constructs is this counter's", async (t) => {
  const clock = manualClock(5_000_000);
  const f = new FloodCounter(2, 60_000, 100, { clock });
  const Store = f.storeClass();
  const store = new Store({} as never) as unknown as {
    incr(k: string, cb: (e: Error | null, r?: { current: number; ttl: number }) => void, w: number, m: number): void;
    read(k: string, cb: (e: Error | null, r?: { current: number; ttl: number }) => void, w: number, m: number): void;
    child(o: unknown): unknown;
  };
  t.equal(new Store({} as never), store, "every construction hands out the one shared store");
  t.equal(store.child({}), store, "routes share it too");
  t.ok(f.admit("k"), "counted by the fast path");
  let seen: { current: number; ttl: number } | undefined;
  store.incr("k", (_e, r) => (seen = r), 60_000, 2);
  t.same(seen, { current: 2, ttl: 60_000 }, "the plugin's increment continues the same count");
  store.read("k", (_e, r) => (seen = r), 60_000, 2);
  t.same(seen, { current: 2, ttl: 60_000 }, "read does not count");
  t.notOk(f.admit("k"), "over the limit for the fast path too");
  store.read("nobody", (_e, r) => (seen = r), 60_000, 2);
  t.same(seen, { current: 0, ttl: 0 }, "an unknown key reads as empty");
  clock.at += 60_000;
  store.read("k", (_e, r) => (seen = r), 60_000, 2);
  t.same(seen, { current: 0, ttl: 0 }, "read on the counter's clock: the window has ended");
});

t.test("bounded: the least recently seen keys are forgotten", async (t) => {
  const f = new FloodCounter(1, 60_000, 10);
  for (let i = 0; i < 10; i++) f.admit(`k${i}`);
  t.notOk(f.admit("k0"), "k0 is over its limit");
  for (let i = 10; i < 20; i++) f.admit(`k${i}`);
  t.ok(f.admit("k0"), "after 10 other keys, k0 was forgotten and starts again");
});

t.test("clientKeyOf: every loopback address is one client, the Unix socket another", async (t) => {
  for (const a of ["127.0.0.1", "127.0.0.2", "127.255.1.9", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::FFFF:127.3.4.5"]) {
    t.equal(clientKeyOf(a), "loopback", a);
  }
  t.equal(clientKeyOf(undefined), "unix-socket", "no address: the Unix socket");
  for (const a of ["10.0.0.1", "::ffff:10.0.0.1", "128.0.0.1", "::2", "fe80::1", "1::1", "2001:db8::1"]) t.equal(clientKeyOf(a), a, a);
});
