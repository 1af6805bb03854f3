import t from "tap";
import { delegationChains } from "../../src/hops.js";
import { calls, DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, startStack, startTestEmulators } from "../helpers/stack.js";

const SA = "/computeMetadata/v1/instance/service-accounts/default";

t.test("google.delegates: EMAIL=DELEGATE DELEGATE entries", async (t) => {
  t.same(
    [...delegationChains(["A@x.com=b@x.com c@x.com", "d@x.com=e@x.com>f@x.com"])],
    [
      ["a@x.com", ["b@x.com", "c@x.com"]],
      ["d@x.com", ["e@x.com", "f@x.com"]],
    ],
  );
  for (const bad of ["a@x.com", "a@x.com=", "=b@x.com", "a@x.com=bob"]) {
    t.throws(() => delegationChains([bad]), /google\.delegates: .* is not EMAIL=DELEGATE_EMAIL/, `${bad} is refused`);
  }
});

t.test("the delegation chain is sent to generateAccessToken and generateIdToken, which require it", async (t) => {
  const emu = await startTestEmulators({ google: { delegationChains: { [DEMO_SERVICE_ACCOUNT]: [SECOND_SERVICE_ACCOUNT] } } });
  t.teardown(() => emu.close());

  const without = await startStack({ emu });
  t.teardown(() => without.close());
  t.equal((await without.get(`${SA}/token`)).status, 503, "without the chain the emulated IAM Credentials refuses the token");
  t.equal((await without.get(`${SA}/identity?audience=https://x.example`)).status, 503, "and the ID token");

  const s = await startStack({ emu, overrides: { "google.delegates": [`${DEMO_SERVICE_ACCOUNT}=${SECOND_SERVICE_ACCOUNT}`] } });
  t.teardown(() => s.close());
  const before = await calls(emu);
  const tok = await s.get(`${SA}/token`);
  t.equal(tok.status, 200, "with the configured chain: a token");
  const id = await s.get(`${SA}/identity?audience=https://x.example`);
  t.equal(id.status, 200, "and an ID token");
  const after = await calls(emu);
  t.equal((after["google.iam.generateAccessToken"] ?? 0) - (before["google.iam.generateAccessToken"] ?? 0), 1, "one generateAccessToken");
  t.equal((after["google.iam.generateIdToken"] ?? 0) - (before["google.iam.generateIdToken"] ?? 0), 1, "one generateIdToken");
});
