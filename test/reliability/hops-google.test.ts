/**
 * Each Google hop (STS token exchange, IAM Credentials generateAccessToken and
 * generateIdToken) facing a failing upstream: 5xx retried, 429 Retry-After
 * honoured, 4xx not retried, garbage answers refused with a clear error, hung
 * connections cut at upstream.timeoutMs; the daemon answers every time, serves
 * tokens again once the fault is gone, and logs no secret at trace level.
 *
 * Each hop has its own emulators and daemons, so that the three run side by side:
 * most of the time goes to waiting (Retry-After, timeouts, backoff).
 */
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { clearFaults, type Endpoint, fakeJwt, fault, recordCallTimes, waitFor } from "../helpers/reliability.js";
import { calls, type Stack, startStack } from "../helpers/stack.js";

const TIMEOUT_MS = 800;
const ATTEMPTS = 3;
const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity";

/** Emulators and the daemons of one hop's cases. */
interface Cloud {
  emu: Emulators;
  times: Record<string, number[]>;
  /** Impersonates the demo service account: access tokens come from generateAccessToken. */
  imp: Stack;
  /** No service account: the federated STS token is what clients get. */
  fed: Stack;
  /** Obtains the OCI session with the default timeouts, for both test daemons. */
  ociSide: Stack;
}
let n = 0;
const clouds: Cloud[] = [];

t.teardown(async () => {
  for (const c of clouds) {
    await c.imp.close();
    await c.fed.close();
    await c.ociSide.close();
    await c.emu.close();
  }
});

async function startCloud(): Promise<Cloud> {
  const emu = await startEmulators();
  const times = recordCallTimes(emu);
  const stacks: Stack[] = [];
  try {
    // The OCI side is not under test here: one daemon with the default (generous)
    // timeouts holds the OCI session the test daemons sign with, so that their short
    // timeouts cannot fail a cold start on a loaded machine.
    const ociSide = await startStack({ emu });
    stacks.push(ociSide);
    const principal = { token: () => ociSide.daemon.chain.principal.token() };
    const overrides = { "upstream.timeoutMs": TIMEOUT_MS, "upstream.attempts": ATTEMPTS };
    const imp = await startStack({ emu, overrides, principal });
    stacks.push(imp);
    const fed = await startStack({ emu, overrides, serviceAccounts: [], principal });
    stacks.push(fed);
    // Warm both chains: the lower hops are cached from here on.
    for (const d of [ociSide, imp, fed]) {
      let last = { status: 0, text: "" };
      const ok = await waitFor(async () => (last = await d.get(TOKEN)).status === 200, 30_000, 500);
      if (!ok) throw new Error(`warm-up failed: ${last.status} ${last.text}`);
    }
    const c = { emu, times, imp, fed, ociSide };
    clouds.push(c);
    return c;
  } catch (e) {
    for (const d of stacks) await d.close();
    await emu.close();
    throw e;
  }
}

interface Hop {
  endpoint: Endpoint;
  /** The hop's name in errors. */
  hop: RegExp;
  /** A request that needs a new call at this endpoint (a scope set or audience never asked before). */
  fresh(c: Cloud): Promise<{ status: number; headers: Headers; text: string; ms: number }>;
  /** 200 answers that are not usable tokens, and what the error must say about each. */
  garbage: [string, string, RegExp][];
}

const hops: Hop[] = [
  {
    endpoint: "google.sts.token",
    hop: /the STS hop failed/,
    fresh: ({ fed }) => fed.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/test.sts${++n}`),
    garbage: [
      [
        "non-JSON body",
        "<html>upstream proxy error</html>",
        /STS hop failed: token exchange failed: HTTP 200 with a body that is not JSON \(33 bytes\), 3 attempts\n$/,
      ],
      ["JSON without fields", "{}", /without an access_token/],
      [
        "expires_in 0",
        JSON.stringify({
          access_token: "ya29.zero",
          token_type: "Bearer",
          issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
          expires_in: 0,
        }),
        /lifetime is 0/,
      ],
      ["expires_in negative", JSON.stringify({ access_token: "ya29.neg", token_type: "Bearer", expires_in: -30 }), /lifetime is -30/],
      [
        "expires_in absurd",
        JSON.stringify({ access_token: "ya29.huge", token_type: "Bearer", expires_in: 10 ** 12 }),
        /lifetime is 1000000000000/,
      ],
      ["expires_in a string", JSON.stringify({ access_token: "ya29.str", token_type: "Bearer", expires_in: "3600" }), /lifetime is "3600"/],
    ],
  },
  {
    endpoint: "google.iam.generateAccessToken",
    hop: /the impersonation hop failed: /,
    fresh: ({ imp }) => imp.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/test.iam${++n}`),
    garbage: [
      ["non-JSON body", "Service Unavailable", /failed: HTTP 200 with a body that is not JSON \(19 bytes\), 3 attempts\n$/],
      ["JSON without fields", "{}", /generateAccessToken for oci-workload@\S+ answered without an accessToken/],
      [
        "expireTime in the past",
        JSON.stringify({ accessToken: "ya29.past", expireTime: "2001-01-01T00:00:00Z" }),
        /lifetime is -[\d.]+, not between/,
      ],
      [
        "expireTime absurd",
        JSON.stringify({ accessToken: "ya29.far", expireTime: "2999-01-01T00:00:00Z" }),
        /lifetime is \d[\d.]*, not between/,
      ],
      [
        "expireTime not a time",
        JSON.stringify({ accessToken: "ya29.bad", expireTime: "soon" }),
        /generateAccessToken for oci-workload@\S+ answered without a valid expireTime/,
      ],
    ],
  },
  {
    endpoint: "google.iam.generateIdToken",
    hop: /the impersonation hop failed: /,
    fresh: ({ imp }) => imp.get(`${IDENTITY}?audience=https://aud${++n}.example.com`),
    garbage: [
      ["non-JSON body", "<<<", /failed: HTTP 200 with a body that is not JSON \(3 bytes\), 3 attempts\n$/],
      ["JSON without fields", "{}", /generateIdToken for oci-workload@\S+ answered with something that is not a JWT/],
      ["a JWT that does not parse", JSON.stringify({ token: "eyJhbGciOi.this-is-not.base64-json" }), /not a JWT/],
      ["a JWT without exp", JSON.stringify({ token: fakeJwt({ iss: "https://accounts.google.com", aud: "x" }) }), /not a JWT/],
      [
        "an expired JWT",
        JSON.stringify({ token: fakeJwt({ exp: Math.floor(Date.now() / 1000) - 60 }) }),
        /lifetime is -[\d.]+, not between/,
      ],
      [
        "a JWT with an absurd exp",
        JSON.stringify({ token: fakeJwt({ exp: Math.floor(Date.now() / 1000) + 10 * 365 * 86400 }) }),
        /lifetime is \d[\d.]*, not between/,
      ],
    ],
  },
];

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

// The hops run side by side, each on its own cloud.
t.jobs = hops.length;
const groups = hops.map((h) =>
  t.test(`${h.endpoint}`, async (t) => {
    const cloud = await startCloud();
    const { emu, times, imp, fed } = cloud;
    const count = async (e: Endpoint) => (await calls(emu))[e] ?? 0;
    t.afterEach(() => clearFaults(emu));

    t.test("500 is retried, and the retry succeeds", async (t) => {
      const before = await count(h.endpoint);
      await fault(emu, { endpoint: h.endpoint, status: 500, count: ATTEMPTS - 1 });
      const r = await h.fresh(cloud);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      t.equal((await count(h.endpoint)) - before, ATTEMPTS, `${ATTEMPTS - 1} failed calls and the one that succeeded`);
    });

    t.test("500 on every attempt: 503 naming the hop after exactly `attempts` calls", async (t) => {
      const before = await count(h.endpoint);
      await fault(emu, { endpoint: h.endpoint, status: 500 });
      const r = await h.fresh(cloud);
      t.equal(r.status, 503);
      t.match(r.text, h.hop);
      t.match(r.text, /HTTP 500/);
      t.ok(Number(r.headers.get("retry-after")) >= 1, "Retry-After");
      t.equal((await count(h.endpoint)) - before, ATTEMPTS);
    });

    t.test("429 with Retry-After: the next attempt waits for it", async (t) => {
      const before = times[h.endpoint]!.length;
      await fault(emu, { endpoint: h.endpoint, status: 429, headers: { "retry-after": "2" }, count: 1 });
      const r = await h.fresh(cloud);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      const mine = times[h.endpoint]!.slice(before);
      t.equal(mine.length, 2, "the 429 and one more call");
      t.ok(mine[1]! - mine[0]! >= 1995, `second call ${mine[1]! - mine[0]!} ms after the first (Retry-After: 2)`);
    });

    t.test("401 is not retried", async (t) => {
      const before = await count(h.endpoint);
      await fault(emu, { endpoint: h.endpoint, status: 401 });
      const r = await h.fresh(cloud);
      t.equal(r.status, 503);
      t.match(r.text, h.hop);
      t.match(r.text, /HTTP 401/);
      t.equal((await count(h.endpoint)) - before, 1, "exactly one call");
    });

    for (const [what, body, says] of h.garbage) {
      t.test(`200 with garbage: ${what}`, async (t) => {
        // JSON is labelled as JSON, as a real (if broken) server would; anything else as HTML.
        const json = isJson(body);
        await fault(emu, {
          endpoint: h.endpoint,
          status: 200,
          body,
          headers: { "content-type": json ? "application/json; charset=utf-8" : "text/html" },
        });
        const r = await h.fresh(cloud);
        t.equal(r.status, 503, r.text);
        t.match(r.text, h.hop);
        t.match(r.text, says);
        t.notMatch(r.text, /internal error/);
      });
    }

    t.test("a hung connection times out, naming the hop", async (t) => {
      await fault(emu, { endpoint: h.endpoint, latencyMs: 4 * TIMEOUT_MS });
      const r = await h.fresh(cloud);
      t.equal(r.status, 503, r.text);
      t.match(r.text, h.hop);
      t.match(r.text, new RegExp(`no answer within ${TIMEOUT_MS} ms \\(upstream\\.timeoutMs\\), ${ATTEMPTS} attempts`));
      // attempts × timeout, plus backoff between them (200 ms, 400 ms at most), plus slack.
      t.ok(r.ms < ATTEMPTS * TIMEOUT_MS + 600 + 1500, `answered in ${r.ms} ms`);
    });

    t.test("a dropped connection fails with what the network said, naming the hop", async (t) => {
      await fault(emu, { endpoint: h.endpoint, drop: true, count: ATTEMPTS });
      const r = await h.fresh(cloud);
      t.equal(r.status, 503, r.text);
      t.match(r.text, h.hop);
      t.match(
        r.text,
        /failed: the connection was (?:closed|reset) before (?:STS|IAM Credentials) answered \((?:UND_ERR_SOCKET|ECONNRESET)\), 3 attempts/,
        'the socket error in words, not a bare "fetch failed"',
      );
      await clearFaults(emu);
    });

    t.test("after the faults: fresh and cached requests are served", async (t) => {
      const r = await h.fresh(cloud);
      t.equal(r.status, 200, r.status === 200 ? "served" : r.text);
      for (const d of [imp, fed]) t.equal((await d.get(TOKEN)).status, 200);
    });
  }),
);

t.test("no secret in the trace-level logs of either daemon", async (t) => {
  await Promise.all(groups);
  t.equal(clouds.length, hops.length, "every hop's daemons were started");
  for (const { imp, fed, ociSide } of clouds) {
    t.same(imp.leaks(), []);
    t.same(fed.leaks(), []);
    t.same(ociSide.leaks(), []);
    t.notOk(
      [...imp.logs(), ...fed.logs()].some((l) => (l.level as number) >= 50 && /unexpected error/.test(String(l.msg))),
      "no unexpected (500) errors logged",
    );
  }
});
