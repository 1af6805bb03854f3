/**
 * oci2gcp/daemon: the daemon of `oci2gcp serve` (the chain behind its HTTP
 * listeners), for a program that runs it in-process. Kept apart from the main
 * entry so that the library does not load Fastify, its plugins or prom-client.
 *
 *   import { createLogger, loadConfig } from "oci2gcp";
 *   import { routeConsoleToLogger, startDaemon } from "oci2gcp/daemon";
 *   const config = loadConfig();
 *   const log = createLogger(config.log.level);
 *   routeConsoleToLogger(log);
 *   const daemon = await startDaemon(config, { logger: log });
 */
export { type Daemon, type DaemonOptions, startDaemon } from "./daemon.js";
export { routeConsoleToLogger } from "./log.js";
export { DAEMON_NODE_OPTIONS, DAEMON_V8_FLAGS } from "./node-options.js";
export { EVENT_LOOP_SAMPLE_MS } from "./server/metrics.js";
