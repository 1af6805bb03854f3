/**
 * The socket-table lookup against real connections: clients run as other
 * uids (Node's spawn takes a numeric uid and gid; no system users are needed),
 * and the daemon-side socket must name each one.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import net from "node:net";
import t, { type Test } from "tap";
import { connectionOf, lookupPeer, PeerIdentifier, type PeerIdentity } from "../../src/access/peer.js";

const ROOT = process.getuid?.() === 0;
const NOT_ROOT = "spawning clients as other uids needs root (CI and the test machines run as root)";

/**
 * A client that connects, tells the server its uid and local port in one
 * line, and stays connected until the server closes the connection (or,
 * told "reset", aborts it with a RST so its port is free at once).
 */
const CLIENT = `
const net = require("node:net");
const [host, port, localPort] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), localAddress: localPort ? host : undefined, localPort: localPort ? Number(localPort) : undefined });
s.on("connect", () => s.write(process.getuid() + " " + s.localPort + "\\n"));
s.on("data", (d) => { if (String(d).includes("reset")) s.resetAndDestroy(); });
s.on("close", () => process.exit(0));
s.on("error", (e) => { process.stderr.write(e.message); process.exit(1); });
`;

interface Accepted {
  socket: net.Socket;
  /** What the client said: its uid and its local port. */
  uid: number;
  port: number;
}

/** A listening server that hands out each connection once its client has said who it is. */
async function listen(t: Test, host: string): Promise<{ port: number; next(): Promise<Accepted> }> {
  const waiting: ((a: Accepted) => void)[] = [];
  const ready: Accepted[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.setEncoding("utf8");
    socket.once("data", (line: string) => {
      const [uid, port] = line.trim().split(" ").map(Number) as [number, number];
      const a = { socket, uid, port };
      const w = waiting.shift();
      if (w) w(a);
      else ready.push(a);
    });
  });
  server.listen(0, host);
  await once(server, "listening");
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, "close");
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    next: () => {
      const a = ready.shift();
      return a ? Promise.resolve(a) : new Promise((resolve) => waiting.push(resolve));
    },
  };
}

/** A client process running as `uid` (and gid `uid`), connected to host:port. */
function client(t: Test, uid: number | undefined, host: string, port: number, localPort?: number): ChildProcess {
  const args = ["-e", CLIENT, host, String(port), ...(localPort ? [String(localPort)] : [])];
  // No NODE_OPTIONS: the test runner's loaders are not needed, nor readable as another uid.
  const ids = uid === undefined ? {} : { uid, gid: uid };
  const child = spawn(process.execPath, args, { ...ids, cwd: "/", env: { PATH: process.env.PATH }, stdio: ["ignore", "ignore", "pipe"] });
  t.teardown(() => child.kill());
  return child;
}

function hasIPv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(0, "::1", () => s.close(() => resolve(true)));
  });
}

function uidOf(id: PeerIdentity): number | string {
  return "uid" in id ? id.uid : id.code;
}

t.test("each connection names its client's uid", { skip: ROOT ? false : NOT_ROOT }, async (t) => {
  const server = await listen(t, "127.0.0.1");
  const peers = new PeerIdentifier();
  for (const uid of [23001, 23002]) {
    client(t, uid, "127.0.0.1", server.port);
    const a = await server.next();
    t.equal(a.uid, uid, "the client runs as the uid it was given");
    t.same(await peers.identify(a.socket), { uid }, `uid ${uid} identified`);
  }
  client(t, undefined, "127.0.0.1", server.port);
  const own = await server.next();
  t.same(await peers.identify(own.socket), { uid: 0 }, "a client running as the test's own uid (root)");
});

t.test("several clients connecting at once", { skip: ROOT ? false : NOT_ROOT }, async (t) => {
  const server = await listen(t, "127.0.0.1");
  const peers = new PeerIdentifier();
  const uids = [23001, 23002, 23003, 23004, 23005, 23006];
  for (const uid of uids) client(t, uid, "127.0.0.1", server.port);
  const accepted = await Promise.all(uids.map(() => server.next()));
  const ids = await Promise.all(accepted.map((a) => peers.identify(a.socket)));
  t.same(
    ids.map(uidOf),
    accepted.map((a) => a.uid),
    "every connection its own client's uid",
  );
  t.same(accepted.map((a) => a.uid).sort(), uids, "one connection per client");
});

const NO_IPV6 = (await hasIPv6Loopback()) ? false : "this machine has no IPv6 loopback (::1)";

t.test("IPv6 loopback, and IPv4 clients of a daemon listening on ::", { skip: ROOT ? NO_IPV6 : NOT_ROOT }, async (t) => {
  const peers = new PeerIdentifier();
  const v6 = await listen(t, "::1");
  client(t, 23011, "::1", v6.port);
  const a = await v6.next();
  t.equal(a.socket.remoteAddress, "::1");
  t.same(await peers.identify(a.socket), { uid: 23011 }, "a client on ::1");

  const dual = await listen(t, "::");
  client(t, 23012, "127.0.0.1", dual.port);
  const b = await dual.next();
  t.equal(b.socket.remoteAddress, "::ffff:127.0.0.1", "Node reports the IPv4 client as mapped");
  t.same(await peers.identify(b.socket), { uid: 23012 }, "an IPv4 socket (its row is in tcp)");
  client(t, 23013, "::ffff:127.0.0.1", dual.port);
  const c = await dual.next();
  t.same(await peers.identify(c.socket), { uid: 23013 }, "an IPv6 socket connected to a mapped address (its row is in tcp6)");
});

t.test("a client whose port went to another process is not named", { skip: ROOT ? false : NOT_ROOT }, async (t) => {
  const server = await listen(t, "127.0.0.1");
  const elsewhere = await listen(t, "127.0.0.1");
  client(t, 23021, "127.0.0.1", server.port);
  const a = await server.next();
  const conn = connectionOf(a.socket)!;
  t.same(await lookupPeer(conn), { uid: 23021 }, "while connected");

  a.socket.write("reset\n");
  // Not events.once: the RST arrives as an error event before the close.
  await new Promise((resolve) => a.socket.once("close", resolve));
  client(t, 23022, "127.0.0.1", elsewhere.port, a.port);
  const b = await elsewhere.next();
  t.equal(b.port, a.port, "the second client has the first one's port");
  const rows = fs.readFileSync("/proc/net/tcp", "latin1");
  t.match(
    rows,
    new RegExp(`: 0100007F:${a.port.toString(16).toUpperCase().padStart(4, "0")} \\S+ 01 (\\S+ ){3}\\s*23022 `),
    "its row is there",
  );
  const id = await lookupPeer(conn);
  t.equal(uidOf(id), "no-row", "the old connection's lookup does not name the port's new owner");
});

t.test("a client that has hung up is not named", { skip: ROOT ? false : NOT_ROOT }, async (t) => {
  const server = await listen(t, "127.0.0.1");
  const child = client(t, 23031, "127.0.0.1", server.port);
  const a = await server.next();
  const conn = connectionOf(a.socket)!;
  child.kill("SIGKILL");
  await once(a.socket, "end");
  t.equal(uidOf(await lookupPeer(conn)), "no-row", "its socket is closing, not established");
});

/**
 * A process in a network namespace of its own (`unshare --net` execs sleep in
 * place, so its pid is the sleeping process), or why there is none.
 */
async function otherNetns(): Promise<{ pid: number } | { skip: string }> {
  if (!ROOT) return { skip: NOT_ROOT };
  const inner = spawn("unshare", ["--net", "sleep", "300"], { stdio: "ignore" });
  inner.on("error", () => {});
  t.teardown(() => inner.kill());
  const ours = fs.readlinkSync("/proc/self/ns/net");
  for (let i = 0; i < 200 && inner.exitCode === null; i++) {
    try {
      if (fs.readlinkSync(`/proc/${inner.pid}/ns/net`) !== ours) return { pid: inner.pid! };
    } catch {}
    await new Promise((r) => setTimeout(r, 25));
  }
  return { skip: "unshare --net could not give a process a network namespace of its own here" };
}

const netns = await otherNetns();

t.test("a socket table of another network namespace has no row for the caller", { skip: "skip" in netns && netns.skip }, async (t) => {
  // A client in another namespace cannot reach our loopback; what the daemon
  // would see is the other way round: a table without the caller's row. The
  // table of a process in a fresh namespace (/proc/PID/net) is exactly that.
  const { pid } = netns as { pid: number };
  const server = await listen(t, "127.0.0.1");
  client(t, 23041, "127.0.0.1", server.port);
  const a = await server.next();
  t.same(await new PeerIdentifier().identify(a.socket), { uid: 23041 }, "in our own namespace");
  const id = await new PeerIdentifier({ procRoot: `/proc/${pid}` }).identify(a.socket);
  t.equal(uidOf(id), "no-row");
  t.match(id, { reason: /another network namespace/ });
});
