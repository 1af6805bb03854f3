import { execFile } from "node:child_process";
import crypto from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { IdentityPoolClient, Impersonated, OAuth2Client } from "google-auth-library";
import t from "tap";
import { EmulatorServer, sleep } from "../../src/emulator/core.js";
import { type GoogleEmulator, registerGoogle } from "../../src/emulator/google/index.js";
import { decodeJwt, keyFromJwk, newRsaKey, nowSeconds, publicJwk, signJwt, verifyJwtSignature } from "../../src/emulator/jose.js";

const ISSUER = "https://identity.oraclecloud.com/";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
const SA = "oci-workload@my-project.iam.gserviceaccount.com";
const OTHER_SA = "someone-else@my-project.iam.gserviceaccount.com";
const CLOUD = "https://www.googleapis.com/auth/cloud-platform";
const SUB = "ocid1.instance.oc1.phx.exampleinstance";
const EXPIRE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

const server = new EmulatorServer();
let google: GoogleEmulator;
// Stand-in identity domain: a JWKS served from the same emulator server.
let idpKey = newRsaKey();
let idpKid = "idp-key-1";

t.before(async () => {
  await server.listen();
  server.route("test.idp.jwks", "GET", /^\/idp\/jwks$/, () => ({ status: 200, body: { keys: [publicJwk(idpKey, idpKid)] } }));
  google = await registerGoogle(server, {
    issuer: ISSUER,
    allowedAudiences: [DOMAIN],
    jwksUrl: `${server.url}/idp/jwks`,
    serviceAccounts: [SA],
    attributeCondition: (c) => c.sub_type !== "blocked",
  });
});
t.teardown(() => server.close());
t.beforeEach(() => {
  server.resetCalls();
  server.clearFaults();
});

function subjectJwt(claims: Record<string, unknown> = {}, key = idpKey, kid: string | undefined = idpKid): string {
  const now = nowSeconds();
  return signJwt(
    { iss: ISSUER, sub: SUB, aud: [DOMAIN, "urn:opc:lbaas:logicalguid=x"], sub_type: "instance", iat: now, exp: now + 3600, ...claims },
    key,
    kid,
  );
}

function stsForm(over: Record<string, string | undefined> = {}): string {
  const base: Record<string, string | undefined> = {
    grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
    audience: google.audience,
    scope: CLOUD,
    requested_token_type: "urn:ietf:params:oauth:token-type:access_token",
    subject_token: subjectJwt(),
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    ...over,
  };
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(base)) if (v !== undefined) p.set(k, v);
  return p.toString();
}

interface Answer {
  status: number;
  json: any;
  headers: Headers;
  text: string;
}

async function call(url: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(url, init);
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, headers: res.headers, text };
}

function sts(body: string, contentType = "application/x-www-form-urlencoded"): Promise<Answer> {
  return call(google.stsUrl, { method: "POST", headers: { "content-type": contentType }, body });
}

async function federated(claims: Record<string, unknown> = {}, scope = CLOUD): Promise<string> {
  const r = await sts(stsForm({ subject_token: subjectJwt(claims), scope }));
  if (r.status !== 200) throw new Error(`STS failed: ${r.text}`);
  return r.json.access_token as string;
}

function iamUrl(sa: string, verb: "generateAccessToken" | "generateIdToken"): string {
  return `${google.iamCredentialsUrl}/v1/projects/-/serviceAccounts/${sa}:${verb}`;
}

function iam(sa: string, verb: "generateAccessToken" | "generateIdToken", token: string | undefined, body: unknown): Promise<Answer> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return call(iamUrl(sa, verb), { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
}

/** The assertions the helpers use (a tap subtest has them). */
type Asserts = Pick<typeof t, "equal" | "same" | "match">;

function stsRejects(t: Asserts, r: Answer, error: string, description: string | RegExp): void {
  t.equal(r.status, 400, "status 400");
  t.same(Object.keys(r.json).sort(), ["error", "error_description"], "OAuth error shape");
  t.equal(r.json.error, error);
  if (typeof description === "string") t.equal(r.json.error_description, description);
  else t.match(r.json.error_description, description);
}

function apiRejects(t: Asserts, r: Answer, code: number, status: string, message: string | RegExp): void {
  t.equal(r.status, code, `status ${code}`);
  t.equal(r.json.error.code, code);
  t.equal(r.json.error.status, status);
  if (typeof message === "string") t.equal(r.json.error.message, message);
  else t.match(r.json.error.message, message);
}

t.test("google-auth-library IdentityPoolClient with impersonation: one STS call, one generateAccessToken", async (t) => {
  const jwt = subjectJwt();
  const client = new IdentityPoolClient({
    audience: google.audience,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    token_url: google.stsUrl,
    service_account_impersonation_url: iamUrl(SA, "generateAccessToken"),
    subject_token_supplier: { getSubjectToken: async () => jwt },
  });
  const { token } = await client.getAccessToken();
  t.ok(token?.startsWith("ya29.c."), "an SA access token");
  t.equal(server.calls["google.sts.token"], 1);
  t.equal(server.calls["google.iam.generateAccessToken"], 1);
  const info = google.tokenInfo(token!)!;
  t.equal(info.kind, "service_account");
  t.equal(info.email, SA);
  t.same(info.scopes, [CLOUD]);
  t.equal(info.delegator, google.principalFor(SUB));
  t.equal(
    info.delegator,
    `principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/subject/${SUB}`,
  );
  t.ok(Math.abs(info.expiresAt - nowSeconds() - 3600) <= 2);
  t.equal(client.credentials.expiry_date, info.expiresAt * 1000, "the client read expireTime exactly");
  await client.getAccessToken();
  t.equal(server.calls["google.sts.token"], 1, "cached by the client");

  // And tokeninfo describes it like Google's.
  const ti = await call(`${google.tokenInfoUrl}?access_token=${encodeURIComponent(token!)}`);
  t.equal(ti.status, 200);
  t.equal(ti.json.azp, google.uniqueId(SA));
  t.equal(ti.json.aud, google.uniqueId(SA));
  t.equal(ti.json.scope, CLOUD);
  t.equal(ti.json.exp, String(info.expiresAt));
  t.type(ti.json.expires_in, "string");
  t.equal(ti.json.email, undefined, "no email without the email scope");
  const viaLib = await new OAuth2Client({ endpoints: { tokenInfoUrl: google.tokenInfoUrl } }).getTokenInfo(token!);
  t.same(viaLib.scopes, [CLOUD]);
  t.ok(viaLib.expiry_date > Date.now());
});

t.test("IdentityPoolClient without impersonation gets the federated token", async (t) => {
  const client = new IdentityPoolClient({
    audience: google.audience,
    subject_token_type: "urn:ietf:params:oauth:token-type:id_token",
    token_url: google.stsUrl,
    scopes: ["https://www.googleapis.com/auth/devstorage.read_only"],
    subject_token_supplier: { getSubjectToken: async () => subjectJwt() },
  });
  const { token } = await client.getAccessToken();
  t.ok(token?.startsWith("ya29.d."));
  const info = google.tokenInfo(token!)!;
  t.equal(info.kind, "federated");
  t.equal(info.subject, google.principalFor(SUB));
  t.same(info.scopes, ["https://www.googleapis.com/auth/devstorage.read_only"]);
  t.equal(server.calls["google.iam.generateAccessToken"], 0);
  const ti = await call(`${google.tokenInfoUrl}?access_token=${token}`);
  t.equal(ti.status, 400, "Google's tokeninfo does not describe federated tokens");
  t.same(ti.json, { error: "invalid_token", error_description: "Invalid Value" });
  google.settings.tokeninfoFederated = true;
  t.teardown(() => {
    google.settings.tokeninfoFederated = false;
  });
  const described = await call(`${google.tokenInfoUrl}?access_token=${token}`);
  t.equal(described.status, 200, "unless the tokeninfoFederated setting is on");
  t.equal(described.json.azp, google.principalFor(SUB));
  // That token lacks cloud-platform: IAM Credentials refuses it.
  const r = await iam(SA, "generateAccessToken", token!, { scope: [CLOUD] });
  apiRejects(t, r, 403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.");
  t.equal(r.json.error.details[0].reason, "ACCESS_TOKEN_SCOPE_INSUFFICIENT");
});

t.test("STS answer is exactly Google's shape, federated lifetime capped by the JWT", async (t) => {
  const r = await sts(stsForm());
  t.equal(r.status, 200);
  t.same(Object.keys(r.json), ["access_token", "issued_token_type", "token_type", "expires_in"]);
  t.equal(r.json.issued_token_type, "urn:ietf:params:oauth:token-type:access_token");
  t.equal(r.json.token_type, "Bearer");
  t.equal(r.json.expires_in, 3600);
  const short = await sts(stsForm({ subject_token: subjectJwt({ exp: nowSeconds() + 600 }) }));
  t.ok(short.json.expires_in <= 600 && short.json.expires_in >= 598, "min(federatedTokenSeconds, exp - now)");
  // JSON body with camelCase keys (google-github-actions sends this), and Python's double-encoded options.
  const json = await sts(
    JSON.stringify({
      grantType: "urn:ietf:params:oauth:grant-type:token-exchange",
      audience: google.audience,
      requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
      subjectToken: subjectJwt(),
      subjectTokenType: "urn:ietf:params:oauth:token-type:jwt",
    }),
    "application/json",
  );
  t.equal(json.status, 200);
  t.same(google.tokenInfo(json.json.access_token)!.scopes, [CLOUD], "default scope");
  const withOptions = await sts(stsForm({ options: encodeURIComponent(JSON.stringify({ userProject: "p" })) }));
  t.equal(withOptions.status, 200);
});

t.test("STS rejections", async (t) => {
  const other = newRsaKey();
  stsRejects(t, await sts(stsForm({ subject_token: subjectJwt({}, other) })), "invalid_grant", "Unable to verify the ID Token signature.");
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({}, other, "unknown-kid") })),
    "invalid_grant",
    "Error connecting to the given credential's issuer.",
  );
  stsRejects(t, await sts(stsForm({ subject_token: "not.a.jwt" })), "invalid_grant", "Unable to parse the ID Token.");
  const tampered = subjectJwt().split(".");
  tampered[1] = Buffer.from(JSON.stringify({ iss: ISSUER, sub: "root", aud: DOMAIN, iat: nowSeconds(), exp: nowSeconds() + 60 })).toString(
    "base64url",
  );
  stsRejects(t, await sts(stsForm({ subject_token: tampered.join(".") })), "invalid_grant", "Unable to verify the ID Token signature.");
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ iss: "https://evil.example/" }) })),
    "invalid_grant",
    `The issuer in ID Token https://evil.example/ does not match the expected one in config: ${ISSUER}`,
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ aud: "https://other.example" }) })),
    "invalid_grant",
    "The audience in ID Token [https://other.example] does not match the expected audience.",
  );
  const now = nowSeconds();
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ iat: now - 7200, exp: now - 3600 }) })),
    "invalid_grant",
    `ID Token issued at ${now - 7200} is stale to sign-in.`,
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ iat: now + 600, exp: now + 3600 }) })),
    "invalid_grant",
    /is stale to sign-in\.$/,
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ iat: undefined }) })),
    "invalid_grant",
    "ID Token issued at null is stale to sign-in.",
  );
  stsRejects(
    t,
    await sts(
      stsForm({ audience: "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/nope" }),
    ),
    "invalid_target",
    'The target service indicated by the "audience" parameters is invalid. ' +
      "This might either be because the pool or provider is disabled or deleted or because it doesn't exist.",
  );
  stsRejects(
    t,
    await sts(stsForm({ audience: `https:${google.audience}` })),
    "invalid_request",
    /^Invalid value for "audience"\. This value should be the full resource name/,
  );
  stsRejects(t, await sts(stsForm({ grant_type: "client_credentials" })), "unsupported_grant_type", /grant_type/);
  stsRejects(t, await sts(stsForm({ grant_type: undefined })), "invalid_request", /grant_type/);
  stsRejects(t, await sts(stsForm({ subject_token: undefined })), "invalid_request", /subject_token/);
  stsRejects(
    t,
    await sts(stsForm({ requested_token_type: "urn:ietf:params:oauth:token-type:id_token" })),
    "invalid_request",
    /requested_token_type/,
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token_type: "urn:ietf:params:oauth:token-type:saml2" })),
    "invalid_request",
    /subject_token_type/,
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ sub_type: "blocked" }) })),
    "unauthorized_client",
    "The given credential is rejected by the attribute condition.",
  );
  stsRejects(
    t,
    await sts(stsForm({ subject_token: subjectJwt({ sub: "x".repeat(128) }) })),
    "invalid_request",
    /exceeds the 127 bytes limit/,
  );
  t.equal(server.calls["google.sts.token"], 18);

  // google-auth-library surfaces the OAuth error as Google's would be.
  const client = new IdentityPoolClient({
    audience: google.audience,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    token_url: google.stsUrl,
    subject_token_supplier: { getSubjectToken: async () => subjectJwt({ aud: "nope" }) },
  });
  await t.rejects(client.getAccessToken(), {
    message: "Error code invalid_grant: The audience in ID Token [nope] does not match the expected audience.",
  });
});

t.test("provider key rotation: an unknown kid makes STS fetch the JWKS again", async (t) => {
  const old = { key: idpKey, kid: idpKid };
  t.teardown(() => {
    idpKey = old.key;
    idpKid = old.kid;
  });
  t.ok(await federated());
  const fetched = server.calls["test.idp.jwks"]!;
  t.ok(await federated(), "the cached JWKS serves a known kid");
  t.equal(server.calls["test.idp.jwks"], fetched);
  idpKey = newRsaKey();
  idpKid = "idp-key-2";
  t.ok(await federated(), "new kid accepted right away");
  t.equal(server.calls["test.idp.jwks"], fetched + 1, "one refetch");
  // A JWKS the STS cannot fetch.
  google.settings.jwksCacheSeconds = 0;
  t.teardown(() => {
    google.settings.jwksCacheSeconds = 30;
  });
  server.addFault({ endpoint: "test.idp.jwks", status: 503, count: 1 });
  stsRejects(t, await sts(stsForm()), "invalid_grant", "Error connecting to the given credential's issuer.");
  t.ok(await federated(), "fine again once the JWKS answers");
});

t.test("IAM Credentials rejections", async (t) => {
  const fed = await federated();
  const missing = await iam(SA, "generateAccessToken", undefined, { scope: [CLOUD] });
  apiRejects(t, missing, 401, "UNAUTHENTICATED", /^Request is missing required authentication credential\./);
  const unknown = await iam(SA, "generateAccessToken", "ya29.bogus", { scope: [CLOUD] });
  apiRejects(
    t,
    unknown,
    401,
    "UNAUTHENTICATED",
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. " +
      "See https://developers.google.com/identity/sign-in/web/devconsole-project.",
  );
  t.match(unknown.headers.get("www-authenticate"), /error="invalid_token"/);
  const notAllowed = await iam(OTHER_SA, "generateAccessToken", fed, { scope: [CLOUD] });
  apiRejects(
    t,
    notAllowed,
    403,
    "PERMISSION_DENIED",
    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
  );
  t.equal(notAllowed.json.error.details[0].reason, "IAM_PERMISSION_DENIED");
  apiRejects(t, await iam(SA, "generateAccessToken", fed, {}), 400, "INVALID_ARGUMENT", "Request contains an invalid argument.");
  apiRejects(t, await iam(SA, "generateAccessToken", fed, { scope: [] }), 400, "INVALID_ARGUMENT", "Request contains an invalid argument.");
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scope: ["https://my-service.a.run.app"] }),
    400,
    "INVALID_ARGUMENT",
    "Request contains an invalid argument.",
  );
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scope: [CLOUD], lifetime: "3601s" }),
    400,
    "INVALID_ARGUMENT",
    /can not have lifetimes of more than 1 hour/,
  );
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scope: [CLOUD], lifetime: "0s" }),
    400,
    "INVALID_ARGUMENT",
    "Lifetime of access token must be larger then zero.",
  );
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scope: [CLOUD], lifetime: 3600 }),
    400,
    "INVALID_ARGUMENT",
    /^Invalid value at 'lifetime'/,
  );
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scopes: [CLOUD] }),
    400,
    "INVALID_ARGUMENT",
    'Invalid JSON payload received. Unknown name "scopes": Cannot find field.',
  );
  apiRejects(t, await iam(SA, "generateAccessToken", fed, "{not json"), 400, "INVALID_ARGUMENT", /^Invalid JSON payload received\./);
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", fed, { scope: [CLOUD], delegates: [`projects/-/serviceAccounts/${OTHER_SA}`] }),
    403,
    "PERMISSION_DENIED",
    /iam\.serviceAccounts\.getAccessToken/,
  );
  apiRejects(
    t,
    await iam(OTHER_SA, "generateIdToken", fed, { audience: "x" }),
    403,
    "PERMISSION_DENIED",
    "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist).",
  );
  apiRejects(
    t,
    await iam(SA, "generateIdToken", fed, { includeEmail: true }),
    400,
    "INVALID_ARGUMENT",
    "Request contains an invalid argument.",
  );
  apiRejects(
    t,
    await iam(SA, "generateIdToken", "ya29.bogus", { audience: "x" }),
    401,
    "UNAUTHENTICATED",
    /invalid authentication credentials/,
  );
});

t.test("an expired federated token is refused (lifetimes are runtime settings)", async (t) => {
  const set = (v: Record<string, number | boolean>) =>
    call(`${server.url}/_emulator/settings`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ google: v }),
    });
  t.teardown(() => set({ federatedTokenSeconds: 3600 }));
  t.equal((await set({ federatedTokenSeconds: 1 })).status, 200);
  const r = await sts(stsForm());
  t.equal(r.json.expires_in, 1);
  await sleep(2100);
  t.equal(google.tokenInfo(r.json.access_token), undefined);
  apiRejects(
    t,
    await iam(SA, "generateAccessToken", r.json.access_token, { scope: [CLOUD] }),
    401,
    "UNAUTHENTICATED",
    /invalid authentication credentials/,
  );
});

t.test("generateAccessToken: forms of the path, lifetime, delegation", async (t) => {
  const fed = await federated();
  const before = nowSeconds();
  const r = await iam(SA.replace("@", "%40"), "generateAccessToken", fed, { scope: [CLOUD], lifetime: "600s" });
  t.equal(r.status, 200);
  t.same(Object.keys(r.json), ["accessToken", "expireTime"]);
  t.match(r.json.expireTime, EXPIRE_TIME);
  const exp = Date.parse(r.json.expireTime) / 1000;
  t.ok(exp >= before + 600 && exp <= nowSeconds() + 600);
  t.equal(google.tokenInfo(r.json.accessToken)!.expiresAt, exp);
  const colon = await call(`${google.iamCredentialsUrl}/v1/projects/-/serviceAccounts/${encodeURIComponent(SA)}%3AgenerateAccessToken`, {
    method: "POST",
    headers: { authorization: `Bearer ${fed}`, "content-type": "application/json" },
    body: JSON.stringify({ scope: [""] }),
  });
  t.equal(colon.status, 200);
  t.same(google.tokenInfo(colon.json.accessToken)!.scopes, [CLOUD], '[""] means cloud-platform');
  const withEmail = await iam(SA, "generateAccessToken", fed, { scope: [CLOUD, "https://www.googleapis.com/auth/userinfo.email"] });
  const ti = await call(google.tokenInfoUrl, { method: "POST", headers: { authorization: `Bearer ${withEmail.json.accessToken}` } });
  t.match(ti.json, {
    sub: google.uniqueId(SA),
    email: SA,
    email_verified: "true",
    scope: `${CLOUD} https://www.googleapis.com/auth/userinfo.email`,
  });
  const byId = await iam(google.uniqueId(SA), "generateAccessToken", fed, { scope: [CLOUD] });
  t.equal(byId.status, 200, "the SA's unique id works in the path");
  // An SA token (cloud-platform scope) can mint for an SA it may impersonate.
  const chained = await iam(SA, "generateAccessToken", r.json.accessToken, {
    scope: [CLOUD],
    delegates: [`projects/-/serviceAccounts/${SA}`],
  });
  t.equal(chained.status, 200);
  t.equal(google.tokenInfo(chained.json.accessToken)!.delegator, SA);
  // The cap is a runtime setting.
  google.settings.maxAccessTokenSeconds = 600;
  t.teardown(() => {
    google.settings.maxAccessTokenSeconds = 3600;
  });
  apiRejects(t, await iam(SA, "generateAccessToken", fed, { scope: [CLOUD] }), 400, "INVALID_ARGUMENT", /more than 600 seconds/);
});

t.test("generateIdToken through google-auth-library Impersonated, verified against the published keys", async (t) => {
  const source = new IdentityPoolClient({
    audience: google.audience,
    subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
    token_url: google.stsUrl,
    subject_token_supplier: { getSubjectToken: async () => subjectJwt() },
  });
  const imp = new Impersonated({ sourceClient: source, targetPrincipal: SA, targetScopes: [CLOUD], endpoint: google.iamCredentialsUrl });
  const idToken = await imp.fetchIdToken("https://my-service.example", { includeEmail: true });
  t.equal(server.calls["google.iam.generateIdToken"], 1);
  const jwt = decodeJwt(idToken)!;
  t.equal(jwt.header.alg, "RS256");
  t.type(jwt.header.kid, "string");
  const p = jwt.payload;
  t.equal(p.iss, "https://accounts.google.com");
  t.equal(p.aud, "https://my-service.example");
  t.equal(p.sub, google.uniqueId(SA));
  t.match(p.sub, /^\d{21}$/);
  t.equal(p.azp, SA, "Node sends useEmailAzp with includeEmail: azp is the email");
  t.equal(p.email, SA);
  t.equal(p.email_verified, true);
  t.equal((p.exp as number) - (p.iat as number), 3600);

  const certs = await call(google.jwksUrl);
  t.equal(certs.status, 200);
  const jwk = certs.json.keys.find((k: any) => k.kid === jwt.header.kid);
  t.match(jwk, { kty: "RSA", alg: "RS256", use: "sig" });
  t.ok(verifyJwtSignature(jwt, keyFromJwk(jwk)!), "verifies against /oauth2/v3/certs");

  // google-auth-library's own verifier (PEM certificates at /oauth2/v1/certs).
  const verifier = new OAuth2Client({ endpoints: { oauth2FederatedSignonPemCertsUrl: `${server.url}/oauth2/v1/certs` } });
  const ticket = await verifier.verifyIdToken({ idToken, audience: "https://my-service.example" });
  t.equal(ticket.getPayload()?.email, SA);
  const pem = (await call(`${server.url}/oauth2/v1/certs`)).json[jwt.header.kid as string];
  t.ok(new crypto.X509Certificate(pem).verify(crypto.createPublicKey(pem)), "a valid self-signed X.509 certificate");

  // Without includeEmail: no email claims, azp is the unique id; lifetime is a runtime setting.
  google.settings.idTokenSeconds = 120;
  t.teardown(() => {
    google.settings.idTokenSeconds = 3600;
  });
  const fed = await federated();
  const plain = await iam(SA, "generateIdToken", fed, { audience: "aud-2" });
  t.same(Object.keys(plain.json), ["token"]);
  const pp = decodeJwt(plain.json.token)!.payload;
  t.same(Object.keys(pp), ["aud", "azp", "exp", "iat", "iss", "sub"]);
  t.equal(pp.azp, google.uniqueId(SA));
  t.equal((pp.exp as number) - (pp.iat as number), 120);
  const ti = await call(`${google.tokenInfoUrl}?id_token=${plain.json.token}`);
  t.equal(ti.status, 200);
  t.equal(ti.json.aud, "aud-2");
  t.equal(ti.json.exp, String(pp.exp));

  // Impersonated access tokens go through generateAccessToken.
  const { token } = await imp.getAccessToken();
  t.equal(google.tokenInfo(token!)!.email, SA);
});

const exec = promisify(execFile);

/** gcloud's bundled Python and its SDK root, where google-auth lives; undefined without gcloud. */
async function gcloudPython(): Promise<{ python: string; sdkRoot: string } | undefined> {
  try {
    const python = (await exec("gcloud", ["info", "--format=value(basic.python_location)"])).stdout.trim();
    const sdkRoot = (await exec("gcloud", ["info", "--format=value(installation.sdk_root)"])).stdout.trim();
    return python && sdkRoot ? { python, sdkRoot } : undefined;
  } catch {
    return undefined;
  }
}
const py = await gcloudPython();

t.test(
  "Python google-auth (bundled with gcloud) accepts the answers",
  { skip: py ? false : "gcloud is not installed: cannot run Python google-auth" },
  async (t) => {
    const { python, sdkRoot } = py!;
    const dir = await mkdtemp(path.join(tmpdir(), "google-emu-"));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const tokenFile = path.join(dir, "subject.jwt");
    await writeFile(tokenFile, subjectJwt());
    const script = `
import json, sys
from google.auth import identity_pool, impersonated_credentials, iam
from google.auth.transport.requests import Request
from google.oauth2 import id_token
cfg = json.loads(sys.argv[1])
req = Request()
info = {"type": "external_account", "audience": cfg["audience"],
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": cfg["sts"],
        "credential_source": {"file": cfg["file"]}}
sa = identity_pool.Credentials.from_info(dict(info, service_account_impersonation_url=cfg["imp"]),
                                         scopes=["https://www.googleapis.com/auth/cloud-platform"])
sa.refresh(req)
fed = identity_pool.Credentials.from_info(info, scopes=["https://www.googleapis.com/auth/cloud-platform"])
iam._IAM_IDTOKEN_ENDPOINT = cfg["base"] + "/v1/projects/-/serviceAccounts/{}:generateIdToken"
target = impersonated_credentials.Credentials(source_credentials=fed, target_principal=cfg["sa"],
    target_scopes=["https://www.googleapis.com/auth/cloud-platform"], iam_endpoint_override=cfg["imp"])
idc = impersonated_credentials.IDTokenCredentials(target, target_audience="py-aud", include_email=True)
idc.refresh(req)
claims = id_token.verify_token(idc.token, req, audience="py-aud", certs_url=cfg["base"] + "/oauth2/v1/certs")
print(json.dumps({"token": sa.token, "expiry": sa.expiry.isoformat(), "email": claims["email"], "idexp": idc.expiry.isoformat()}))
`;
    const cfg = {
      audience: google.audience,
      sts: google.stsUrl,
      file: tokenFile,
      imp: iamUrl(SA, "generateAccessToken"),
      base: server.url,
      sa: SA,
    };
    const { stdout } = await exec(python, ["-c", script, JSON.stringify(cfg)], {
      env: { ...process.env, PYTHONPATH: path.join(sdkRoot, "lib", "third_party"), NO_PROXY: "127.0.0.1", no_proxy: "127.0.0.1" },
    });
    const out = JSON.parse(stdout);
    const info = google.tokenInfo(out.token)!;
    t.equal(info.kind, "service_account");
    t.equal(new Date(`${out.expiry}Z`).getTime(), info.expiresAt * 1000, "Python parsed expireTime exactly");
    t.equal(out.email, SA, "Python verified the ID token against /oauth2/v1/certs");
    t.equal(server.calls["google.iam.generateIdToken"], 1);
  },
);
