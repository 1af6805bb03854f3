import { LRUCache } from "lru-cache";
import { type Clock, type Jitter, systemClock, systemJitter, systemTimers, type Timers } from "./clock.js";
import { BackoffError, BelowFloorError, errorMessage, retryHintOf } from "./errors.js";
import type { Token, TokenSource } from "./token-source.js";

export interface CachePolicy {
  /** Start renewing when less than this remains (ms). */
  renewBeforeMs: number;
  /** Never hand out a token with less than this remaining (ms). */
  minRemainingMs: number;
  /** First retry delay after a failed renewal (ms); doubles up to maxBackoffMs, with jitter. */
  minBackoffMs: number;
  /** The longest wait for the next attempt (ms), whatever the source's Retry-After asks. */
  maxBackoffMs: number;
}

export const DEFAULT_BACKOFF = { minBackoffMs: 1_000, maxBackoffMs: 30_000 };

/** What a cache reads the time from; by default the system's (Date.now, Math.random, setTimeout). */
export interface CacheOptions {
  clock?: Clock;
  /** The jitter of the backoff. */
  jitter?: Jitter;
  /** The background renewal's timers. */
  timers?: Timers;
}

/** A cache's label is opaque to it: it names the cache in its events, state and own errors. */
export interface CacheEvents<L = string> {
  /** A refresh finished: `ok` with the new token, or the error. */
  onRefresh?(e: { label: L; key: string; ok: boolean; token?: Token; error?: unknown; durationMs: number }): void;
}

export interface CacheState<L = string> {
  key: string;
  label: L;
  token?: { expiresAt: number; obtainedAt: number };
  refreshing: boolean;
  lastError?: string;
  lastErrorAt?: number;
  lastSuccessAt?: number;
  /** Lookups answered from the cache, and lookups that waited for an upstream call. */
  hits: number;
  misses: number;
}

/**
 * Asked before a caller would wait on a new upstream call, with the label of the
 * cache: undefined lets the call start; an error is the refusal, which that
 * caller gets instead of a token (and no upstream call is made).
 */
export type Admission<L = string> = (label: L) => Error | undefined;

/**
 * Keeps a token from an upstream source until shortly before it expires, as
 * oauth2's ReuseTokenSource does, and adds what a shared daemon needs:
 *
 * - one refresh at a time, however many callers wait (single flight);
 * - renewal `renewBeforeMs` ahead of expiry, in the background while the
 *   cached token is still good, so callers never wait on a warm cache;
 * - a floor: a token with less than `minRemainingMs` left is never handed out;
 * - after a failure, backoff with jitter before the next upstream attempt (at
 *   least the source's Retry-After, at most `maxBackoffMs`), while the old
 *   token keeps being served; the error is never cached as a token;
 * - renewal continues on a timer only while the token is being used, so idle
 *   variants (an audience asked for once) cost nothing upstream.
 *
 * For tokens shorter than twice the margin (seen with very short lifetimes),
 * renewal starts at half the lifetime and the floor is a quarter of it.
 */
export class CachingTokenSource<T extends Token = Token, L = string> implements TokenSource<T> {
  private current?: T;
  private inflight?: Promise<T>;
  private lastError?: unknown;
  private lastErrorAt?: number;
  private lastSuccessAt?: number;
  private failures = 0;
  private nextAttemptAt = 0;
  private usedSinceRefresh = false;
  private cancelTimer?: () => void;
  private closed = false;
  private hits = 0;
  private misses = 0;
  private readonly clock: Clock;
  private readonly jitter: Jitter;
  private readonly timers: Timers;

  constructor(
    private readonly source: TokenSource<T>,
    readonly label: L,
    private readonly policy: CachePolicy,
    readonly key = "",
    private readonly events: CacheEvents<L> = {},
    options: CacheOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.jitter = options.jitter ?? systemJitter;
    this.timers = options.timers ?? systemTimers;
  }

  /**
   * A token that is good for at least the floor, from cache when possible.
   * `admit` is asked only when this call would start an upstream call that the
   * caller has to wait for (a cold or expired cache); joining a refresh already
   * under way, or a background renewal, is never charged. A failure reaches the
   * caller as a BackoffError whose cause is the source's error: after a failed
   * call, and for every call until the next attempt is due.
   */
  token(admit?: Admission<L>): Promise<T> {
    const hit = this.hit();
    if (hit) return Promise.resolve(hit);
    const now = this.clock.now();
    this.misses++;
    if (this.inflight) return this.inflight;
    if (now < this.nextAttemptAt && this.lastError !== undefined) {
      return Promise.reject(this.backoffError(now));
    }
    const refusal = admit?.(this.label);
    if (refusal !== undefined) return Promise.reject(refusal);
    return this.refresh();
  }

  /**
   * The cached token when it is good for at least the floor, counted as a hit
   * (and starting a background renewal when one is due), exactly as `token()`
   * answers from cache; undefined, with nothing counted, when `token()` would wait.
   */
  hit(): T | undefined {
    const cur = this.current;
    this.usedSinceRefresh = true;
    if (!cur) return undefined;
    const now = this.clock.now();
    const { renewAt, floor } = this.margins(cur);
    if (cur.expiresAt - now <= floor) return undefined;
    this.hits++;
    if (now >= renewAt && !this.inflight && now >= this.nextAttemptAt) void this.refresh().catch(() => {});
    return cur;
  }

  /**
   * A token that is not yet due for renewal, for a source that derives its own
   * token from this one and inherits its expiry (a token exchange that issues
   * nothing longer than the token it was given has left). When the cached token is past its
   * renewal point, waits for the renewal (the one under way, or a new one) rather
   * than passing on a token near its end; if that fails, falls back to the cached
   * token while it is above the floor. During a backoff, this is `token()`.
   */
  async renewed(): Promise<T> {
    const cur = this.current;
    const now = this.clock.now();
    if (!cur || now < this.margins(cur).renewAt || now < this.nextAttemptAt) return this.token();
    this.usedSinceRefresh = true;
    try {
      return await this.refresh();
    } catch (e) {
      const still = this.peek();
      if (still) return still;
      throw e;
    }
  }

  /**
   * Forgets the cached token (the upstream said it is no longer good, e.g.
   * revoked early): the next call obtains a new one. A refresh under way is kept.
   */
  invalidate(): void {
    this.current = undefined;
  }

  /** The cached token if it is above the floor; no upstream call. */
  peek(): T | undefined {
    const cur = this.current;
    if (!cur) return undefined;
    return cur.expiresAt - this.clock.now() > this.margins(cur).floor ? cur : undefined;
  }

  state(): CacheState<L> {
    return {
      key: this.key,
      label: this.label,
      token: this.current && { expiresAt: this.current.expiresAt, obtainedAt: this.current.obtainedAt },
      refreshing: this.inflight !== undefined,
      lastError: this.lastError === undefined ? undefined : errorMessage(this.lastError),
      lastErrorAt: this.lastErrorAt,
      lastSuccessAt: this.lastSuccessAt,
      hits: this.hits,
      misses: this.misses,
    };
  }

  /**
   * The source's error of the last failed refresh, while no success has come since
   * (when the source is another cache, the error its own source gave).
   */
  get failure(): unknown {
    let e = this.lastError;
    while (e instanceof BackoffError) e = e.cause;
    return e;
  }

  close(): void {
    this.closed = true;
    this.cancelTimer?.();
    this.cancelTimer = undefined;
  }

  private margins(t: Token): { renewAt: number; floor: number } {
    const life = Math.max(0, t.expiresAt - t.obtainedAt);
    const renewBefore = Math.min(this.policy.renewBeforeMs, life / 2);
    const floor = Math.min(this.policy.minRemainingMs, life / 4);
    return { renewAt: t.expiresAt - renewBefore, floor };
  }

  private backoffError(now: number): BackoffError<L> {
    // nextAttemptAt already includes the upstream's Retry-After: what remains of it is the wait.
    return new BackoffError(this.label, Math.max(1, Math.ceil((this.nextAttemptAt - now) / 1000)), this.lastError);
  }

  private refresh(): Promise<T> {
    if (this.inflight) return this.inflight;
    const started = this.clock.now();
    this.usedSinceRefresh = false;
    const p = (async () => {
      try {
        const t = await this.source.token();
        const now = this.clock.now();
        if (!(t.expiresAt > now + this.margins(t).floor)) throw new BelowFloorError(this.label, t.expiresAt - now);
        this.current = t;
        this.lastError = undefined;
        this.lastErrorAt = undefined;
        this.failures = 0;
        this.nextAttemptAt = 0;
        this.lastSuccessAt = now;
        this.events.onRefresh?.({ label: this.label, key: this.key, ok: true, token: t, durationMs: now - started });
        this.schedule(this.margins(t).renewAt - now);
        return t;
      } catch (e) {
        const now = this.clock.now();
        this.lastError = e;
        this.lastErrorAt = now;
        this.failures += 1;
        const base = Math.min(this.policy.maxBackoffMs, this.policy.minBackoffMs * 2 ** (this.failures - 1));
        let delay = base / 2 + this.jitter.random() * (base / 2);
        const asked = retryHintOf(e).retryAfterSeconds;
        // An upstream's Retry-After is honoured up to the longest backoff and never beyond:
        // a day-long one would keep the token unavailable long after the upstream is back.
        if (asked) delay = Math.min(this.policy.maxBackoffMs, Math.max(delay, asked * 1000));
        this.nextAttemptAt = now + delay;
        this.events.onRefresh?.({ label: this.label, key: this.key, ok: false, error: e, durationMs: now - started });
        if (this.current && this.current.expiresAt > now) this.schedule(delay);
        // Those who waited are told when the next attempt will be, as later callers are,
        // not what the source asked for, which can be more than the cache will wait.
        throw this.backoffError(now);
      } finally {
        this.inflight = undefined;
      }
    })();
    this.inflight = p;
    return p;
  }

  private schedule(inMs: number): void {
    if (this.closed) return;
    this.cancelTimer?.();
    this.cancelTimer = this.timers.after(Math.max(0, inMs), () => {
      this.cancelTimer = undefined;
      const cur = this.current;
      const now = this.clock.now();
      // Only tokens in use are renewed in the background; others renew on next use.
      if (!this.usedSinceRefresh && !(cur && this.lastError !== undefined)) return;
      if (cur && cur.expiresAt <= now) return;
      if (this.inflight) return;
      void this.refresh().catch(() => {});
    });
  }
}

export interface KeyedCacheOptions extends CacheOptions {
  /**
   * Keys whose caches live outside the LRU: the variants the owner configured,
   * which no number of other keys may evict. They count towards `max`.
   */
  pinned?: Iterable<string>;
}

/**
 * Variants of one token keyed by what distinguishes them (a scope set, an
 * audience), each with its own cache, in a bounded LRU: a client asking for
 * endless new audiences evicts old entries instead of growing the daemon.
 * Pinned keys are kept apart from the LRU, so that such a client cannot evict
 * them either.
 */
export class KeyedTokenCache<L = string> {
  private readonly lru: LRUCache<string, CachingTokenSource<Token, L>>;
  /** Pinned keys, with their caches once made. */
  private readonly pins = new Map<string, CachingTokenSource<Token, L> | undefined>();

  constructor(
    private readonly label: L,
    private readonly policy: CachePolicy,
    /** Bound on the caches held, pinned ones included (the LRU keeps room for at least one other). */
    max: number,
    private readonly events: CacheEvents<L> = {},
    private readonly options: KeyedCacheOptions = {},
  ) {
    for (const k of options.pinned ?? []) this.pins.set(k, undefined);
    this.lru = new LRUCache({ max: Math.max(1, max - this.pins.size), dispose: (v) => v.close() });
  }

  /** The cache for `key`, made with `make()` on first use. */
  get(key: string, make: () => TokenSource): CachingTokenSource<Token, L> {
    let c = this.find(key);
    if (!c) {
      c = new CachingTokenSource(make(), this.label, this.policy, key, this.events, this.options);
      if (this.pins.has(key)) this.pins.set(key, c);
      else this.lru.set(key, c);
    }
    return c;
  }

  /** The cache for `key` if there is one (counted as a use for the LRU). */
  find(key: string): CachingTokenSource<Token, L> | undefined {
    return this.pins.has(key) ? this.pins.get(key) : this.lru.get(key);
  }

  has(key: string): boolean {
    return this.pins.get(key) !== undefined || this.lru.has(key);
  }

  get size(): number {
    return this.pinnedCaches().length + this.lru.size;
  }

  entries(): CachingTokenSource<Token, L>[] {
    return [...this.pinnedCaches(), ...this.lru.values()];
  }

  close(): void {
    for (const c of this.pinnedCaches()) c.close();
    for (const k of this.pins.keys()) this.pins.set(k, undefined);
    this.lru.clear();
  }

  private pinnedCaches(): CachingTokenSource<Token, L>[] {
    return [...this.pins.values()].filter((c) => c !== undefined);
  }
}
