import t from "tap";
import { startStack } from "../helpers/stack.js";

t.test("an upstream error that echoes a token reaches the client scrubbed", async (t) => {
  const s = await startStack({ serviceAccounts: [] });
  t.teardown(() => s.close());
  const echoed = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdCJ9.c2lnbmF0dXJlLXNlY3JldA";
  await fetch(`${s.emu.url}/_emulator/faults`, {
    method: "POST",
    body: JSON.stringify({
      endpoint: "google.sts.token",
      status: 400,
      body: JSON.stringify({ error: "invalid_grant", error_description: `bad subject_token ${echoed} Bearer ya29.secretsecretsecret` }),
    }),
  });
  const r = await s.get("/computeMetadata/v1/instance/service-accounts/default/token");
  t.equal(r.status, 503);
  t.match(r.text, /STS hop failed: .*HTTP 400: invalid_grant/, "names the hop and what STS said");
  t.notMatch(r.text, /eyJhbGciOiJSUzI1NiJ9\.eyJ/, "no JWT in the body");
  t.notMatch(r.text, /ya29\.secret/, "no access token in the body");
  const st = await s.get("/oci2gcp/v1/status");
  t.notMatch(st.text, /eyJhbGciOiJSUzI1NiJ9\.eyJ|ya29\.secret/, "nor in the status");
});
