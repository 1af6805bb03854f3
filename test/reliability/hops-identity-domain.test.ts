/**
 * The identity-domain hop (token exchange) facing a failing upstream: 5xx
 * retried, 429 Retry-After honoured, 4xx not retried, garbage and clock skew
 * refused with a clear error, hung connections cut; the daemon recovers without
 * a restart and logs no secret at trace level.
 *
 * The domain JWT is cached once per daemon, so every case starts a fresh daemon;
 * the daemons on one set of emulators share one (cached) OCI principal. Most of
 * the time goes to waiting (Retry-After, the cache's backoff, timeouts), so the
 * cases run side by side on three sets of emulators, taking turns on each.
 */
import t, { type Test } from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import type { SigningIdentity } from "../../src/oci/principal.js";
import type { TokenSource } from "../../src/token/token-source.js";
import { checkGarbageAnswer, type Endpoint, fakeJwt, fault, recordCallTimes, turns, waitFor } from "../helpers/reliability.js";
import { calls, type Stack, startStack } from "../helpers/stack.js";

const TIMEOUT_MS = 800;
const ATTEMPTS = 3;
const SUBJECT = "/oci2gcp/v1/subject-token";
const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const overrides = { "upstream.timeoutMs": TIMEOUT_MS, "upstream.attempts": ATTEMPTS };

/** Emulators, the times of their upstream calls, and the daemon whose OCI session the cases sign with. */
interface Cloud {
  emu: Emulators;
  times: Record<string, number[]>;
  base: Stack;
}
const daemons: Stack[] = [];

async function startCloud(): Promise<Cloud> {
  const emu = await startEmulators();
  const times = recordCallTimes(emu);
  // The OCI session every case signs with, obtained with the default (generous)
  // timeouts: the OCI side is not under test here, and a cold start on a loaded
  // machine must not fail the short timeouts of the test daemons.
  const base = await startStack({ emu });
  daemons.push(base);
  let last = { status: 0, text: "" };
  if (!(await waitFor(async () => (last = await base.get(SUBJECT)).status === 200, 30_000, 500)))
    throw new Error(`warm-up failed: ${last.status} ${last.text}`);
  return { emu, times, base };
}

const clouds = [turns(startCloud), turns(startCloud), turns(startCloud)];
let assigned = 0;
/** A case on the next set of emulators, in turn. */
const onACloud = (fn: (t: Test, c: Cloud) => Promise<void>) => clouds[assigned++ % clouds.length]!.on(fn);

t.teardown(async () => {
  for (const d of daemons) await d.close();
  for (const c of clouds) await c.close();
});

/** A fresh daemon; `sharedPrincipal` makes it use the base daemon's (cached) OCI principal. */
async function daemon(c: Cloud, sharedPrincipal: boolean, extra: Record<string, unknown> = {}): Promise<Stack> {
  const principal: TokenSource<SigningIdentity> | undefined = sharedPrincipal
    ? { token: () => c.base.daemon.chain.principal.token() }
    : undefined;
  const d = await startStack({ emu: c.emu, overrides: { ...overrides, ...extra }, principal });
  daemons.push(d);
  return d;
}

const count = async (emu: Emulators, e: Endpoint) => (await calls(emu))[e] ?? 0;
const now = () => Math.floor(Date.now() / 1000);

t.test("identity domain (oci.identityDomain.token)", async (t) => {
  const E: Endpoint = "oci.identityDomain.token";
  const HOP = /the identity domain hop failed/;
  const HOP_FIELD = /\[hop: identity domain\]$/;
  // Every case starts at once; those on the same emulators take turns.
  t.jobs = 19;

  t.test(
    "500 is retried, and the retry succeeds",
    onACloud(async (t, c) => {
      const d = await daemon(c, true);
      const before = await count(c.emu, E);
      await fault(c.emu, { endpoint: E, status: 500, count: ATTEMPTS - 1 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      t.equal((await count(c.emu, E)) - before, ATTEMPTS);
    }),
  );

  t.test(
    "500 on every attempt: 503 naming the hop and the status, after `attempts` calls",
    onACloud(async (t, c) => {
      const d = await daemon(c, true);
      const before = await count(c.emu, E);
      await fault(c.emu, { endpoint: E, status: 500 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503);
      t.match(r.text, HOP);
      t.match(r.text, /HTTP 500/);
      t.ok(Number(r.headers.get("retry-after")) >= 1);
      t.equal((await count(c.emu, E)) - before, ATTEMPTS);
    }),
  );

  t.test(
    "a failing identity domain is not retried again by the STS hop above it",
    onACloud(async (t, c) => {
      const d = await daemon(c, true, {});
      const before = await calls(c.emu);
      await fault(c.emu, { endpoint: E, status: 503 });
      const r = await d.get(TOKEN);
      t.equal(r.status, 503);
      t.match(r.text, HOP, "the error names the hop that failed, not the one above it");
      const after = await calls(c.emu);
      t.equal(after[E]! - before[E]!, ATTEMPTS, "attempts of the identity domain, not attempts squared");
      t.equal(after["google.sts.token"]! - before["google.sts.token"]!, 0, "STS never called");
    }),
  );

  t.test(
    "429 with Retry-After: the next attempt waits for it",
    onACloud(async (t, c) => {
      const d = await daemon(c, true);
      const before = c.times[E]!.length;
      await fault(c.emu, { endpoint: E, status: 429, headers: { "retry-after": "2" }, count: 1 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      const mine = c.times[E]!.slice(before);
      t.equal(mine.length, 2);
      t.ok(mine[1]! - mine[0]! >= 1995, `second call ${mine[1]! - mine[0]!} ms after the first`);
    }),
  );

  t.test(
    "401 is not retried",
    onACloud(async (t, c) => {
      const d = await daemon(c, true);
      const before = await count(c.emu, E);
      await fault(c.emu, { endpoint: E, status: 401 });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503);
      t.match(r.text, HOP);
      t.match(r.text, /HTTP 401/);
      t.equal((await count(c.emu, E)) - before, 1, "exactly one call");
    }),
  );

  const jwt = (claims: Record<string, unknown>) => fakeJwt({ iss: "https://identity.oraclecloud.com/", sub: "x", ...claims });
  // Bodies are made when the case runs: they hold times relative to now.
  const garbage: [string, () => string, RegExp][] = [
    ["non-JSON body", () => "<html><body>Bad gateway</body></html>", /HTTP 200 with a body that is not JSON/],
    ["JSON without fields", () => "{}", /HTTP 200 without an access_token/],
    [
      "an access_token that is not a JWT",
      () => JSON.stringify({ access_token: "abc.def", token_type: "Bearer", expires_in: 3600 }),
      /access_token is not a JWT/,
    ],
    [
      "a JWT whose payload does not parse",
      () => JSON.stringify({ access_token: "eyJhbGciOiJSUzI1NiJ9.%%%%.sig", expires_in: 3600 }),
      /access_token is not a JWT/,
    ],
    ["a JWT without exp", () => JSON.stringify({ access_token: jwt({}), expires_in: 3600 }), /no numeric exp claim/],
    ["expires_in 0", () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 }), expires_in: 0 }), /expires_in is 0, not a lifetime/],
    [
      "expires_in negative",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 }), expires_in: -3600 }),
      /expires_in is -3600, not a lifetime/,
    ],
    [
      "expires_in absurd",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 }), expires_in: 10 ** 9 }),
      /expires_in is 1000000000, not a lifetime/,
    ],
    [
      "expires_in not a number",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 }), expires_in: "an hour" }),
      /expires_in is "an hour", not a lifetime/,
    ],
    [
      "an expired JWT",
      () => JSON.stringify({ access_token: jwt({ exp: now() - 600 }) }),
      /expired 60\d s ago on arrival: check this machine's clock/,
    ],
    [
      "a JWT with an exp years away",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 5 * 365 * 86400 }) }),
      /exp is more than a day away: check this machine's clock/,
    ],
    [
      "clock skew: exp and expires_in disagree by minutes",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 + 600, iat: now() }), expires_in: 3600 }),
      /exp disagrees with expires_in by (59\d|60\d) s: this machine's clock and the identity domain's differ; fix the clock \(NTP\)/,
    ],
    [
      "clock skew: issued in the future",
      () => JSON.stringify({ access_token: jwt({ exp: now() + 3600 + 900, iat: now() + 900 }) }),
      /issued (89\d|90\d) s in the future: this machine's clock is behind; fix it \(NTP\)/,
    ],
  ];
  for (const [what, make, says] of garbage) {
    t.test(
      `200 with garbage: ${what}`,
      onACloud(async (t, c) => {
        await checkGarbageAnswer(t, await daemon(c, true), {
          endpoint: E,
          body: make(),
          hop: HOP,
          hopField: HOP_FIELD,
          says,
          recoverMs: 5000,
          everyMs: 200,
        });
      }),
    );
  }

  t.test(
    "a hung connection times out, naming the hop",
    onACloud(async (t, c) => {
      const d = await daemon(c, true);
      await fault(c.emu, { endpoint: E, latencyMs: 4 * TIMEOUT_MS });
      const r = await d.get(SUBJECT);
      t.equal(r.status, 503, r.text);
      t.match(r.text, HOP);
      t.match(r.text, new RegExp(`no answer within ${TIMEOUT_MS} ms`));
      t.ok(r.ms < ATTEMPTS * TIMEOUT_MS + 600 + 1500, `answered in ${r.ms} ms`);
    }),
  );
});

t.test("no secret in the trace-level logs of any daemon", async (t) => {
  for (const d of daemons) t.same(d.leaks(), []);
});
