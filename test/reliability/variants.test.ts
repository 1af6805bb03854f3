/**
 * A client cannot evict the default token: a flood of distinct scope sets, past
 * server.maxCachedVariants, evicts only other client-chosen variants; in the
 * outage that follows, the default token is still served from the cache.
 */
import t from "tap";
import { calls, DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, startStack } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const SECOND = `/computeMetadata/v1/instance/service-accounts/${SECOND_SERVICE_ACCOUNT}/token`;
const VARIANTS = 16;

t.test("distinct scope sets past maxCachedVariants, then Google down: the default token is still served", async (t) => {
  const s = await startStack({
    serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT],
    overrides: { "server.maxCachedVariants": VARIANTS, "server.upstreamBudgetPerMinute": 0 },
  });
  t.teardown(() => s.close());
  const tokens = new Map<string, string>();
  for (const path of [TOKEN, SECOND]) {
    const r = await s.get(path);
    t.equal(r.status, 200, `the default-scopes token of ${path}`);
    const token = (JSON.parse(r.text) as { access_token: string }).access_token;
    s.secrets.add(token);
    tokens.set(path, token);
  }

  // Two accounts: room for 2 × VARIANTS access tokens, flooded with three times as many scope sets.
  const flood = VARIANTS * 2 * 3;
  for (let i = 0; i < flood; i++) {
    const r = await s.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/scope-${i}`);
    if (r.status !== 200) t.fail(`scope set ${i}: ${r.status} ${r.text}`);
    else s.secrets.add((JSON.parse(r.text) as { access_token: string }).access_token);
  }
  const states = s.daemon.chain.states().filter((x) => x.kind === "access-token");
  t.ok(states.length <= VARIANTS * 2, `${states.length} access-token caches: still bounded by server.maxCachedVariants`);

  s.emu.server.addFault({ endpoint: "google.iam.generateAccessToken", status: 503 });
  s.emu.server.addFault({ endpoint: "google.sts.token", status: 503 });
  const generated = (await calls(s.emu))["google.iam.generateAccessToken"];
  for (const [path, token] of tokens) {
    const during = await s.get(path);
    t.equal(during.status, 200, during.status === 200 ? `${path}: served during the outage` : during.text);
    if (during.status === 200) t.equal((JSON.parse(during.text) as { access_token: string }).access_token, token, "the cached token");
  }
  t.equal((await calls(s.emu))["google.iam.generateAccessToken"], generated, "from the cache: Google was not asked");
  const evicted = await s.get(`${TOKEN}?scopes=https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/scope-0`);
  t.equal(evicted.status, 503, "an evicted client-chosen variant is not (the outage is real)");
  s.emu.server.clearFaults();
  t.same(s.leaks(), [], "no secret in the logs");
});
