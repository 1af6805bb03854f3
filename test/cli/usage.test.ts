import t from "tap";
import { nearestFlag } from "../../src/cli/args.js";
import { main } from "../../src/cli/main.js";
import { executableOutput } from "../../src/cli/subject-token.js";

const AUDIENCE = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov";
const SA = "sa@p.iam.gserviceaccount.com";

/** Runs the CLI in this process with only the given OCI2GCP_* variables, capturing what it writes. */
async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) if (/^(OCI2GCP_|OCI_|GOOGLE_|GCP_)/.test(k)) delete process.env[k];
  Object.assign(process.env, env);
  const out = process.stdout.write;
  const err = process.stderr.write;
  let stdout = "";
  let stderr = "";
  process.stdout.write = ((s: string) => {
    stdout += s;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => {
    stderr += s;
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

t.test("an unknown flag: one line naming it, the nearest flag and --help; exit 2", async (t) => {
  const r = await cli(["serve", "--prot", "1"]);
  t.equal(r.code, 2);
  t.equal(r.stdout, "");
  t.equal(r.stderr, "oci2gcp: unknown option --prot (did you mean --port?); see 'oci2gcp serve --help'\n");
  const d = await cli(["demo", "--write-evn", "x"]);
  t.equal(d.code, 2);
  t.match(d.stderr, /did you mean --write-env\?/);
  const v = await cli(["serve", "--port"]);
  t.equal(v.code, 2, "a flag without its value is a usage error too");
  t.equal(v.stderr.split("\n").length, 2, "one line");
  t.equal((await cli(["no-such-command"])).code, 2, "an unknown command: 2 as before");
});

t.test("nearestFlag suggests only likely typos", async (t) => {
  t.equal(nearestFlag("--prot", ["help", "port", "config"]), "--port");
  t.equal(nearestFlag("--conf", ["help", "port", "config"]), "--config", "a prefix");
  t.equal(nearestFlag("--zzzzzz", ["help", "port", "config"]), undefined);
});

t.test("subject-token output: exact JSON for clients, a final newline on a terminal", async (t) => {
  const r = { version: 1 as const, success: false, code: "X", message: "m" };
  t.equal(executableOutput(r, false), JSON.stringify(r));
  t.equal(executableOutput(r, true), `${JSON.stringify(r)}\n`);
});

t.test("cred-config", async (t) => {
  const base = { GCP_AUDIENCE: AUDIENCE, OCI2GCP_SERVICE_ACCOUNTS: SA };
  const none = await cli(["cred-config"], base);
  t.equal(none.code, 2, "without --source: exit 2");
  t.match(none.stderr, /needs --source/);
  t.match(none.stderr, /Usage: oci2gcp cred-config --source url\|executable/, "and the usage");

  const url = await cli(["cred-config", "--source", "url"], base);
  t.equal(url.code, 0, `no identity domain needed for a file that does not name it (${url.stderr})`);
  const cred = JSON.parse(url.stdout) as Record<string, unknown>;
  t.equal(cred.audience, AUDIENCE);
  t.notMatch(url.stdout, /identity-domain/, "nothing of the identity domain in the file");
  t.notOk("service_account_impersonation" in cred, "Google's default lifetime is not repeated");
  t.equal(url.stderr, "");

  const long = await cli(["cred-config", "--source", "url"], { ...base, OCI2GCP_TOKEN_LIFETIME_SECONDS: "1800" });
  t.strictSame((JSON.parse(long.stdout) as Record<string, unknown>).service_account_impersonation, { token_lifetime_seconds: 1800 });

  const exe = await cli(["cred-config", "--source", "executable"], base);
  t.equal(exe.code, 0);
  t.match(exe.stderr, /GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1/, "the executable source says what clients need");
  t.ok(JSON.parse(exe.stdout), "stdout stays the file alone");
});
