import { execFile, spawn } from "node:child_process";
import path from "node:path";
import t from "tap";
import type { Emulators } from "../../src/emulator/index.js";
import { DEMO_SERVICE_ACCOUNT, startStack, startTestEmulators } from "../helpers/stack.js";

const bin = path.resolve("bin/oci2gcp.js");

// The daemons share one set of emulators (each set costs a dozen RSA keys and certificates):
// status reads what a daemon holds, not what the emulators counted.
let shared: Promise<Emulators> | undefined;
t.teardown(async () => (await shared)?.close());
const emulators = () => (shared ??= startTestEmulators());

function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH } }, (e, out, err) =>
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

t.test("oci2gcp status shows what the daemon holds, never a token", async (t) => {
  const s = await startStack({ emu: await emulators() });
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

t.test("oci2gcp status escapes control characters and bidi overrides, and cuts long keys", async (t) => {
  const s = await startStack({ emu: await emulators() });
  t.teardown(() => s.close());
  const identity = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=";
  const nasty = "https://x.example/%1b[2J%07%0d%0aforged-row%e2%80%aeb%c2%9b";
  const long = `https://long.example/${"a".repeat(300)}`;
  t.equal((await s.get(`${identity}${nasty}`)).status, 200);
  t.equal((await s.get(`${identity}${encodeURIComponent(long)}`)).status, 200);

  const table = await run(["status", "--url", s.url]);
  t.equal(table.code, 0, table.err);
  const unsafe = [...table.out].filter((c) => {
    const n = c.codePointAt(0)!;
    return (n < 0x20 && c !== "\n") || (n >= 0x7f && n <= 0x9f) || (n >= 0x202a && n <= 0x202e) || (n >= 0x2066 && n <= 0x2069);
  });
  t.same(unsafe, [], "no control character but the newlines");
  t.match(table.out, /https:\/\/x\.example\/\\x1b\[2J\\x07\\x0d\\x0aforged-row\\u202eb\\x9b/, "shown as escapes");
  t.notMatch(table.out, /^forged-row/m, "a CRLF does not start a row");
  const lines = table.out.split("\n");
  t.ok(
    lines.some((l) => l.includes(`https://long.example/${"a".repeat(30)}`) && l.includes("…")),
    "the long audience is cut with an ellipsis",
  );
  const widest = Math.max(...lines.map((l) => [...l].length));
  t.ok(widest < 300, `rows of ${widest} characters at most`);

  const json = await run(["status", "--url", s.url, "--json"]);
  const body = JSON.parse(json.out) as { caches: { key: string }[] };
  t.ok(
    body.caches.some((c) => c.key.endsWith(` ${long}`)),
    "JSON keeps the key whole",
  );
  t.ok(
    body.caches.some((c) => c.key.includes("\u001b[2J\u0007\r\nforged-row\u202eb\u009b")),
    "JSON keeps the key exact",
  );
});

t.test("oci2gcp status into a reader that stops early ends quietly with status 0", async (t) => {
  const s = await startStack({ emu: await emulators() });
  t.teardown(() => s.close());
  t.equal((await s.get("/computeMetadata/v1/instance/service-accounts/default/token")).status, 200);
  const child = spawn(process.execPath, [bin, "status", "--url", s.url], {
    env: { PATH: process.env.PATH },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // The reader is gone before the table is written, as with `| head -1` on a slow answer.
  child.stdout.destroy();
  let err = "";
  child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
  t.equal(code, 0, err);
  t.equal(err, "", "no stack trace");
});
