/**
 * The Unix socket's file: what may be at the path before the daemon binds it,
 * and removing only the daemon's own socket afterwards.
 *
 * Node (libuv) unlinks a Unix socket's path when its server closes, whatever is
 * there by then: a second daemon's live socket, or a file put there since. So the
 * server binds a fresh name next to the path and the socket is hard-linked to the
 * path (link() never replaces anything); libuv then removes only that fresh name,
 * and the daemon removes the path itself, and only while it is still its socket.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import type http from "node:http";
import net from "node:net";
import path from "node:path";

/** Linux's sun_path holds 108 bytes, the terminating NUL included. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** A listener the daemon cannot open; `message` names the path or address and the cause. */
export class ListenError extends Error {
  readonly code = "OCI2GCP_LISTEN";
}

function kindOf(st: fs.Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a named pipe";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  return "not a socket";
}

/** Whether a process accepts connections on the socket at `p`: "live", "stale" (ECONNREFUSED) or the error code. */
function probe(p: string): Promise<"live" | "stale" | string> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once("connect", () => {
      s.destroy();
      resolve("live");
    });
    s.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ECONNREFUSED" ? "stale" : (e.code ?? e.message)));
  });
}

/**
 * Makes sure the daemon may bind `p`: the path fits sun_path, its directory
 * exists, and nothing is there but a stale socket (which is removed). Anything
 * else, a live socket included, is refused with a ListenError.
 */
export async function claimSocketPath(p: string): Promise<void> {
  const bytes = Buffer.byteLength(p);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new ListenError(`socket path ${p} is ${bytes} bytes long; a Unix socket path can have at most ${MAX_SOCKET_PATH_BYTES}`);
  }
  const dir = path.dirname(p);
  let dirStat: fs.Stats;
  try {
    dirStat = fs.statSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // A missing directory is otherwise reported by bind() as EACCES.
    if (code === "ENOENT") throw new ListenError(`socket path ${p}: directory ${dir} does not exist`);
    if (code === "ENOTDIR") throw new ListenError(`socket path ${p}: ${dir} is not a directory`);
    throw new ListenError(`socket path ${p}: cannot reach directory ${dir} (${code})`);
  }
  if (!dirStat.isDirectory()) throw new ListenError(`socket path ${p}: ${dir} is not a directory`);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new ListenError(`socket path ${p}: ${(e as NodeJS.ErrnoException).code}`);
  }
  if (!st.isSocket()) {
    throw new ListenError(`socket path ${p} is ${kindOf(st)}; refusing to replace it (remove it or choose another path)`);
  }
  const state = await probe(p);
  if (state === "live") throw new ListenError(`another process is serving on ${p}`);
  if (state !== "stale") throw new ListenError(`socket path ${p}: cannot tell whether the socket there is in use (${state})`);
  fs.unlinkSync(p);
}

/** The daemon's socket at a path, as bound by bindSocket. */
export interface BoundSocket {
  /** Stops listening and removes the path if it is still this socket. */
  close(): Promise<void>;
}

/** A name next to `p`, no longer than the limit, for binding before the link; undefined when none fits. */
function freshNameBeside(p: string): string | undefined {
  const dir = path.dirname(p);
  for (const n of [12, 6]) {
    const name = path.join(dir, `.${crypto.randomBytes(n).toString("hex").slice(0, n)}`);
    if (Buffer.byteLength(name) <= MAX_SOCKET_PATH_BYTES) return name;
  }
  return undefined;
}

function listenOn(server: http.Server, p: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once("error", onError);
    server.listen(p, () => {
      server.off("error", onError);
      resolve();
    });
  });
}

/** Stops accepting; requests in flight get their answers (the daemon's close marks them connection: close). */
async function closeServer(server: http.Server): Promise<void> {
  await new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
}

/**
 * Binds `server` at `p` (claimed first with claimSocketPath) with file mode
 * `mode`, set before the path appears so no client sees a wider one.
 */
export async function bindSocket(server: http.Server, p: string, mode: number, gid?: number): Promise<BoundSocket> {
  // With no fresh name short enough, the path is bound directly and libuv removes it on close.
  const fresh = freshNameBeside(p);
  const target = fresh ?? p;
  try {
    await listenOn(server, target);
  } catch (e) {
    throw new ListenError(`cannot listen on socket ${p}: ${(e as Error).message}`);
  }
  try {
    fs.chmodSync(target, mode);
    if (gid !== undefined) fs.chownSync(target, -1, gid);
    if (fresh) {
      fs.linkSync(fresh, p);
      fs.unlinkSync(fresh);
    }
  } catch (e) {
    await closeServer(server);
    if (fresh) fs.rmSync(fresh, { force: true });
    const code = (e as NodeJS.ErrnoException).code;
    throw new ListenError(
      code === "EEXIST"
        ? `another process took socket path ${p} while this one started`
        : `cannot listen on socket ${p}: ${(e as Error).message}`,
    );
  }
  const own = fs.lstatSync(p);
  return {
    async close() {
      await closeServer(server);
      try {
        const now = fs.lstatSync(p);
        if (now.ino === own.ino && now.dev === own.dev) fs.unlinkSync(p);
      } catch {
        // Already gone.
      }
    },
  };
}
