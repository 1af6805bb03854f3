import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { clientEnv, FIXTURES, hostPortOf, run, TOKEN_PATH, tempDir } from "../helpers/clients.js";
import { DEMO_PROJECT_ID, startStack } from "../helpers/stack.js";

// Go's cloud.google.com/go/compute/metadata as Debian 12 packages it (0.56, in
// golang-google-cloud-compute-metadata-dev), built offline in GOPATH mode against
// /usr/share/gocode: GCE_METADATA_HOST names the daemon and skips the probe.
const GO = "/usr/bin/go";
const GOPATH = "/usr/share/gocode";
const skip =
  fs.existsSync(GO) && fs.existsSync(path.join(GOPATH, "src/cloud.google.com/go/compute/metadata/metadata.go"))
    ? false
    : "golang-go and golang-google-cloud-compute-metadata-dev are not installed (apt-get install -y both)";

t.test("Debian's Go compute/metadata: OnGCE, the project id and the daemon's token", { skip }, async (t) => {
  const dir = tempDir("oci2gcp-debian-go-");
  const s = await startStack({ logLevel: "warn" });
  t.teardown(async () => {
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const env = { ...clientEnv(hostPortOf(s.url), dir), GOPATH, GO111MODULE: "off", GOFLAGS: "", GOCACHE: path.join(dir, "cache") };
  const prog = path.join(dir, "prog");
  const build = await run(GO, ["build", "-o", prog, path.join(FIXTURES, "debian-go/main.go")], { env, timeoutMs: 180_000 });
  t.equal(build.code, 0, `go build: ${build.stderr.slice(0, 600)}`);
  const r = await run(prog, [], { env, timeoutMs: 30_000 });
  const out = JSON.parse(r.stdout.trim() || "{}") as { onGCE?: boolean; project?: string; token?: string; error?: string };
  t.notOk(out.error, `no error: ${out.error}`);
  t.equal(out.onGCE, true, "GCE_METADATA_HOST set: on GCE");
  t.equal(out.project, DEMO_PROJECT_ID, "project/project-id");
  const served = JSON.parse((await s.get(TOKEN_PATH)).text) as { access_token: string };
  t.equal(out.token, served.access_token, "exactly the daemon's token");
});
