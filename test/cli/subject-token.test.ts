import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { IdentityPoolClient, PluggableAuthClient } from "google-auth-library";
import t, { type Test } from "tap";
import { calls, claimsOf, type Stack, startStack, tempDir, verifyDomainJwt } from "../helpers/stack.js";

/**
 * `oci2gcp subject-token`, the command of an executable-sourced Google
 * credential, run as a real child process through the launcher, and the
 * daemon's subject-token URL used by google-auth-library's own clients up to
 * and including the STS exchange (at the Google emulator).
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const LAUNCHER = path.join(ROOT, "bin/oci2gcp.js");
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";

if (!fs.existsSync(path.join(ROOT, "dist/cli/main.js"))) {
  t.fail("dist/ is missing: run `npx tsc -p .` before this test (the launcher loads dist/cli/main.js)");
  process.exit(1);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the launcher with a clean environment (no OCI2GCP_* or GOOGLE_* from the caller) plus `env`. */
function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(OCI2GCP_|GOOGLE_)/.test(k))) as Record<string, string>;
  return new Promise((resolve) => {
    execFile(process.execPath, [LAUNCHER, ...args], { env: { ...base, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? err.code : 0;
      resolve({ code: typeof code === "number" ? code : null, stdout, stderr });
    });
  });
}

async function closedPortUrl(): Promise<string> {
  const srv = http.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/** Checks a successful run: one JSON object of exactly the executable-response keys, nothing on stderr, exit 0. */
async function success(t: Test, s: Stack, r: Run): Promise<{ id_token: string; expiration_time: number }> {
  t.equal(r.stderr, "", "stderr is empty");
  t.equal(r.code, 0, "exit 0");
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    t.fail(`stdout is not one JSON object: ${JSON.stringify(r.stdout)}`);
    return { id_token: "", expiration_time: 0 };
  }
  t.equal(r.stdout, JSON.stringify(o), "stdout is exactly one JSON object, nothing around it");
  t.same(Object.keys(o).sort(), ["expiration_time", "id_token", "success", "token_type", "version"]);
  t.equal(o.version, 1);
  t.equal(o.success, true);
  t.equal(o.token_type, JWT_TYPE);
  const claims = await verifyDomainJwt(s.emu, o.id_token as string);
  t.equal(o.expiration_time, claims.exp, "expiration_time is the JWT's exp");
  t.ok((o.expiration_time as number) > Date.now() / 1000 + 3000, "well in the future");
  return o as { id_token: string; expiration_time: number };
}

function failureOf(t: Test, r: Run, code: string | RegExp): { code: string; message: string } {
  t.equal(r.stderr, "", "stderr is empty");
  t.not(r.code, 0, `non-zero exit (${r.code})`);
  const o = JSON.parse(r.stdout) as Record<string, unknown>;
  t.equal(r.stdout, JSON.stringify(o), "stdout is exactly one JSON object");
  t.same(Object.keys(o).sort(), ["code", "message", "success", "version"]);
  t.equal(o.version, 1);
  t.equal(o.success, false);
  t.match(o.code, code);
  t.type(o.message, "string");
  return o as { code: string; message: string };
}

// One daemon and emulators for the whole file.
let stack: Stack | undefined;
t.teardown(() => stack?.close());
async function shared(): Promise<Stack> {
  stack ??= await startStack();
  return stack;
}

t.test("the subject-token command", async (t) => {
  const s = await shared();

  await t.test("--url: one JSON object, stderr empty, exit 0", async (t) => {
    const o = await success(t, s, await run(["subject-token", "--url", s.url]));
    t.equal((await verifyDomainJwt(s.emu, o.id_token)).sub_type, "instance");
  });

  await t.test("$OCI2GCP_URL, with a trailing slash", async (t) => {
    await success(t, s, await run(["subject-token"], { OCI2GCP_URL: `${s.url}/` }));
  });

  await t.test("--url wins over $OCI2GCP_URL", async (t) => {
    await success(t, s, await run(["subject-token", "--url", s.url], { OCI2GCP_URL: await closedPortUrl() }));
  });

  await t.test("daemon down: success false with code and message, non-zero exit, stderr empty", async (t) => {
    const url = await closedPortUrl();
    const f = failureOf(t, await run(["subject-token", "--url", url, "--timeout-ms", "3000"]), "DAEMON_UNREACHABLE");
    t.match(f.message, url);
    t.match(f.message, /ECONNREFUSED/);
    t.match(f.message, /oci2gcp serve/);
  });

  await t.test("not a daemon (HTTP answers something else)", async (t) => {
    const srv = http.createServer((_req, res) => res.writeHead(404, { "content-type": "text/html" }).end("<h1>nope</h1>"));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
    const f = failureOf(
      t,
      await run(["subject-token", "--url", `http://127.0.0.1:${(srv.address() as AddressInfo).port}`]),
      "BAD_DAEMON_RESPONSE",
    );
    t.match(f.message, /HTTP 404/);
  });

  await t.test("an answer that is not an executable response is not repeated with its token", async (t) => {
    const jwt = `eyJhbGciOiJSUzI1NiJ9.${Buffer.from('{"sub":"x","exp":9999999999}').toString("base64url")}.c2lnbmF0dXJlc2lnbmF0dXJl`;
    const srv = http.createServer((_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ access_token: jwt, expires_in: 3600 })),
    );
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
    const r = await run(["subject-token", "--url", `http://127.0.0.1:${(srv.address() as AddressInfo).port}`]);
    const f = failureOf(t, r, "BAD_DAEMON_RESPONSE");
    t.match(f.message, /HTTP 200 without an executable response/);
    t.notMatch(r.stdout, jwt.split(".")[1]!, "the token is not in the message");
  });

  await t.test("bad usage: still one JSON object on stdout and nothing on stderr", async (t) => {
    const f = failureOf(t, await run(["subject-token", "--no-such-flag"]), "USAGE");
    t.match(f.message, /no-such-flag/);
  });

  await t.test("GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE is written 0600 and reused", async (t) => {
    const d = tempDir();
    t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
    const out = path.join(d, "response.json");
    const first = await success(t, s, await run(["subject-token", "--url", s.url], { GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE: out }));
    t.equal(fs.statSync(out).mode & 0o777, 0o600, "mode 0600");
    const saved = JSON.parse(fs.readFileSync(out, "utf8")) as Record<string, unknown>;
    t.equal(saved.id_token, first.id_token, "the file holds the response");
    t.equal(saved.success, true);
    t.same(fs.readdirSync(d), ["response.json"], "no temporary file left behind");

    // The daemon is not asked again while the saved response is valid: point at nothing.
    const again = await run(["subject-token", "--url", await closedPortUrl()], { GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE: out });
    const o = await success(t, s, again);
    t.equal(o.id_token, first.id_token, "the saved response is reused");

    // An expired saved response is not used.
    fs.writeFileSync(out, JSON.stringify({ ...saved, expiration_time: Math.floor(Date.now() / 1000) - 10 }));
    failureOf(
      t,
      await run(["subject-token", "--url", await closedPortUrl()], { GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE: out }),
      "DAEMON_UNREACHABLE",
    );
    // A saved failure is not used either, and a success replaces it with mode 0600.
    fs.writeFileSync(out, JSON.stringify({ version: 1, success: false, code: "X", message: "y" }), { mode: 0o644 });
    fs.chmodSync(out, 0o644);
    await success(t, s, await run(["subject-token", "--url", s.url], { GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE: out }));
    t.equal(fs.statSync(out).mode & 0o777, 0o600, "rewritten with mode 0600");
  });

  await t.test("daemon up but the chain fails: the daemon's explanation, non-zero exit", async (t) => {
    // A second daemon on the same emulators, signing as an API-key user; its first exchange is refused.
    const s2 = await startStack({
      emu: s.emu,
      overrides: { "upstream.attempts": 1 },
      principal: (emu) => {
        const u = emu.oci.createApiKeyUser();
        const key = crypto.createPrivateKey(u.privateKeyPem);
        const keyId = `${u.tenancy}/${u.user}/${u.fingerprint}`;
        return { token: async () => ({ value: keyId, keyId, privateKey: key, expiresAt: Date.now() + 3600_000, obtainedAt: Date.now() }) };
      },
      configure: (emu) => {
        emu.server.addFault({
          endpoint: "oci.identityDomain.token",
          status: 401,
          body: '{"error":"invalid_client","error_description":"nope"}',
          count: 1,
        });
        return {};
      },
    });
    t.teardown(() => s2.close());
    const f = failureOf(t, await run(["subject-token", "--url", s2.url]), "UPSTREAM_UNAVAILABLE");
    t.match(f.message, /the identity domain hop failed: HTTP 401: invalid_client: nope/);
  });
});

t.test("google-auth-library: PluggableAuthClient runs the launcher", async (t) => {
  const s = await shared();
  const saved = process.env.GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES;
  process.env.GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES = "1";
  t.teardown(() => {
    if (saved === undefined) delete process.env.GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES;
    else process.env.GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES = saved;
  });
  t.notMatch(process.execPath, / /, "node's path has no space (clients split the command on spaces)");
  t.notMatch(LAUNCHER, / /, "the launcher's path has no space");
  const d = tempDir();
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));

  for (const outputFile of [undefined, path.join(d, "out.json")]) {
    await t.test(outputFile ? "with output_file" : "without output_file", async (t) => {
      const client = new PluggableAuthClient({
        type: "external_account",
        audience: s.emu.google.audience,
        subject_token_type: JWT_TYPE,
        token_url: s.emu.google.stsUrl,
        credential_source: {
          executable: {
            command: `${process.execPath} ${LAUNCHER} subject-token --url ${s.url}`,
            timeout_millis: 30_000,
            ...(outputFile ? { output_file: outputFile } : {}),
          },
        },
      });
      const subject = await client.retrieveSubjectToken();
      t.equal((await verifyDomainJwt(s.emu, subject)).sub_type, "instance", "the subject token is the domain JWT");
      if (outputFile) t.equal(fs.statSync(outputFile).mode & 0o777, 0o600, "output_file written with mode 0600");

      const before = (await calls(s.emu))["google.sts.token"]!;
      const at = await client.getAccessToken();
      t.type(at.token, "string");
      t.equal((await calls(s.emu))["google.sts.token"]! - before, 1, "one STS call at the emulator");
      const info = s.emu.google.tokenInfo(at.token!);
      t.equal(info?.kind, "federated", "a federated token for the OCI principal");
      t.match(info?.subject, claimsOf(subject).sub as string);
    });
  }
});

t.test("google-auth-library: IdentityPoolClient with the subject-token URL", async (t) => {
  const s = await shared();
  const formats = [
    { name: "json", url: `${s.url}/oci2gcp/v1/subject-token`, format: { type: "json" as const, subject_token_field_name: "access_token" } },
    { name: "text", url: `${s.url}/oci2gcp/v1/subject-token?format=text`, format: { type: "text" as const } },
  ];
  for (const f of formats) {
    await t.test(`format ${f.name}`, async (t) => {
      const client = new IdentityPoolClient({
        type: "external_account",
        audience: s.emu.google.audience,
        subject_token_type: JWT_TYPE,
        token_url: s.emu.google.stsUrl,
        credential_source: { url: f.url, headers: { "Metadata-Flavor": "Google" }, format: f.format },
      });
      const subject = await client.retrieveSubjectToken();
      const claims = await verifyDomainJwt(s.emu, subject);
      t.equal(claims.sub_type, "instance");
      const before = (await calls(s.emu))["google.sts.token"]!;
      const at = await client.getAccessToken();
      t.type(at.token, "string");
      t.equal((await calls(s.emu))["google.sts.token"]! - before, 1, "one STS call at the emulator");
      t.equal(s.emu.google.tokenInfo(at.token!)?.kind, "federated");
    });
  }

  await t.test("without Metadata-Flavor the daemon refuses, and the library reports it", async (t) => {
    const client = new IdentityPoolClient({
      type: "external_account",
      audience: s.emu.google.audience,
      subject_token_type: JWT_TYPE,
      token_url: s.emu.google.stsUrl,
      credential_source: { url: `${s.url}/oci2gcp/v1/subject-token`, format: { type: "json", subject_token_field_name: "access_token" } },
    });
    await t.rejects(client.retrieveSubjectToken(), /403|Metadata-Flavor/);
  });
});
