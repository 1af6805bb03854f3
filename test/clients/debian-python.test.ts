import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { clientEnv, FIXTURES, hostPortOf, run, TOKEN_PATH, tempDir, verifyGoogleJwt } from "../helpers/clients.js";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, startStack } from "../helpers/stack.js";

// Debian 12's python3-google-auth 1.5.1, with the system interpreter: it reads
// GCE_METADATA_ROOT and GCE_METADATA_IP (not GCE_METADATA_HOST) and parses a token
// only from an answer of type exactly application/json.
const PYTHON = "/usr/bin/python3";
const PACKAGE = "/usr/lib/python3/dist-packages/google/auth/compute_engine/_metadata.py";
const skip =
  fs.existsSync(PYTHON) && fs.existsSync(PACKAGE) ? false : "python3-google-auth is not installed (apt-get install -y python3-google-auth)";

interface Out {
  version?: string;
  file?: string;
  ping?: boolean;
  class?: string;
  project?: string;
  token?: string;
  valid?: boolean;
  id_token?: string;
  error?: string;
}

t.test("Debian python3-google-auth: google.auth.default(), a token and an ID token from the daemon", { skip }, async (t) => {
  const s = await startStack({ logLevel: "warn" });
  const dir = tempDir("oci2gcp-debian-py-");
  t.teardown(async () => {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const aud = "https://debian.example.com/x";
  // -I: the system interpreter and its dist-packages only, whatever PYTHONPATH or a user site holds.
  const r = await run(PYTHON, ["-I", path.join(FIXTURES, "debian_google_auth.py"), aud], {
    env: clientEnv(hostPortOf(s.url), dir),
    timeoutMs: 60_000,
  });
  let out: Out;
  try {
    out = JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Out;
  } catch {
    out = { error: `exit ${r.code}, stdout ${r.stdout.slice(0, 300)}, stderr ${r.stderr.slice(0, 600)}` };
  }
  t.notOk(out.error, `no error: ${out.error}`);
  t.match(out.version, /^1\./, `the packaged 1.x release (${out.version})`);
  t.match(out.file, /^\/usr\/lib\/python3\/dist-packages\//, "from Debian's dist-packages");
  t.equal(out.ping, true, "the probe at GCE_METADATA_IP finds the daemon");
  t.equal(out.class, "Credentials", "compute_engine credentials");
  t.equal(out.project, DEMO_PROJECT_ID, "project/project-id");
  t.equal(out.valid, true, "the token is valid (expires_in parsed from the JSON)");
  const served = JSON.parse((await s.get(TOKEN_PATH)).text) as { access_token: string };
  t.equal(out.token, served.access_token, "exactly the daemon's token");
  const v = await verifyGoogleJwt(out.id_token ?? "", s.emu.google.jwksUrl);
  t.equal(v.claims.aud, aud, "an ID token for the audience");
  t.equal(v.claims.email, DEMO_SERVICE_ACCOUNT, "format=full: with the email");
  t.same(s.leaks(), [], "no token in the daemon's log");
});
