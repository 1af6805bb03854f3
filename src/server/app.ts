import http from "node:http";
import os from "node:os";
import rateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyRequest, LogController } from "fastify";
import type { AccountFiles } from "../access/accounts.js";
import { PeerIdentifier } from "../access/peer.js";
import { Policy } from "../access/policy.js";
import type { Chain } from "../chain.js";
import type { Config } from "../config/config.js";
import type { Logger } from "../log.js";
import { METADATA_IP } from "../protocol.js";
import { AccessControl, accessHook } from "./access.js";
import { UpstreamBudget } from "./budget.js";
import { type FastPath, makeFastPath } from "./fast-path.js";
import { clientKeyOf, FloodCounter } from "./flood.js";
import { answerClientError, deny, makeGuard, makeRefusal, SERVER_OPTIONS } from "./guard.js";
import { metadataPlugin } from "./metadata.js";
import { type Metrics, metricsPlugin } from "./metrics.js";
import { opsPlugin } from "./ops.js";
import { passthroughPlugin } from "./passthrough.js";
import { notFound, text } from "./respond.js";
import { subjectTokenPlugin } from "./subject-token.js";

export const LIMITS = { maxScopes: 32, maxScopeLength: 256, maxAudienceLength: 2048, maxUrlLength: 8192 };

function ownHosts(host: string): string[] {
  if (host === "0.0.0.0" || host === "::") {
    return Object.values(os.networkInterfaces())
      .flat()
      .map((i) => i?.address)
      .filter((a): a is string => !!a);
  }
  return [host];
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route the app serves (method and path template, HEAD left out), for documentation checks. */
    readonly servedRoutes: readonly { method: string; url: string }[];
    /**
     * The app's cached-token fast path: other listeners (the Unix socket) call its
     * `handle()` before `app.routing()`; the daemon disables it when shutting down.
     */
    readonly fastPath: FastPath;
    /** Who may have what: the access rules, and each connection's caller. */
    readonly access: AccessControl;
  }
}

/** Who a request comes from, for the flood guard and the upstream budget: its uid when identified, else see clientKeyOf. */
function clientKey(req: FastifyRequest): string {
  return req.caller?.key ?? clientKeyOf(req.ip);
}

/** The status of an error the client caused (4xx), if it is one. */
function clientStatus(err: FastifyError): number | undefined {
  const s = err.statusCode;
  return typeof s === "number" && s >= 400 && s < 500 ? s : undefined;
}

/**
 * The answer to a framework error: its status text and Fastify's stable code,
 * never its message, which can repeat the URL or a header of the request.
 */
function errorText(err: FastifyError): string {
  const status = clientStatus(err) ?? 400;
  const code = /^FST_ERR_[A-Z0-9_]+$/.test(err.code ?? "") ? ` (${err.code})` : "";
  return `oci2gcp: ${http.STATUS_CODES[status] ?? "Bad Request"}${code}\n`;
}

const KEEP_ALIVE_MS = 72_000;

/** How long a listener keeps a connection, and how many it keeps. */
export interface ConnectionSettings {
  /** Open connections per listener; beyond it Node closes new ones at once. 0: no limit. */
  maxConnections: number;
  /**
   * Time for a request to arrive in full, counted from the connection or from the
   * previous answer's end; a connection that sends nothing is closed after it.
   * Clients on this machine send their few hundred bytes at once. Default 30 s.
   */
  requestTimeoutMs?: number;
  /** How often Node looks for connections past requestTimeoutMs. Default 5 s. */
  checkIntervalMs?: number;
  /** Idle time before a kept-alive connection is closed. Default 72 s. */
  keepAliveMs?: number;
}

/**
 * An HTTP server with the daemon's connection limits, for every listener: without
 * them a connection that never sends a byte would hold its descriptor forever.
 */
export function makeHttpServer(handler: http.RequestListener, c: ConnectionSettings): http.Server {
  const requestTimeout = c.requestTimeoutMs ?? 30_000;
  const server = http.createServer(
    { ...SERVER_OPTIONS, headersTimeout: requestTimeout, requestTimeout, connectionsCheckingInterval: c.checkIntervalMs ?? 5_000 },
    handler,
  );
  server.keepAliveTimeout = c.keepAliveMs ?? KEEP_ALIVE_MS;
  // No inactivity timeout while an answer waits on the upstream: the request timeout covers the request.
  server.setTimeout(0);
  if (c.maxConnections > 0) server.maxConnections = c.maxConnections;
  return server;
}

/** The daemon's HTTP surface, ready for `listen()` or `inject()`. */
export async function buildApp(opts: {
  config: Config;
  chain: Chain;
  logger: Logger;
  metrics?: Metrics;
  /** The access rules; by default those of the config (which reads the user and group files when there are rules). */
  access?: AccessControl;
  /** Where the user and group databases are read when `access` is not given. */
  accountFiles?: AccountFiles;
  /** Timeouts of the listener; the connection cap is server.maxConnections. */
  connections?: Omit<ConnectionSettings, "maxConnections">;
}): Promise<FastifyInstance> {
  const { config, chain } = opts;
  const access =
    opts.access ??
    new AccessControl({
      policy: await Policy.fromConfig(config.access, config.google.serviceAccounts, opts.accountFiles),
      logger: opts.logger,
      // An intercepted caller's socket still shows the well-known address as its far end.
      identifier: new PeerIdentifier(config.server.intercept ? { alsoFarEnds: [{ address: METADATA_IP, port: 80 }] } : {}),
      refused: (reason) => opts.metrics?.refused(reason),
    });
  const debugLogging = opts.logger.isLevelEnabled("debug");
  const refusal = makeRefusal({ ownHosts: ownHosts(config.server.host), allowedHosts: config.server.allowedHosts });
  const flood = new FloodCounter(config.server.maxRequestsPerMinute, 60_000, 10_000);
  const fast = makeFastPath({ chain, refusal, flood, metrics: opts.metrics, access });
  // At debug level every request is logged, which only Fastify's hooks do.
  if (debugLogging) fast.disable();
  const app: FastifyInstance = Fastify({
    // The daemon's HTTP server, with the fast path in front of Fastify's handler.
    serverFactory: (handler) =>
      makeHttpServer((req, res) => fast.handle(req, res) || handler(req, res), {
        ...opts.connections,
        maxConnections: config.server.maxConnections,
      }),
    keepAliveTimeout: KEEP_ALIVE_MS,
    loggerInstance: opts.logger as FastifyBaseLogger,
    // Per-request lines go out at debug level only (onResponse below): nothing per cached hit by default.
    logController: new LogController({ disableRequestLogging: true }),
    // Fastify gives every request a child logger ({reqId}); with redaction and scrubbing
    // that costs more than answering a cached token. Below debug nothing is logged per
    // request, so requests then share the daemon's logger (error lines carry the URL).
    childLoggerFactory: (logger, bindings, childOpts) => (debugLogging ? logger.child(bindings, childOpts) : logger),
    // No route declares a schema, so Fastify's default compilers (ajv and
    // fast-json-stringify, tens of ms to load at every start) are never needed.
    schemaController: {
      compilersFactory: {
        buildValidator: () => () => {
          throw new Error("this app declares no schemas");
        },
        buildSerializer: () => () => {
          throw new Error("this app declares no schemas");
        },
      },
    },
    bodyLimit: 1024,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    // Routes that differ by a trailing slash are different, as on the real server.
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 320 },
    // Malformed URLs and the like are answered before hooks and routes run: still
    // after the guard's decision, with the metadata headers, and without the URL.
    frameworkErrors: (err, req, reply) => {
      const why = refusal(req.headers, req.raw.url ?? "");
      return why === undefined ? text(reply, errorText(err), clientStatus(err) ?? 400) : deny(reply, why);
    },
    // Requests Node's parser refuses never reach Fastify: they are answered in the same form.
    clientErrorHandler: answerClientError,
  });
  if (debugLogging) {
    app.addHook("onResponse", async (req, reply) => {
      req.log.debug(
        { method: req.method, route: req.routeOptions.url ?? "(none)", status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
        "request",
      );
    });
  }

  // First of the onRequest hooks: what is relayed to OCI never meets the guard (see passthrough.ts).
  if (config.server.intercept)
    await app.register(passthroughPlugin, { origin: new URL(config.oci.metadataUrl).origin, timeoutMs: config.upstream.timeoutMs });
  // The guard decides next: every answer after it, errors included, is for a request it let through.
  app.addHook("onRequest", makeGuard(refusal));
  app.addHook("onRequest", async (req, reply) => {
    if (req.url.length > LIMITS.maxUrlLength) {
      return text(reply, `oci2gcp: URL longer than ${LIMITS.maxUrlLength} characters\n`, 414);
    }
  });
  // Then who is asking: each request learns its connection's caller, and callers no rule names are refused.
  app.addHook("onRequest", accessHook(access));
  const routes: { method: string; url: string }[] = [];
  app.decorate("servedRoutes", routes);
  app.decorate("fastPath", fast);
  app.decorate("access", access);
  app.decorateRequest("caller", null as unknown as FastifyRequest["caller"]);
  // Each TCP connection is identified as it is accepted, once (see AccessControl).
  app.server.on("connection", (socket) => access.connected(socket));
  app.addHook("onRoute", (r) => {
    for (const m of [r.method].flat()) if (m !== "HEAD") routes.push({ method: m, url: r.url });
  });
  if (opts.metrics) await app.register(metricsPlugin, { metrics: opts.metrics });
  await app.register(rateLimit, {
    // A limit of 0 is no limit, as for the upstream budget: the plugin then guards no route.
    global: flood.max > 0,
    max: flood.max,
    timeWindow: flood.windowMs,
    store: flood.storeClass(),
    keyGenerator: clientKey,
    // The real metadata server sends no rate-limit headers; send them only when refusing.
    addHeadersOnExceeding: { "x-ratelimit-limit": false, "x-ratelimit-remaining": false, "x-ratelimit-reset": false },
  });

  const budget = new UpstreamBudget(config.server.upstreamBudgetPerMinute);
  const admit = (req: FastifyRequest) => budget.admitter(clientKey(req));

  await app.register(metadataPlugin, {
    chain,
    projectId: config.google.projectId,
    projectNumber: config.google.projectNumber,
    universeDomain: config.google.universeDomain,
    admit,
    limits: LIMITS,
    access,
  });
  await app.register(subjectTokenPlugin, { chain, admit, access });
  await app.register(opsPlugin, { chain, startedAt: Date.now() });

  app.get("/", (_req, reply) => text(reply, "computeMetadata/\n"));

  app.setNotFoundHandler((_req, reply) => notFound(reply));
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const status = clientStatus(err) ?? 500;
    if (status >= 500) req.log.error({ err, url: req.routeOptions.url }, "unexpected error");
    return text(reply, status < 500 ? errorText(err) : "oci2gcp: internal error\n", status);
  });
  return app;
}
