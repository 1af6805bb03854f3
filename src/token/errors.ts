/**
 * The cache's own errors, and how it reads a retry hint from a source's error.
 * A source's errors are its own business: the cache only looks for the two
 * fields of RetryHint on them, and passes them on unchanged.
 */

/** What an error says about trying again, on any error that carries these fields. */
export interface RetryHint {
  /** Whether trying again may succeed. */
  retryable?: boolean;
  /** Seconds the source asked to be left alone (an upstream's Retry-After). */
  retryAfterSeconds?: number;
}

/** The retry hint of any error, read structurally; fields of the wrong type are left out. */
export function retryHintOf(e: unknown): RetryHint {
  if (typeof e !== "object" || e === null) return {};
  const { retryable, retryAfterSeconds } = e as Record<string, unknown>;
  const hint: RetryHint = {};
  if (typeof retryable === "boolean") hint.retryable = retryable;
  if (typeof retryAfterSeconds === "number" && Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0) {
    hint.retryAfterSeconds = retryAfterSeconds;
  }
  return hint;
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (e && typeof e === "object" && "message" in e) return String((e as { message: unknown }).message);
  return String(e);
}

/**
 * The last call to the source failed and the next one is not due yet: what every
 * caller gets, from the failed call itself and from the calls until the next
 * attempt. `cause` is the source's error, and the message is its message;
 * `retryAfterSeconds` is the time left until the cache tries again.
 */
export class BackoffError<L = string> extends Error implements RetryHint {
  readonly code = "TOKEN_BACKOFF";
  readonly retryable = true;

  constructor(
    /** The label of the cache that is backing off. */
    readonly label: L,
    readonly retryAfterSeconds: number,
    cause: unknown,
  ) {
    super(errorMessage(cause), { cause });
    this.name = "BackoffError";
  }
}

/**
 * The source answered with a token that has less than the cache's floor left:
 * no use to anyone, so it is a failure (with backoff), never a cached token.
 * The message is `<label>: <detail>`.
 */
export class BelowFloorError<L = string> extends Error implements RetryHint {
  readonly code = "TOKEN_BELOW_FLOOR";
  readonly retryable = true;
  /** What happened, without the label. */
  readonly detail: string;

  constructor(
    readonly label: L,
    /** What the token had left when it arrived (ms; zero or less when already expired). */
    readonly remainingMs: number,
  ) {
    const detail = `upstream issued a token that expires in ${Math.round(remainingMs / 1000)} s, below the minimum remaining lifetime`;
    super(`${String(label)}: ${detail}`);
    this.name = "BelowFloorError";
    this.detail = detail;
  }
}
