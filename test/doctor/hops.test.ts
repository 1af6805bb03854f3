/**
 * The hops are built in one place for Chain and doctor: the retry policy given
 * to the factories is the one every hop uses, and doctor's is one attempt.
 */
import t from "tap";
import { Chain } from "../../src/chain.js";
import { loadConfig } from "../../src/config/config.js";
import { runDoctor } from "../../src/doctor/doctor.js";
import { daemonSettingsFor, startEmulators } from "../../src/emulator/index.js";
import { configuredRetry, Hops, ONE_ATTEMPT } from "../../src/hops.js";
import { CLOUD_PLATFORM } from "../../src/protocol.js";
import { HopError } from "../../src/upstream/hop-error.js";

t.test("one set of factories: the configured retries for the chain, one attempt for doctor", async (t) => {
  const emu = await startEmulators();
  t.teardown(() => emu.close());
  const config = loadConfig({ env: {}, overrides: { ...daemonSettingsFor(emu), "upstream.timeoutMs": 5000, "upstream.attempts": 3 } });
  const retrying = new Hops(config, { ...configuredRetry(config), baseDelayMs: 1 });
  t.equal(retrying.retry.attempts, 3, "the configured attempts");
  const subject = await retrying.identityDomain(retrying.principal()).token();
  const fixed = { token: async () => subject };
  const stsCalls = () => emu.server.calls["google.sts.token"] ?? 0;

  emu.server.addFault({ endpoint: "google.sts.token", status: 503, count: 1 });
  let before = stsCalls();
  const federated = await retrying.sts(fixed, [CLOUD_PLATFORM]).token();
  t.ok(federated.value, "a 503 is retried with the configured policy");
  t.equal(stsCalls() - before, 2, "two calls: the 503 and the retry");

  emu.server.addFault({ endpoint: "google.sts.token", status: 503, count: 1 });
  before = stsCalls();
  const once = new Hops(config, ONE_ATTEMPT);
  const err = await once
    .sts(fixed, [CLOUD_PLATFORM])
    .token()
    .catch((e: unknown) => e);
  t.ok(err instanceof HopError, "one attempt: the 503 is the answer");
  t.equal((err as HopError).status, 503);
  t.equal(stsCalls() - before, 1, "one call");
  emu.server.clearFaults();

  const chain = new Chain(config);
  t.teardown(() => chain.close());
  emu.server.addFault({ endpoint: "google.iam.generateAccessToken", status: 503, count: 1 });
  const iamBefore = emu.server.calls["google.iam.generateAccessToken"] ?? 0;
  const tok = await chain.accessToken({ account: "default" });
  t.ok(tok.value.startsWith("ya29.c."), "Chain's impersonation hop retries the 503");
  t.equal((emu.server.calls["google.iam.generateAccessToken"] ?? 0) - iamBefore, 2);

  emu.server.addFault({ endpoint: "google.sts.token", status: 503, count: 1 });
  before = stsCalls();
  const r = await runDoctor(config);
  const sts = r.checks.find((c) => c.name === "STS");
  t.equal(sts?.status, "fail", "doctor reports the first answer");
  t.match(sts?.said, /HTTP 503/);
  t.equal(stsCalls() - before, 1, "doctor calls STS once");
});
