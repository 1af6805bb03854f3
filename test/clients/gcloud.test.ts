import fs from "node:fs";
import t from "tap";
import { FEDERATED_ACCOUNT } from "../../src/server/metadata.js";
import {
  clientEnv,
  findGcloud,
  hostPortOf,
  type RunResult,
  recordingRelay,
  run,
  TOKEN_PATH,
  tempDir,
  verifyGoogleJwt,
} from "../helpers/clients.js";
import { calls, DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, type Stack, startStack } from "../helpers/stack.js";

// gcloud (google-cloud-cli) against the daemon as its GCE metadata server:
// GCE_METADATA_ROOT=127.0.0.1:PORT and a fresh CLOUDSDK_CONFIG per command
// (gcloud caches "on GCE" in its config directory).
const gcloud = findGcloud();
const skip = gcloud ? false : "gcloud is not installed (not on PATH): the gcloud compatibility tests need google-cloud-cli";
const V1 = "/computeMetadata/v1";

let s: Stack;
const dirs: string[] = [];

/** One gcloud command with its own config directory, talking to hostPort only. */
async function gcloudRun(hostPort: string, args: string[]): Promise<RunResult> {
  const dir = tempDir("oci2gcp-gcloud-");
  dirs.push(dir);
  return run(gcloud!, [...args, "--verbosity=error"], { env: clientEnv(hostPort, dir), timeoutMs: 45_000 });
}

function describe(r: RunResult): string {
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ""} after ${r.ms} ms; stderr: ${r.stderr.trim().slice(0, 600)}`;
}

t.test("gcloud", { skip }, async (t) => {
  s = await startStack({ logLevel: "warn" });
  t.teardown(async () => {
    await s.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  const hostPort = hostPortOf(s.url);

  t.test("gcloud auth print-access-token prints the daemon's token", async (t) => {
    const r = await gcloudRun(hostPort, ["auth", "print-access-token"]);
    t.equal(r.code, 0, `gcloud succeeded: ${describe(r)}`);
    const printed = r.stdout.trim();
    const daemon = await s.get(TOKEN_PATH);
    t.equal(daemon.status, 200);
    const served = (JSON.parse(daemon.text) as { access_token: string }).access_token;
    t.equal(printed, served, "exactly the token the metadata token endpoint serves");
    const info = s.emu.google.tokenInfo(printed);
    t.equal(info?.kind, "service_account", "a live token the emulated Google minted");
    t.equal(info?.email, DEMO_SERVICE_ACCOUNT, "for the configured service account");
    const c = await calls(s.emu);
    t.equal(c["google.iam.generateAccessToken"], 1, "gcloud and the test shared one cached token");
    const project = await gcloudRun(hostPort, ["config", "get-value", "project"]);
    t.equal(project.stdout.trim(), DEMO_PROJECT_ID, `gcloud takes the project from project/project-id (${describe(project)})`);
  });

  t.test("gcloud auth print-identity-token --audiences gives a verifiable ID token for that audience", async (t) => {
    const aud = "https://example.com/x";
    const r = await gcloudRun(hostPort, ["auth", "print-identity-token", `--audiences=${aud}`]);
    t.equal(r.code, 0, `gcloud succeeded: ${describe(r)}`);
    const jwt = r.stdout.trim();
    const v = await verifyGoogleJwt(jwt, s.emu.google.jwksUrl).catch((e: Error) => {
      t.fail(`the ID token does not verify against ${s.emu.google.jwksUrl}: ${e.message}`);
      return undefined;
    });
    t.ok(v, "RS256 signature verifies with the kid's key from /oauth2/v3/certs");
    t.equal(v?.header.alg, "RS256");
    t.equal(v?.claims.aud, aud, "aud is the audience asked for");
    t.equal(v?.claims.iss, "https://accounts.google.com");
    t.equal(v?.claims.sub, s.emu.google.uniqueId(DEMO_SERVICE_ACCOUNT), "the service account's ID token");
    t.notOk(v && "email" in v.claims, "standard format: no email claim");
  });

  t.test("what gcloud requests: --token-format=full --include-license, through a recording relay", async (t) => {
    const relay = await recordingRelay(s.url);
    t.teardown(() => relay.close());
    const aud = "https://example.com/full?a=1&b=2";
    const r = await gcloudRun(relay.hostPort, [
      "auth",
      "print-identity-token",
      `--audiences=${aud}`,
      "--token-format=full",
      "--include-license",
    ]);
    t.equal(r.code, 0, `gcloud succeeded: ${describe(r)}`);
    const v = await verifyGoogleJwt(r.stdout.trim(), s.emu.google.jwksUrl);
    t.equal(v.claims.aud, aud, "an audience with a query string arrives whole");
    t.equal(v.claims.email, DEMO_SERVICE_ACCOUNT, "format=full: the email claim");

    const seen = relay.requests.map((q) => `${q.method} ${q.url} → ${q.status}`);
    t.comment(`gcloud asked:\n${seen.join("\n")}`);
    t.ok(relay.requests.length > 0, "gcloud used the metadata server");
    t.ok(
      relay.requests.every((q) => q.headers["metadata-flavor"] === "Google"),
      "every request carries Metadata-Flavor: Google",
    );
    t.ok(
      relay.requests.every((q) => q.status === 200),
      "every request was answered 200",
    );
    const paths = relay.requests.map((q) => q.url);
    t.ok(paths.includes(`${V1}/project/numeric-project-id`), "GCE detection: numeric-project-id");
    t.ok(paths.includes(`${V1}/instance/service-accounts/default/email`), "the default account's email");
    t.ok(
      paths.some((p) => p.startsWith(`${V1}/instance/service-accounts/${DEMO_SERVICE_ACCOUNT}/token`)),
      "an access token by email",
    );
    const identity = paths.filter((p) => p.startsWith(`${V1}/instance/service-accounts/default/identity?`));
    t.ok(
      identity.some((p) => p.includes("format=full") && p.includes("licenses=TRUE") && p.includes(`audience=${aud}`)),
      `the ID token with format=full, licenses=TRUE and the audience unencoded (${identity.join(" ; ")})`,
    );
  });

  t.test("without a service account: print-access-token prints the federated token", async (t) => {
    // The same emulators as the first daemon: this one asks them for no service account token.
    const n = await startStack({ emu: s.emu, serviceAccounts: [], logLevel: "warn" });
    t.teardown(() => n.close());
    const r = await gcloudRun(hostPortOf(n.url), ["auth", "print-access-token"]);
    t.equal(r.code, 0, `gcloud succeeded: ${describe(r)}`);
    const info = n.emu.google.tokenInfo(r.stdout.trim());
    t.equal(info?.kind, "federated", "the federated STS token");
    t.equal(r.stdout.trim(), JSON.parse((await n.get(TOKEN_PATH)).text).access_token, "the daemon's token");
    const list = await gcloudRun(hostPortOf(n.url), ["auth", "list", "--format=value(account)"]);
    t.equal(list.stdout.trim(), FEDERATED_ACCOUNT, "gcloud names the account as the metadata server lists it");
  });
});
