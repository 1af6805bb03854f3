import crypto from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import t, { type Test } from "tap";
import type { Emulators } from "../../src/emulator/index.js";
import { IdentityDomainTokenSource } from "../../src/oci/identity-domain.js";
import type { SigningIdentity } from "../../src/oci/principal.js";
import type { TokenSource } from "../../src/token/token-source.js";
import { HopError } from "../../src/upstream/hop-error.js";
import { DEFAULT_RETRY } from "../../src/upstream/retry.js";
import {
  calls,
  claimsOf,
  resetEmulators,
  type Stack,
  type StackOptions,
  startStack,
  startTestEmulators,
  verifyDomainJwt,
} from "../helpers/stack.js";

/**
 * The identity domain refuses, and the daemon says so: the hop, the HTTP status
 * and the server's own error and error_description reach the client of the
 * subject-token endpoint (503 with Retry-After) and the HopError the cache holds.
 */

const SUBJECT = "/oci2gcp/v1/subject-token";
const TOKEN_ENDPOINT = "oci.identityDomain.token";

// One set of emulators for all the daemons of this file (each test has its own daemon).
let shared: Emulators | undefined;
t.teardown(() => shared?.close());

async function stack(t: Test, o: StackOptions): Promise<Stack> {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  const s = await startStack({ emu: shared, routeConsole: true, ...o });
  t.teardown(() => s.close());
  return s;
}

/** A principal that always hands out the given key id and key, valid until `expiresAt`. */
function fixedPrincipal(
  keyId: string,
  privateKey: crypto.KeyObject | string,
  expiresAt = Date.now() + 3600_000,
): TokenSource<SigningIdentity> & { calls: number } {
  const key = typeof privateKey === "string" ? crypto.createPrivateKey(privateKey) : privateKey;
  const src = {
    calls: 0,
    async token(): Promise<SigningIdentity> {
      src.calls += 1;
      return { value: keyId, keyId, privateKey: key, expiresAt, obtainedAt: Date.now() };
    },
  };
  return src;
}

function apiKeyPrincipal(emu: Emulators): TokenSource<SigningIdentity> & { calls: number } {
  const u = emu.oci.createApiKeyUser();
  return fixedPrincipal(`${u.tenancy}/${u.user}/${u.fingerprint}`, u.privateKeyPem);
}

interface Failure {
  status: number;
  retryAfter: number;
  body: { error: string; error_description: string; hop: string };
}

/** GET the subject token, expecting the 503 of a failed hop; checks the shape common to all. */
async function failure(t: Test, s: Stack, hop = "identity domain"): Promise<Failure> {
  const r = await s.get(SUBJECT);
  t.equal(r.status, 503, "503");
  t.equal(r.headers.get("content-type"), "application/json");
  const ra = r.headers.get("retry-after");
  t.match(ra, /^\d+$/, `Retry-After: ${ra}`);
  t.ok(Number(ra) >= 1 && Number(ra) <= 300, "Retry-After between 1 and 300 s");
  const body = JSON.parse(r.text) as Failure["body"];
  t.equal(body.error, "unavailable");
  t.equal(body.hop, hop, `the hop is named: ${hop}`);
  t.match(body.error_description, `the ${hop} hop failed`);
  t.notMatch(body.error_description, /ST\$|eyJ[A-Za-z0-9_-]{8,}\.|BEGIN/, "no token or key material in the message");
  return { status: r.status, retryAfter: Number(ra), body };
}

function hopError(t: Test, s: Stack): HopError {
  const e = s.daemon.chain.subject.failure ?? s.daemon.chain.principal.failure;
  t.type(e, HopError, "the cache holds a HopError");
  return e as HopError;
}

t.test("wrong signature: a valid session token with another private key", async (t) => {
  const other = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  let principal!: ReturnType<typeof fixedPrincipal>;
  const s = await stack(t, {
    principal: (emu) => {
      const st = emu.oci.mintSessionToken();
      principal = fixedPrincipal(`ST$${st.token}`, other, (claimsOf(st.token).exp as number) * 1000);
      return principal;
    },
  });
  const f = await failure(t, s);
  t.match(f.body.error_description, /HTTP 401: invalid_client: signature does not verify with the key named by keyId/);
  const e = hopError(t, s);
  t.equal(e.hop, "identity domain");
  t.equal(e.status, 401);
  t.equal(e.upstreamError, "invalid_client");
  t.equal(e.code, "signature_rejected");
  t.equal(e.retryable, false, "a refused signature is not retried");
  t.match(e.message, /^identity domain: HTTP 401: invalid_client: signature does not verify/);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1, "one call: 401 is not retried");

  // A second request during the backoff gets the same explanation without a new upstream call.
  const again = await failure(t, s);
  t.match(again.body.error_description, /HTTP 401: invalid_client: signature does not verify/);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1, "no upstream call during the backoff");
  t.equal(principal.calls, 1, "the principal was cached, not rebuilt per request");

  // Other formats carry the same explanation.
  const text = await s.get(`${SUBJECT}?format=text`);
  t.equal(text.status, 503);
  t.match(text.text, /^oci2gcp: no valid token: the identity domain hop failed: HTTP 401: invalid_client: signature does not verify/);
  t.ok(text.headers.get("retry-after"));
  const exe = await s.get(`${SUBJECT}?format=executable`);
  t.equal(exe.status, 503);
  const eb = JSON.parse(exe.text);
  t.same(Object.keys(eb).sort(), ["code", "message", "success", "version"]);
  t.equal(eb.success, false);
  t.equal(eb.code, "UPSTREAM_UNAVAILABLE");
  t.match(eb.message, /identity domain hop failed: HTTP 401: invalid_client/);
  t.same(s.leaks(), [], "no secret in the logs");
});

/** A loopback proxy that forwards to `target`, flipping one byte of each request body. */
async function tamperingProxy(t: Test, target: string): Promise<{ url: string; tampered: number }> {
  const state = { url: "", tampered: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (body.length > 0) {
        // "__myscopes__" → "__myscopez__": same length, one byte different.
        const i = body.indexOf("__myscopes__");
        body[i >= 0 ? i + 10 : 0] = "z".charCodeAt(0);
        state.tampered += 1;
      }
      const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      });
      up.on("error", () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

t.test("tampered body: a proxy alters one byte in flight", async (t) => {
  let proxy!: { url: string; tampered: number };
  const s = await stack(t, {
    principal: apiKeyPrincipal,
    configure: async (emu) => {
      proxy = await tamperingProxy(t, emu.url);
      return { "identityDomain.url": proxy.url };
    },
  });
  const f = await failure(t, s);
  t.equal(proxy.tampered, 1, "the request went through the proxy");
  t.match(f.body.error_description, /HTTP 401: invalid_client: body digest mismatch: x-content-sha256 is not the SHA-256 of the body/);
  const e = hopError(t, s);
  t.equal(e.status, 401);
  t.equal(e.upstreamError, "invalid_client");
  t.equal(e.code, "signature_rejected", "a body digest mismatch is a refused signature");
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1);
});

t.test("expired security token that the principal still believes valid", async (t) => {
  let expiredAt = 0;
  const s = await stack(t, {
    principal: (emu) => {
      const st = emu.oci.mintSessionToken({ lifetimeSeconds: 0 });
      expiredAt = claimsOf(st.token).exp as number;
      return fixedPrincipal(`ST$${st.token}`, st.privateKeyPem, Date.now() + 3600_000);
    },
  });
  const f = await failure(t, s);
  t.match(
    f.body.error_description,
    new RegExp(`HTTP 401: invalid_client: security token expired at ${new Date(expiredAt * 1000).toISOString().replace(/\./g, "\\.")}`),
  );
  const e = hopError(t, s);
  t.equal(e.status, 401);
  t.equal(e.upstreamError, "invalid_client");
  t.equal(e.code, "expired", "expired, though the domain calls it invalid_client");
});

t.test("wrong grant type (IdentityDomainTokenSource built directly)", async (t) => {
  const s = await stack(t, {});
  const principal = apiKeyPrincipal(s.emu);
  const good = new IdentityDomainTokenSource(principal, {
    domainUrl: s.emu.oci.domainUrl,
    scope: "urn:opc:idm:__myscopes__",
    timeoutMs: 5000,
    retry: DEFAULT_RETRY,
  });
  const tok = await good.token();
  t.equal((await verifyDomainJwt(s.emu, tok.value)).sub_type, "user", "the same principal succeeds with the right grant");

  const src = new IdentityDomainTokenSource(principal, {
    domainUrl: s.emu.oci.domainUrl,
    scope: "urn:opc:idm:__myscopes__",
    timeoutMs: 5000,
    retry: DEFAULT_RETRY,
    grantType: "urn:ietf:params:oauth:grant-type:jwt-bearer",
  });
  const before = (await calls(s.emu))[TOKEN_ENDPOINT]!;
  const e = (await src.token().then(
    () => undefined,
    (x: unknown) => x,
  )) as HopError;
  t.type(e, HopError);
  t.equal(e.hop, "identity domain");
  t.equal(e.status, 400);
  t.equal(e.upstreamError, "unsupported_grant_type");
  t.equal(e.code, "grant_not_allowed");
  t.equal(e.retryable, false);
  t.match(
    e.message,
    /^identity domain: HTTP 400: unsupported_grant_type: grant_type must be urn:ietf:params:oauth:grant-type:token-exchange, got "urn:ietf:params:oauth:grant-type:jwt-bearer"/,
  );
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT]! - before, 1, "a 400 is not retried");
});

t.test("non-JSON error answer (HTML from a gateway), retried, then reported with status and snippet", async (t) => {
  const s = await stack(t, {
    principal: apiKeyPrincipal,
    configure: (emu) => {
      emu.server.addFault({
        endpoint: TOKEN_ENDPOINT,
        status: 502,
        body: "<html><body><h1>502 Bad Gateway</h1>\n<p>upstream   gone</p></body></html>",
        count: 3,
      });
      return {};
    },
  });
  const f = await failure(t, s);
  t.match(f.body.error_description, /HTTP 502: non-JSON body: an HTML page \(73 bytes\), 3 attempts$/);
  t.notMatch(f.body.error_description, /Bad Gateway/, "the page is described, not quoted");
  const e = hopError(t, s);
  t.equal(e.status, 502);
  t.equal(e.upstreamError, undefined);
  t.equal(e.code, "refused");
  t.equal(e.retryable, true);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 3, "three attempts (upstream.attempts) for a 5xx");
});

t.test("HTTP 200 that is not JSON", async (t) => {
  const s = await stack(t, {
    principal: apiKeyPrincipal,
    overrides: { "upstream.attempts": 1 },
    configure: (emu) => {
      emu.server.addFault({ endpoint: TOKEN_ENDPOINT, status: 200, body: "Service temporarily unavailable" });
      return {};
    },
  });
  const f = await failure(t, s);
  t.match(f.body.error_description, /HTTP 200 with a body that is not JSON \(31 bytes\)$/);
  t.notMatch(f.body.error_description, /temporarily/, "the body is described, not quoted");
});

t.test("OAuth error injected with a fault: status, error and description", async (t) => {
  const s = await stack(t, {
    principal: apiKeyPrincipal,
    configure: (emu) => {
      emu.server.addFault({
        endpoint: TOKEN_ENDPOINT,
        status: 400,
        body: JSON.stringify({ error: "invalid_grant", error_description: "The principal is not allowed to use this domain." }),
      });
      return {};
    },
  });
  const f = await failure(t, s);
  t.match(
    f.body.error_description,
    /the identity domain hop failed: HTTP 400: invalid_grant: The principal is not allowed to use this domain\./,
  );
  const e = hopError(t, s);
  t.equal(e.status, 400);
  t.equal(e.upstreamError, "invalid_grant");
  t.equal(e.code, "grant_not_allowed");
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1);

  // Cleared: after the backoff the daemon recovers by itself.
  s.emu.server.clearFaults();
  const until = Date.now() + 5000;
  let r = await s.get(SUBJECT);
  while (r.status !== 200 && Date.now() < until) {
    await new Promise((res) => setTimeout(res, 200));
    r = await s.get(SUBJECT);
  }
  t.equal(r.status, 200, "recovers once the backoff has passed");
  t.equal(s.daemon.chain.subject.failure, undefined, "the error is cleared by the success");
});

/** The shared emulators, reset, and an identity-domain hop on them that makes one attempt per call. */
async function oneAttemptDomain(): Promise<{ emu: Emulators; src: IdentityDomainTokenSource }> {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  const src = new IdentityDomainTokenSource(apiKeyPrincipal(shared), {
    domainUrl: shared.oci.domainUrl,
    scope: "urn:opc:idm:__myscopes__",
    timeoutMs: 5000,
    retry: { ...DEFAULT_RETRY, attempts: 1 },
  });
  return { emu: shared, src };
}

t.test("each refusal of the identity domain gets its code", async (t) => {
  const { emu, src } = await oneAttemptDomain();
  const oauth = (error: string, error_description: string) => JSON.stringify({ error, error_description });
  const cases: [string, number, string, HopError["code"]][] = [
    ["no token endpoint at this URL", 404, "<html>Not Found</html>", "not_found"],
    ["a 404 in OAuth words", 404, oauth("invalid_request", "signature"), "not_found"],
    ["expired security token", 401, oauth("invalid_client", "security token expired at 2024-01-01T00:00:00.000Z"), "expired"],
    ["Expired, capitalised", 400, oauth("invalid_request", "Session Expired"), "expired"],
    [
      "signature does not verify",
      401,
      oauth("invalid_client", "signature does not verify with the key named by keyId"),
      "signature_rejected",
    ],
    ["body digest mismatch", 401, oauth("invalid_request", "body digest mismatch"), "signature_rejected"],
    ["client authentication failed", 401, oauth("invalid_client", "Client authentication failed."), "signature_rejected"],
    ["OCI-style signature error", 401, JSON.stringify({ code: "NotAuthenticated", message: "Invalid Signature" }), "signature_rejected"],
    ["unauthorized_client", 400, oauth("unauthorized_client", "The client is not authorized for this grant."), "grant_not_allowed"],
    ["invalid_grant", 400, oauth("invalid_grant", "The principal is not allowed to use this domain."), "grant_not_allowed"],
    ["unsupported_grant_type", 400, oauth("unsupported_grant_type", "grant_type is not supported"), "grant_not_allowed"],
    ["not authorized, in words", 403, oauth("access_denied", "Principal is not authorized to exchange tokens"), "grant_not_allowed"],
    ["not allowed, in words", 403, oauth("access_denied", "Token exchange is not allowed for this app"), "grant_not_allowed"],
    ["any other refusal", 400, oauth("invalid_request", "scope is required"), "refused"],
    ["server error", 500, oauth("server_error", "try later"), "refused"],
    ["throttled", 429, oauth("slow_down", "too many requests"), "refused"],
  ];
  for (const [what, status, body, code] of cases) {
    emu.server.addFault({ endpoint: TOKEN_ENDPOINT, status, body, count: 1 });
    const e = await src.token().then(
      () => undefined,
      (x: unknown) => x,
    );
    t.type(e, HopError, what);
    t.equal((e as HopError).code, code, `${what} (HTTP ${status}): ${code}`);
    t.equal((e as HopError).status, status, `${what}: the status is kept`);
  }
  emu.server.clearFaults();
});

t.test("expires_in as a string of digits is taken as the number; any other string is a bad answer", async (t) => {
  const { emu, src } = await oneAttemptDomain();
  // A real domain JWT (exp an hour away), answered again with expires_in as a string.
  const real = await src.token();
  const answer = (expiresIn: string) => JSON.stringify({ access_token: real.value, token_type: "Bearer", expires_in: expiresIn });

  // 100 s short of exp: within the tolerated skew, and visibly what sets the expiry.
  emu.server.addFault({ endpoint: TOKEN_ENDPOINT, status: 200, body: answer("3500"), count: 1 });
  const before = Date.now();
  const tok = await src.token();
  const after = Date.now();
  t.equal(tok.value, real.value, "accepted");
  t.ok(
    tok.expiresAt >= before + 3_500_000 && tok.expiresAt <= after + 3_500_000,
    `expires ${tok.expiresAt - before} ms after the request: expires_in "3500" read as 3500 s`,
  );

  for (const v of ["3600s", "an hour", "", "0", "-5", " 3600", "90000"]) {
    emu.server.addFault({ endpoint: TOKEN_ENDPOINT, status: 200, body: answer(v), count: 1 });
    const e = await src.token().then(
      () => undefined,
      (x: unknown) => x as HopError,
    );
    t.type(e, HopError, `expires_in ${JSON.stringify(v)} is refused`);
    t.equal(e?.code, "bad_answer");
    t.equal(e?.hop, "identity domain");
    t.match(
      e?.message,
      `identity domain: expires_in is ${JSON.stringify(v)}, not a lifetime between 1 s and 86400 s`,
      "names the hop and the value",
    );
  }
  emu.server.clearFaults();
});

t.test("429 with Retry-After: the daemon's Retry-After is at least what the domain asked", async (t) => {
  const s = await stack(t, {
    principal: apiKeyPrincipal,
    configure: (emu) => {
      emu.server.addFault({
        endpoint: TOKEN_ENDPOINT,
        status: 429,
        body: '{"error":"slow_down","error_description":"too many requests"}',
        headers: { "retry-after": "17" },
      });
      return {};
    },
  });
  const f = await failure(t, s);
  t.match(f.body.error_description, /HTTP 429: slow_down: too many requests/);
  t.ok(f.retryAfter >= 16 && f.retryAfter <= 17, `Retry-After ${f.retryAfter}`);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1, "not retried inside the request when the wait is longer than the retry policy allows");
  const again = await failure(t, s);
  t.ok(again.retryAfter >= 15, `still asked to wait (${again.retryAfter} s)`);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 1, "the daemon honours the wait");
});

t.test("OCI principal failure: the federation refuses", async (t) => {
  const s = await stack(t, {
    overrides: { "upstream.attempts": 1 },
    configure: (emu) => {
      emu.server.addFault({
        endpoint: "oci.federation",
        status: 401,
        body: JSON.stringify({
          code: "NotAuthenticated",
          message: "The required information to complete authentication was not provided.",
        }),
      });
      return {};
    },
  });
  const f = await failure(t, s, "OCI principal");
  t.match(
    f.body.error_description,
    /instance principal: .*status: 401 \(HTTP 401: NotAuthenticated: The required information to complete authentication was not provided\.\)/,
  );
  const e = hopError(t, s);
  t.equal(e.hop, "OCI principal");
  t.equal(e.status, 401);
  t.equal(e.upstreamError, "NotAuthenticated");
  t.equal(e.retryable, false);
  t.equal((await calls(s.emu))[TOKEN_ENDPOINT], 0, "the identity domain was not called");
  t.same(s.leaks(), []);
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

t.test("OCI principal failure: no metadata service", async (t) => {
  const port = await closedPort();
  const s = await stack(t, { overrides: { "oci.metadataUrl": `http://127.0.0.1:${port}/opc/v2/` } });
  const started = Date.now();
  const f = await failure(t, s, "OCI principal");
  t.ok(Date.now() - started < 2000, "fails fast");
  t.match(f.body.error_description, `metadata service at http://127.0.0.1:${port}/opc/v2/ did not answer`);
  t.match(f.body.error_description, /ECONNREFUSED/);
});

t.test("a session the identity domain calls expired is replaced once, not kept until its own renewal", async (t) => {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  const emu = shared;
  const expired = emu.oci.mintSessionToken({ lifetimeSeconds: 1 });
  await new Promise((r) => setTimeout(r, 1500));
  const fresh = emu.oci.mintSessionToken();
  let n = 0;
  // Our cache believes the first session is good for an hour; the domain knows better.
  const source: TokenSource<SigningIdentity> = {
    async token() {
      const st = n++ === 0 ? expired : fresh;
      return {
        value: `ST$${st.token}`,
        keyId: `ST$${st.token}`,
        privateKey: crypto.createPrivateKey(st.privateKeyPem),
        expiresAt: Date.now() + 3600_000,
        obtainedAt: Date.now(),
      };
    },
  };
  const { CachingTokenSource, DEFAULT_BACKOFF } = await import("../../src/token/cache.js");
  const principal = new CachingTokenSource(source, "OCI principal", { renewBeforeMs: 60_000, minRemainingMs: 10_000, ...DEFAULT_BACKOFF });
  t.teardown(() => principal.close());
  const domain = new IdentityDomainTokenSource(principal, {
    domainUrl: emu.oci.domainUrl,
    scope: "urn:opc:idm:__myscopes__",
    timeoutMs: 5000,
    retry: DEFAULT_RETRY,
  });
  const tok = await domain.token();
  const claims = await verifyDomainJwt(emu, tok.value);
  t.equal(claims.sub_type, "user", "a verified domain JWT after replacing the session");
  t.equal(n, 2, "the principal was asked again exactly once");
  t.equal((await calls(emu))[TOKEN_ENDPOINT], 2, "one refused and one accepted exchange");
});
