/**
 * Opening the listeners: `--socket PATH` replaces nothing but a stale socket and
 * removes on exit only its own socket; a listener that cannot be opened ends the
 * start before anything serves, with a message naming the path or address and
 * the cause. In this process (startDaemon) and with `oci2gcp serve` (dist/).
 */

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import t from "tap";
import { loadConfig } from "../../src/config/config.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";
import type { Emulators } from "../../src/emulator/index.js";
import { createLogger } from "../../src/log.js";
import { distIsFresh } from "../helpers/clients.js";
import { type Child, cleanEnv, sleep, spawnCli, writeConfigFile } from "../helpers/reliability.js";
import { emulatorOverrides, startTestEmulators, tempDir } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
let emu: Emulators;
const dir = tempDir("oci2gcp-listeners-");
const children: Child[] = [];

t.before(async () => {
  emu = await startTestEmulators();
});
t.teardown(async () => {
  for (const c of children) c.kill();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function start(overrides: Record<string, unknown>): Promise<Daemon> {
  const config = loadConfig({ env: {}, overrides: { ...emulatorOverrides(emu), "log.level": "silent", ...overrides } });
  return startDaemon(config, { logger: createLogger("silent"), warm: false });
}

/** A GET over a Unix socket with the metadata header; the status, or the error code. */
function getOverSocket(socketPath: string, target = TOKEN): Promise<number | string> {
  return new Promise((resolve) => {
    const s = net.connect(socketPath);
    let data = "";
    s.on("connect", () => s.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n`));
    s.on("data", (c) => (data += String(c)));
    s.on("end", () => resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(data)?.[1] ?? 0)));
    s.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** A server answering 200 to anyone at `p`; close() also ends its open connections. */
async function listenUnix(p: string): Promise<{ close(): Promise<void> }> {
  const open = new Set<net.Socket>();
  const s = net.createServer((c) => {
    open.add(c);
    c.on("close", () => open.delete(c));
    // The daemon's probe connects and leaves at once.
    c.on("error", () => {});
    c.end("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  });
  await new Promise<void>((r) => s.listen(p, () => r()));
  return {
    close: () =>
      new Promise<void>((r) => {
        s.close(() => r());
        for (const c of open) c.destroy();
      }),
  };
}

/** A socket file at `p` nobody listens on (what a killed daemon leaves). */
async function staleSocket(p: string): Promise<void> {
  const tmp = `${p}.tmp`;
  const s = await listenUnix(tmp);
  fs.linkSync(tmp, p);
  await s.close();
}

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

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

t.test("a regular file, a directory or a symbolic link at the socket path is refused and left alone", async (t) => {
  const file = path.join(dir, "file.sock");
  fs.writeFileSync(file, "keep me");
  await t.rejects(start({ "server.socketPath": file }), {
    message: `socket path ${file} is a regular file; refusing to replace it (remove it or choose another path)`,
  });
  t.equal(fs.readFileSync(file, "utf8"), "keep me", "the file is untouched");

  const d = path.join(dir, "dir.sock");
  fs.mkdirSync(d);
  await t.rejects(start({ "server.socketPath": d }), { message: /is a directory; refusing/ });
  t.ok(fs.statSync(d).isDirectory(), "the directory is untouched");

  const link = path.join(dir, "link.sock");
  fs.symlinkSync(file, link);
  await t.rejects(start({ "server.socketPath": link }), { message: /is a symbolic link; refusing/ });
  t.ok(fs.lstatSync(link).isSymbolicLink(), "the link is untouched");
  t.equal(fs.readFileSync(file, "utf8"), "keep me");
});

t.test("a live socket is refused; the process serving on it keeps it", async (t) => {
  const p = path.join(dir, "live.sock");
  const other = await listenUnix(p);
  t.teardown(() => other.close());
  const port = await freePort();
  await t.rejects(start({ "server.socketPath": p, "server.port": port }), { message: `another process is serving on ${p}` });
  t.ok(await connectRefused(port), "nothing listens on TCP either");
  t.equal(await getOverSocket(p, "/"), 200, "the other process still answers on its socket");
});

t.test("a second daemon on the same socket refuses; the first keeps serving and removes its socket on exit", async (t) => {
  const p = path.join(dir, "two.sock");
  const first = await start({ "server.socketPath": p });
  let firstClosed = false;
  t.teardown(async () => {
    if (!firstClosed) await first.close();
  });
  t.equal(await getOverSocket(p, "/"), 200);
  await t.rejects(start({ "server.socketPath": p }), { message: `another process is serving on ${p}` });
  t.equal(await getOverSocket(p, "/"), 200, "the first daemon still answers on its socket");
  t.equal(fs.statSync(p).mode & 0o777, 0o660, "with the configured mode");
  firstClosed = true;
  await first.close();
  t.notOk(fs.existsSync(p), "its socket is removed on exit");
  t.same(
    fs.readdirSync(dir).filter((n) => n.startsWith(".")),
    [],
    "no name it bound on the way is left",
  );
});

t.test("a stale socket is replaced", async (t) => {
  const p = path.join(dir, "stale.sock");
  await staleSocket(p);
  t.equal(await getOverSocket(p, "/"), "ECONNREFUSED", "nobody answers on it");
  const d = await start({ "server.socketPath": p });
  t.teardown(() => d.close());
  t.equal(await getOverSocket(p, "/"), 200, "the daemon serves on it");
});

t.test("on exit, a file that replaced the daemon's socket is left alone", async (t) => {
  const p = path.join(dir, "replaced.sock");
  const d = await start({ "server.socketPath": p });
  fs.unlinkSync(p);
  fs.writeFileSync(p, "someone else's");
  await d.close();
  t.equal(fs.readFileSync(p, "utf8"), "someone else's");
});

t.test("a socket path that cannot be opened ends the start before anything serves", async (t) => {
  const cases: [string, string, string | RegExp][] = [
    ["a directory", path.join(dir, "a-dir"), /a-dir is a directory/],
    [
      "a missing parent",
      path.join(dir, "nowhere", "s.sock"),
      `socket path ${path.join(dir, "nowhere", "s.sock")}: directory ${path.join(dir, "nowhere")} does not exist`,
    ],
    [
      "a parent that is a file",
      path.join(dir, "plain", "s.sock"),
      `socket path ${path.join(dir, "plain", "s.sock")}: ${path.join(dir, "plain")} is not a directory`,
    ],
    ["over 107 bytes", path.join(dir, `${"x".repeat(120)}.sock`), /is 1\d\d bytes long; a Unix socket path can have at most 107/],
  ];
  fs.mkdirSync(path.join(dir, "a-dir"));
  fs.writeFileSync(path.join(dir, "plain"), "");
  for (const [what, p, message] of cases) {
    const port = await freePort();
    await t.rejects(start({ "server.socketPath": p, "server.port": port }), { message }, what);
    t.ok(await connectRefused(port), `${what}: no TCP listener is left`);
  }
});

t.test("a busy or foreign TCP address ends the start with a message naming it", async (t) => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()));
  t.teardown(() => new Promise<void>((r) => holder.close(() => r())));
  const port = (holder.address() as net.AddressInfo).port;
  const p = path.join(dir, "busy.sock");
  await t.rejects(start({ "server.port": port, "server.socketPath": p }), {
    message: `cannot listen on 127.0.0.1:${port}: the port is in use by another process (EADDRINUSE)`,
  });
  t.notOk(fs.existsSync(p), "no socket is left");
  // TEST-NET-1: never an address of this machine.
  await t.rejects(start({ "server.host": "192.0.2.1", "server.allowNonLoopback": true }), {
    message: /^cannot listen on 192\.0\.2\.1:0: the address is not one of this machine's \(EADDRNOTAVAIL\)$/,
  });
});

t.test("oci2gcp serve: cannot start, exits non-zero, and says nothing of serving or being ready", async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", () => r()));
  t.teardown(() => new Promise<void>((r) => holder.close(() => r())));
  const busy = (holder.address() as net.AddressInfo).port;
  const missing = path.join(dir, "gone", "serve.sock");
  const cases: [string, Record<string, unknown>, string][] = [
    ["a busy port", { "server.port": busy }, `cannot listen on 127.0.0.1:${busy}: the port is in use by another process (EADDRINUSE)`],
    ["a missing socket directory", { "server.socketPath": missing }, `directory ${path.dirname(missing)} does not exist`],
  ];
  for (const [what, settings, says] of cases) {
    const file = writeConfigFile(path.join(dir, `serve-${what.replace(/\W/g, "-")}.json`), { ...emulatorOverrides(emu), ...settings });
    const child = spawnCli(["serve", "--config", file], cleanEnv());
    children.push(child);
    const exited = await Promise.race([child.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000))]);
    t.ok(exited, `${what}: the process ends`);
    t.equal(exited?.code, 1, `${what}: exit status 1`);
    const stderr = child.stderr().trim().split("\n");
    t.equal(stderr.length, 1, `${what}: one message on stderr`);
    t.ok(stderr[0]?.startsWith("oci2gcp: cannot start: ") && stderr[0].includes(says), `${what}: ${stderr[0]}`);
    // The warm-up's upstream calls are fast here: had it been told, it would be in the output by now.
    await sleep(300);
    const msgs = child.lines.map((l) => (typeof l === "object" ? String(l.msg) : l));
    t.notOk(
      msgs.some((m) => /serving|ready|listening|first token/.test(m)),
      `${what}: nothing about serving or the first token: ${JSON.stringify(msgs)}`,
    );
  }
});
