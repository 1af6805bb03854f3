import fs from "node:fs";
import path from "node:path";
import t from "tap";
import {
  CLOUD_PLATFORM,
  clientEnv,
  distIsFresh,
  FIXTURES,
  hostPortOf,
  run,
  TOKEN_PATH,
  tempDir,
  verifyGoogleJwt,
  writeCredentialFiles,
} from "../helpers/clients.js";
import { calls, claimsOf, DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, type Stack, startStack } from "../helpers/stack.js";

// google-auth-library (v10, the project's dependency) in child processes, since
// GoogleAuth caches environment detection per process: GCE_METADATA_HOST finds
// the daemon; IdentityPoolClient and PluggableAuthClient use the credential files.
const SCRIPT = path.join(FIXTURES, "node-client.mjs");
const EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email";

interface NodeOut {
  class?: string;
  token?: string;
  tokens?: string[];
  project?: string;
  authorization?: string;
  error?: string;
}

t.test("Node google-auth-library", async (t) => {
  const s: Stack = await startStack({ logLevel: "warn" });
  const dir = tempDir("oci2gcp-node-");
  t.teardown(async () => {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const files = writeCredentialFiles(s, dir);
  const hostPort = hostPortOf(s.url);

  const node = async (args: string[], extra: Record<string, string> = {}): Promise<NodeOut> => {
    const r = await run(process.execPath, [SCRIPT, ...args], {
      env: clientEnv(hostPort, fs.mkdtempSync(path.join(dir, "cfg-")), extra),
      timeoutMs: 30_000,
    });
    try {
      return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as NodeOut;
    } catch {
      return { error: `exit ${r.code}, stdout ${r.stdout.slice(0, 300)}, stderr ${r.stderr.slice(0, 600)}` };
    }
  };
  const served = async (q = "") => (JSON.parse((await s.get(`${TOKEN_PATH}${q}`)).text) as { access_token: string }).access_token;
  const subjectSub = async () =>
    claimsOf((JSON.parse((await s.get("/oci2gcp/v1/subject-token")).text) as { access_token: string }).access_token).sub as string;

  t.test("new GoogleAuth().getAccessToken() via GCE_METADATA_HOST returns the daemon's token", async (t) => {
    const out = await node(["adc"]);
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "Compute", "gcp-metadata detected a metadata server");
    t.equal(out.token, await served(), "exactly the daemon's token");
    t.equal(out.project, DEMO_PROJECT_ID, "getProjectId() from project/project-id");
  });

  t.test("GoogleAuth({scopes}) sends ?scopes= and gets a token of those scopes", async (t) => {
    // GOOGLE_CLOUD_PROJECT spares GoogleAuth its `gcloud config config-helper` run (2 s) looking for a project.
    const out = await node(["adc-scopes"], { GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID });
    t.notOk(out.error, `no error: ${out.error}`);
    t.same(s.emu.google.tokenInfo(out.token ?? "")?.scopes, [CLOUD_PLATFORM, EMAIL_SCOPE].sort());
    t.equal(out.token, await served(`?scopes=${EMAIL_SCOPE},${CLOUD_PLATFORM}`), "the daemon's cached token of that scope set");
  });

  t.test("a Compute client reuses its token: expires_in leaves it far from its 5 minute margin", async (t) => {
    const before = await calls(s.emu);
    const out = await node(["compute-repeat"]);
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.tokens?.length, 1, "one token for 20 calls");
    const after = await calls(s.emu);
    t.equal(after["google.iam.generateAccessToken"], before["google.iam.generateAccessToken"], "no upstream call");
  });

  t.test("getIdTokenClient(aud) → idTokenProvider.fetchIdToken(aud)", async (t) => {
    // Node puts the audience into the URL unencoded: a query string in it must survive.
    const aud = "https://example.com/node?x=1&y=2";
    const out = await node(["id", aud], { GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID });
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "Compute");
    const v = await verifyGoogleJwt(out.token ?? "", s.emu.google.jwksUrl);
    t.equal(v.claims.aud, aud, "aud is the audience, query string included");
    t.equal(v.claims.email, DEMO_SERVICE_ACCOUNT, "format=full: email claim");
    t.equal(out.authorization, `Bearer ${out.token}`, "the IdTokenClient sends it as a bearer token");
  });

  t.test("IdentityPoolClient from the URL-sourced credential file", async (t) => {
    const before = await calls(s.emu);
    const out = await node(["identity-pool", files.url]);
    t.notOk(out.error, `no error: ${out.error}`);
    const info = s.emu.google.tokenInfo(out.token ?? "");
    t.equal(info?.kind, "service_account");
    t.equal(info?.email, DEMO_SERVICE_ACCOUNT);
    t.equal(info?.delegator, s.emu.google.principalFor(await subjectSub()), "minted for the pool principal of the OCI subject token");
    const after = await calls(s.emu);
    t.equal(after["google.sts.token"]! - (before["google.sts.token"] ?? 0), 1, "one STS exchange by the client");
    t.equal(
      after["google.iam.generateAccessToken"]! - (before["google.iam.generateAccessToken"] ?? 0),
      1,
      "one impersonation by the client",
    );
  });

  t.test("GoogleAuth with GOOGLE_APPLICATION_CREDENTIALS naming the URL-sourced file", async (t) => {
    const out = await node(["adc-file"], { GOOGLE_APPLICATION_CREDENTIALS: files.url, GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID });
    t.notOk(out.error, `no error: ${out.error}`);
    t.equal(out.class, "IdentityPoolClient");
    t.equal(s.emu.google.tokenInfo(out.token ?? "")?.email, DEMO_SERVICE_ACCOUNT);
  });

  t.test("PluggableAuthClient from the executable-sourced credential file", async (t) => {
    const fresh = distIsFresh();
    if (!fresh.ok) {
      t.fail(`the executable source runs bin/oci2gcp.js, which runs dist/: ${fresh.why}`);
      return;
    }
    if (fresh.why) t.comment(fresh.why);
    const refused = await node(["pluggable", files.executable]);
    t.match(refused.error, /GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES/, "refused without GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1");
    const before = await calls(s.emu);
    const out = await node(["pluggable", files.executable], { GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES: "1" });
    t.notOk(out.error, `no error: ${out.error}`);
    const info = s.emu.google.tokenInfo(out.token ?? "");
    t.equal(info?.email, DEMO_SERVICE_ACCOUNT);
    t.equal(info?.delegator, s.emu.google.principalFor(await subjectSub()));
    const after = await calls(s.emu);
    t.equal(after["google.sts.token"]! - (before["google.sts.token"] ?? 0), 1);
    t.equal(after["google.iam.generateAccessToken"]! - (before["google.iam.generateAccessToken"] ?? 0), 1);
  });

  t.test("no token in the daemon's log", async (t) => {
    t.same(s.leaks(), []);
  });
});
