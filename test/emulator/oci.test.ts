import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import oci from "oci-common";
import t, { type Test } from "tap";
import { EmulatorServer } from "../../src/emulator/core.js";
import { decodeJwt, keyFromJwk, verifyJwtSignature } from "../../src/emulator/jose.js";
import { type OciEmulator, registerOci } from "../../src/emulator/oci/index.js";

const FORM =
  "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&scope=urn%3Aopc%3Aidm%3A__myscopes__&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
const FORM_CT = "application/x-www-form-urlencoded;charset=utf-8";

interface Resp {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

function send(url: string, method: string, headers: Record<string, string>, body?: string, ca?: string): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const req = mod.request(u, { method, headers, ...(ca ? { ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

interface HandSign {
  keyId: string;
  key: crypto.KeyObject | string;
  body?: string;
  contentType?: string;
  dateHeader?: "date" | "x-date";
  date?: Date;
  list?: string[];
  omit?: string[];
}

/** An OCI request signer written for the test from the specification (the daemon's own is elsewhere). */
function handSign(url: string, o: HandSign): Record<string, string> {
  const u = new URL(url);
  const body = o.body ?? FORM;
  const dh = o.dateHeader ?? "date";
  const headers: Record<string, string> = {
    host: u.host,
    [dh]: (o.date ?? new Date()).toUTCString(),
    "content-type": o.contentType ?? FORM_CT,
    "content-length": String(Buffer.byteLength(body)),
    "x-content-sha256": crypto.createHash("sha256").update(body).digest("base64"),
  };
  const list = o.list ?? [dh, "(request-target)", "host", "content-length", "content-type", "x-content-sha256"];
  const lines = list.map((h) =>
    h === "(request-target)" ? `(request-target): post ${u.pathname}${u.search}` : `${h}: ${headers[h] ?? ""}`,
  );
  const sig = crypto.sign("sha256", Buffer.from(lines.join("\n")), o.key).toString("base64");
  headers.authorization = `Signature version="1",keyId="${o.keyId}",algorithm="rsa-sha256",headers="${list.join(" ")}",signature="${sig}"`;
  for (const h of o.omit ?? []) delete headers[h];
  return headers;
}

async function ociSignerExchange(em: OciEmulator, provider: any, body = FORM): Promise<Resp> {
  const req = {
    method: "POST",
    uri: `${em.domainUrl}/oauth2/v1/token`,
    headers: new Headers({ "content-type": FORM_CT }),
    body,
  };
  await new oci.DefaultRequestSigner(provider).signHttpRequest(req as any);
  const headers: Record<string, string> = {};
  req.headers.forEach((v, k) => {
    headers[k] = v;
  });
  return send(req.uri, "POST", headers, body);
}

async function handExchange(em: OciEmulator, o: HandSign, url = `${em.domainUrl}/oauth2/v1/token`): Promise<Resp> {
  return send(url, "POST", handSign(url, o), o.body ?? FORM);
}

async function domainJwks(em: OciEmulator): Promise<Map<string, crypto.KeyObject>> {
  const r = await send(em.domainJwksUrl, "GET", {});
  const out = new Map<string, crypto.KeyObject>();
  for (const k of r.json.keys) out.set(k.kid, keyFromJwk(k)!);
  return out;
}

async function checkDomainToken(t: Test, em: OciEmulator, r: Resp, subType: string): Promise<Record<string, any>> {
  t.equal(r.status, 200, r.status === 200 ? "exchange succeeds" : `exchange fails: ${r.text}`);
  t.equal(r.json?.token_type, "Bearer");
  t.equal(r.json?.expires_in, em.settings.domainTokenSeconds);
  const jwt = decodeJwt(r.json.access_token)!;
  t.ok(jwt, "access_token is a JWT");
  const keys = await domainJwks(em);
  const key = keys.get(jwt.header.kid as string);
  t.ok(key, "kid is in the JWKS");
  t.ok(verifyJwtSignature(jwt, key!), "domain JWT verifies against the JWKS");
  t.notOk(verifyJwtSignature(jwt, crypto.createPublicKey(em.authServicePublicKeyPem)), "not signed by the auth-service key");
  const c = jwt.payload as Record<string, any>;
  t.equal(c.iss, "https://identity.oraclecloud.com/");
  t.same(c.aud, [em.domainUrl, "https://identity.oraclecloud.com/"]);
  t.equal(c.sub_type, subType);
  t.equal(c.tenant, em.tenancy);
  t.equal(c.domain_id, "ocid1.domain.oc1..emulator");
  t.equal(c.scope, "urn:opc:idm:__myscopes__");
  t.type(c.jti, "string");
  t.equal(c.exp - c.iat, em.settings.domainTokenSeconds);
  return c;
}

function withEnv(vars: Record<string, string>): () => void {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "oci-emu-test-"));
}

const server = new EmulatorServer();
await server.listen();
const em = await registerOci(server);
t.teardown(async () => {
  await em.close();
  await server.close();
});

t.test("instance metadata v2", async (t) => {
  const base = em.metadataBaseUrl;
  const anon = await send(`${base}instance/region`, "GET", {});
  t.equal(anon.status, 401, "no Bearer Oracle: 401");
  const auth = { authorization: "Bearer Oracle" };
  const region = await send(`${base}instance/region`, "GET", auth);
  t.equal(region.status, 200);
  t.equal(region.text, "us-ashburn-1");
  const inst = await send(`${base}instance/`, "GET", auth);
  t.equal(inst.json.id, em.instanceId);
  t.equal(inst.json.compartmentId, em.compartmentId);
  t.equal(inst.json.canonicalRegionName, "us-ashburn-1");
  const cert = await send(`${base}identity/cert.pem`, "GET", auth);
  const x = new crypto.X509Certificate(cert.text);
  t.match(x.subject, `OU=opc-tenant:${em.tenancy}`);
  t.match(x.subject, `OU=opc-instance:${em.instanceId}`);
  t.match(x.subject, `OU=opc-compartment:${em.compartmentId}`);
  const inter = new crypto.X509Certificate((await send(`${base}identity/intermediate.pem`, "GET", auth)).text);
  t.ok(x.checkIssued(inter) && x.verify(inter.publicKey), "leaf is issued by the intermediate");
  const key = crypto.createPrivateKey((await send(`${base}identity/key.pem`, "GET", auth)).text);
  t.ok(x.checkPrivateKey(key), "key.pem is the leaf's key");
  t.equal((await send(`${base}nothing/here`, "GET", auth)).status, 404);
});

t.test("instance principal through oci-common, then exchange", async (t) => {
  server.resetCalls();
  const builder = new oci.InstancePrincipalsAuthenticationDetailsProviderBuilder();
  builder.metadataBaseUrl = em.metadataBaseUrl;
  builder.federationEndpoint = em.federationEndpoint;
  const provider = await builder.build();
  const keyId = await provider.getKeyId();
  t.match(keyId, /^ST\$/);
  const st = decodeJwt(keyId.slice(3))!;
  t.ok(verifyJwtSignature(st, crypto.createPublicKey(em.authServicePublicKeyPem)), "security token signed by the auth service key");
  const c = st.payload as Record<string, any>;
  t.equal(c.sub, em.instanceId);
  t.equal(c["opc-instance"], em.instanceId);
  t.equal(c["opc-compartment"], em.compartmentId);
  t.equal(c["opc-tenant"], em.tenancy);
  t.equal(c.ttype, "x509");
  t.equal(c.iss, "authService.oracle.com");
  t.equal(c.aud, "oci");
  t.equal(c.exp - c.iat, 1200);
  const jwkKey = keyFromJwk(JSON.parse(c.jwk))!;
  const probe = crypto.sign("sha256", Buffer.from("probe"), provider.getPrivateKey());
  t.ok(crypto.verify("sha256", Buffer.from("probe"), jwkKey, probe), "jwk claim is the provider's session key");
  t.equal(server.calls["oci.federation"], 1, "one federation call");
  t.ok(server.calls["oci.metadata"]! >= 3, "metadata was read");

  const r = await ociSignerExchange(em, provider);
  const claims = await checkDomainToken(t, em, r, "instance");
  t.equal(claims.sub, em.instanceId);
  t.equal(claims.ipst_instance, em.instanceId);
  t.equal(claims.ipst_compartment, em.compartmentId);

  // The same principal, signed the Python SDK's way (date, not x-date).
  const r2 = await handExchange(em, { keyId, key: provider.getPrivateKey() });
  await checkDomainToken(t, em, r2, "instance");
  provider.closeProvider();
});

t.test("federation checks", async (t) => {
  const auth = { authorization: "Bearer Oracle" };
  const certPem = (await send(`${em.metadataBaseUrl}identity/cert.pem`, "GET", auth)).text;
  const keyPem = (await send(`${em.metadataBaseUrl}identity/key.pem`, "GET", auth)).text;
  const interPem = (await send(`${em.metadataBaseUrl}identity/intermediate.pem`, "GET", auth)).text;
  const bare = (pem: string) => pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, "");
  const session = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const body = JSON.stringify({
    certificate: bare(certPem),
    purpose: "DEFAULT",
    publicKey: bare(session.publicKey.export({ format: "pem", type: "spki" }).toString()),
    intermediateCertificates: [bare(interPem)],
  });
  const fp = new crypto.X509Certificate(certPem).fingerprint.toLowerCase();
  const url = `${em.federationEndpoint}/v1/x509`;
  const common = { body, contentType: "application/json", key: keyPem };
  const ok = await send(url, "POST", handSign(url, { ...common, keyId: `${em.tenancy}/fed-x509/${fp}` }), body);
  t.equal(ok.status, 200, ok.status === 200 ? "federation succeeds" : ok.text);
  t.type(ok.json.token, "string");
  const upper = await send(
    url,
    "POST",
    handSign(url, { ...common, keyId: `${em.tenancy}/fed-x509/${fp.toUpperCase()}`, dateHeader: "x-date" }),
    body,
  );
  t.equal(upper.status, 200, "fingerprint compared case-insensitively; x-date accepted");
  const wrongFp = await send(url, "POST", handSign(url, { ...common, keyId: `${em.tenancy}/fed-x509/${"00:".repeat(19)}00` }), body);
  t.equal(wrongFp.status, 401);
  t.equal(wrongFp.json.code, "NotAuthenticated");
  t.match(wrongFp.json.message, /fingerprint/);
  const other = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const badSig = await send(url, "POST", handSign(url, { ...common, key: other, keyId: `${em.tenancy}/fed-x509/${fp}` }), body);
  t.equal(badSig.status, 401);
  t.match(badSig.json.message, /signature does not verify/);
  const bad = await send(url, "POST", handSign(url, { ...common, body: "{}", keyId: `${em.tenancy}/fed-x509/${fp}` }), "{}");
  t.equal(bad.status, 400);
  t.equal(bad.json.code, "InvalidParameter");
});

t.test("identity domain: API-key user via oci-common config file, and the hand signer", async (t) => {
  const u = em.createApiKeyUser();
  t.match(u.fingerprint, /^([0-9a-f]{2}:){15}[0-9a-f]{2}$/);
  const dir = tmpDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "key.pem"), u.privateKeyPem);
  fs.writeFileSync(
    path.join(dir, "config"),
    `[DEFAULT]\nuser=${u.user}\nfingerprint=${u.fingerprint}\ntenancy=${u.tenancy}\nregion=us-ashburn-1\nkey_file=${path.join(dir, "key.pem")}\n`,
  );
  const provider = new oci.ConfigFileAuthenticationDetailsProvider(path.join(dir, "config"), "DEFAULT");
  t.equal(await provider.getKeyId(), `${u.tenancy}/${u.user}/${u.fingerprint}`);
  const c = await checkDomainToken(t, em, await ociSignerExchange(em, provider), "user");
  t.equal(c.sub, u.user);

  const keyId = `${u.tenancy}/${u.user}/${u.fingerprint}`;
  const key = u.privateKeyPem;
  await checkDomainToken(t, em, await handExchange(em, { keyId, key }), "user");
  await checkDomainToken(t, em, await handExchange(em, { keyId, key, dateHeader: "x-date" }), "user");

  const fail = async (name: string, r: Resp, status: number, error: string, desc?: RegExp) => {
    t.equal(r.status, status, `${name}: status ${status}`);
    t.equal(r.json?.error, error, `${name}: error ${error}`);
    if (desc) t.match(r.json?.error_description, desc, `${name}: ${r.json?.error_description}`);
  };
  const other = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  await fail("wrong key", await handExchange(em, { keyId, key: other }), 401, "invalid_client", /signature does not verify/);

  const url = `${em.domainUrl}/oauth2/v1/token`;
  const tampered = FORM.replace("__myscopes__", "__myscopez__");
  await fail(
    "tampered body",
    await send(url, "POST", handSign(url, { keyId, key }), tampered),
    401,
    "invalid_client",
    /body digest mismatch/,
  );
  await fail(
    "grant_type",
    await handExchange(em, { keyId, key, body: FORM.replace("token-exchange", "jwt-bearer") }),
    400,
    "unsupported_grant_type",
    /grant_type/,
  );
  await fail(
    "requested_token_type",
    await handExchange(em, { keyId, key, body: FORM.replace("access_token", "id_token") }),
    400,
    "invalid_request",
    /requested_token_type/,
  );
  await fail("no scope", await handExchange(em, { keyId, key, body: FORM.replace(/&scope=[^&]*/, "") }), 400, "invalid_request", /scope/);
  await fail(
    "content type",
    await handExchange(em, { keyId, key, contentType: "application/json" }),
    400,
    "invalid_request",
    /content-type/,
  );
  await fail(
    "missing date",
    await handExchange(em, {
      keyId,
      key,
      list: ["(request-target)", "host", "content-length", "content-type", "x-content-sha256"],
      omit: ["date"],
    }),
    401,
    "invalid_client",
    /date or x-date/,
  );
  await fail(
    "date signed but not sent",
    await handExchange(em, { keyId, key, omit: ["date"] }),
    401,
    "invalid_client",
    /"date" is not in the request/,
  );
  await fail("stale date", await handExchange(em, { keyId, key, date: new Date(Date.now() - 600_000) }), 401, "invalid_client", /stale/);
  await fail(
    "headers list lacks x-content-sha256",
    await handExchange(em, { keyId, key, list: ["date", "(request-target)", "host", "content-length", "content-type"] }),
    401,
    "invalid_client",
    /missing: x-content-sha256/,
  );
  await fail(
    "headers list lacks (request-target) and host",
    await handExchange(em, { keyId, key, list: ["date", "content-length", "content-type", "x-content-sha256"] }),
    401,
    "invalid_client",
    /missing: \(request-target\), host/,
  );
  await fail(
    "unknown user",
    await handExchange(em, { keyId: `${u.tenancy}/ocid1.user.oc1..nobody/${u.fingerprint}`, key }),
    401,
    "invalid_client",
    /unknown user/,
  );
  await fail(
    "fed-x509 keyId",
    await handExchange(em, { keyId: `${u.tenancy}/fed-x509/${u.fingerprint}`, key }),
    401,
    "invalid_client",
    /fed-x509/,
  );
  const forged = `ST$${decodeJwt(em.mintSessionToken().token)!.signingInput}.${Buffer.from("forged").toString("base64url")}`;
  await fail("forged security token", await handExchange(em, { keyId: forged, key }), 401, "invalid_client", /security token signature/);
});

t.test("session token (oci session authenticate) via SessionAuthDetailProvider; expiry", async (t) => {
  const s = em.mintSessionToken();
  const claims = decodeJwt(s.token)!.payload;
  t.equal(claims.ttype, "login");
  const dir = tmpDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "key.pem"), s.privateKeyPem);
  fs.writeFileSync(path.join(dir, "token"), s.token);
  fs.writeFileSync(
    path.join(dir, "config"),
    `[DEFAULT]\nfingerprint=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\ntenancy=${em.tenancy}\nregion=us-ashburn-1\n` +
      `key_file=${path.join(dir, "key.pem")}\nsecurity_token_file=${path.join(dir, "token")}\n`,
  );
  const provider = new oci.SessionAuthDetailProvider(path.join(dir, "config"), "DEFAULT");
  t.equal(await provider.getKeyId(), `ST$${s.token}`);
  const c = await checkDomainToken(t, em, await ociSignerExchange(em, provider), "user");
  t.equal(c.sub, claims.sub);

  const short = em.mintSessionToken({ lifetimeSeconds: 1 });
  const ok = await handExchange(em, { keyId: `ST$${short.token}`, key: short.privateKeyPem });
  t.equal(ok.status, 200, "valid before expiry");
  const exp = decodeJwt(short.token)!.payload.exp as number;
  await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 50));
  const expired = await handExchange(em, { keyId: `ST$${short.token}`, key: short.privateKeyPem });
  t.equal(expired.status, 401);
  t.equal(expired.json.error, "invalid_client");
  t.match(expired.json.error_description, /security token expired/);
});

t.test("resource principal v2.2 via ResourcePrincipalAuthenticationDetailsProvider", async (t) => {
  const rp = em.mintResourcePrincipal();
  const restore = withEnv({
    OCI_RESOURCE_PRINCIPAL_VERSION: "2.2",
    OCI_RESOURCE_PRINCIPAL_RPST: rp.rpst,
    OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: rp.privateKeyPem,
    OCI_RESOURCE_PRINCIPAL_REGION: rp.region,
  });
  t.teardown(restore);
  const provider = oci.ResourcePrincipalAuthenticationDetailsProvider.builder();
  t.equal(await provider.getKeyId(), `ST$${rp.rpst}`);
  t.equal(await provider.getStringClaim("res_tenant"), em.tenancy);
  const c = await checkDomainToken(t, em, await ociSignerExchange(em, provider), "resource");
  t.equal(c.res_type, "fnfunc");
  t.equal(c.res_compartment, em.compartmentId);
  t.equal(c.sub, c.res_id);
  await checkDomainToken(t, em, await handExchange(em, { keyId: `ST$${rp.rpst}`, key: provider.getPrivateKey() }), "resource");
});

t.test("OKE workload identity via OkeWorkloadIdentityAuthenticationDetailsProvider", async (t) => {
  server.resetCalls();
  const p = await em.startOkeProxymux();
  t.equal(await em.startOkeProxymux().then((q) => q.port), p.port, "started once");
  const dir = tmpDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "ca.crt"), p.caCertPem);
  fs.writeFileSync(path.join(dir, "token"), p.serviceAccountToken);
  const restore = withEnv({ KUBERNETES_SERVICE_HOST: p.host, KUBERNETES_SERVICE_PORT_PROXYMUX: String(p.port) });
  t.teardown(restore);
  const provider = oci.OkeWorkloadIdentityAuthenticationDetailsProvider.builder(path.join(dir, "ca.crt"), path.join(dir, "token"));
  const keyId = await provider.getKeyId();
  t.match(keyId, /^ST\$[^$]/);
  t.equal(server.calls["oci.oke.proxymux"], 1, "proxymux counted");
  const c = await checkDomainToken(t, em, await ociSignerExchange(em, provider), "resource");
  t.equal(c.res_type, "workload");

  const url = `https://${p.host}:${p.port}/resourcePrincipalSessionTokens`;
  const body = JSON.stringify({ podKey: "x" });
  const wrong = await send(url, "POST", { authorization: "Bearer nope", "content-type": "application/json" }, body, p.caCertPem);
  t.equal(wrong.status, 401, "wrong service account token");
  server.addFault({ endpoint: "oci.oke.proxymux", status: 503, count: 1 });
  const faulted = await send(url, "POST", { authorization: `Bearer ${p.serviceAccountToken}` }, body, p.caCertPem);
  t.equal(faulted.status, 503, "fault applies to the proxymux listener");
  const badKey = await send(url, "POST", { authorization: `Bearer ${p.serviceAccountToken}` }, body, p.caCertPem);
  t.equal(badKey.status, 400, "fault consumed; bad podKey is 400");
});

t.test("settings, faults and the call counters over HTTP", async (t) => {
  const ctl = server.url;
  const calls = await send(`${ctl}/_emulator/calls`, "GET", {});
  for (const k of ["oci.metadata", "oci.federation", "oci.identityDomain.token", "oci.identityDomain.jwks", "oci.oke.proxymux"]) {
    t.ok(k in calls.json, `calls lists ${k}`);
  }
  const u = em.createApiKeyUser();
  const keyId = `${u.tenancy}/${u.user}/${u.fingerprint}`;

  const set = await send(
    `${ctl}/_emulator/settings`,
    "POST",
    { "content-type": "application/json" },
    JSON.stringify({ oci: { domainTokenSeconds: 5 } }),
  );
  t.equal(set.status, 200);
  t.equal(em.settings.domainTokenSeconds, 5);
  const short = await handExchange(em, { keyId, key: u.privateKeyPem });
  t.equal(short.json.expires_in, 5);
  const sc = decodeJwt(short.json.access_token)!.payload as Record<string, number>;
  t.equal(sc.exp! - sc.iat!, 5);
  await send(`${ctl}/_emulator/settings`, "POST", {}, JSON.stringify({ oci: { domainTokenSeconds: 3600, metadataRegion: "iad" } }));
  t.equal((await send(`${em.metadataBaseUrl}instance/region`, "GET", { authorization: "Bearer Oracle" })).text, "iad");
  em.settings.metadataRegion = em.region;

  server.resetCalls();
  const addFault = (f: object) => send(`${ctl}/_emulator/faults`, "POST", {}, JSON.stringify(f));
  t.equal((await addFault({ endpoint: "oci.metadata", status: 500, count: 1 })).status, 201);
  const m1 = await send(`${em.metadataBaseUrl}instance/region`, "GET", { authorization: "Bearer Oracle" });
  const m2 = await send(`${em.metadataBaseUrl}instance/region`, "GET", { authorization: "Bearer Oracle" });
  t.equal(m1.status, 500, "status fault");
  t.equal(m2.status, 200, "count 1: only the first call");

  await addFault({ endpoint: "oci.identityDomain.jwks", drop: true, count: 1 });
  await t.rejects(send(em.domainJwksUrl, "GET", {}), "drop closes the connection");
  t.equal((await send(em.domainJwksUrl, "GET", {})).status, 200);

  await addFault({ endpoint: "oci.identityDomain.token", latencyMs: 300, count: 1 });
  const t0 = Date.now();
  const slow = await handExchange(em, { keyId, key: u.privateKeyPem });
  t.ok(Date.now() - t0 >= 290, "latency fault delays the answer");
  t.equal(slow.status, 200);

  await addFault({ endpoint: "oci.federation", status: 429, count: 2, headers: { "retry-after": "1" } });
  const f1 = await send(`${em.federationEndpoint}/v1/x509`, "POST", {}, "{}");
  t.equal(f1.status, 429);
  t.equal(f1.headers["retry-after"], "1");
  t.equal((await send(`${em.federationEndpoint}/v1/x509`, "POST", {}, "{}")).status, 429);
  t.equal((await send(`${em.federationEndpoint}/v1/x509`, "POST", {}, "{}")).status, 400, "after count, the real answer");

  const after = (await send(`${ctl}/_emulator/calls`, "GET", {})).json;
  t.equal(after["oci.metadata"], 2);
  t.equal(after["oci.identityDomain.jwks"], 2);
  t.equal(after["oci.identityDomain.token"], 1);
  t.equal(after["oci.federation"], 3);
});
