import { LRUCache } from "lru-cache";

/**
 * How many requests per client and minute may start new upstream calls. Counted
 * only when a call would really start (see CachingTokenSource.token), so cached
 * answers and requests that join a refresh under way are never charged.
 */
export class UpstreamBudget {
  private readonly windows = new LRUCache<string, { start: number; used: number }>({ max: 10_000 });

  constructor(private readonly perMinute: number) {}

  /** A one-shot admission check for one request of `client`. */
  admitter(client: string): () => boolean {
    return () => {
      if (this.perMinute <= 0) return true;
      const now = Date.now();
      let w = this.windows.get(client);
      if (!w || now - w.start >= 60_000) {
        w = { start: now, used: 0 };
        this.windows.set(client, w);
      }
      if (w.used >= this.perMinute) return false;
      w.used += 1;
      return true;
    };
  }
}
