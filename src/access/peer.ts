import { open } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

/**
 * Which Linux user is on the other end of a loopback TCP connection.
 *
 * Node cannot ask the kernel for a TCP peer's credentials, but the kernel's
 * socket table of the network namespace (`/proc/net/tcp`, `/proc/net/tcp6`)
 * lists every socket with the uid that owns it. The caller's socket is the
 * row whose local end is the address and port the daemon sees as remote, and
 * whose far end is the daemon's own address and port, in the established
 * state. For a connection an nftables/iptables REDIRECT sent here from
 * 169.254.169.254:80, the caller's row still shows that original destination
 * as its far end, so such far ends can be accepted as well (`alsoFarEnds`).
 *
 * Why the whole connection and not just the client's port: a client port is
 * free for anyone once its connection is gone, and TIME_WAIT rows (owned by
 * uid 0) linger after it. While the daemon holds its end of the connection open,
 * the kernel lets no other socket be established with the same four addresses
 * and ports, so an established row with both ends equal to this connection's is
 * this connection's client and nobody else's. A process that reused the port
 * for a connection elsewhere has another far end; a client that has already
 * closed is no longer established. Either way the lookup finds no row and says
 * so rather than naming the wrong uid.
 *
 * The table is the reader's own network namespace: a client in another one
 * (a container with its own network) has no row there, nor does any client
 * when /proc is hidden from the daemon. Such callers cannot be identified.
 */

/** An address and port, as Node reports them (IPv4 dotted, IPv6, or IPv4-mapped IPv6). */
export interface Endpoint {
  address: string;
  port: number;
}

/** Both ends of a TCP connection as the daemon sees them. */
export interface Connection {
  /** The far end of the daemon's socket: the client's address and port. */
  client: Endpoint;
  /** The daemon's own end (the address and port the client connected to). */
  daemon: Endpoint;
}

/** Why a caller could not be identified; stable codes, for counters and tests. */
export type UnidentifiedCode = "no-address" | "no-row" | "ambiguous" | "unreadable";

export type PeerIdentity = { uid: number } | { code: UnidentifiedCode; reason: string };

export interface PeerLookupOptions {
  /** Where the socket tables are read: `<procRoot>/net/tcp` and `<procRoot>/net/tcp6`. Default `/proc`. */
  procRoot?: string;
  /**
   * Far ends accepted besides the daemon's own address, for connections the
   * kernel redirected here (e.g. `{ address: "169.254.169.254", port: 80 }`).
   */
  alsoFarEnds?: readonly Endpoint[];
  /** How the kernel prints addresses: in the host's byte order. Default: this host's. */
  byteOrder?: "LE" | "BE";
}

type Table = "tcp" | "tcp6";

const ESTABLISHED = "01";

/**
 * The 16 bytes of an IPv6 address, or of the IPv4-mapped form (::ffff:a.b.c.d)
 * of an IPv4 address, so that both spellings of a mapped address compare equal.
 * Undefined for anything that is not an IP address.
 */
export function addressBytes(address: string): Uint8Array | undefined {
  if (net.isIPv4(address)) return mapped(address);
  const zone = address.indexOf("%");
  let a = zone >= 0 ? address.slice(0, zone) : address;
  if (!net.isIPv6(a)) return undefined;
  const lastColon = a.lastIndexOf(":");
  if (a.includes(".", lastColon)) {
    const v4 = mapped(a.slice(lastColon + 1));
    a = `${a.slice(0, lastColon + 1)}${hex16(v4[12]!, v4[13]!)}:${hex16(v4[14]!, v4[15]!)}`;
  }
  const [head, tail] = a.split("::") as [string, string | undefined];
  const words = (s: string | undefined) => (s ? s.split(":").map((w) => Number.parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

function mapped(v4: string): Uint8Array {
  const bytes = new Uint8Array(16);
  bytes[10] = bytes[11] = 0xff;
  v4.split(".").forEach((o, i) => {
    bytes[12 + i] = Number(o);
  });
  return bytes;
}

function hex16(hi: number, lo: number): string {
  return ((hi << 8) | lo).toString(16);
}

function isMapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/** One 32-bit word of an address as the kernel prints it: `%08X` of the word read in host byte order. */
function word(b: Uint8Array, at: number, order: "LE" | "BE"): string {
  const idx = order === "LE" ? [at + 3, at + 2, at + 1, at] : [at, at + 1, at + 2, at + 3];
  return idx.map((i) => b[i]!.toString(16).padStart(2, "0")).join("");
}

/**
 * An endpoint spelled as `table` prints it (`0100007F:1FF5` for 127.0.0.1:8181
 * on a little-endian host), or undefined when the table cannot hold it (an
 * IPv6 address in the IPv4 table).
 */
export function encodeEndpoint(e: Endpoint, table: Table, order: "LE" | "BE" = os.endianness()): string | undefined {
  const b = addressBytes(e.address);
  if (!b || !Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) return undefined;
  const port = e.port.toString(16).padStart(4, "0");
  if (table === "tcp") return isMapped(b) ? `${word(b, 12, order)}:${port}`.toUpperCase() : undefined;
  return `${word(b, 0, order)}${word(b, 4, order)}${word(b, 8, order)}${word(b, 12, order)}:${port}`.toUpperCase();
}

/** A row of a socket table, decoded; for diagnostics and tests (the lookup compares the kernel's spelling). */
export interface SocketRow {
  local: Endpoint;
  remote: Endpoint;
  /** The TCP state as the kernel prints it: "01" established, "0A" listening, "06" TIME_WAIT... */
  state: string;
  uid: number;
  inode: number;
}

function decodeEndpoint(field: string, order: "LE" | "BE"): Endpoint | undefined {
  const m = /^([0-9A-F]{8}|[0-9A-F]{32}):([0-9A-F]{4})$/i.exec(field);
  if (!m) return undefined;
  const hex = m[1]!;
  const bytes = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    for (let i = 0; i < 4; i++) {
      const byte = Number.parseInt(hex.slice(8 * w + 2 * i, 8 * w + 2 * i + 2), 16);
      bytes[4 * w + (order === "LE" ? 3 - i : i)] = byte;
    }
  }
  const port = Number.parseInt(m[2]!, 16);
  if (bytes.length === 4) return { address: bytes.join("."), port };
  if (isMapped(bytes)) return { address: `::ffff:${bytes.slice(12).join(".")}`, port };
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(hex16(bytes[i]!, bytes[i + 1]!));
  return { address: new net.SocketAddress({ address: groups.join(":"), family: "ipv6" }).address, port };
}

/** Every well-formed row of a socket table's text (the header and anything unparsable are skipped). */
export function parseSocketTable(text: string, order: "LE" | "BE" = os.endianness()): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    const local = f[1] && decodeEndpoint(f[1], order);
    const remote = f[2] && decodeEndpoint(f[2], order);
    if (!local || !remote || !/^\d+$/.test(f[7] ?? "")) continue;
    rows.push({ local, remote, state: f[3]!, uid: Number(f[7]), inode: Number(f[9]) });
  }
  return rows;
}

/**
 * The uids of the established sockets in `text` whose local end is `local` and
 * whose far end is one of `farEnds`, all spelled as the kernel prints them.
 * Each row is `%4d: LOCAL REMOTE ST ...`: the only ": " on a line precedes
 * the local address, so a search for it finds exactly the rows to look at.
 * A socket is counted once however many of its rows the text holds: the kernel
 * generates a large table anew for each read call past the first and resumes at
 * the byte offset, so when rows before it have gone meanwhile, a row already
 * read comes again (with the same inode).
 */
export function matchingUids(text: string, local: string, farEnds: ReadonlySet<string>): number[] | "malformed" {
  const uids: number[] = [];
  const inodes = new Set<string>();
  const needle = `: ${local} `;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) {
    const end = text.indexOf("\n", at);
    const f = text.slice(at + 2, end < 0 ? undefined : end).split(/\s+/);
    // f: local, remote, state, tx:rx, tr:when, retransmits, uid, timeout, inode, ...
    if (!farEnds.has(f[1]!) || f[2] !== ESTABLISHED) continue;
    if (!/^\d+$/.test(f[6] ?? "") || !/^\d+$/.test(f[8] ?? "")) return "malformed";
    if (inodes.has(f[8]!)) continue;
    inodes.add(f[8]!);
    uids.push(Number(f[6]));
  }
  return uids;
}

function show(e: Endpoint): string {
  return e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Reads a socket table; undefined when the table does not exist and so can hold no row. */
export type ReadTable = (file: string) => Promise<string | undefined>;

/**
 * A buffer for reading a table whole, kept between reads and grown to fit the
 * largest table seen; undefined while a read holds it (a concurrent read gets
 * its own). A socket table has no size until it is generated, and the kernel
 * generates it again from the start of its hash table for each read call past
 * the first, so a table of thousands of rows read in readFile's 64 KiB pieces
 * costs several times one read into a buffer that holds it all.
 */
let spare: Buffer | undefined = Buffer.alloc(256 * 1024);

async function readWhole(file: string): Promise<string> {
  let buf = spare ?? Buffer.alloc(256 * 1024);
  spare = undefined;
  const fh = await open(file, "r");
  try {
    let n = 0;
    for (;;) {
      if (n === buf.length) {
        const bigger = Buffer.alloc(buf.length * 2);
        buf.copy(bigger, 0, 0, n);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) return buf.toString("latin1", 0, n);
      n += bytesRead;
    }
  } finally {
    await fh.close();
    keep(buf);
  }
}

function keep(buf: Buffer): void {
  if (!spare || spare.length < buf.length) spare = buf;
}

export const readTable: ReadTable = async (file) => {
  try {
    return await readWhole(file);
  } catch (e) {
    // No tcp6 table when the kernel runs without IPv6: nothing can be in it.
    if ((e as NodeJS.ErrnoException).code === "ENOENT" && file.endsWith("6")) return undefined;
    throw e;
  }
};

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const ignore = () => {};

/**
 * Reads of a socket table shared by the lookups that ask for it before the
 * read begins. The kernel lists a connection before Node hands it to the
 * server, so a read that begins after a lookup was asked for has that
 * lookup's row; joining a read that has already begun would not be safe, and
 * is never done. At most one read of a table runs at a time: lookups that
 * arrive meanwhile wait for the next one, which they all share. A burst of new
 * connections costs a few reads instead of one each.
 */
export class SharedTableReads {
  /** The next read of each table, not begun yet: anyone may join it. */
  private readonly queued = new Map<string, Promise<string | undefined>>();
  /** The read of each table under way (settled, never rejected): the next one starts after it. */
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly readOnce: ReadTable = readTable) {}

  read: ReadTable = (file) => {
    const queued = this.queued.get(file);
    if (queued) return queued;
    const next = (this.running.get(file) ?? Promise.resolve()).then(nextTurn).then(() => {
      this.queued.delete(file);
      const read = this.readOnce(file);
      const done = read.then(ignore, ignore);
      this.running.set(file, done);
      done.then(() => {
        if (this.running.get(file) === done) this.running.delete(file);
      });
      return read;
    });
    this.queued.set(file, next);
    return next;
  };
}

/**
 * The uid owning the client's end of `conn`, from the socket tables under
 * `procRoot`. An IPv4 (or IPv4-mapped) client is looked for in `tcp` first
 * and then in `tcp6`, where an IPv6 socket connected to a mapped address
 * appears; a plain IPv6 client only in `tcp6`. One read per table at most.
 */
export async function lookupPeer(conn: Connection, options: PeerLookupOptions = {}, read: ReadTable = readTable): Promise<PeerIdentity> {
  const order = options.byteOrder ?? os.endianness();
  const root = options.procRoot ?? "/proc";
  const fars = [conn.daemon, ...(options.alsoFarEnds ?? [])];
  const tables: Table[] = ["tcp", "tcp6"];
  const searched: string[] = [];
  for (const table of tables) {
    const local = encodeEndpoint(conn.client, table, order);
    if (!local) continue;
    const farEnds = new Set(fars.map((e) => encodeEndpoint(e, table, order)).filter((x): x is string => x !== undefined));
    const file = path.join(root, "net", table);
    let text: string | undefined;
    try {
      text = await read(file);
    } catch (e) {
      return {
        code: "unreadable",
        reason: `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)}), so no caller can be identified`,
      };
    }
    if (text === undefined) continue;
    searched.push(file);
    const uids = matchingUids(text, local, farEnds);
    if (uids === "malformed") return { code: "unreadable", reason: `${file} is not in the format of the kernel's socket table` };
    if (uids.length === 1) return { uid: uids[0]! };
    if (uids.length > 1) {
      return { code: "ambiguous", reason: `${uids.length} established sockets in ${file} match the connection from ${show(conn.client)}` };
    }
  }
  if (searched.length === 0) {
    return { code: "unreadable", reason: `no socket table under ${path.join(root, "net")} can hold ${show(conn.client)}` };
  }
  return {
    code: "no-row",
    reason:
      `no established connection from ${show(conn.client)} to ${fars.map(show).join(" or ")} in ${searched.join(" or ")}: ` +
      "the client is in another network namespace (a container), or /proc is hidden from the daemon, or the client has gone",
  };
}

/** Both ends of a socket, or undefined once it has none (closed, or a Unix socket). */
export function connectionOf(socket: net.Socket): Connection | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return undefined;
  return { client: { address: remoteAddress, port: remotePort }, daemon: { address: localAddress, port: localPort } };
}

const NO_ADDRESS: PeerIdentity = { code: "no-address", reason: "the connection has no TCP address (it is closed, or is a Unix socket)" };

interface Entry {
  promise: Promise<PeerIdentity>;
  settled?: PeerIdentity;
}

/**
 * Identifies each connection once and keeps the answer with it, so every
 * later request on a kept-alive connection costs a map lookup. Requests that
 * arrive while the first lookup is under way wait for that same lookup. A
 * table that could not be read is not remembered: the next request on the
 * connection tries again. Lookups for connections that arrive together share
 * their reads of the table (see SharedTableReads).
 */
export class PeerIdentifier {
  private readonly seen = new WeakMap<net.Socket, Entry>();
  private readonly reads: SharedTableReads;

  constructor(
    readonly options: PeerLookupOptions = {},
    readOnce: ReadTable = readTable,
  ) {
    this.reads = new SharedTableReads(readOnce);
  }

  /** The uid behind `conn`, looked up now (not remembered); reads are shared with concurrent lookups. */
  lookup(conn: Connection): Promise<PeerIdentity> {
    return lookupPeer(conn, this.options, this.reads.read);
  }

  /** The uid behind this connection: looked up on the first call, remembered for the connection's life. */
  identify(socket: net.Socket): Promise<PeerIdentity> {
    const hit = this.seen.get(socket);
    if (hit) return hit.promise;
    const conn = connectionOf(socket);
    const lookup: Promise<PeerIdentity> = conn ? this.lookup(conn) : Promise.resolve(NO_ADDRESS);
    const entry: Entry = {
      promise: lookup.then((id) => {
        if ("code" in id && id.code === "unreadable") this.seen.delete(socket);
        else entry.settled = id;
        return id;
      }),
    };
    this.seen.set(socket, entry);
    return entry.promise;
  }

  /** The identity already found for this connection, without waiting; undefined until the first lookup has finished. */
  known(socket: net.Socket): PeerIdentity | undefined {
    return this.seen.get(socket)?.settled;
  }
}
