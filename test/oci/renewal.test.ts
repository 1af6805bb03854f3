import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { calls, claimsOf, startStack } from "../helpers/stack.js";

const SUBJECT = "/oci2gcp/v1/subject-token";

// The daemon against the emulator; the cache alone is tested in test/token/.

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

t.test("a day-long Retry-After from IAM Credentials: clients are told the daemon's next attempt, at most 30 s", async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  s.emu.server.addFault({
    endpoint: "google.iam.generateAccessToken",
    status: 429,
    headers: { "retry-after": "86400" },
    body: JSON.stringify({ error: { code: 429, message: "quota exceeded", status: "RESOURCE_EXHAUSTED" } }),
    count: 1,
  });
  const path = "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https://www.googleapis.com/auth/devstorage.read_only";
  for (const which of ["the failed call", "a call during the backoff"]) {
    const r = await s.get(path);
    t.equal(r.status, 503, `${which}: 503`);
    const ra = Number(r.headers.get("retry-after"));
    t.ok(ra >= 1 && ra <= 30, `${which}: Retry-After ${ra} s, the daemon's own next attempt, not the upstream's day`);
  }
  t.equal((await calls(s.emu))["google.iam.generateAccessToken"], 1, "IAM Credentials was asked once (no retry inside the call)");
});
