import { execFile } from "node:child_process";
import path from "node:path";
import t from "tap";
import { DEMO_SERVICE_ACCOUNT, startStack } from "../helpers/stack.js";

const bin = path.resolve("bin/oci2gcp.js");

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH } }, (e, out, err) =>
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

t.test("oci2gcp status shows what the daemon holds, never a token", async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  t.equal((await s.get("/computeMetadata/v1/instance/service-accounts/default/token")).status, 200);
  t.equal((await s.get("/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://status.example")).status, 200);

  const table = await run(["status", "--url", s.url]);
  t.equal(table.code, 0);
  t.equal(table.err, "");
  t.match(table.out, new RegExp(`accounts: ${DEMO_SERVICE_ACCOUNT.replace(/\./g, "\\.")}`));
  for (const kind of ["oci-session", "subject-token", "federated-token", "access-token", "id-token"]) {
    t.match(table.out, new RegExp(`^${kind}\\s`, "m"), `a row for ${kind}`);
  }
  t.match(table.out, /https:\/\/status\.example/, "the ID token's audience");
  t.match(table.out, /\b5\dm\d\ds\b/, "time left of the Google tokens");
  t.notMatch(table.out, /eyJ|ya29\.|ST\$/, "no token in the table");

  const json = await run(["status", "--url", s.url, "--json"]);
  t.equal(json.code, 0);
  const body = JSON.parse(json.out) as { caches: { kind: string; expiresInSeconds: number | null; lastError: string | null }[] };
  t.equal(body.caches.filter((c) => c.kind === "access-token").length, 1);
  t.ok(
    body.caches.every((c) => c.lastError === null),
    "no errors",
  );
  t.ok(
    body.caches.every((c) => (c.expiresInSeconds ?? 0) > 0),
    "every cached token has time left",
  );
});

t.test("oci2gcp status without a daemon says so and fails", async (t) => {
  const r = await run(["status", "--url", "http://127.0.0.1:9"]);
  t.equal(r.code, 1);
  t.match(r.err, /cannot reach the daemon at http:\/\/127\.0\.0\.1:9/);
  t.equal(r.out, "");
});
