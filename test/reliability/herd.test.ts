/**
 * A thundering herd on a cold daemon whose every upstream hop is slow (2-3 s):
 * 200 concurrent clients are all answered, with exactly one upstream call per
 * hop (single flight at every level of the chain).
 */
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { clearFaults, fault } from "../helpers/reliability.js";
import { calls, type Stack, startStack } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://herd.example.com";
const CLIENTS = 200;

let emu: Emulators;
let d: Stack;

t.before(async () => {
  emu = await startEmulators();
  d = await startStack({ emu, overrides: { "upstream.timeoutMs": 10_000 } });
});
t.teardown(async () => {
  await d?.close();
  await emu?.close();
});

t.test(`${CLIENTS} concurrent clients, every hop 2-3 s slow: one upstream call per hop, every client answered`, async (t) => {
  await fault(emu, [
    { endpoint: "oci.federation", latencyMs: 2000 },
    { endpoint: "oci.identityDomain.token", latencyMs: 2500 },
    { endpoint: "google.sts.token", latencyMs: 3000 },
    { endpoint: "google.iam.generateAccessToken", latencyMs: 2000 },
    { endpoint: "google.iam.generateIdToken", latencyMs: 2000 },
  ]);
  const before = await calls(emu);
  const started = Date.now();
  // Half ask for access tokens, half for ID tokens, all at once, each on its own connection.
  const results = await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      const res = await fetch(`${d.url}${i % 2 ? IDENTITY : TOKEN}`, { headers: { "metadata-flavor": "Google", connection: "close" } });
      return { status: res.status, text: await res.text(), i };
    }),
  );
  const elapsed = Date.now() - started;
  const after = await calls(emu);
  await clearFaults(emu);

  const bad = results.filter((r) => r.status !== 200);
  t.same(bad, [], `all ${CLIENTS} answered 200 (in ${elapsed} ms)`);
  const access = new Set(results.filter((r) => r.i % 2 === 0).map((r) => JSON.parse(r.text).access_token as string));
  const ids = new Set(results.filter((r) => r.i % 2 === 1).map((r) => r.text));
  t.equal(access.size, 1, "every access-token client got the same token");
  t.equal(ids.size, 1, "every ID-token client got the same token");
  for (const e of [
    "oci.federation",
    "oci.identityDomain.token",
    "google.sts.token",
    "google.iam.generateAccessToken",
    "google.iam.generateIdToken",
  ]) {
    t.equal(after[e]! - before[e]!, 1, `exactly one call to ${e}`);
  }
  // The chain's latency is 2 + 2.5 + 3 + 2 s: the herd waited once for it, not in turns.
  t.ok(elapsed < 9500 + 8000, `answered in ${elapsed} ms`);
  d.secrets.add([...access][0]!);
  d.secrets.add([...ids][0]!);
  t.same(d.leaks(), [], "no secret in the trace-level log");
});

t.test(`${CLIENTS} concurrent clients on a warm cache while a slow renewal is under way: nobody waits for it`, async (t) => {
  // A new scope set: cold for generateAccessToken only, the rest of the chain is cached.
  await fault(emu, { endpoint: "google.iam.generateAccessToken", latencyMs: 3000 });
  const before = await calls(emu);
  const cold = fetch(`${d.url}${TOKEN}?scopes=https://www.googleapis.com/auth/devstorage.read_only`, {
    headers: { "metadata-flavor": "Google" },
  }).then(async (r) => ({
    status: r.status,
    text: await r.text(),
    at: Date.now(),
  }));
  const warm = await Promise.all(Array.from({ length: CLIENTS }, () => d.get(TOKEN)));
  const warmDone = Date.now();
  t.ok(
    warm.every((r) => r.status === 200),
    "cached answers",
  );
  const c = await cold;
  t.equal(c.status, 200, c.status === 200 ? "the slow request answered" : c.text);
  t.ok(warmDone < c.at, `all ${CLIENTS} cached answers came before the slow call ended (${c.at - warmDone} ms before)`);
  const after = await calls(emu);
  t.equal(after["google.iam.generateAccessToken"]! - before["google.iam.generateAccessToken"]!, 1);
  t.equal(after["google.sts.token"]! - before["google.sts.token"]!, 0, "the federated token came from the cache");
  await clearFaults(emu);
});
