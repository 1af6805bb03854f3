import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { distIsFresh, ROOT, tempDir, waitFor } from "../helpers/clients.js";

// The demo as a person meets it: --config merged into its settings, a readable
// stderr, and failed starts that explain themselves and leave no files behind.
const LAUNCHER = path.join(ROOT, "bin/oci2gcp.js");
const FIRST = "etl@demo-project.iam.gserviceaccount.com";
const SECOND = "web@demo-project.iam.gserviceaccount.com";
// With the email scope, tokeninfo names the token's service account.
const SCOPES = "https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/userinfo.email";

interface Demo {
  child: ChildProcessWithoutNullStreams;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startDemo(args: string[], tmp: string): Demo {
  const child = spawn(process.execPath, [LAUNCHER, "demo", ...args], {
    env: { ...process.env, OCI2GCP_LOG_LEVEL: undefined, TMPDIR: tmp },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stderr = "";
  child.stdout.on("data", (d) => (stderr += String(d)));
  child.stderr.on("data", (d) => (stderr += String(d)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr: () => stderr, exited };
}

// The timer is cleared once p settles: a pending one would keep the test process alive for all of ms.
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const demoDirs = (tmp: string) => fs.readdirSync(tmp).filter((f) => f.startsWith("oci2gcp-demo-"));

t.test("demo --config with two service accounts, then a second demo on the same port", async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  const dir = tempDir("oci2gcp-demo-config-");
  const tmp = path.join(dir, "tmp");
  fs.mkdirSync(tmp);
  const cfgFile = path.join(dir, "mine.json");
  // A policy as anyone may try one on the emulated clouds: this test's own uid may have both accounts.
  const access = { rules: [{ users: [process.getuid?.() ?? 0], serviceAccounts: [FIRST, SECOND] }] };
  fs.writeFileSync(
    cfgFile,
    JSON.stringify({ google: { serviceAccounts: [FIRST, SECOND], projectId: "mine" }, server: { port: 1 }, access }),
  );
  const envFile = path.join(dir, "demo.env");
  const demo = startDemo(["--port", "0", "--config", cfgFile, "--write-env", envFile], tmp);
  t.teardown(() => {
    if (demo.child.exitCode === null && demo.child.signalCode === null) demo.child.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const banner = await waitFor(() => (/print-identity-token/.test(demo.stderr()) ? demo.stderr() : undefined), 60_000);
  if (!banner) {
    t.fail(`no banner within 60 s: ${demo.stderr().slice(-1500)}`);
    return;
  }
  t.notMatch(banner, /^\{/m, "no raw JSON log line");
  t.match(banner, /# [^\n]*JWKS[^\n]*\nexport OCI2GCP_GOOGLE_JWKS_URL=/, "the JWKS line says what it is for");
  t.match(banner, /"\$OCI2GCP_SUBJECT_TOKEN_URL"; echo\n/, "curl examples end the line");
  t.match(banner, `${FIRST}, ${SECOND}`, "both service accounts are named");
  t.match(
    banner,
    /\nAccess: 1 access rule: each local user may obtain only the accounts of the first rule naming it/,
    "the policy in one sentence",
  );
  const env = Object.fromEntries(
    [...fs.readFileSync(envFile, "utf8").matchAll(/^export ([A-Za-z_][A-Za-z0-9_]*)='([^']*)'$/gm)].map((m) => [m[1]!, m[2]!]),
  ) as Record<string, string>;
  t.equal(env.GOOGLE_CLOUD_PROJECT, "mine", "the config file's project");
  t.not(env.GCE_METADATA_HOST, "127.0.0.1:1", "--port wins over the file's port");

  const h = { "Metadata-Flavor": "Google" };
  const base = `http://${env.GCE_METADATA_HOST}/computeMetadata/v1/instance/service-accounts`;
  for (const [who, email] of [
    ["default", FIRST],
    [SECOND, SECOND],
  ] as const) {
    const res = await fetch(`${base}/${who}/token?scopes=${SCOPES}`, { headers: h });
    t.equal(res.status, 200, `a token for ${who}`);
    const tok = ((await res.json()) as { access_token: string }).access_token;
    const ti = (await (
      await fetch(`${env.OCI2GCP_EMULATOR_URL}/oauth2/v3/tokeninfo?access_token=${encodeURIComponent(tok)}`)
    ).json()) as Record<string, string>;
    t.equal(ti.email, email, `the emulated Google minted it for ${email}`);
  }

  // A second demo on the same port: the reason, the way out, nothing else, no files.
  // A third with --write-env into a missing directory: a clear error at once, nothing started.
  // Neither starts a demo, so they run side by side.
  const port = env.GCE_METADATA_HOST!.split(":")[1]!;
  const second = startDemo(["--port", port], tmp);
  const third = startDemo(["--port", "0", "--write-env", path.join(dir, "missing", "demo.env")], tmp);
  const [end, end3] = await Promise.all([within(second.exited, 60_000), within(third.exited, 30_000)]);
  t.equal(end?.code, 1, "the second demo exits 1");
  t.match(second.stderr(), /already in use/);
  t.match(second.stderr(), /--port 0/, "a hint to use --port 0");
  t.notMatch(second.stderr(), /metadata service|^\{/m, "no misleading lines after it");
  t.equal(second.stderr().trim().split("\n").length, 2, "two lines in all");

  t.equal(end3?.code, 2, "exits 2 rather than hanging");
  t.match(third.stderr(), /missing does not exist/);
  t.strictSame(demoDirs(tmp), [path.basename(env.OCI2GCP_CONFIG!.replace(/\/oci2gcp\.json$/, ""))], "only the running demo's directory");

  demo.child.kill("SIGINT");
  const stopped = await within(demo.exited, 20_000);
  t.equal(stopped?.code, 0, "Ctrl-C: exit 0");
  t.strictSame(demoDirs(tmp), [], "no temp directory left behind");
  t.notOk(fs.existsSync(envFile), "the env file is removed");
});
