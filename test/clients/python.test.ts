import fs from "node:fs";
import path from "node:path";
import t from "tap";
import {
  CLOUD_PLATFORM,
  clientEnv,
  distIsFresh,
  FIXTURES,
  findGcloud,
  hostPortOf,
  run,
  TOKEN_PATH,
  tempDir,
  verifyGoogleJwt,
  writeCredentialFiles,
} from "../helpers/clients.js";
import { calls, claimsOf, DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, type Stack, startStack } from "../helpers/stack.js";

// Python google-auth (the copy bundled with gcloud, with its own interpreter)
// against the daemon: compute_engine via the metadata API, identity_pool with the
// URL-sourced credential file and pluggable with the executable-sourced one.
const gcloud = findGcloud();
const skip = gcloud
  ? false
  : "gcloud is not installed (not on PATH): the Python google-auth tests use the copy bundled with google-cloud-cli";
const SCRIPT = path.join(FIXTURES, "google_auth_client.py");
const EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email";

interface PyOut {
  class?: string;
  token?: string;
  valid?: boolean;
  seconds_left?: number;
  project?: string;
  email?: string;
  on_gce?: boolean;
  impersonated?: string;
  error?: string;
  type?: string;
}

t.test("Python google-auth", { skip }, async (t) => {
  const info = await run(gcloud!, ["info", "--format=value(basic.python_location,installation.sdk_root)"], {
    timeoutMs: 45_000,
    env: clientEnv("127.0.0.1:9", tempDir("oci2gcp-py-info-")),
  });
  t.equal(info.code, 0, `gcloud info: ${info.stderr.slice(0, 300)}`);
  const [python, sdkRoot] = info.stdout.trim().split("\t") as [string, string];
  const thirdParty = path.join(sdkRoot, "lib/third_party");
  t.ok(fs.existsSync(path.join(thirdParty, "google/auth/compute_engine")), `google-auth is bundled under ${thirdParty}`);

  const s: Stack = await startStack({ logLevel: "warn" });
  const dir = tempDir("oci2gcp-py-");
  t.teardown(async () => {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const files = writeCredentialFiles(s, dir);
  const hostPort = hostPortOf(s.url);

  const py = async (args: string[], extra: Record<string, string> = {}): Promise<PyOut> => {
    const cfg = fs.mkdtempSync(path.join(dir, "cfg-"));
    const r = await run(python, [SCRIPT, ...args], {
      env: clientEnv(hostPort, cfg, { PYTHONPATH: thirdParty, ...extra }),
      timeoutMs: 45_000,
    });
    try {
      return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as PyOut;
    } catch {
      return { error: `exit ${r.code}, stdout ${r.stdout.slice(0, 300)}, stderr ${r.stderr.slice(0, 600)}` };
    }
  };
  const served = async (q = "") => (JSON.parse((await s.get(`${TOKEN_PATH}${q}`)).text) as { access_token: string }).access_token;
  const subjectSub = async () =>
    claimsOf((JSON.parse((await s.get("/oci2gcp/v1/subject-token")).text) as { access_token: string }).access_token).sub as string;

  t.test("google.auth.default() finds the metadata server: compute_engine.Credentials gets the daemon's token", async (t) => {
    const out = await py(["adc"]);
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "google.auth.compute_engine.credentials.Credentials");
    t.equal(out.on_gce, true, "_metadata.is_on_gce pings GCE_METADATA_IP and accepts the answer");
    t.equal(out.project, DEMO_PROJECT_ID, "the project id from the metadata server (GOOGLE_CLOUD_PROJECT unset)");
    t.equal(out.email, DEMO_SERVICE_ACCOUNT, "the email from service-accounts/default/?recursive=true");
    t.equal(out.token, await served(), "exactly the daemon's token");
    t.ok(out.valid, "valid after refresh");
    t.ok((out.seconds_left ?? 0) > 3000, `expiry from expires_in (${out.seconds_left} s left)`);
  });

  t.test("google.auth.default(scopes=...) asks for those scopes", async (t) => {
    const out = await py(["adc-scopes"]);
    t.notOk(out.error, `no error: ${out.error}`);
    t.same(
      s.emu.google.tokenInfo(out.token ?? "")?.scopes,
      [CLOUD_PLATFORM, EMAIL_SCOPE].sort(),
      "generateAccessToken was asked for the client's scopes",
    );
    t.equal(out.token, await served(`?scopes=${CLOUD_PLATFORM},${EMAIL_SCOPE}`), "the daemon's cached token for that scope set");
  });

  t.test("compute_engine.IDTokenCredentials(use_metadata_identity_endpoint=True)", async (t) => {
    const aud = "https://example.com/python?x=1&y=2";
    const out = await py(["id", aud]);
    t.notOk(out.error, `no error: ${out.error}`);
    const v = await verifyGoogleJwt(out.token ?? "", s.emu.google.jwksUrl);
    t.equal(v.claims.aud, aud, "aud is the target audience");
    t.equal(v.claims.email, DEMO_SERVICE_ACCOUNT, "format=full: the email claim");
    t.ok(out.valid && (out.seconds_left ?? 0) > 3000, "expiry from the token's exp");
  });

  t.test("identity_pool.Credentials from the URL-sourced credential file: STS and impersonation at the emulator", async (t) => {
    const before = await calls(s.emu);
    const out = await py(["identity-pool", files.url]);
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "google.auth.identity_pool.Credentials");
    t.equal(out.impersonated, DEMO_SERVICE_ACCOUNT);
    const info = s.emu.google.tokenInfo(out.token ?? "");
    t.equal(info?.kind, "service_account", "a service account token");
    t.equal(info?.email, DEMO_SERVICE_ACCOUNT);
    t.equal(info?.delegator, s.emu.google.principalFor(await subjectSub()), "minted for the pool principal of the OCI subject token");
    t.not(out.token, await served(), "the client's own token, not the daemon's");
    const after = await calls(s.emu);
    t.equal(after["google.sts.token"]! - (before["google.sts.token"] ?? 0), 1, "the client exchanged at STS once");
    t.equal(after["google.iam.generateAccessToken"]! - (before["google.iam.generateAccessToken"] ?? 0), 1, "and impersonated once");
  });

  t.test("google.auth.default() with GOOGLE_APPLICATION_CREDENTIALS naming the URL-sourced file", async (t) => {
    // Without GOOGLE_CLOUD_PROJECT, default() asks cloudresourcemanager.googleapis.com for the
    // project of the pool's project number (the file names no project): set it, as the demo does.
    const out = await py(["adc-file"], { GOOGLE_APPLICATION_CREDENTIALS: files.url, GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID });
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "google.auth.identity_pool.Credentials");
    t.equal(out.project, DEMO_PROJECT_ID);
    t.equal(s.emu.google.tokenInfo(out.token ?? "")?.email, DEMO_SERVICE_ACCOUNT);
  });

  t.test("pluggable.Credentials from the executable-sourced credential file", async (t) => {
    const fresh = distIsFresh();
    if (!fresh.ok) {
      t.fail(`the executable source runs bin/oci2gcp.js, which runs dist/: ${fresh.why}`);
      return;
    }
    if (fresh.why) t.comment(fresh.why);
    const refused = await py(["pluggable", files.executable]);
    t.match(
      refused.error,
      /GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES/,
      "without GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 the client refuses to run it",
    );
    const before = await calls(s.emu);
    const out = await py(["pluggable", files.executable], { GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES: "1" });
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "google.auth.pluggable.Credentials");
    const info = s.emu.google.tokenInfo(out.token ?? "");
    t.equal(info?.email, DEMO_SERVICE_ACCOUNT, "a token of the service account");
    t.equal(info?.delegator, s.emu.google.principalFor(await subjectSub()), "minted for the pool principal of the OCI subject token");
    const after = await calls(s.emu);
    t.equal(after["google.sts.token"]! - (before["google.sts.token"] ?? 0), 1, "one STS exchange");
    t.equal(after["google.iam.generateAccessToken"]! - (before["google.iam.generateAccessToken"] ?? 0), 1, "one impersonation");
  });

  t.test("no token in the daemon's log", async (t) => {
    t.same(s.leaks(), []);
  });
});
