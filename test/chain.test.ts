import crypto from "node:crypto";
import t from "tap";
import { calls, claimsOf, startStack } from "./helpers/stack.js";

t.test("instance principal: subject token, metadata token, 200 concurrent cold requests make one call per hop", async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  const results = await Promise.all(Array.from({ length: 200 }, () => s.get("/oci2gcp/v1/subject-token")));
  t.ok(
    results.every((r) => r.status === 200),
    "all 200",
  );
  const c = await calls(s.emu);
  t.equal(c["oci.federation"], 1, "one federation call");
  t.equal(c["oci.identityDomain.token"], 1, "one identity-domain call");
  const body = JSON.parse(results[0]!.text);
  t.equal(body.token_type, "Bearer");
  t.equal(body.issued_token_type, "urn:ietf:params:oauth:token-type:jwt");
  t.ok(body.expires_in > 3000);
  // The domain JWT verifies against the emulator's JWKS.
  const jwks = (await (await fetch(s.emu.oci.domainJwksUrl)).json()) as { keys: crypto.JsonWebKey[] };
  const [h, p, sig] = body.access_token.split(".");
  const header = JSON.parse(Buffer.from(h, "base64url").toString());
  const jwk = jwks.keys.find((k) => (k as { kid?: string }).kid === header.kid)!;
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  t.ok(crypto.verify("sha256", Buffer.from(`${h}.${p}`), key, Buffer.from(sig, "base64url")), "signature verifies with the JWKS");
  t.equal(claimsOf(body.access_token).iss, "https://identity.oraclecloud.com/");

  const tok = await s.get("/computeMetadata/v1/instance/service-accounts/default/token");
  t.equal(tok.status, 200);
  t.equal(tok.headers.get("content-type"), "application/json");
  t.same(s.leaks(), [], "no secret in the logs");
});
