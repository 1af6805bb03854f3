import { type Config, ConfigError, loadConfig } from "../config/config.js";
import type { Daemon } from "../daemon.js";
import { createLogger, type Logger, routeConsoleToLogger } from "../log.js";
import { setDaemonV8Flags } from "../node-options.js";
import { parse, settingFlagOptions, settingFlags } from "./args.js";

export const SERVE_HELP = `Usage: oci2gcp serve [--config FILE] [options]

Runs the daemon. Settings come from defaults, the JSON config file, the
environment and flags, later ones winning; see 'oci2gcp --help'.
`;

/** Loads the config for a command, printing a clear message instead of a stack. */
export function configFromArgs(values: Record<string, unknown>, overrides?: Record<string, unknown>): Config | undefined {
  try {
    return loadConfig({ file: values.config as string | undefined, flags: settingFlags(values as never), overrides });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`oci2gcp: ${e.message}\n`);
      return undefined;
    }
    throw e;
  }
}

/** Runs until SIGINT/SIGTERM, then stops accepting, finishes in-flight requests and resolves. */
export function untilSignal(log: Logger, stop: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, "shutting down");
      const force = setTimeout(() => {
        log.error("in-flight requests did not finish within 10 s; exiting");
        // Their connections (and upstream calls) would keep the process alive: end it.
        process.exit(1);
      }, 10_000);
      force.unref();
      stop().then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        (e) => {
          log.error({ err: e }, "error while shutting down");
          resolve(1);
        },
      );
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
  });
}

export async function serve(argv: string[]): Promise<number> {
  setDaemonV8Flags();
  const { values } = parse(argv, settingFlagOptions());
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return 0;
  }
  const config = configFromArgs(values);
  if (!config) return 2;
  // The instance principal's first session key (an RSA key generation, hundreds of
  // ms) is made in the thread pool while the rest of the daemon loads.
  if (config.oci.principal === "instance") (await import("../oci/session-keys.js")).prestartSessionKey();
  const { startDaemon } = await import("../daemon.js");
  const log = createLogger(config.log.level);
  routeConsoleToLogger(log);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger: log });
  } catch (e) {
    log.fatal({ err: e }, "cannot start");
    process.stderr.write(`oci2gcp: cannot start: ${(e as Error).message}\n`);
    // The first token's upstream calls may still be under way: they must not keep a daemon
    // that serves nothing alive until they time out.
    setTimeout(() => process.exit(1), 500).unref();
    return 1;
  }
  return untilSignal(log, () => daemon.close());
}
