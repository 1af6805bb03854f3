import type { Chain } from "./chain.js";
import type { Config } from "./config/config.js";
import type { Logger } from "./log.js";

/** What the warm-up asks of the chain. */
export type WarmChain = Pick<Chain, "accessToken" | "idToken" | "accounts">;

export interface WarmUpOptions {
  /** A number in [0, 1); the start delay is this fraction of upstream.startJitterSeconds. */
  random?: () => number;
  /** How often the prefetched variants are asked for again; by default derived from the renewal margins. */
  everyMs?: number;
  /** Settles when the daemon serves: the first token's outcome is logged only then. */
  serving?: Promise<void>;
}

export interface WarmUp {
  /** Settles once the first round (the default token and every prefetched variant) has been asked for. */
  readonly firstRound: Promise<void>;
  stop(): void;
}

const FORMATS = ["standard", "full"] as const;

/**
 * Fetches the default token at start, after a random delay of up to
 * upstream.startJitterSeconds (VMs of a fleet booting together would otherwise all
 * exchange at the identity domain, whose token endpoint is rate limited, at once),
 * then the configured prefetch variants, and keeps those fresh.
 *
 * Clients give up after 0.5 s (Ruby) to 3 s (Python, Node), while a cold chain can
 * take longer: a variant a client asks for first must already be cached. The
 * caches renew in the background only the tokens used since their last renewal, so
 * the prefetched variants are asked for again more often than they are renewed:
 * each ask counts as a use, and the cache renews them ahead of expiry.
 */
export function startWarmUp(chain: WarmChain, config: Config, log: Logger, o: WarmUpOptions = {}): WarmUp {
  const scopeSets = config.cache.prefetchScopes.map((s) => s.split(/[\s,]+/).filter(Boolean)).filter((s) => s.length > 0);
  let audiences = config.cache.prefetchAudiences;
  if (audiences.length > 0 && chain.accounts.length === 0) {
    log.warn("cache.prefetchAudiences is ignored: ID tokens need a service account (google.serviceAccounts)");
    audiences = [];
  }
  // Often enough that every variant is asked for between two renewals, at most once a minute.
  const margin = (config.cache.renewBeforeSeconds - config.cache.minRemainingSeconds) * 1000;
  const everyMs = o.everyMs ?? Math.max(1_000, Math.min(60_000, margin / 4));
  const delayMs = Math.floor((o.random ?? Math.random)() * config.upstream.startJitterSeconds * 1000);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake = () => {};

  const variants = (): Promise<unknown>[] => [
    ...scopeSets.map((scopes) => chain.accessToken({ account: "default", scopes })),
    ...audiences.flatMap((audience) => FORMATS.map((format) => chain.idToken({ account: "default", audience, format }))),
  ];

  const first = async () => {
    if (delayMs > 0) {
      log.info({ delaySeconds: Math.round(delayMs / 100) / 10 }, "waiting before the first token exchange (upstream.startJitterSeconds)");
      await new Promise<void>((r) => {
        wake = r;
        timer = setTimeout(r, delayMs);
        timer.unref();
      });
    }
    if (stopped) return;
    const firstFailure = await chain.accessToken({ account: "default" }).then(
      () => undefined,
      (e: unknown) => ({ err: e }),
    );
    await o.serving;
    if (stopped) return;
    if (firstFailure) log.error({ err: firstFailure.err }, "could not obtain a first token; retrying when asked");
    else log.info("first Google token obtained: ready");
    const results = await Promise.allSettled(variants());
    const failed = results.filter((r) => r.status === "rejected");
    if (results.length > 0) {
      if (failed.length === 0) log.info({ variants: results.length }, "prefetched tokens obtained");
      else
        log.warn(
          { variants: results.length, failed: failed.length, err: failed[0]!.reason },
          "some prefetched tokens could not be obtained",
        );
    }
    if (stopped || results.length === 0) return;
    timer = setInterval(() => {
      for (const p of variants()) p.catch((e) => log.debug({ err: e }, "a prefetched token could not be renewed; retrying"));
    }, everyMs);
    timer.unref();
  };

  return {
    firstRound: first(),
    stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(timer);
      wake();
    },
  };
}
