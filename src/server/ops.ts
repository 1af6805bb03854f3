import type { FastifyInstance } from "fastify";
import type { Chain } from "../chain.js";
import { scrub } from "../log.js";
import { STATUS_PATH } from "../protocol.js";
import { BackoffError, BelowFloorError } from "../token/errors.js";
import { HOP_IDS, type Hop, HopError } from "../upstream/hop-error.js";
import type { Caller } from "./access.js";
import { describeFailure, json, text } from "./respond.js";

/**
 * Whether a caller may see a cache entry: an account's entries to callers that
 * may have the account, the others (the subject token, the hops before it and
 * the federated identity's tokens) to callers that may have the subject token.
 */
function shows(caller: Caller, account: string | undefined): boolean {
  const g = caller.grant;
  if (!g) return false;
  return account !== undefined ? g.allows(account) : g.subjectToken;
}

/** Liveness, readiness and the cache status (kinds, keys, times; never tokens). */
export async function opsPlugin(app: FastifyInstance, o: { chain: Chain; startedAt: number }): Promise<void> {
  app.get("/healthz", (_req, reply) => text(reply, "ok\n"));

  app.get("/readyz", async (_req, reply) => {
    // Ready means a token can be served now: from cache, or by obtaining one.
    try {
      await o.chain.accessToken({ account: "default" });
      return text(reply, "ready\n");
    } catch (e) {
      const f = describeFailure(e);
      reply.header("retry-after", String(f.retryAfter ?? 5));
      const { hop, code } = failingHop(e);
      return text(reply, `not ready: hop ${hop}, code ${code}\n`, 503);
    }
  });

  app.get(STATUS_PATH, (req, reply) => {
    const now = Date.now();
    const mine = o.chain.states().filter(({ account }) => shows(req.caller, account));
    const caches = mine.map(({ kind, state }) => ({
      kind,
      hop: state.label,
      key: state.key,
      expiresInSeconds: state.token ? Math.floor((state.token.expiresAt - now) / 1000) : null,
      obtainedAt: state.token ? new Date(state.token.obtainedAt).toISOString() : null,
      lastSuccessAt: state.lastSuccessAt ? new Date(state.lastSuccessAt).toISOString() : null,
      refreshing: state.refreshing,
      lastError: state.lastError === undefined ? null : scrub(state.lastError),
      lastErrorAt: state.lastErrorAt ? new Date(state.lastErrorAt).toISOString() : null,
    }));
    const accounts = o.chain.accounts.filter((a) => req.caller.grant?.allows(a));
    return json(reply, { startedAt: new Date(o.startedAt).toISOString(), accounts, caches });
  });
}

/**
 * Which hop keeps the default token from being served, and why, as the hop's
 * metrics id and a stable code: what an operator's probe needs. Never the
 * upstream's words, which /readyz (answered without Metadata-Flavor, so to a
 * forged request too) must not pass on.
 */
export function failingHop(e: unknown): { hop: string; code: string } {
  let cause = e;
  while (cause instanceof BackoffError) cause = cause.cause;
  if (cause instanceof HopError) return { hop: HOP_IDS[cause.hop], code: cause.code };
  if (cause instanceof BelowFloorError) return { hop: HOP_IDS[cause.label as Hop] ?? "unknown", code: "below_floor" };
  return { hop: "unknown", code: "failed" };
}
