/**
 * The log level of `oci2gcp serve` and `oci2gcp demo`: --log-level and
 * $OCI2GCP_LOG_LEVEL are honoured (the flag winning), debug-level lines appear
 * exactly when asked for, and even at trace level no line holds a secret.
 */

import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { distIsFresh } from "../helpers/clients.js";
import { type Child, cleanEnv, sleep, spawnCli, writeConfigFile } from "../helpers/reliability.js";
import { emulatorOverrides, leakedLines, tempDir } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
let emu: Emulators;
const dir = tempDir("oci2gcp-logging-");
const children: Child[] = [];
let configFile: string;

t.before(async () => {
  const fresh = distIsFresh();
  if (!fresh.ok) throw new Error(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
  emu = await startEmulators();
  configFile = writeConfigFile(path.join(dir, "serve.json"), emulatorOverrides(emu));
});
t.teardown(async () => {
  for (const c of children) c.kill();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Outcome {
  code: number | null;
  lines: Record<string, unknown>[];
  stdout: string;
  stderr: string;
  secrets: string[];
}

/**
 * Runs the command until its daemon has served a token to a client (found from its
 * log, or from the demo's banner), then stops it with SIGTERM.
 */
async function runUntilServed(
  args: string[],
  env: Record<string, string>,
  urlFrom: (c: Child) => Promise<string | undefined>,
): Promise<Outcome> {
  const child = spawnCli(args, cleanEnv(env));
  children.push(child);
  const secrets: string[] = [];
  try {
    const url = await urlFrom(child);
    if (!url) throw new Error(`no daemon URL: ${child.stderr()} ${child.stdout()}`);
    const res = await fetch(`${url}${TOKEN}`, { headers: { "metadata-flavor": "Google" } });
    const body = await res.text();
    if (res.status !== 200) throw new Error(`token: ${res.status} ${body}`);
    secrets.push((JSON.parse(body) as { access_token: string }).access_token);
    await sleep(300);
  } finally {
    child.proc.kill("SIGTERM");
  }
  const exit = await Promise.race([child.exited, sleep(15_000).then(() => undefined)]);
  return {
    code: exit?.code ?? null,
    lines: child.lines.filter((l): l is Record<string, unknown> => typeof l === "object"),
    stdout: child.stdout(),
    stderr: child.stderr(),
    secrets,
  };
}

/** `serve`: its URL is in the "oci2gcp serving" line (logged at info), or at warn not at all: then ask the port. */
const serveUrl = async (c: Child) => {
  const l = await c.line((x) => x.msg === "oci2gcp serving", 20_000);
  return l ? String(l.url) : undefined;
};
const demoUrl = async (c: Child) => {
  for (let i = 0; i < 200; i++) {
    const m = /the daemon serves (http:\/\/127\.0\.0\.1:\d+)/.exec(c.stderr());
    if (m) return m[1];
    await sleep(100);
  }
  return undefined;
};

const levels = (o: Outcome) => new Set(o.lines.map((l) => l.level as number));
const debugLines = (o: Outcome) => o.lines.filter((l) => (l.level as number) <= 20);

t.test("serve --log-level trace: debug lines about renewals and requests, no secret", async (t) => {
  const o = await runUntilServed(["serve", "--config", configFile, "--log-level", "trace"], {}, serveUrl);
  t.equal(o.code, 0);
  t.ok(
    o.lines.some((l) => l.level === 20 && l.msg === "token renewed"),
    "renewals are logged at debug",
  );
  t.ok(
    o.lines.some(
      (l) => l.level === 20 && l.msg === "request" && l.route === "/computeMetadata/v1/instance/service-accounts/:account/token",
    ),
    "requests are logged at debug",
  );
  t.same(leakedLines(o.stdout, o.secrets), [], "no secret at trace level");
  t.same(leakedLines(o.stderr, o.secrets), []);
});

t.test("serve with $OCI2GCP_LOG_LEVEL=warn: no info or debug lines", async (t) => {
  // Nothing is logged at info, so the port is fixed in the config to find the daemon.
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const file = writeConfigFile(path.join(dir, "warn.json"), { ...emulatorOverrides(emu), "server.port": port });
  const o = await runUntilServed(["serve", "--config", file], { OCI2GCP_LOG_LEVEL: "warn" }, async () => {
    for (let i = 0; i < 100; i++) {
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return `http://127.0.0.1:${port}`;
      await sleep(100);
    }
    return undefined;
  });
  t.equal(o.code, 0);
  t.same(
    [...levels(o)].filter((l) => l < 40),
    [],
    "nothing below warn",
  );
});

t.test("--log-level wins over $OCI2GCP_LOG_LEVEL", async (t) => {
  const o = await runUntilServed(["serve", "--config", configFile, "--log-level", "trace"], { OCI2GCP_LOG_LEVEL: "warn" }, serveUrl);
  t.equal(o.code, 0);
  t.ok(debugLines(o).length > 0, "debug lines despite $OCI2GCP_LOG_LEVEL=warn");
});

t.test("an unknown level is a configuration error naming the setting", async (t) => {
  const child = spawnCli(["serve", "--config", configFile, "--log-level", "loud"], cleanEnv());
  children.push(child);
  const exit = await child.exited;
  t.equal(exit.code, 2);
  t.match(child.stderr(), /log\.level \(--log-level\) is "loud"; it must be one of: fatal, error, warn, info, debug, trace, silent/);
  const child2 = spawnCli(["serve", "--config", configFile], cleanEnv({ OCI2GCP_LOG_LEVEL: "verbose" }));
  children.push(child2);
  t.equal((await child2.exited).code, 2);
  t.match(child2.stderr(), /log\.level \(\$OCI2GCP_LOG_LEVEL\) is "verbose"/);
});

t.test("demo --log-level trace, and demo with $OCI2GCP_LOG_LEVEL=debug", async (t) => {
  const trace = await runUntilServed(["demo", "--port", "0", "--log-level", "trace"], {}, demoUrl);
  t.equal(trace.code, 0, "demo exits 0 on SIGTERM");
  // The demo's daemon logs one readable line per message on stderr, for a person.
  t.match(trace.stderr, /^oci2gcp daemon debug: token renewed$/m, "--log-level trace: debug lines");
  t.same(leakedLines(trace.stdout, trace.secrets), [], "no secret at trace level");
  t.same(leakedLines(trace.stderr, trace.secrets), [], "no secret at trace level on stderr");

  const debug = await runUntilServed(["demo", "--port", "0"], { OCI2GCP_LOG_LEVEL: "debug" }, demoUrl);
  t.equal(debug.code, 0);
  t.match(debug.stderr, /^oci2gcp daemon debug: /m, "$OCI2GCP_LOG_LEVEL=debug: debug lines");
});
