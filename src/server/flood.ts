import net from "node:net";
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from "@fastify/rate-limit";
import { LRUCache } from "lru-cache";
import { type Clock, systemClock } from "../token/clock.js";

/**
 * Who a request comes from, for the flood guard and the upstream budget: its
 * socket's address (Fastify's req.ip) for remote clients; every loopback address
 * as one client, since any local process can bind any of 127.0.0.0/8 and so
 * would get a fresh allowance per address; and for the Unix socket listener,
 * where there is no address, the socket's clients as one.
 */
export function clientKeyOf(address: string | undefined): string {
  if (address === undefined) return "unix-socket";
  return isLoopbackAddress(address) ? "loopback" : address;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped 127.x, in any spelling Node's sockets report. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  if (net.isIPv4(v4)) return v4.startsWith("127.");
  return net.isIPv6(a) && /^(0{0,4}:){2,7}0{0,3}1$/.test(a.replace(/^::/, "0::"));
}

interface Window {
  count: number;
  startedAt: number;
}

/**
 * The flood guard's counts: requests per client key in fixed windows, in a
 * bounded LRU. It is the store of @fastify/rate-limit (which answers the 429s,
 * with their headers) and is also counted by the cached-token fast path, which
 * answers before Fastify runs: every request counts once, whichever path
 * answers it.
 */
export class FloodCounter {
  private readonly windows: LRUCache<string, Window>;
  private readonly clock: Clock;

  constructor(
    readonly max: number,
    readonly windowMs: number,
    size: number,
    options: { clock?: Clock } = {},
  ) {
    this.windows = new LRUCache({ max: size });
    this.clock = options.clock ?? systemClock;
  }

  /** Counts a request of `key`: its count in the current window and the ms left of it. */
  count(key: string, windowMs = this.windowMs): { current: number; ttl: number } {
    const w = this.hit(key, windowMs);
    return { current: w.count, ttl: w.startedAt + windowMs - this.clock.now() };
  }

  /** Counts a request of `key`; true while it is within the limit (always with a limit of 0: no limit). */
  admit(key: string): boolean {
    return this.max <= 0 || this.hit(key, this.windowMs).count <= this.max;
  }

  private hit(key: string, windowMs: number): Window {
    const now = this.clock.now();
    let w = this.windows.get(key);
    if (!w || w.startedAt + windowMs <= now) {
      w = { count: 0, startedAt: now };
      this.windows.set(key, w);
    }
    w.count++;
    return w;
  }

  /**
   * The class @fastify/rate-limit takes as `store`: it constructs one store
   * per app, and this one hands it this counter, so both paths share the counts.
   */
  storeClass(): FastifyRateLimitStoreCtor {
    const store = this.store;
    return class SharedFloodStore {
      constructor() {
        // biome-ignore lint/correctness/noConstructorReturn: @fastify/rate-limit constructs its store; every construction must yield the one shared counter
        return store;
      }
    } as unknown as FastifyRateLimitStoreCtor;
  }

  private readonly store: FastifyRateLimitStore & { read: FastifyRateLimitStore["incr"] } = {
    incr: (key, cb, timeWindow) => cb(null, this.count(key, timeWindow)),
    read: (key, cb, timeWindow) => {
      const w = this.windows.peek(key);
      const now = this.clock.now();
      if (!w || w.startedAt + timeWindow <= now) cb(null, { current: 0, ttl: 0 });
      else cb(null, { current: w.count, ttl: w.startedAt + timeWindow - now });
    },
    child: () => this.store,
  };
}
