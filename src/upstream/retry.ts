import { setTimeout as sleep } from "node:timers/promises";
import { type Clock, type Jitter, systemClock, systemJitter } from "../token/clock.js";
import { HopError, withDetail } from "./hop-error.js";

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** First backoff (ms); doubles each attempt, full jitter. */
  baseDelayMs: number;
  /** Upper bound of one wait, Retry-After included (ms). */
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 200, maxDelayMs: 5_000 };

/** Where withRetry gets its jitter and how it waits; by default Math.random and a real timer. */
export interface RetrySeams {
  jitter?: Jitter;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Runs `attempt` until it succeeds, fails with an error that cannot change on
 * a retry (4xx other than 408/429), or the attempts run out. Waits between
 * attempts with jittered exponential backoff, at least what the upstream asked
 * for with Retry-After (bounded by maxDelayMs). An error it gives up on after
 * more than one attempt says how many were made.
 */
export async function withRetry<T>(policy: RetryPolicy, attempt: (n: number) => Promise<T>, seams: RetrySeams = {}): Promise<T> {
  const jitter = seams.jitter ?? systemJitter;
  const wait = seams.sleep ?? ((ms: number) => sleep(ms));
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (e) {
      const retryable = e instanceof HopError ? e.retryable : false;
      if (!retryable) throw e;
      if (n >= policy.attempts) throw gaveUp(e, n);
      const backoff = jitter.random() * policy.baseDelayMs * 2 ** (n - 1);
      const asked = e instanceof HopError && e.retryAfterSeconds ? e.retryAfterSeconds * 1000 : 0;
      if (asked > policy.maxDelayMs) throw gaveUp(e, n);
      await wait(Math.min(policy.maxDelayMs, Math.max(backoff, asked)));
    }
  }
}

function gaveUp(e: unknown, attempts: number): unknown {
  return e instanceof HopError && attempts > 1 ? withDetail(e, `${e.detail}, ${attempts} attempts`) : e;
}

/** Seconds from a Retry-After header (delta-seconds or HTTP date). */
export function parseRetryAfter(v: string | null | undefined, clock: Clock = systemClock): number | undefined {
  if (!v) return undefined;
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const at = Date.parse(s);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - clock.now()) / 1000));
}

/** Short, printable text of an upstream body for error messages (no secrets are expected in error bodies, but bound it). */
export function snippet(body: string, max = 200): string {
  const one = body.replace(/\s+/g, " ").trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

function looksLikeHtml(body: string): boolean {
  return /^\s*(?:<!doctype html|<html|<head|<body|<\?xml|<[a-z][a-z0-9]*[\s>])/i.test(body);
}

/** A success answer's body that is not the JSON expected: its size, never its content (it is no error message). */
export function notJsonBody(body: string): string {
  return `a body that is not JSON (${Buffer.byteLength(body)} bytes)`;
}

/**
 * What an error answer without error fields said: a page (a proxy's or a gateway's)
 * is described, since its markup says nothing and can be long; a line of text is
 * likely the error message, and is quoted, bounded.
 */
export function errorBodyText(body: string): string {
  return looksLikeHtml(body) ? `an HTML page (${Buffer.byteLength(body)} bytes)` : snippet(body);
}
