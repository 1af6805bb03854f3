/**
 * Graceful shutdown of `oci2gcp serve` (the real launcher, dist/, a config
 * file): on SIGTERM a request already in flight (waiting on a slow upstream)
 * completes with 200, new connections are refused at once, and the process
 * exits 0 soon after. SIGINT (Ctrl-C) does the same.
 */

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { distIsFresh } from "../helpers/clients.js";
import { type Child, cleanEnv, clearFaults, fault, sleep, spawnCli, waitFor, writeConfigFile } from "../helpers/reliability.js";
import { calls, emulatorOverrides, leakedLines, tempDir } from "../helpers/stack.js";

const SA = "/computeMetadata/v1/instance/service-accounts/default";
let emu: Emulators;
const dir = tempDir("oci2gcp-shutdown-");
const children: Child[] = [];

t.before(async () => {
  emu = await startEmulators();
});
t.teardown(async () => {
  for (const c of children) c.kill();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** `oci2gcp serve --config FILE` against the emulators; resolves once it has its first token. */
async function serve(t: Asserts, name: string, timeoutMs = 10_000): Promise<{ child: Child; url: string }> {
  const file = writeConfigFile(path.join(dir, `${name}.json`), { ...emulatorOverrides(emu), "upstream.timeoutMs": timeoutMs });
  const child = spawnCli(["serve", "--config", file], cleanEnv());
  children.push(child);
  const serving = await child.line((l) => l.msg === "oci2gcp serving", 20_000);
  if (!serving) throw new Error(`serve did not start: ${child.stderr()} ${child.stdout()}`);
  const ready = await child.line((l) => /first Google token obtained/.test(String(l.msg)), 20_000);
  t.ok(ready, "warm: the first token obtained");
  return { child, url: String(serving.url) };
}

/** The assertions a helper uses, from whichever test calls it. */
type Asserts = Pick<typeof t, "ok" | "fail" | "equal" | "comment">;

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED"));
  });
}

t.test("SIGTERM: the in-flight request completes with 200, new connections are refused, exit 0", async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  const { child, url } = await serve(t, "term");
  const port = Number(new URL(url).port);
  // A scope set never asked for: the daemon must call generateAccessToken, which takes 4 s.
  await fault(emu, { endpoint: "google.iam.generateAccessToken", latencyMs: 4000 });
  t.teardown(() => clearFaults(emu));
  const before = (await calls(emu))["google.iam.generateAccessToken"]!;
  const inflight = fetch(`${url}${SA}/token?scopes=https://www.googleapis.com/auth/devstorage.read_only`, {
    headers: { "metadata-flavor": "Google" },
  }).then(async (r) => ({
    status: r.status,
    body: await r.text(),
    at: Date.now(),
  }));
  t.ok(
    await waitFor(async () => (await calls(emu))["google.iam.generateAccessToken"]! > before, 5000),
    "the request is waiting on IAM Credentials",
  );
  const termAt = Date.now();
  child.proc.kill("SIGTERM");

  // New connections are refused while the old request is still being answered.
  t.ok(await waitFor(() => connectRefused(port), 2500, 50), "new connections refused within 2.5 s of SIGTERM");
  const refusedAt = Date.now();
  const res = await inflight;
  t.ok(refusedAt < res.at, "refused before the in-flight request was answered");
  t.equal(res.status, 200, "the in-flight request completed");
  const tok = JSON.parse(res.body) as { access_token: string; expires_in: number };
  t.ok(emu.google.tokenInfo(tok.access_token), "with a real token");
  t.ok(res.at - termAt >= 2000, `it was answered after the signal (${res.at - termAt} ms), so it really was in flight`);

  const exit = await Promise.race([child.exited, sleep(15_000).then(() => undefined)]);
  t.ok(exit, "the process exited");
  t.equal(exit?.code, 0, "exit code 0");
  t.ok(exit && exit.at - res.at < 5000, `exited ${exit ? exit.at - res.at : "?"} ms after answering`);
  t.ok(
    child.lines.some((l) => typeof l === "object" && l.msg === "shutting down" && l.signal === "SIGTERM"),
    "logged the shutdown",
  );
  t.equal(child.stderr(), "", "nothing on stderr");
  t.same(leakedLines(child.stdout(), [tok.access_token]), [], "no secret in the log");
});

t.test("SIGINT: exits 0 promptly when idle", async (t) => {
  const { child, url } = await serve(t, "int");
  const r = await fetch(`${url}${SA}/token`, { headers: { "metadata-flavor": "Google" } });
  t.equal(r.status, 200);
  await r.text();
  const at = Date.now();
  child.proc.kill("SIGINT");
  const exit = await Promise.race([child.exited, sleep(15_000).then(() => undefined)]);
  t.equal(exit?.code, 0, "exit code 0");
  t.ok(exit && exit.at - at < 5000, `exited in ${exit ? exit.at - at : "?"} ms`);
  t.ok(await connectRefused(Number(new URL(url).port)), "nothing listens any more");
});

t.test("SIGTERM with a request stuck upstream: gives up after 10 s and exits 1, not never", async (t) => {
  const { child, url } = await serve(t, "stuck", 60_000);
  await fault(emu, { endpoint: "google.iam.generateAccessToken", latencyMs: 30_000 });
  t.teardown(() => clearFaults(emu));
  const before = (await calls(emu))["google.iam.generateAccessToken"]!;
  const stuck = fetch(`${url}${SA}/token?scopes=https://www.googleapis.com/auth/stuck`, { headers: { "metadata-flavor": "Google" } }).then(
    (r) => r.status,
    () => "connection closed",
  );
  t.ok(
    await waitFor(async () => (await calls(emu))["google.iam.generateAccessToken"]! > before, 5000),
    "the request is stuck on IAM Credentials",
  );
  const at = Date.now();
  child.proc.kill("SIGTERM");
  const exit = await Promise.race([child.exited, sleep(20_000).then(() => undefined)]);
  t.ok(exit, "the process exited");
  t.equal(exit?.code, 1, "exit code 1");
  t.ok(exit && exit.at - at >= 9500 && exit.at - at < 14_000, `after ${exit ? exit.at - at : "?"} ms (the 10 s grace)`);
  t.ok(
    child.lines.some((l) => typeof l === "object" && /did not finish within 10 s/.test(String(l.msg))),
    "says why",
  );
  t.equal(await stuck, "connection closed", "the stuck request's connection is closed, not left open");
});
