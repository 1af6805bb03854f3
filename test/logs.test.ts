import crypto from "node:crypto";
import { Writable } from "node:stream";
import t from "tap";
import type { Emulators } from "../src/emulator/index.js";
import { createLogger, scrub } from "./../src/log.js";
import { HopError } from "../src/upstream/hop-error.js";
import { calls, resetEmulators, SECRET_PATTERNS, type Stack, type StackOptions, startStack, startTestEmulators } from "./helpers/stack.js";

/**
 * No token, key or signature reaches a log line, at trace level, on success and
 * on every kind of failure; and the scrubber that guarantees it, on its own.
 */

// Material shaped like the real thing.
const b64u = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
const JWT = `${b64u({ alg: "RS256", kid: "SIGNING_KEY" })}.${b64u({ sub: "ocid1.instance.oc1..x", exp: 2000000000, jwk: "{}" })}.${crypto.randomBytes(256).toString("base64url")}`;
const ST = `ST$${JWT}`;
const YA29 = `ya29.c.${crypto.randomBytes(60).toString("base64url")}`;
const PEM = crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs8" }).toString();
const PEM_PKCS1 = crypto.generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ format: "pem", type: "pkcs1" }).toString();
const SIG = crypto.randomBytes(256).toString("base64");
const AUTH_SIG = `Signature version="1",headers="date (request-target) host content-length content-type x-content-sha256",keyId="${ST}",algorithm="rsa-sha256",signature="${SIG}"`;

/** Distinctive fragments of each secret: none may appear in any output. */
const FRAGMENTS = [
  JWT.split(".")[1]!,
  JWT.split(".")[2]!.slice(0, 40),
  YA29.slice(8, 48),
  SIG.slice(0, 40),
  PEM.split("\n")[2]!,
  PEM_PKCS1.split("\n")[2]!,
];

function leaked(s: string): string[] {
  return [...FRAGMENTS.filter((f) => s.includes(f)), ...SECRET_PATTERNS.filter((p) => p.test(s)).map(String)];
}

t.test("scrub(): free text", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["a JWT", `got ${JWT} back`, /^got \[jwt\] back$/],
    ["an ST$ key id", `keyId ${ST} refused`, /^keyId ST\$\[redacted\] refused$/],
    ["a PKCS#8 PEM private key", `key:\n${PEM}\nend`, /^key:\n\[private key\]\n\nend$/],
    ["a PKCS#1 PEM private key", `key: ${PEM_PKCS1}`, /^key: \[private key\]/],
    ["a truncated PEM private key", `key: ${PEM.slice(0, 300)}`, /^key: \[private key\]$/],
    ["an Authorization Signature header", `authorization: ${AUTH_SIG}`, /^authorization: Signature \[redacted\]/],
    ["an Authorization Bearer header", `Authorization: Bearer ${YA29}`, /^Authorization: Bearer \[redacted\]$/],
    ["a Bearer JWT", `authorization=Bearer ${JWT}`, /^authorization=Bearer \[redacted\]$/],
    ["a ya29 token", `token ${YA29}.`, /^token \[google token\]$/],
    ["a token in a query string", `GET /x?audience=a&access_token=abc123def456&y=1`, /access_token=\[redacted\]&y=1$/],
  ];
  for (const [name, input, want] of cases) {
    const out = scrub(input);
    t.match(out, want, name);
    t.same(leaked(out), [], `${name}: nothing left`);
  }
  const plain = "identity domain: HTTP 401: invalid_client: signature does not verify with the key named by keyId";
  t.equal(scrub(plain), plain, "ordinary messages are left alone");
  t.equal(
    scrub("ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..bbbb/12:34:56"),
    "ocid1.tenancy.oc1..aaaa/ocid1.user.oc1..bbbb/12:34:56",
    "API key ids (not secret) are kept",
  );
});

interface Captured {
  lines: Record<string, unknown>[];
  text(): string;
}

function capture(level = "trace"): { log: ReturnType<typeof createLogger>; out: Captured } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  const log = createLogger(level, sink);
  return {
    log,
    out: {
      text: () => chunks.join(""),
      get lines() {
        return chunks
          .join("")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      },
    },
  };
}

t.test("the logger: messages, nested objects, err objects, format arguments, child bindings", async (t) => {
  const { log, out } = capture();
  log.info(`message with ${JWT} and ${YA29}`);
  log.info({ note: `nested ${ST}` }, `header ${AUTH_SIG}`);
  log.debug({ a: { b: { c: { detail: `deep ${YA29}` } } } }, "nested");
  log.debug({ a: { b: { c: { d: { e: { f: { g: `deeper ${JWT}` } } } } } } }, "very nested");
  log.debug({ list: [`Bearer ${YA29}`, { pem: PEM }] }, "arrays");
  log.trace(
    { token: "plain-secret-by-name", keyId: ST, headers: { authorization: AUTH_SIG }, rpst: JWT, privateKey: PEM },
    "by field name",
  );
  log.warn(
    {
      err: new HopError("STS", `HTTP 400: invalid_grant: the token ${JWT} is bad`, {
        code: "refused",
        status: 400,
        upstreamError: "invalid_grant",
      }),
    },
    "renewal failed",
  );
  log.error(
    {
      err: Object.assign(new Error(`request failed: Authorization: Bearer ${YA29}`), {
        config: { headers: { Authorization: `Bearer ${YA29}` } },
      }),
    },
    "gaxios-like error",
  );
  log.error(new Error(`bare error ${ST}`));
  log.info("interpolated %s and %j and %o", JWT, { t: YA29 }, { k: PEM });
  log.child({ subject: JWT }).info("child with a secret in its bindings");
  log
    .child({ reqId: 1 })
    .child({ auth: `Bearer ${YA29}` })
    .info("grandchild");
  log.info({ e: { message: `plain object error ${ST}` } }, "object with a message");

  const text = out.text();
  t.same(leaked(text), [], "no secret in any line");
  t.notMatch(text, "plain-secret-by-name", "fields named like secrets are redacted whatever their value");
  const lines = out.lines;
  t.equal(lines.length, 13, "every call logged a line");
  const warn = lines.find((l) => l.msg === "renewal failed")!;
  t.match(
    warn.err,
    {
      type: "HopError",
      hop: "STS",
      status: 400,
      upstreamError: "invalid_grant",
      message: /^STS: HTTP 400: invalid_grant: the token \[jwt\] is bad$/,
    },
    "errors keep hop, status and message, scrubbed",
  );
  t.notOk((warn.err as Record<string, unknown>).stack, "no stack");
  t.match(lines[0]!.msg, "message with [jwt] and [google token]");
  t.match(
    lines.find((l) => l.msg === "nested")!,
    { a: { b: { c: { detail: "deep [google token]" } } } },
    "nested objects scrubbed, structure kept",
  );
  t.match(
    lines.find((l) => l.msg === "bare error ST$[redacted]"),
    { err: { type: "Error", message: "bare error ST$[redacted]" } },
    "log.error(err): message scrubbed, error kept",
  );
  t.match(
    lines.find((l) => l.msg === "grandchild"),
    { reqId: 1, auth: "Bearer [redacted]" },
    "child bindings scrubbed at every level",
  );
});

// ---- the daemon at trace level, through success and failure -----------------------------

// One set of emulators for the daemons below (each test has its own daemon).
let shared: Emulators | undefined;
t.teardown(() => shared?.close());

async function stack(t: Tap, o: StackOptions = {}): Promise<Stack> {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  const s = await startStack({ routeConsole: true, emu: shared, ...o });
  t.teardown(() => s.close());
  return s;
}
type Tap = Parameters<Parameters<typeof t.test>[1]>[0];

const ACCESS = "/computeMetadata/v1/instance/service-accounts/default/token";
const IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://example.com&format=full";

t.test("daemon logs at trace level: success paths", async (t) => {
  const s = await stack(t);
  for (const p of [
    "/oci2gcp/v1/subject-token",
    "/oci2gcp/v1/subject-token?format=text",
    "/oci2gcp/v1/subject-token?format=executable",
    ACCESS,
    `${ACCESS}?scopes=https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/userinfo.email`,
    IDENTITY,
    "/oci2gcp/v1/status",
    "/readyz",
  ]) {
    const r = await s.get(p);
    t.equal(r.status, 200, `${p}: 200`);
  }
  // Tokens the test saw are matched against the logs too (by the helper).
  t.ok(s.secrets.size >= 3, `the test knows ${s.secrets.size} tokens to look for`);
  t.ok(
    s.logs().some((l) => l.level === 10 || l.level === 20),
    "trace/debug lines were written",
  );
  t.ok(
    s.logs().some((l) => l.msg === "token renewed"),
    "renewals were logged",
  );
  t.same(s.leaks(), [], "no secret in the logs");
});

t.test("daemon logs at trace level: bad requests", async (t) => {
  const s = await stack(t);
  const r = await s.get("/oci2gcp/v1/subject-token");
  t.equal(r.status, 200);
  const bad: [string, Record<string, string>, number][] = [
    ["/oci2gcp/v1/subject-token", { "metadata-flavor": "" }, 403],
    ["/oci2gcp/v1/subject-token?format=xml", {}, 400],
    [`/oci2gcp/v1/subject-token?access_token=${JWT}`, { authorization: `Bearer ${YA29}` }, 200],
    [ACCESS, { "x-forwarded-for": "10.0.0.1", authorization: AUTH_SIG }, 403],
    [`/computeMetadata/v1/instance/service-accounts/default/identity`, {}, 400],
    [`/computeMetadata/v1/instance/service-accounts/nobody@x.iam.gserviceaccount.com/token?x=${YA29}`, {}, 404],
    [`/computeMetadata/v1/nothing/${JWT}`, {}, 404],
    [`${ACCESS}?scopes=${"s,".repeat(40)}`, {}, 400],
    [`/x?${"a".repeat(9000)}`, {}, 414],
  ];
  for (const [p, h, status] of bad) {
    const res = await s.get(p, h);
    t.equal(res.status, status, `${p.slice(0, 60)}: ${status}`);
  }
  t.same(s.leaks(), [], "no secret in the logs");
  t.same(leaked(s.logText()), [], "not even the ones sent by the clients");
});

const FAULTS: { hop: string; endpoint: string; path: string; status: number; body: string }[] = [
  {
    hop: "OCI principal",
    endpoint: "oci.metadata",
    path: "/oci2gcp/v1/subject-token",
    status: 500,
    body: `{"code":"InternalError","message":"echo ${JWT}"}`,
  },
  {
    hop: "OCI principal",
    endpoint: "oci.federation",
    path: "/oci2gcp/v1/subject-token",
    status: 401,
    body: `{"code":"NotAuthenticated","message":"bad ${AUTH_SIG}"}`,
  },
  {
    hop: "identity domain",
    endpoint: "oci.identityDomain.token",
    path: "/oci2gcp/v1/subject-token",
    status: 400,
    body: `{"error":"invalid_request","error_description":"the assertion ${ST} is invalid"}`,
  },
  {
    hop: "STS",
    endpoint: "google.sts.token",
    path: ACCESS,
    status: 400,
    body: `{"error":"invalid_grant","error_description":"subject_token ${JWT} rejected"}`,
  },
  {
    hop: "impersonation",
    endpoint: "google.iam.generateAccessToken",
    path: ACCESS,
    status: 403,
    body: `{"error":{"code":403,"message":"Permission denied for ${YA29}","status":"PERMISSION_DENIED"}}`,
  },
  { hop: "impersonation", endpoint: "google.iam.generateIdToken", path: IDENTITY, status: 500, body: `<html>${PEM}</html>` },
];

for (const f of FAULTS) {
  t.test(`daemon logs at trace level: fault at ${f.endpoint} (echoing secrets)`, async (t) => {
    const s = await stack(t, {
      overrides: { "upstream.attempts": 1 },
      configure: (emu) => {
        emu.server.addFault({ endpoint: f.endpoint, status: f.status, body: f.body });
        return {};
      },
    });
    const r = await s.get(f.path);
    t.equal(r.status, 503, `503: ${r.text.slice(0, 300)}`);
    t.match(r.text, f.hop, "the answer names the hop");
    t.ok((await calls(s.emu))[f.endpoint]! >= 1, "the fault was hit");
    t.ok(
      s.logs().some((l) => l.level === 40 && l.msg === "token renewal failed"),
      "the failure was logged",
    );
    t.same(s.leaks(), [], "no secret in the logs");
    t.same(leaked(s.logText()), [], "not even the ones the upstream echoed");
  });
}
