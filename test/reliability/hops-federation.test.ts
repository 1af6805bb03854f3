/**
 * The instance principal's federation at the OCI auth service (/v1/x509, through
 * oci-common) facing a failing upstream: 5xx retried, 429 Retry-After honoured,
 * 4xx not retried, garbage refused with a clear error, hung connections cut;
 * the daemon recovers without a restart and logs no secret at trace level.
 *
 * The OCI principal is cached once per daemon, so every case starts a fresh
 * daemon. Most of the time goes to waiting (oci-common's retry delays, the cache's
 * backoff, timeouts), so the cases run side by side on several emulators: faults and
 * call counters are per emulator, and the cases that share one take turns.
 */
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { checkGarbageAnswer, clearFaults, type Endpoint, fakeJwt, fault, recordCallTimes, turns, waitFor } from "../helpers/reliability.js";
import { calls, type Stack, startStack } from "../helpers/stack.js";

const TIMEOUT_MS = 2000;
const ATTEMPTS = 3;
const SUBJECT = "/oci2gcp/v1/subject-token";
const overrides = { "upstream.timeoutMs": TIMEOUT_MS, "upstream.attempts": ATTEMPTS };

/** Emulators with the times of their upstream calls. */
interface Cloud {
  emu: Emulators;
  times: Record<string, number[]>;
}

const daemons: Stack[] = [];
const startCloud = async (): Promise<Cloud> => {
  const emu = await startEmulators();
  return { emu, times: recordCallTimes(emu) };
};
// Three sets of emulators, for cases that take turns on each: the outage and the hung
// connection, which wait longest, on one each, the other federation cases on the third,
// and the garbage cases spread over the three. The groups, and the cases within them,
// all start at once.
const quick = turns(startCloud);
const outage = turns(startCloud);
const hung = turns(startCloud);
const all = [quick, outage, hung];

t.teardown(async () => {
  for (const d of daemons) await d.close();
  for (const c of all) await c.close();
});

/** A fresh daemon, with its own OCI principal (and oci-common provider). */
async function daemon(emu: Emulators, extra: Record<string, unknown> = {}): Promise<Stack> {
  const d = await startStack({ emu, overrides: { ...overrides, ...extra } });
  daemons.push(d);
  return d;
}

const now = () => Math.floor(Date.now() / 1000);
const count = async (emu: Emulators, e: Endpoint) => (await calls(emu))[e] ?? 0;
const json = { "content-type": "application/json" };

t.jobs = 2;

const federation = t.test("OCI federation (oci.federation)", async (t) => {
  const E: Endpoint = "oci.federation";
  const HOP = /the OCI principal hop failed/;
  t.jobs = 6;

  t.test(
    "500 is retried (by oci-common), and the retry succeeds",
    quick.on(async (t, { emu }) => {
      const d = await daemon(emu);
      const before = await count(emu, E);
      await fault(emu, { endpoint: E, status: 500, count: 2 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      t.equal((await count(emu, E)) - before, 3, "two failed calls and the one that succeeded");
    }),
  );

  t.test(
    "500 on every attempt: 503 naming the hop and the status",
    quick.on(async (t, { emu }) => {
      const d = await daemon(emu);
      const before = await count(emu, E);
      await fault(emu, { endpoint: E, status: 500 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503);
      t.match(r.text, HOP);
      t.match(r.text, /HTTP 500/);
      t.equal((await count(emu, E)) - before, 3, "oci-common's three attempts, not multiplied by the hops above");
    }),
  );

  t.test(
    "an outage of the auth service: the daemon recovers soon after it ends, without a restart",
    outage.on(async (t, { emu }) => {
      const d = await daemon(emu);
      const before = await count(emu, E);
      await fault(emu, { endpoint: E, status: 503 });
      t.equal((await d.get(SUBJECT)).status, 503, "first failed round");
      // Clients keep asking; after the cache's backoff a second round is attempted, and
      // every attempt of it must reach the auth service (no circuit breaker refusing it).
      const principal = d.daemon.chain.principal;
      const second = await waitFor(
        async () => (await d.get(SUBJECT)).status === 503 && (await count(emu, E)) - before >= 6 && !principal.state().refreshing,
        10_000,
        200,
      );
      t.ok(second, "a second round of three attempts reached the auth service");
      t.equal((await count(emu, E)) - before, 6);
      await clearFaults(emu);
      const cleared = Date.now();
      const ok = await waitFor(async () => (await d.get(SUBJECT)).status === 200, 20_000, 200);
      t.ok(ok, "serves again");
      // The cache's own backoff after two failed rounds is at most 2 s (or 4 s after a third);
      // oci-common's circuit breaker would refuse every federation for 30-49 s.
      t.ok(Date.now() - cleared < 10_000, `serves again ${Date.now() - cleared} ms after the auth service came back`);
    }),
  );

  t.test(
    "429 with Retry-After: no new attempt before it, and the 503 says when",
    quick.on(async (t, { emu, times }) => {
      const d = await daemon(emu);
      const before = times[E]!.length;
      await fault(emu, { endpoint: E, status: 429, headers: { "retry-after": "3" }, count: 1 });
      const first = await d.get(SUBJECT);
      t.equal(first.status, 503, first.text);
      t.match(first.text, /HTTP 429/);
      t.ok(Number(first.headers.get("retry-after")) >= 2, `Retry-After ${first.headers.get("retry-after")}`);
      // A client that does not wait keeps asking; the daemon must not call before Retry-After.
      const ok = await waitFor(async () => (await d.get(SUBJECT)).status === 200, 10_000, 200);
      t.ok(ok, "served once Retry-After has passed");
      const mine = times[E]!.slice(before);
      t.equal(mine.length, 2, "the 429, then one call after Retry-After");
      t.ok(mine[1]! - mine[0]! >= 2995, `second call ${mine[1]! - mine[0]!} ms after the first (Retry-After: 3)`);
    }),
  );

  t.test(
    "401 is not retried",
    quick.on(async (t, { emu }) => {
      const d = await daemon(emu);
      const before = await count(emu, E);
      await fault(emu, {
        endpoint: E,
        status: 401,
        body: JSON.stringify({
          code: "NotAuthenticated",
          message: "The required information to complete authentication was not provided.",
        }),
        headers: json,
      });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503);
      t.match(r.text, HOP);
      t.match(r.text, /HTTP 401: NotAuthenticated/);
      t.equal((await count(emu, E)) - before, 1, "exactly one call");
    }),
  );

  t.test(
    "a hung connection times out, naming the hop",
    hung.on(async (t, { emu }) => {
      const d = await daemon(emu);
      const before = await count(emu, E);
      await fault(emu, { endpoint: E, latencyMs: 1.5 * TIMEOUT_MS });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503, r.text);
      t.match(r.text, HOP);
      t.match(r.text, /Failed with error: TimeoutError: The operation was aborted due to timeout/);
      // Three attempts, each cut at the timeout, 1-2 s apart (oci-common's retry), plus the
      // first use's metadata reads and key generation, plus slack.
      t.ok(r.ms < 3 * TIMEOUT_MS + 4000 + 3000, `answered in ${r.ms} ms`);
      t.equal(((await calls(emu))[E] ?? 0) - before, 3, "three attempts, each cut");
    }),
  );
});

const garbageAnswers = t.test("OCI federation (oci.federation) answering garbage", async (t) => {
  const E: Endpoint = "oci.federation";
  const HOP = /the OCI principal hop failed/;
  const HOP_FIELD = /\[hop: OCI principal\]$/;
  t.jobs = 5;

  const garbage: [string, string, RegExp][] = [
    ["non-JSON body", "<html>maintenance</html>", /instance principal: .*(JSON|Unexpected token)/],
    ["JSON without a token", "{}", /security token is not a JWT with an exp claim/],
    ["a token that is not a JWT", JSON.stringify({ token: "not-a-jwt" }), /security token is not a JWT with an exp claim/],
    ["an expired token", JSON.stringify({ token: fakeJwt({ sub: "x", exp: now() - 60 }) }), /security token expired at/],
    [
      "a token with an absurd exp",
      JSON.stringify({ token: fakeJwt({ sub: "x", exp: now() + 10 * 365 * 86400 }) }),
      /security token expires \S+, more than a day away: check this machine's clock/,
    ],
  ];
  let garbageCases = 0;
  for (const [what, body, says] of garbage) {
    t.test(
      `200 with garbage: ${what}`,
      all[garbageCases++ % all.length]!.on(async (t, { emu }) => {
        await checkGarbageAnswer(t, await daemon(emu), {
          endpoint: E,
          body,
          hop: HOP,
          hopField: HOP_FIELD,
          says,
          recoverMs: 8000,
          everyMs: 250,
        });
      }),
    );
  }
});

t.test("no secret in the trace-level logs of any daemon", async (t) => {
  await Promise.all([federation, garbageAnswers]);
  for (const d of daemons) t.same(d.leaks(), []);
});
