/**
 * The socket-table lookup on fixture tables: the kernel's spelling of
 * addresses, and which row names the caller (both ends, established only).
 */

import fs from "node:fs";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import {
  addressBytes,
  encodeEndpoint,
  lookupPeer,
  matchingUids,
  PeerIdentifier,
  type PeerIdentity,
  parseSocketTable,
  readTable,
  SharedTableReads,
} from "../../src/access/peer.js";

const TCP_HEADER =
  "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     ";
const TCP6_HEADER =
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

/** A table as the kernel prints it, from [local, remote, state, uid] rows. */
function table(header: string, rows: [string, string, string, number][]): string {
  const lines = rows.map(
    ([l, r, st, uid], i) =>
      `${String(i).padStart(4)}: ${l} ${r} ${st} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 ${40000 + i} 1 ` +
      "0000000000000000 100 0 0 10 0",
  );
  return `${[header, ...lines].join("\n")}\n`;
}

const tcp = (rows: [string, string, string, number][]) => table(TCP_HEADER, rows);
const tcp6 = (rows: [string, string, string, number][]) => table(TCP6_HEADER, rows);

/** A fresh procRoot holding these tables (a table left out does not exist). */
function proc(t: Test, tables: { tcp?: string; tcp6?: string }): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-proc-"));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, "net"));
  for (const [name, text] of Object.entries(tables)) fs.writeFileSync(path.join(root, "net", name), text);
  return root;
}

const DAEMON = { address: "127.0.0.1", port: 8181 }; // 0100007F:1FF5
const CLIENT = { address: "127.0.0.1", port: 54552 }; // 0100007F:D518
const LISTEN_ROW: [string, string, string, number] = ["0100007F:1FF5", "00000000:0000", "0A", 0];
const SERVER_ROW: [string, string, string, number] = ["0100007F:1FF5", "0100007F:D518", "01", 0];
const MAPPED_LO = "0000000000000000FFFF00000100007F";
const LO6 = "00000000000000000000000001000000";

function uidOf(id: PeerIdentity): number | string {
  return "uid" in id ? id.uid : id.code;
}

t.test("the kernel's spelling of an address", async (t) => {
  t.equal(encodeEndpoint({ address: "127.0.0.1", port: 8181 }, "tcp", "LE"), "0100007F:1FF5", "IPv4 bytes little-endian, port big-endian");
  t.equal(encodeEndpoint({ address: "127.0.0.1", port: 8181 }, "tcp", "BE"), "7F000001:1FF5", "on a big-endian host, in order");
  t.equal(encodeEndpoint({ address: "169.254.169.254", port: 80 }, "tcp", "LE"), "FEA9FEA9:0050");
  t.equal(encodeEndpoint({ address: "::ffff:127.0.0.1", port: 8181 }, "tcp", "LE"), "0100007F:1FF5", "a mapped address is its IPv4 row");
  t.equal(encodeEndpoint({ address: "::1", port: 8181 }, "tcp", "LE"), undefined, "IPv6 has no row in the IPv4 table");
  t.equal(encodeEndpoint({ address: "::1", port: 8181 }, "tcp6", "LE"), `${LO6}:1FF5`, "four little-endian words");
  t.equal(encodeEndpoint({ address: "127.0.0.1", port: 8181 }, "tcp6", "LE"), `${MAPPED_LO}:1FF5`, "IPv4 in tcp6 is mapped");
  t.equal(encodeEndpoint({ address: "::ffff:7f00:1", port: 8181 }, "tcp6", "LE"), `${MAPPED_LO}:1FF5`, "hex spelling of a mapped address");
  t.equal(
    encodeEndpoint({ address: "2001:db8::10:2", port: 443 }, "tcp6", "LE"),
    "B80D0120000000000000000002001000:01BB",
    "words of 2001:0db8:0000:0000:0000:0000:0010:0002",
  );
  t.equal(encodeEndpoint({ address: "fe80::1%lo", port: 1 }, "tcp6", "LE"), "000080FE000000000000000001000000:0001", "zone dropped");
  t.equal(encodeEndpoint({ address: "localhost", port: 1 }, "tcp", "LE"), undefined, "not an address");
  t.equal(encodeEndpoint({ address: "127.0.0.1", port: 70000 }, "tcp", "LE"), undefined, "not a port");
  t.same(addressBytes("::ffff:127.0.0.1"), addressBytes("127.0.0.1"), "both spellings of a mapped address are the same bytes");
  t.equal(addressBytes("1.2.3"), undefined);
});

t.test("rows decoded", async (t) => {
  const rows = parseSocketTable(
    tcp([LISTEN_ROW, ["0100007F:D518", "0100007F:1FF5", "01", 23001]]) +
      tcp6([[`${MAPPED_LO}:D520`, `${LO6}:1FF5`, "06", 0]])
        .split("\n")
        .slice(1)
        .join("\n"),
    "LE",
  );
  t.same(rows, [
    { local: DAEMON, remote: { address: "0.0.0.0", port: 0 }, state: "0A", uid: 0, inode: 40000 },
    { local: CLIENT, remote: DAEMON, state: "01", uid: 23001, inode: 40001 },
    { local: { address: "::ffff:127.0.0.1", port: 54560 }, remote: { address: "::1", port: 8181 }, state: "06", uid: 0, inode: 40000 },
  ]);
});

t.test("IPv4: the client's row, not the daemon's own end or the listener", async (t) => {
  const root = proc(t, { tcp: tcp([LISTEN_ROW, SERVER_ROW, ["0100007F:D518", "0100007F:1FF5", "01", 23001]]), tcp6: tcp6([]) });
  t.same(await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: root, byteOrder: "LE" }), { uid: 23001 });
});

t.test("a row that is not established is not the caller", async (t) => {
  for (const st of ["06", "08", "04", "05", "02"]) {
    const root = proc(t, { tcp: tcp([SERVER_ROW, ["0100007F:D518", "0100007F:1FF5", st, 0]]), tcp6: tcp6([]) });
    const id = await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: root, byteOrder: "LE" });
    t.equal(uidOf(id), "no-row", `state ${st}`);
  }
});

t.test("the client's port reused for a connection elsewhere is not the caller", async (t) => {
  const elsewhere: [string, string, string, number] = ["0100007F:D518", "0100007F:1538", "01", 23002];
  const alone = proc(t, { tcp: tcp([SERVER_ROW, elsewhere]), tcp6: tcp6([]) });
  const id = await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: alone, byteOrder: "LE" });
  t.equal(uidOf(id), "no-row", "same local end, other far end: no match");
  t.match(id, { reason: /no established connection from 127\.0\.0\.1:54552 to 127\.0\.0\.1:8181 in .*tcp or .*tcp6: .*network namespace/ });
  const both = proc(t, { tcp: tcp([elsewhere, ["0100007F:D518", "0100007F:1FF5", "01", 23001]]), tcp6: tcp6([]) });
  t.same(await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: both, byteOrder: "LE" }), { uid: 23001 });
  const otherAddress = proc(t, { tcp: tcp([["0200007F:D518", "0100007F:1FF5", "01", 23003]]), tcp6: tcp6([]) });
  t.equal(uidOf(await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: otherAddress, byteOrder: "LE" })), "no-row", "127.0.0.2");
});

t.test("two matching rows: nobody is named", async (t) => {
  const root = proc(t, {
    tcp: tcp([
      ["0100007F:D518", "0100007F:1FF5", "01", 23001],
      ["0100007F:D518", "0100007F:1FF5", "01", 23002],
    ]),
  });
  const id = await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: root, byteOrder: "LE" });
  t.equal(uidOf(id), "ambiguous");
  t.match(id, { reason: /2 established sockets/ });
});

t.test("one socket read twice, as a changing table can be, is one match", async (t) => {
  const text = tcp([SERVER_ROW, ["0100007F:D518", "0100007F:1FF5", "01", 23001]]);
  const row = text.trimEnd().split("\n").at(-1)!;
  // The same row again, under another slot number: what a read resumed past rows that have gone gives.
  const again = `${text}${row.replace(/^\s*\d+:/, "   7:")}\n`;
  t.same(matchingUids(again, "0100007F:D518", new Set(["0100007F:1FF5"])), [23001]);
  const root = proc(t, { tcp: again, tcp6: tcp6([]) });
  t.same(await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: root, byteOrder: "LE" }), { uid: 23001 });
});

t.test("IPv6 loopback", async (t) => {
  const root = proc(t, {
    tcp: tcp([["0100007F:9B1C", "0100007F:1FF5", "01", 23002]]),
    tcp6: tcp6([
      [`${LO6}:1FF5`, `${LO6}:9B1C`, "01", 0],
      [`${LO6}:9B1C`, `${LO6}:1FF5`, "01", 23001],
    ]),
  });
  const conn = { client: { address: "::1", port: 39708 }, daemon: { address: "::1", port: 8181 } };
  t.same(await lookupPeer(conn, { procRoot: root, byteOrder: "LE" }), { uid: 23001 }, "not the IPv4 row with the same ports");
});

t.test("IPv4-mapped: a daemon on :: and a client in tcp or in tcp6", async (t) => {
  const daemon = { address: "::ffff:127.0.0.1", port: 8181 };
  const client = { address: "::ffff:127.0.0.1", port: 54552 };
  const server6: [string, string, string, number] = [`${MAPPED_LO}:1FF5`, `${MAPPED_LO}:D518`, "01", 0];
  const inTcp = proc(t, { tcp: tcp([["0100007F:D518", "0100007F:1FF5", "01", 23001]]), tcp6: tcp6([server6]) });
  t.same(await lookupPeer({ client, daemon }, { procRoot: inTcp, byteOrder: "LE" }), { uid: 23001 }, "an IPv4 socket's row");
  const inTcp6 = proc(t, { tcp: tcp([]), tcp6: tcp6([server6, [`${MAPPED_LO}:D518`, `${MAPPED_LO}:1FF5`, "01", 23002]]) });
  t.same(await lookupPeer({ client, daemon }, { procRoot: inTcp6, byteOrder: "LE" }), { uid: 23002 }, "an IPv6 socket's mapped row");
  t.same(
    await lookupPeer({ client: CLIENT, daemon: DAEMON }, { procRoot: inTcp6, byteOrder: "LE" }),
    { uid: 23002 },
    "dotted spellings find the mapped row",
  );
});

t.test("a connection redirected from 169.254.169.254:80", async (t) => {
  // As seen on this kind of host: the daemon on 127.0.0.1:18181 sees 169.254.169.254:47276.
  const root = proc(t, {
    tcp: tcp([
      ["0100007F:46A5", "00000000:0000", "0A", 0],
      ["0100007F:46A5", "FEA9FEA9:B8AC", "01", 0],
      ["FEA9FEA9:B8AC", "FEA9FEA9:0050", "01", 23001],
    ]),
    tcp6: tcp6([]),
  });
  const conn = { client: { address: "169.254.169.254", port: 47276 }, daemon: { address: "127.0.0.1", port: 18181 } };
  const wellKnown = [{ address: "169.254.169.254", port: 80 }];
  t.same(await lookupPeer(conn, { procRoot: root, byteOrder: "LE", alsoFarEnds: wellKnown }), { uid: 23001 });
  t.equal(uidOf(await lookupPeer(conn, { procRoot: root, byteOrder: "LE" })), "no-row", "only when that far end is accepted");
  const other = [{ address: "169.254.169.254", port: 8080 }];
  t.equal(uidOf(await lookupPeer(conn, { procRoot: root, byteOrder: "LE", alsoFarEnds: other })), "no-row", "exactly that port");
});

t.test("tables that cannot be read", async (t) => {
  const conn = { client: CLIENT, daemon: DAEMON };
  const none = proc(t, {});
  const gone = await lookupPeer(conn, { procRoot: none, byteOrder: "LE" });
  t.equal(uidOf(gone), "unreadable");
  t.match(gone, { reason: /cannot read .*net\/tcp \(ENOENT\)/ });
  const dir = proc(t, { tcp6: "" });
  fs.mkdirSync(path.join(dir, "net/tcp"));
  t.match(await lookupPeer(conn, { procRoot: dir, byteOrder: "LE" }), { code: "unreadable", reason: /EISDIR/ });
  const noV6 = proc(t, { tcp: tcp([["0100007F:D518", "0100007F:1FF5", "01", 23001]]) });
  t.same(await lookupPeer(conn, { procRoot: noV6, byteOrder: "LE" }), { uid: 23001 }, "no tcp6 (IPv6 off): the IPv4 table is enough");
  const v6conn = { client: { address: "::1", port: 39708 }, daemon: { address: "::1", port: 8181 } };
  t.match(await lookupPeer(v6conn, { procRoot: noV6, byteOrder: "LE" }), { code: "unreadable", reason: /no socket table/ });
  const garbled = proc(t, {
    tcp: `${TCP_HEADER}\n   0: 0100007F:D518 0100007F:1FF5 01 00000000:00000000 00:00000000 00000000 alice 0 1\n`,
  });
  t.match(await lookupPeer(conn, { procRoot: garbled, byteOrder: "LE" }), { code: "unreadable", reason: /not in the format/ });
});

t.test("matchingUids looks only at the local-address column", async (t) => {
  // The daemon's own row has the client's endpoint as its far end: never a match.
  const text = tcp([SERVER_ROW, ["0100007F:1FF5", "0100007F:D518", "01", 5]]);
  t.same(matchingUids(text, "0100007F:D518", new Set(["0100007F:1FF5"])), []);
  t.same(matchingUids(text, "0100007F:1FF5", new Set(["0100007F:D518"])), [0, 5]);
});

t.test("PeerIdentifier: one lookup per connection, kept with it", async (t) => {
  const root = proc(t, { tcp: tcp([["0100007F:D518", "0100007F:1FF5", "01", 23001]]), tcp6: tcp6([]) });
  const peers = new PeerIdentifier({ procRoot: root, byteOrder: "LE" });
  const socket = { remoteAddress: "127.0.0.1", remotePort: 54552, localAddress: "127.0.0.1", localPort: 8181 } as net.Socket;
  const first = peers.identify(socket);
  t.equal(peers.identify(socket), first, "a second request while the lookup runs waits for the same lookup");
  t.equal(peers.known(socket), undefined, "nothing known before the lookup has finished");
  t.same(await first, { uid: 23001 });
  t.same(peers.known(socket), { uid: 23001 });
  fs.writeFileSync(path.join(root, "net/tcp"), tcp([]));
  t.same(await peers.identify(socket), { uid: 23001 }, "the table is not read again for this connection");
  const other = { ...socket, remotePort: 54553 } as net.Socket;
  t.equal(uidOf(await peers.identify(other)), "no-row", "another connection is looked up");
  t.equal(uidOf(peers.known(other)!), "no-row", "and a caller that is not in the table stays unidentified");
  const closed = { remoteAddress: undefined } as net.Socket;
  t.match(await peers.identify(closed), { code: "no-address" });
});

t.test("PeerIdentifier: a table that could not be read is read again next time", async (t) => {
  const root = proc(t, {});
  fs.rmdirSync(path.join(root, "net"));
  const peers = new PeerIdentifier({ procRoot: root, byteOrder: "LE" });
  const socket = { remoteAddress: "127.0.0.1", remotePort: 54552, localAddress: "127.0.0.1", localPort: 8181 } as net.Socket;
  t.equal(uidOf(await peers.identify(socket)), "unreadable");
  t.equal(peers.known(socket), undefined);
  fs.mkdirSync(path.join(root, "net"));
  fs.writeFileSync(path.join(root, "net/tcp"), tcp([["0100007F:D518", "0100007F:1FF5", "01", 23001]]));
  t.same(await peers.identify(socket), { uid: 23001 });
});

/** A few turns of the event loop: long enough for a queued read to begin. */
async function turn(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

t.test("SharedTableReads: lookups asked together share a read; none joins a read already begun", async (t) => {
  const begun: { file: string; finish(text: string): void }[] = [];
  const reads = new SharedTableReads((file) => new Promise((finish) => begun.push({ file, finish })));
  const a = reads.read("/p/net/tcp");
  const b = reads.read("/p/net/tcp");
  const v6 = reads.read("/p/net/tcp6");
  t.equal(a, b, "asked in the same turn: the same read");
  t.not(a, v6, "another table, another read");
  await turn();
  t.same(
    begun.map((r) => r.file),
    ["/p/net/tcp", "/p/net/tcp6"],
    "one read of each table",
  );
  const c = reads.read("/p/net/tcp");
  t.not(c, a, "asked after the read began: not served by it");
  await turn();
  t.equal(begun.length, 2, "and its read waits while one is running");
  begun[0]!.finish("first");
  t.equal(await a, "first");
  await turn();
  t.equal(begun.length, 3, "the next read begins once the running one is done");
  const d = reads.read("/p/net/tcp");
  const e = reads.read("/p/net/tcp");
  t.equal(d, e, "lookups arriving meanwhile share the read after it");
  begun[2]!.finish("second");
  t.equal(await c, "second");
  await turn();
  begun[3]!.finish("third");
  t.equal(await d, "third");
  t.equal(begun.length, 4);
});

t.test("PeerIdentifier: a burst of new connections costs one read", async (t) => {
  const rows: [string, string, string, number][] = [];
  for (let i = 0; i < 50; i++) rows.push([`0100007F:${(50000 + i).toString(16).toUpperCase()}`, "0100007F:1FF5", "01", 23000 + i]);
  const root = proc(t, { tcp: tcp(rows), tcp6: tcp6([]) });
  const files: string[] = [];
  const peers = new PeerIdentifier({ procRoot: root, byteOrder: "LE" }, (file) => {
    files.push(file);
    return readTable(file);
  });
  const sockets = rows.map(
    (_, i) => ({ remoteAddress: "127.0.0.1", remotePort: 50000 + i, localAddress: "127.0.0.1", localPort: 8181 }) as net.Socket,
  );
  const ids = await Promise.all(sockets.map((s) => peers.identify(s)));
  t.same(
    ids,
    rows.map((_, i) => ({ uid: 23000 + i })),
    "each its own uid",
  );
  t.same(files, [path.join(root, "net/tcp")], "from one read of the table");
});

t.test("readTable: tables larger than its buffer, and reads at the same time, each get their own whole text", async (t) => {
  const rows = (n: number, remote: string): [string, string, string, number][] =>
    Array.from({ length: n }, (_, i) => ["0100007F:1FF5", `${remote}:${(1024 + i).toString(16).toUpperCase().padStart(4, "0")}`, "06", 0]);
  const big = tcp(rows(6000, "0100007F"));
  const other = tcp(rows(5000, "0200007F"));
  t.ok(big.length > 512 * 1024, `a table of ${big.length} bytes, more than the first buffer`);
  const root = proc(t, { tcp: big, tcp6: other });
  const [a, b] = await Promise.all([readTable(path.join(root, "net", "tcp")), readTable(path.join(root, "net", "tcp6"))]);
  t.equal(a, big, "the whole of the first");
  t.equal(b, other, "the whole of the second, read at the same time");
  t.equal(await readTable(path.join(root, "net", "tcp")), big, "and again with the grown buffer");
  t.equal(await readTable(path.join(root, "net", "tcp6")), other, "which a shorter table does not overrun");
});
