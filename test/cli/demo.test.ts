import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { distIsFresh, ROOT, run, tempDir, waitFor } from "../helpers/clients.js";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT } from "../helpers/stack.js";

// `oci2gcp demo --port 0 --write-env FILE` as a user runs it: the launcher, dist/,
// a real port, the env file, the credential files, and a clean SIGTERM.
const LAUNCHER = path.join(ROOT, "bin/oci2gcp.js");
const JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt";
const VARS = [
  "GCE_METADATA_HOST",
  "GCE_METADATA_IP",
  "GCE_METADATA_ROOT",
  "NO_PROXY",
  "GOOGLE_CLOUD_PROJECT",
  "OCI2GCP_SUBJECT_TOKEN_URL",
  "OCI2GCP_EMULATOR_URL",
  "OCI2GCP_GOOGLE_JWKS_URL",
  "OCI2GCP_CRED_CONFIG_URL",
  "OCI2GCP_CRED_CONFIG_EXECUTABLE",
  "OCI2GCP_CONFIG",
];

/** Reads `export K='v'` lines as a POSIX shell would (single quotes, '\'' escapes). */
function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^export ([A-Za-z_][A-Za-z0-9_]*)='((?:[^']|'\\'')*)'$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/'\\''/g, "'");
  }
  return out;
}

t.test("oci2gcp demo --port 0 --write-env FILE", async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  if (fresh.why) t.comment(fresh.why);
  const dir = tempDir("oci2gcp-demo-test-");
  const envFile = path.join(dir, "demo.env");
  const child = spawn(process.execPath, [LAUNCHER, "demo", "--port", "0", "--write-env", envFile, "--log-level", "warn"], {
    cwd: dir,
    env: { ...process.env, OCI2GCP_LOG_LEVEL: undefined },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += String(d)));
  child.stderr.on("data", (d) => (stderr += String(d)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  let exitedEarly = false;
  void exited.then(() => (exitedEarly = true));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const text = await waitFor(() => {
    if (exitedEarly) return "";
    try {
      const s = fs.readFileSync(envFile, "utf8");
      // The banner goes to stderr after the env file is written: wait for both.
      return s.endsWith("\n") && s.includes("OCI2GCP_CONFIG") && /gcloud auth print-access-token/.test(stderr) ? s : undefined;
    } catch {
      return undefined;
    }
  }, 60_000);
  if (!text) {
    t.fail(`no env file within 60 s (exited early: ${exitedEarly}); stderr: ${stderr.slice(-1500)}`);
    return;
  }
  const env = parseEnvFile(text);
  for (const k of VARS) t.ok(env[k], `${k} is set`);
  const hostPort = env.GCE_METADATA_HOST!;
  t.match(hostPort, /^127\.0\.0\.1:\d+$/, "host:port without scheme");
  t.not(hostPort, "127.0.0.1:0", "the port actually bound, not 0");
  t.equal(env.GCE_METADATA_IP, hostPort);
  t.equal(env.GCE_METADATA_ROOT, hostPort);
  t.ok(env.NO_PROXY!.split(",").includes("127.0.0.1"), "NO_PROXY has 127.0.0.1");
  t.equal(env.GOOGLE_CLOUD_PROJECT, DEMO_PROJECT_ID);
  t.equal(env.OCI2GCP_SUBJECT_TOKEN_URL, `http://${hostPort}/oci2gcp/v1/subject-token`);
  // The banner follows the env file: it may not have arrived yet.
  await waitFor(() => (/gcloud auth print-access-token/.test(stderr) ? true : undefined), 10_000);
  t.match(stderr, /gcloud auth print-access-token/, "the banner shows what to try");

  // curl -s -H 'Metadata-Flavor: Google' "$OCI2GCP_SUBJECT_TOKEN_URL"
  const st = await fetch(env.OCI2GCP_SUBJECT_TOKEN_URL!, { headers: { "Metadata-Flavor": "Google" } });
  t.equal(st.status, 200, "subject token: 200");
  t.equal(st.headers.get("content-type"), "application/json");
  const body = (await st.json()) as { access_token: string; token_type: string; issued_token_type: string; expires_in: number };
  t.equal(body.issued_token_type, JWT_TYPE);
  t.equal(body.token_type, "Bearer");
  t.ok(body.expires_in > 0);
  const claims = JSON.parse(Buffer.from(body.access_token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>;
  t.equal(claims.iss, "https://identity.oraclecloud.com/", "an identity-domain JWT");
  t.equal((await fetch(env.OCI2GCP_SUBJECT_TOKEN_URL!)).status, 403, "without Metadata-Flavor: 403");

  // The metadata token, checked at the emulator's tokeninfo in the demo's process.
  const tok = (await (
    await fetch(`http://${hostPort}/computeMetadata/v1/instance/service-accounts/default/token`, {
      headers: { "Metadata-Flavor": "Google" },
    })
  ).json()) as { access_token: string };
  const ti = (await (
    await fetch(`${env.OCI2GCP_EMULATOR_URL}/oauth2/v3/tokeninfo?access_token=${encodeURIComponent(tok.access_token)}`)
  ).json()) as Record<string, string>;
  t.ok(ti.scope?.includes("https://www.googleapis.com/auth/cloud-platform"), "tokeninfo knows the metadata token");
  t.equal(ti.aud, ti.azp);
  const jwks = (await (await fetch(env.OCI2GCP_GOOGLE_JWKS_URL!)).json()) as { keys: { kid: string; kty: string }[] };
  t.ok(jwks.keys.length > 0 && jwks.keys.every((k) => k.kty === "RSA" && k.kid), "the JWKS URL serves RSA keys with kids");

  // The URL-sourced credential file.
  const urlCred = JSON.parse(fs.readFileSync(env.OCI2GCP_CRED_CONFIG_URL!, "utf8")) as Record<string, any>;
  const common = (c: Record<string, any>, what: string) => {
    t.equal(c.type, "external_account", `${what}: external_account`);
    t.match(
      c.audience,
      /^\/\/iam\.googleapis\.com\/projects\/\d+\/locations\/global\/workloadIdentityPools\/[^/]+\/providers\/[^/]+$/,
      `${what}: provider audience`,
    );
    t.equal(c.subject_token_type, JWT_TYPE, `${what}: subject token type jwt`);
    t.equal(c.token_url, `${env.OCI2GCP_EMULATOR_URL}/v1/token`, `${what}: the emulated STS`);
    t.equal(
      c.service_account_impersonation_url,
      `${env.OCI2GCP_EMULATOR_URL}/v1/projects/-/serviceAccounts/${DEMO_SERVICE_ACCOUNT}:generateAccessToken`,
      `${what}: impersonation URL`,
    );
  };
  common(urlCred, "url source");
  t.strictSame(
    urlCred.credential_source,
    {
      url: env.OCI2GCP_SUBJECT_TOKEN_URL,
      headers: { "Metadata-Flavor": "Google" },
      format: { type: "json", subject_token_field_name: "access_token" },
    },
    "url source: the subject-token URL, Metadata-Flavor header, json format",
  );
  // What the client does with it: GET with only the configured headers.
  const viaCred = await fetch(urlCred.credential_source.url, { headers: urlCred.credential_source.headers });
  t.equal(viaCred.status, 200, "the configured request works");
  t.equal(
    ((await viaCred.json()) as Record<string, string>)[urlCred.credential_source.format.subject_token_field_name],
    body.access_token,
    "the field names the subject token",
  );

  // The executable-sourced credential file, and running it as Google's clients do.
  const exeCred = JSON.parse(fs.readFileSync(env.OCI2GCP_CRED_CONFIG_EXECUTABLE!, "utf8")) as Record<string, any>;
  common(exeCred, "executable source");
  const exe = exeCred.credential_source?.executable as { command: string; timeout_millis: number; output_file?: string };
  t.ok(exe && typeof exe.command === "string", "executable source");
  t.ok(exe.timeout_millis >= 5000 && exe.timeout_millis <= 120000, "timeout_millis within what clients accept");
  const argv = exe.command.split(" ");
  t.equal(argv[0], LAUNCHER, "the launcher of this installation");
  fs.accessSync(argv[0]!, fs.constants.X_OK);
  t.pass("the launcher is executable");
  const r = await run(argv[0]!, argv.slice(1), {
    env: {
      PATH: process.env.PATH,
      GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE: exeCred.audience,
      GOOGLE_EXTERNAL_ACCOUNT_TOKEN_TYPE: JWT_TYPE,
      GOOGLE_EXTERNAL_ACCOUNT_INTERACTIVE: "0",
      GOOGLE_EXTERNAL_ACCOUNT_IMPERSONATED_EMAIL: DEMO_SERVICE_ACCOUNT,
    },
    timeoutMs: 30_000,
  });
  t.equal(r.code, 0, `the executable exits 0 (${r.stderr.slice(0, 300)})`);
  t.equal(r.stderr, "", "nothing on stderr (clients merge it into what they parse)");
  const resp = JSON.parse(r.stdout) as Record<string, unknown>;
  t.equal(resp.version, 1);
  t.equal(resp.success, true);
  t.equal(resp.token_type, JWT_TYPE);
  t.equal(resp.id_token, body.access_token, "the daemon's subject token");
  t.ok(typeof resp.expiration_time === "number" && resp.expiration_time > Date.now() / 1000, "expiration_time in the future, unix seconds");

  const cfg = JSON.parse(fs.readFileSync(env.OCI2GCP_CONFIG!, "utf8")) as Record<string, any>;
  t.equal(`127.0.0.1:${cfg.server?.port}`, hostPort, "the config file records the bound port");

  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const end = await Promise.race([exited, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), 20_000)))]);
  // A pending timer would keep the test process alive for the full 20 s.
  clearTimeout(timer);
  t.ok(end, "stopped within 20 s of SIGTERM");
  t.equal(end?.code, 0, "exit code 0");
  t.equal(end?.signal, null, "a clean exit, not killed by the signal");
  t.notOk(fs.existsSync(env.OCI2GCP_CRED_CONFIG_URL!), "the demo's temporary files are gone");
  t.notMatch(stdout + stderr, /eyJ[\w-]{10,}\.eyJ|ya29\./, "no token in the demo's output");
});
