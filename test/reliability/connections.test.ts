/**
 * Connection limits of both listeners (TCP and the Unix socket): with
 * server.maxConnections open, a new connection is closed at once while a
 * kept-alive client on an open one still gets its cached token; a connection
 * that sends nothing, or half a request, is closed after the request timeout.
 */

import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import t from "tap";
import { loadConfig } from "../../src/config/config.js";
import { type Daemon, type DaemonOptions, startDaemon } from "../../src/daemon.js";
import type { Emulators } from "../../src/emulator/index.js";
import { createLogger } from "../../src/log.js";
import { emulatorOverrides, startTestEmulators, tempDir } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const CAP = 20;
let emu: Emulators;
const dir = tempDir("oci2gcp-connections-");
const sockets: net.Socket[] = [];

t.before(async () => {
  emu = await startTestEmulators();
});
t.teardown(async () => {
  for (const s of sockets) s.destroy();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function start(overrides: Record<string, unknown>, connections: DaemonOptions["connections"]): Promise<Daemon> {
  const config = loadConfig({ env: {}, overrides: { ...emulatorOverrides(emu), "log.level": "silent", ...overrides } });
  const d = await startDaemon(config, { logger: createLogger("silent"), warm: false, connections });
  t.teardown(() => d.close());
  return d;
}

type Target = { port: number } | { socketPath: string };

/** A connection that sends nothing; resolves once connected. */
function idle(target: Target): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = "port" in target ? net.connect({ host: "127.0.0.1", port: target.port }) : net.connect(target.socketPath);
    sockets.push(s);
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves with the ms from `since` (default: now) until `s` is closed by the other side, or undefined after timeoutMs. */
function closedWithin(s: net.Socket, timeoutMs: number, since = Date.now()): Promise<number | undefined> {
  const t0 = since;
  return new Promise((resolve) => {
    if (s.destroyed || s.readableEnded) return resolve(Date.now() - t0);
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    };
    s.once("close", done);
    s.once("end", done);
    s.resume();
  });
}

/** GET of the default token through a keep-alive agent: its status, body, and whether the connection was reused. */
function get(agent: http.Agent, target: Target): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { ...target, host: "localhost", path: TOKEN, agent, headers: { "metadata-flavor": "Google", host: "localhost" } },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += String(c)));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
      },
    );
    req.on("error", reject);
  });
}

// Every case has its own daemon, sockets and limits, and most of their time is waiting
// for timeouts: they run side by side.
t.jobs = 5;

for (const kind of ["TCP", "Unix socket"] as const) {
  t.test(`${kind}: at the cap a new connection is closed at once; a kept-alive client still gets its cached token`, async (t) => {
    const socketPath = path.join(dir, `cap-${kind === "TCP" ? "tcp" : "unix"}.sock`);
    const d = await start({ "server.maxConnections": CAP, "server.socketPath": socketPath }, {});
    const target: Target = kind === "TCP" ? { port: Number(new URL(d.url).port) } : { socketPath };
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => agent.destroy());
    const first = await get(agent, target);
    t.equal(first.status, 200, "the token, fetched and cached");
    const held: net.Socket[] = [];
    for (let i = 1; i < CAP; i++) held.push(await idle(target));
    t.equal(held.length, CAP - 1, `${CAP - 1} idle connections and the client's: the cap`);
    const extra = await idle(target).catch(() => undefined);
    const extraClosed = extra ? await closedWithin(extra, 2000) : 0;
    t.ok(extraClosed !== undefined, `connection ${CAP + 1} is closed at once (${extraClosed} ms)`);
    const again = await get(agent, target);
    t.equal(again.status, 200, "the kept-alive client is answered");
    t.ok(again.reused, "on its open connection");
    const tokenOf = (body: string) => (JSON.parse(body) as { access_token: string }).access_token;
    t.equal(tokenOf(again.body), tokenOf(first.body), "with the cached token");
    t.equal(await closedWithin(held[0]!, 200), undefined, "the idle connections within the time limit stay open");
    for (const s of held) s.destroy();
    // Once some close, new connections are accepted again.
    let answered = 0;
    for (let i = 0; i < 20 && answered === 0; i++) {
      const fresh = new http.Agent({ keepAlive: false });
      answered = await get(fresh, target).then(
        (r) => r.status,
        () => 0,
      );
      if (!answered) await new Promise((r) => setTimeout(r, 50));
    }
    t.equal(answered, 200, "below the cap again: a new client is answered");
  });
}

t.test("maxConnections 0 means no cap", async (t) => {
  const d = await start({ "server.maxConnections": 0 }, {});
  const port = Number(new URL(d.url).port);
  const held: net.Socket[] = [];
  for (let i = 0; i < CAP + 5; i++) held.push(await idle({ port }));
  const agent = new http.Agent({ keepAlive: false });
  t.equal((await get(agent, { port })).status, 200, `answered with ${CAP + 5} idle connections open`);
  for (const s of held) s.destroy();
});

for (const kind of ["TCP", "Unix socket"] as const) {
  t.test(`${kind}: a connection that sends nothing or half a request is closed after the request timeout`, async (t) => {
    const socketPath = path.join(dir, `idle-${kind === "TCP" ? "tcp" : "unix"}.sock`);
    const d = await start({ "server.socketPath": socketPath }, { requestTimeoutMs: 1000, checkIntervalMs: 100, keepAliveMs: 5000 });
    const target: Target = kind === "TCP" ? { port: Number(new URL(d.url).port) } : { socketPath };
    // Each connection's time counts from its own connect: the cases of this file run side by side, so the
    // event loop may take a while to get from one await to the next.
    const silentAt = Date.now();
    const silent = await idle(target);
    const partialAt = Date.now();
    const partial = await idle(target);
    partial.write("GET / HTTP/1.1\r\nHost: localhost\r\n");
    const [a, b] = await Promise.all([closedWithin(silent, 5000, silentAt), closedWithin(partial, 5000, partialAt)]);
    t.ok(a !== undefined && a >= 700, `the silent connection is closed after about 1 s (${a} ms)`);
    t.ok(b !== undefined && b >= 700, `the half-sent request's connection too (${b} ms)`);

    // A kept-alive connection between requests is governed by the keep-alive timeout, not the request timeout.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(() => agent.destroy());
    t.equal((await get(agent, target)).status, 200);
    await new Promise((r) => setTimeout(r, 1500));
    const reused = await get(agent, target);
    t.equal(reused.status, 200);
    t.ok(reused.reused, "idle for longer than the request timeout, the kept-alive connection still serves");
  });
}
