/**
 * The reaches into google-auth-library's build paths: StsCredentials, and the
 * classes the hops take from their own modules rather than the package root.
 * Each assertion names what an upgrade changed, so that a failure here says
 * where to look before a hop breaks in less obvious ways.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import t from "tap";
import { googleError } from "../../src/google/errors.js";
import { transport } from "../../src/google/transport.js";
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT } from "../../src/protocol.js";
import { HopError } from "../../src/upstream/hop-error.js";

const MODULE = "google-auth-library/build/src/auth/stscredentials.js";

t.test("google-auth-library still has StsCredentials where we import it from", async (t) => {
  let mod: Record<string, unknown> | undefined;
  try {
    mod = (await import(MODULE)) as Record<string, unknown>;
  } catch (e) {
    t.fail(`google-auth-library no longer has ${MODULE} (${(e as Error).message}): update src/google/gal-internals.ts`);
    return;
  }
  const Sts = mod.StsCredentials as { prototype: Record<string, unknown> } | undefined;
  t.type(Sts, "function", `${MODULE} exports the class StsCredentials`);
  t.type(Sts?.prototype.exchangeToken, "function", "StsCredentials has exchangeToken()");
});

async function fakeSts(t: Tap.Test, status: number, answer: unknown) {
  const seen: { method?: string; path?: string; contentType?: string; form?: URLSearchParams }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method,
        path: req.url,
        contentType: req.headers["content-type"],
        form: new URLSearchParams(Buffer.concat(chunks).toString("utf8")),
      });
      res.statusCode = status;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/token`, seen };
}

declare namespace Tap {
  type Test = import("tap").Test;
}

const request = {
  grantType: TOKEN_EXCHANGE_GRANT,
  audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
  scope: ["https://www.googleapis.com/auth/cloud-platform", "openid"],
  requestedTokenType: ACCESS_TOKEN_TYPE,
  subjectToken: "subject.jwt.value",
  subjectTokenType: JWT_TOKEN_TYPE,
};

t.test("stsCredentials: the constructor options and the exchangeToken request and answer we rely on", async (t) => {
  const { stsCredentials } = await import("../../src/google/gal-internals.js");
  const { url, seen } = await fakeSts(t, 200, {
    access_token: "federated",
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: "Bearer",
    expires_in: 3599,
  });
  const transporter = transport(2000);
  let viaOurTransport = 0;
  transporter.interceptors.request.add({
    resolved: async (o) => {
      viaOurTransport += 1;
      return o;
    },
  });
  const sts = stsCredentials({ tokenExchangeEndpoint: url, transporter });
  const res = await sts.exchangeToken(request);
  t.equal(viaOurTransport, 1, "the constructor's transporter option is the one that sends");
  t.equal(seen.length, 1);
  t.equal(seen[0]!.method, "POST");
  t.equal(seen[0]!.path, "/v1/token", "tokenExchangeEndpoint is where it posts");
  t.match(seen[0]!.contentType, /^application\/x-www-form-urlencoded/);
  t.same(Object.fromEntries(seen[0]!.form!), {
    grant_type: TOKEN_EXCHANGE_GRANT,
    audience: request.audience,
    scope: "https://www.googleapis.com/auth/cloud-platform openid",
    requested_token_type: ACCESS_TOKEN_TYPE,
    subject_token: "subject.jwt.value",
    subject_token_type: JWT_TOKEN_TYPE,
  });
  t.equal(res.access_token, "federated", "exchangeToken resolves to the answer's fields");
  t.equal(res.expires_in, 3599);
});

t.test("stsCredentials: an OAuth error keeps the response googleError reads", async (t) => {
  const { stsCredentials } = await import("../../src/google/gal-internals.js");
  const { url } = await fakeSts(t, 400, { error: "invalid_grant", error_description: "Unable to verify the ID Token signature." });
  const sts = stsCredentials({ tokenExchangeEndpoint: url, transporter: transport(2000) });
  const e = await sts.exchangeToken(request).catch((x: unknown) => x);
  t.ok(e instanceof Error, "rejects with an Error");
  t.equal((e as { response?: { status?: number } }).response?.status, 400, "the error carries the response");
  const h = googleError("STS", "token exchange", e);
  t.ok(h instanceof HopError);
  t.equal(h.status, 400);
  t.equal(h.upstreamError, "invalid_grant");
  t.match(h.detail, /Unable to verify the ID Token signature/);
});

t.test("the classes taken from build paths are the ones the package root exports, gaxios included", async (t) => {
  const root = await import("google-auth-library");
  const ours = await import("../../src/google/gal-internals.js");
  t.equal(ours.AuthClient, root.AuthClient, "AuthClient");
  t.equal(ours.Impersonated, root.Impersonated, "Impersonated");
  t.equal(ours.gaxios, root.gaxios, "gaxios: the library's own copy");
});

t.test("the Google hops do not load the package root and its 45 modules", async (t) => {
  const dist = path.resolve("dist/hops.js");
  if (!fs.existsSync(dist)) {
    t.fail("dist/hops.js is missing: run `npx tsc -p .` first");
    return;
  }
  const script = `
    import { createRequire } from "node:module";
    await import(${JSON.stringify(dist)});
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("/google-auth-library/"));
    process.stdout.write(JSON.stringify(loaded.map((k) => k.replace(/.*\\/google-auth-library\\//, ""))));
  `;
  const loaded = JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as string[];
  t.ok(loaded.includes("build/src/auth/impersonated.js"), "impersonated.js is loaded: the check sees the library");
  t.notOk(loaded.includes("build/src/index.js"), `the root is not (${loaded.length} modules loaded)`);
});
