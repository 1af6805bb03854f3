/**
 * TokenSourceAuthClient is the one adapter from our token sources to
 * google-auth-library: the library API hands it to Google's clients, and the
 * impersonation hop hands it to Impersonated as the source credential.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Impersonated } from "google-auth-library";
import t from "tap";
import { TokenSourceAuthClient } from "../../src/google/auth-client.js";
import { transport } from "../../src/google/transport.js";
import type { Token } from "../../src/token/token-source.js";

async function recorder(t: Tap.Test, answer: (path: string) => unknown) {
  const seen: { path: string; authorization?: string }[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ path: req.url ?? "", authorization: req.headers.authorization });
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer(req.url ?? "")));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

declare namespace Tap {
  type Test = import("tap").Test;
}

function rotating(): { source: () => Promise<Token>; calls: () => number } {
  let n = 0;
  return {
    source: async () => {
      n += 1;
      return { value: `tok-${n}`, expiresAt: Date.now() + 3_600_000, obtainedAt: Date.now() };
    },
    calls: () => n,
  };
}

t.test("each call carries the source's current token", async (t) => {
  const { url, seen } = await recorder(t, () => ({ ok: true }));
  const src = rotating();
  const client = new TokenSourceAuthClient(src.source, { transporter: transport(2000), universe_domain: "googleapis.com" });
  const at = await client.getAccessToken();
  t.equal(at.token, "tok-1");
  t.equal(client.credentials.access_token, "tok-1", "the credentials reflect the last token");
  t.equal((await client.getRequestHeaders()).get("authorization"), "Bearer tok-2");
  await client.request({ url: `${url}/a` });
  await client.request({ url: `${url}/b`, headers: { authorization: "Bearer stale" } });
  t.same(
    seen.map((s) => s.authorization),
    ["Bearer tok-3", "Bearer tok-4"],
    "asked afresh every time; a caller's authorization header is replaced",
  );
});

t.test("as Impersonated's source client: IAM Credentials is called with the source's token", async (t) => {
  const expireTime = new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d{3}Z$/, "Z");
  const { url, seen } = await recorder(t, () => ({ accessToken: "impersonated", expireTime }));
  const src = rotating();
  const sourceClient = new TokenSourceAuthClient(src.source, { transporter: transport(2000), universe_domain: "example.com" });
  const imp = new Impersonated({
    sourceClient,
    targetPrincipal: "sa@p.iam.gserviceaccount.com",
    targetScopes: ["https://www.googleapis.com/auth/cloud-platform"],
    lifetime: 3600,
    delegates: [],
    endpoint: url,
  });
  t.equal(imp.universeDomain, "example.com", "the universe of the source client is the one Impersonated uses");
  const { credentials } = await imp.refreshAccessToken();
  t.equal(credentials.access_token, "impersonated");
  t.equal(seen.length, 1);
  t.match(seen[0]!.path, /serviceAccounts\/sa@p\.iam\.gserviceaccount\.com:generateAccessToken$/);
  t.match(seen[0]!.authorization, /^Bearer tok-\d+$/, "the bearer is a token of the source");
});
