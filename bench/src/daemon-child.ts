// `oci2gcp serve` for the cold-path and herd measurements: the same settings
// (from the environment), logger and startDaemon, but without the first token
// fetched at start (warm: false), so that the bench can time requests on an
// empty cache. $BENCH_TOKEN_LIFETIME_SECONDS sets the lifetime asked for
// impersonated tokens below the 600 s that loadConfig allows, so that every hop
// comes due for renewal within seconds.
import { createLogger, loadConfig } from "oci2gcp";
import { routeConsoleToLogger, startDaemon } from "oci2gcp/daemon";

const config = loadConfig();
if (process.env.BENCH_TOKEN_LIFETIME_SECONDS) config.google.tokenLifetimeSeconds = Number(process.env.BENCH_TOKEN_LIFETIME_SECONDS);
const log = createLogger(config.log.level);
routeConsoleToLogger(log);
const daemon = await startDaemon(config, { logger: log, warm: false });
process.once("SIGTERM", () => {
  daemon.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
