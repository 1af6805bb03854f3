import t from "tap";
import { loadConfig } from "../src/config/config.js";
import { createLogger } from "../src/log.js";
import { startWarmUp, type WarmChain } from "../src/warm-up.js";
import { calls, startStack, startTestEmulators } from "./helpers/stack.js";

const EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email";
const AUDIENCE = "https://prefetched.example.com/";

async function until(what: string, ok: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function silentConfig(overrides: Record<string, unknown>) {
  return loadConfig({
    env: {},
    overrides: {
      "identityDomain.url": "https://idcs-0123456789abcdef.identity.oraclecloud.com",
      "google.audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
      ...overrides,
    },
  });
}

t.test("the first exchange waits a random part of upstream.startJitterSeconds", async (t) => {
  const asked: number[] = [];
  const chain: WarmChain = {
    accounts: [],
    accessToken: async () => {
      asked.push(Date.now());
      return { value: "x", expiresAt: Date.now() + 3_600_000, obtainedAt: Date.now() };
    },
    idToken: async () => Promise.reject(new Error("unused")),
  };
  const log = createLogger("silent");
  // The warm-up's timers do not hold a process open (the daemon's listeners do): this test's timer does.
  const keepAlive = setInterval(() => {}, 1_000);
  t.teardown(() => clearInterval(keepAlive));
  const started = Date.now();
  const w = startWarmUp(chain, silentConfig({ "upstream.startJitterSeconds": 2 }), log, { random: () => 0.5 });
  await w.firstRound;
  t.equal(asked.length, 1, "one first exchange");
  t.ok(asked[0]! - started >= 950, `after half the jitter (${asked[0]! - started} ms)`);

  const immediate: number[] = [];
  const now = Date.now();
  const later: WarmChain = {
    ...chain,
    accessToken: (req) => {
      immediate.push(Date.now());
      return chain.accessToken(req);
    },
  };
  const w0 = startWarmUp(later, silentConfig({}), log);
  await w0.firstRound;
  t.ok(immediate[0]! - now < 500, "without jitter (the default): at once");

  const stopped = startWarmUp(chain, silentConfig({ "upstream.startJitterSeconds": 60 }), log, { random: () => 0.9 });
  stopped.stop();
  await stopped.firstRound;
  t.equal(asked.length, 2, "stopped during the wait: no exchange");
});

t.test("prefetched scope sets and audiences are cached at start without a client request, and renewed", async (t) => {
  const emu = await startTestEmulators({ google: { idTokenSeconds: 12, federatedTokenSeconds: 12 } });
  t.teardown(() => emu.close());
  const policy = { "cache.renewBeforeSeconds": 6, "cache.minRemainingSeconds": 2 };

  const s = await startStack({
    emu,
    warm: true,
    logLevel: "info",
    overrides: { ...policy, "cache.prefetchScopes": [`${EMAIL_SCOPE} openid`], "cache.prefetchAudiences": [AUDIENCE] },
  });
  t.teardown(() => s.close());
  const states = () => s.daemon.chain.states();
  const ids = () => states().filter((x) => x.kind === "id-token" && x.state.token);
  await until(
    "both ID tokens and the scope set are cached",
    () => ids().length === 2 && states().filter((x) => x.kind === "access-token" && x.state.token).length === 2,
  );
  t.same(
    ids()
      .map((x) => x.state.key)
      .sort(),
    [`${s.config.google.serviceAccounts[0]} full ${AUDIENCE}`, `${s.config.google.serviceAccounts[0]} standard ${AUDIENCE}`].sort(),
    "format standard and full",
  );
  t.ok(
    states().every((x) =>
      x.kind === "access-token" || x.kind === "id-token" ? x.account === s.config.google.serviceAccounts[0] : !x.account,
    ),
    "every access and ID token entry names its account; the hops before them name none",
  );
  const keys = states()
    .filter((x) => x.kind === "access-token")
    .map((x) => x.state.key);
  t.ok(
    keys.some((k) => k.endsWith(` ${EMAIL_SCOPE} openid`)),
    `the prefetched scope set is cached (${keys.join("; ")})`,
  );
  const c = await calls(emu);
  t.equal(c["google.iam.generateIdToken"], 2, "two generateIdToken calls, no client asked");
  t.equal(c["google.iam.generateAccessToken"], 2, "the default scopes and the prefetched set");
  t.match(s.logText(), /prefetched tokens obtained/);

  // ID tokens live 12 s here: renewed in the background from 6 s before expiry, with no request.
  const first = ids().map((x) => x.state.token!.obtainedAt);
  await until("the prefetched ID tokens are renewed", () => ids().every((x, i) => x.state.token!.obtainedAt > first[i]!));
  t.ok((await calls(emu))["google.iam.generateIdToken"]! >= 4, "renewed without a client request");
  t.ok(
    ids().every((x) => x.state.token!.expiresAt - Date.now() > 2_000),
    "and above the floor",
  );
});

t.test("without a service account: the scope set comes from STS and is renewed; audiences are ignored with a warning", async (t) => {
  const emu = await startTestEmulators({ google: { federatedTokenSeconds: 12 } });
  t.teardown(() => emu.close());
  const s = await startStack({
    emu,
    warm: true,
    logLevel: "info",
    serviceAccounts: [],
    overrides: {
      "cache.renewBeforeSeconds": 6,
      "cache.minRemainingSeconds": 2,
      "cache.prefetchScopes": [EMAIL_SCOPE],
      "cache.prefetchAudiences": [AUDIENCE],
    },
  });
  t.teardown(() => s.close());
  const scoped = () => s.daemon.chain.states().find((x) => x.kind === "access-token" && x.state.key === EMAIL_SCOPE);
  await until("the scope set is cached", () => scoped()?.state.token !== undefined);
  t.equal(scoped()!.account, undefined, "the federated identity's tokens name no account");
  t.match(s.logText(), /cache\.prefetchAudiences is ignored/);
  const firstAt = scoped()!.state.token!.obtainedAt;
  await until("it is renewed", () => scoped()!.state.token!.obtainedAt > firstAt);
  t.pass("renewed with no client request");
});
