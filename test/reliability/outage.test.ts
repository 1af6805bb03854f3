/**
 * Google STS down (503, no end) for longer than a token's lifetime. The daemon
 * keeps serving the token it has until the floor, then answers 503 with
 * Retry-After and a body naming the STS hop and its last error; once STS is
 * back it recovers by itself. Never an expired token, never a bad answer in
 * place of a good token, never a secret in the trace-level log.
 */
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { clearFaults, emuSettings, fault, recordCallTimes, sleep, waitFor } from "../helpers/reliability.js";
import { type Stack, startStack } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const LIFETIME_S = 6;
/** The cache's margins for a token this short: renew at half the lifetime, floor at a quarter. */
const FLOOR_MS = (LIFETIME_S * 1000) / 4;

const daemons: Stack[] = [];
const started: Emulators[] = [];

t.teardown(async () => {
  for (const d of daemons) await d.close();
  for (const e of started) await e.close();
});

// The cases mostly wait for short-lived tokens to run out, and each sets the token lifetime
// and faults of its emulators: they run side by side, each on emulators of its own.
t.jobs = 3;

async function emulators(): Promise<Emulators> {
  const emu = await startEmulators();
  started.push(emu);
  return emu;
}

interface Seen {
  at: number;
  status: number;
  token?: string;
  expiresIn?: number;
  retryAfter?: number;
  text: string;
}

/** One request; for a 200, checks the token against the emulator's own records at receipt. */
async function ask(t: Asserts, d: Stack, path = TOKEN): Promise<Seen> {
  const r = await d.get(path);
  const at = Date.now();
  const seen: Seen = { at, status: r.status, text: r.text };
  if (r.status === 200) {
    const body = JSON.parse(r.text) as { access_token: string; expires_in: number };
    seen.token = body.access_token;
    seen.expiresIn = body.expires_in;
    const info = d.emu.google.tokenInfo(body.access_token);
    if (!info) t.fail(`served a token the emulator says is unknown or expired (expires_in ${body.expires_in})`);
    else {
      // expires_in never promises more than the token has (the emulator counts whole seconds).
      if (body.expires_in > info.expiresAt - at / 1000 + 1)
        t.fail(`expires_in ${body.expires_in} exceeds what is left (${info.expiresAt - at / 1000} s)`);
      if (body.expires_in < 1) t.fail(`served a token with expires_in ${body.expires_in}`);
    }
  } else {
    seen.retryAfter = Number(r.headers.get("retry-after"));
  }
  return seen;
}

/** The assertions a helper uses, from whichever test calls it. */
type Asserts = Pick<typeof t, "ok" | "fail" | "equal" | "comment">;

t.test("STS down longer than the token lives: served to the floor, then 503 naming the hop, then recovery", async (t) => {
  const emu = await emulators();
  const times = recordCallTimes(emu);
  await emuSettings(emu, { google: { federatedTokenSeconds: LIFETIME_S } });
  // No service account: clients get the federated STS token itself.
  const d = await startStack({ emu, serviceAccounts: [], overrides: { "upstream.attempts": 2, "upstream.timeoutMs": 1000 } });
  daemons.push(d);

  const first = await ask(t, d);
  t.equal(first.status, 200, first.status === 200 ? "a first token" : first.text);
  const good = first.token!;
  const expiresAt = emu.google.tokenInfo(good)!.expiresAt * 1000;
  const stsBefore = times["google.sts.token"]!.length;
  await fault(emu, { endpoint: "google.sts.token", status: 503 });

  // Ask every 100 ms until two seconds past the token's expiry: the outage outlasts it.
  const seen: Seen[] = [];
  while (Date.now() < expiresAt + 2000) {
    seen.push(await ask(t, d));
    await sleep(100);
  }
  const ok = seen.filter((s) => s.status === 200);
  const failed = seen.filter((s) => s.status !== 200);
  t.ok(ok.length > 0 && failed.length > 0, `${ok.length} served, ${failed.length} refused`);
  t.ok(
    ok.every((s) => s.token === good),
    "while STS is down only the token obtained before is served",
  );
  const firstFail = failed[0]!;
  t.ok(
    seen.slice(seen.indexOf(firstFail)).every((s) => s.status === 503),
    "once refused, refused until STS is back (no token after its floor)",
  );
  const lastOk = ok[ok.length - 1]!;
  // Served up to the floor (a quarter of the lifetime before expiry), not dropped at renewal time.
  t.ok(lastOk.at >= expiresAt - FLOOR_MS - 1000, `last served ${expiresAt - lastOk.at} ms before expiry`);
  t.ok(firstFail.at >= expiresAt - FLOOR_MS - 1000, `first refusal ${expiresAt - firstFail.at} ms before expiry`);
  t.ok(firstFail.at <= expiresAt, "refused before expiry, never later");
  t.ok(times["google.sts.token"]!.length - stsBefore >= 2, "the daemon kept trying STS in the background during the outage");

  for (const s of failed) {
    if (s.status !== 503) t.fail(`status ${s.status}: ${s.text}`);
    if (!(s.retryAfter! >= 1 && s.retryAfter! <= 60)) t.fail(`Retry-After ${s.retryAfter}`);
    if (
      !/^oci2gcp: no valid token: the STS hop failed: token exchange: HTTP 503: injected_fault: fault injected with status 503, 2 attempts\n$/.test(
        s.text,
      )
    ) {
      t.fail(`503 body does not name the hop and its last error: ${JSON.stringify(s.text)}`);
    }
  }

  // STS comes back: the daemon recovers without a restart (background renewal or the next request).
  await clearFaults(emu);
  const cleared = Date.now();
  let recovered: Seen | undefined;
  const back = await waitFor(
    async () => {
      const s = await ask(t, d);
      if (s.status === 200) recovered = s;
      return s.status === 200;
    },
    35_000,
    250,
  );
  t.ok(back, `serves again ${Date.now() - cleared} ms after STS came back`);
  t.not(recovered?.token, good, "a new token, not the expired one");
  t.ok(recovered!.expiresIn! >= LIFETIME_S - 2, `a fresh token (expires_in ${recovered?.expiresIn})`);
  t.same(d.leaks(), [], "no secret in the trace-level log");
});

t.test("STS answering garbage during renewal: the good token is served until its floor, the garbage never", async (t) => {
  const emu = await emulators();
  await emuSettings(emu, { google: { federatedTokenSeconds: LIFETIME_S } });
  const d = await startStack({ emu, serviceAccounts: [], overrides: { "upstream.attempts": 2, "upstream.timeoutMs": 1000 } });
  daemons.push(d);
  const first = await ask(t, d);
  t.equal(first.status, 200);
  const good = first.token!;
  const expiresAt = emu.google.tokenInfo(good)!.expiresAt * 1000;
  await fault(emu, {
    endpoint: "google.sts.token",
    status: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ access_token: "ya29.garbage-token-with-no-lifetime", token_type: "Bearer", expires_in: 0 }),
  });
  const seen: Seen[] = [];
  while (Date.now() < expiresAt + 500) {
    seen.push(await ask(t, d));
    await sleep(100);
  }
  t.ok(
    seen.every((s) => s.status !== 200 || s.token === good),
    "never anything but the good token",
  );
  t.notOk(
    seen.some((s) => s.text.includes("garbage-token")),
    "the garbage never reaches a client",
  );
  const refused = seen.filter((s) => s.status !== 200);
  t.ok(refused.length > 0, "refused once the good token reached its floor");
  t.ok(
    refused.every((s) => s.status === 503 && /the STS hop failed: the answer's lifetime is 0/.test(s.text)),
    "503 naming the hop and what was wrong with its answer",
  );
  await clearFaults(emu);
  t.ok(await waitFor(async () => (await ask(t, d)).status === 200, 35_000, 250), "recovers");
  t.same(d.leaks(), []);
});

t.test("STS down under impersonation: cached access tokens outlive it; new variants get a clean 503 naming STS", async (t) => {
  const emu = await emulators();
  await emuSettings(emu, { google: { federatedTokenSeconds: LIFETIME_S } });
  const d = await startStack({ emu, overrides: { "upstream.attempts": 2, "upstream.timeoutMs": 1000 } });
  daemons.push(d);
  const first = await ask(t, d);
  t.equal(first.status, 200);
  const fedExpiry = Date.now() + LIFETIME_S * 1000;
  await fault(emu, { endpoint: "google.sts.token", status: 503 });
  // Keep the federated token in use (new scope sets need it) until it has expired.
  while (Date.now() < fedExpiry + 1000) {
    await d.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/devstorage.read_only`);
    await sleep(200);
  }
  const cached = await ask(t, d);
  t.equal(cached.status, 200, "the impersonated token (an hour) is still served");
  t.equal(cached.token, first.token);
  // Several new scope sets at once all wait on the same failed STS refresh.
  const fresh = await Promise.all(Array.from({ length: 8 }, (_, i) => d.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/x.${i}`)));
  for (const r of fresh) {
    t.equal(r.status, 503);
    t.match(
      r.text,
      /^oci2gcp: no valid token: the STS hop failed: token exchange: HTTP 503: injected_fault: fault injected with status 503, 2 attempts\n$/,
      "names STS and its error, once",
    );
    t.notMatch(r.text, /unable to impersonate/, "not rewritten by google-auth-library");
  }
  await clearFaults(emu);
  t.ok(
    await waitFor(async () => (await d.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/x.0`)).status === 200, 35_000, 250),
    "recovers",
  );
  t.same(d.leaks(), []);
});
