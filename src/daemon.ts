import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { type AccountFiles, socketGid } from "./access/accounts.js";
import { Chain } from "./chain.js";
import { type Config, expandHome, isLoopbackHost, readOciProfile } from "./config/config.js";
import type { Logger } from "./log.js";
import { isWorldOrGroupReadable, type SigningIdentity } from "./oci/principal.js";
import { buildApp, type ConnectionSettings, makeHttpServer } from "./server/app.js";
import { answerClientError } from "./server/guard.js";
import { Metrics } from "./server/metrics.js";
import { type BoundSocket, bindSocket, claimSocketPath, ListenError } from "./server/socket-file.js";
import { TokenFileSink } from "./sink/token-file.js";
import type { CacheEvents } from "./token/cache.js";
import type { TokenSource } from "./token/token-source.js";
import type { Hop } from "./upstream/hop-error.js";
import { startWarmUp, type WarmUp } from "./warm-up.js";

// Where the benchmarks and the test harness still import it from.

export interface Daemon {
  /** http://host:port of the TCP listener. */
  url: string;
  app: FastifyInstance;
  chain: Chain;
  metrics: Metrics;
  close(): Promise<void>;
}

export interface DaemonOptions {
  logger: Logger;
  /** Extra observers of cache refreshes (metrics). */
  events?: CacheEvents;
  principal?: TokenSource<SigningIdentity>;
  /** Fetch the default token and the prefetch variants at start, so the first client does not wait. Default true. */
  warm?: boolean;
  /** Timeouts of every listener (the connection cap is server.maxConnections). */
  connections?: Omit<ConnectionSettings, "maxConnections">;
  /** Where the user and group databases for access.rules are read; default /etc/passwd and /etc/group. */
  accountFiles?: AccountFiles;
}

function keyFilesOf(config: Config): string[] {
  const out: string[] = [];
  const rp = config.oci.resourcePrincipal;
  if (config.oci.principal === "resource" && rp.privateKey?.startsWith("/")) out.push(rp.privateKey);
  if (config.oci.principal === "config-file" || config.oci.principal === "session") {
    const key = readOciProfile(config.oci.configFile, config.oci.profile)?.key_file;
    if (key) out.push(expandHome(key));
  }
  return out;
}

/** Starts the chain and the HTTP listeners of `oci2gcp serve`. */
export async function startDaemon(config: Config, o: DaemonOptions): Promise<Daemon> {
  const log = o.logger;
  const metrics = new Metrics();
  const events: CacheEvents<Hop> = {
    onRefresh(e) {
      if (e.ok) {
        log.debug(
          { hop: e.label, key: e.key, validForSeconds: Math.round((e.token!.expiresAt - Date.now()) / 1000), durationMs: e.durationMs },
          "token renewed",
        );
      } else {
        log.warn({ hop: e.label, key: e.key, err: e.error, durationMs: e.durationMs }, "token renewal failed");
      }
      metrics.events.onRefresh?.(e);
      o.events?.onRefresh?.(e);
    },
  };
  const chain = new Chain(config, events, { principal: o.principal });
  metrics.attach(chain);
  // The first token is fetched while the HTTP side is set up: its upstream calls
  // overlap with building the app and binding the listeners. Its outcome is told
  // only once the daemon serves: after a failed start, "ready" would be a lie.
  let served!: () => void;
  const serving = new Promise<void>((resolve) => {
    served = resolve;
  });
  const warmUp = o.warm !== false ? startWarmUp(chain, config, log, { serving }) : undefined;
  let daemon: Daemon;
  try {
    daemon = await listen(config, o, chain, metrics, warmUp);
  } catch (e) {
    warmUp?.stop();
    chain.close();
    throw e;
  }
  served();
  return daemon;
}

/** Why a TCP listen failed, in words, with the address. */
function tcpListenError(host: string, port: number, e: NodeJS.ErrnoException): ListenError {
  const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  const why =
    e.code === "EADDRINUSE"
      ? "the port is in use by another process"
      : e.code === "EADDRNOTAVAIL"
        ? "the address is not one of this machine's"
        : e.code === "EACCES"
          ? "permission denied (a port below 1024 needs privileges)"
          : e.message;
  return new ListenError(`cannot listen on ${where}: ${why}${e.code && !why.includes(e.code) ? ` (${e.code})` : ""}`);
}

async function listen(config: Config, o: DaemonOptions, chain: Chain, metrics: Metrics, warmUp?: WarmUp): Promise<Daemon> {
  const log = o.logger;
  const socketPath = config.server.socketPath;
  // Before anything listens: a socket path that cannot be used must not leave a TCP-only daemon.
  if (socketPath) await claimSocketPath(socketPath);
  const app = await buildApp({ config, chain, logger: log, metrics, connections: o.connections, accountFiles: o.accountFiles });
  // Once shutting down, every answer closes its connection: a request in flight at
  // SIGTERM gets its answer, and its keep-alive connection then does not hold the
  // server open (Fastify closes only the connections idle when close() starts).
  let closing = false;
  app.addHook("onSend", async (_req, reply, payload) => {
    if (closing) reply.header("connection", "close");
    return payload;
  });

  if (!isLoopbackHost(config.server.host)) {
    log.warn(
      { host: config.server.host },
      "listening on a non-loopback address: every host that can reach it can obtain Google tokens of this machine",
    );
  }
  for (const f of keyFilesOf(config)) {
    if (isWorldOrGroupReadable(f))
      log.warn({ file: f }, `private key file ${f} can be read by users other than its owner; fix with: chmod 600 ${f}`);
  }

  let gid: number | undefined;
  try {
    // Before any listener: a group the system does not know is a config error, not a half-started daemon.
    if (socketPath && config.server.socketGroup !== undefined)
      gid = await socketGid(config.server.socketGroup, o.accountFiles, app.access.policy.accounts);
  } catch (e) {
    await app.close();
    throw e;
  }
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (e) {
    await app.close();
    throw tcpListenError(config.server.host, config.server.port, e as NodeJS.ErrnoException);
  }
  const addr = app.server.address() as AddressInfo;
  const hostForUrl = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  const url = `http://${hostForUrl}:${addr.port}`;

  let socket: BoundSocket | undefined;
  if (socketPath) {
    const fast = app.fastPath;
    const server = makeHttpServer((req, res) => fast.handle(req, res) || app.routing(req, res), {
      ...o.connections,
      maxConnections: config.server.maxConnections,
    });
    server.on("clientError", answerClientError);
    try {
      socket = await bindSocket(server, socketPath, parseInt(config.server.socketMode, 8), gid);
    } catch (e) {
      await app.close();
      throw e;
    }
    log.info({ socket: socketPath, mode: config.server.socketMode, group: config.server.socketGroup }, "listening on a Unix socket");
  }
  log.info({ url, principal: config.oci.principal, accounts: chain.accounts }, "oci2gcp serving");
  log.info(app.access.policy.describe({ unixSocket: !!config.server.socketPath }));

  let sink: TokenFileSink | undefined;
  if (config.tokenFile.path) {
    sink = new TokenFileSink(chain, config.tokenFile.path, log, config.tokenFile.refreshSeconds * 1000);
    sink.start().then(
      () => log.info({ file: config.tokenFile.path }, "keeping the subject token in a file"),
      () => {},
    );
  }

  return {
    url,
    app,
    chain,
    metrics,
    async close() {
      closing = true;
      app.fastPath.disable();
      warmUp?.stop();
      sink?.stop();
      await socket?.close();
      await app.close();
      chain.close();
    },
  };
}
