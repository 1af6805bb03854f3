/**
 * The one abstraction every hop of the chain implements, in the spirit of
 * golang.org/x/oauth2's TokenSource: something that can produce a token.
 */

export interface Token {
  /** The secret itself. Never log it. */
  readonly value: string;
  /** Absolute expiry, epoch milliseconds. */
  readonly expiresAt: number;
  /** When this process obtained it, epoch milliseconds. */
  readonly obtainedAt: number;
}

export interface TokenSource<T extends Token = Token> {
  token(): Promise<T>;
}

/** The hops of the chain, as they are named in errors, logs and metrics. */
export type Hop = "OCI principal" | "identity domain" | "STS" | "impersonation";

export const HOP_IDS: Record<Hop, string> = {
  "OCI principal": "oci_principal",
  "identity domain": "identity_domain",
  STS: "sts",
  impersonation: "impersonation",
};

/**
 * A failure of one hop, carrying what the upstream said. Messages never contain
 * token material: they are built from status codes and the server's error fields.
 */
export class HopError extends Error {
  readonly hop: Hop;
  /** HTTP status the upstream answered, if it answered. */
  readonly status?: number;
  /** The upstream's own error code (OAuth `error`, Google `status`, OCI `code`). */
  readonly upstreamError?: string;
  /** Whether trying again may succeed (network errors, 5xx, 429). */
  readonly retryable: boolean;
  /** Seconds the upstream asked us to wait (Retry-After), if any. */
  readonly retryAfterSeconds?: number;

  constructor(
    hop: Hop,
    message: string,
    opts: { status?: number; upstreamError?: string; retryable?: boolean; retryAfterSeconds?: number; cause?: unknown } = {},
  ) {
    super(`${hop}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "HopError";
    this.hop = hop;
    this.status = opts.status;
    this.upstreamError = opts.upstreamError;
    this.retryable = opts.retryable ?? false;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 408 || status >= 500;
}
