import { LRUCache } from "lru-cache";
import { type Clock, systemClock } from "../token/clock.js";
import type { Hop } from "../upstream/hop-error.js";

/** The caller's budget of new upstream calls is spent. */
export class BudgetExceededError extends Error {
  constructor(readonly hop: Hop) {
    super(`too many requests that need new upstream calls (${hop}); the cached tokens are still served`);
    this.name = "BudgetExceededError";
  }
}

/**
 * How many requests per client and minute may start new upstream calls. Counted
 * only when a call would really start (see CachingTokenSource.token), so cached
 * answers and requests that join a refresh under way are never charged.
 */
export class UpstreamBudget {
  private readonly windows = new LRUCache<string, { start: number; used: number }>({ max: 10_000 });
  private readonly clock: Clock;

  constructor(
    private readonly perMinute: number,
    options: { clock?: Clock } = {},
  ) {
    this.clock = options.clock ?? systemClock;
  }

  /**
   * A one-shot admission check for one request of `client`, as the token caches
   * ask it: undefined admits, a BudgetExceededError naming the hop refuses.
   */
  admitter(client: string): (hop: Hop) => BudgetExceededError | undefined {
    return (hop) => (this.admit(client) ? undefined : new BudgetExceededError(hop));
  }

  private admit(client: string): boolean {
    if (this.perMinute <= 0) return true;
    const now = this.clock.now();
    let w = this.windows.get(client);
    if (!w || now - w.start >= 60_000) {
      w = { start: now, used: 0 };
      this.windows.set(client, w);
    }
    if (w.used >= this.perMinute) return false;
    w.used += 1;
    return true;
  }
}
