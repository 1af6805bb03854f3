/**
 * The hops of the chain and the error every hop throws. The token layer knows
 * none of this: it caches whatever a source produces and passes its errors on.
 */

/** The hops of the chain, as they are named in errors, logs and metrics. */
export type Hop = "OCI principal" | "identity domain" | "STS" | "impersonation";

/** Label values of the hops in metrics. */
export const HOP_IDS: Record<Hop, string> = {
  "OCI principal": "oci_principal",
  "identity domain": "identity_domain",
  STS: "sts",
  impersonation: "impersonation",
};

/**
 * What went wrong, as a stable code that callers (doctor, the HTTP answers)
 * match instead of the upstream's words.
 */
export type HopErrorCode =
  /** No HTTP answer: connection refused or reset, DNS, TLS. */
  | "unreachable"
  /** No answer within upstream.timeoutMs. */
  | "timeout"
  /** The upstream answered an error status: `status` and `upstreamError` say which. */
  | "refused"
  /** The upstream refused our request's signature or client authentication. */
  | "signature_rejected"
  /** The identity domain does not let this principal exchange tokens (grant or client not allowed). */
  | "grant_not_allowed"
  /** The upstream says the token or credential we presented has expired (or is not yet valid). */
  | "expired"
  /** STS: the workload identity pool or provider in the audience is unknown or does not accept the token's aud. */
  | "audience_rejected"
  /** STS: the provider does not accept the token's issuer. */
  | "issuer_rejected"
  /** STS: the provider's attribute condition rejected the token. */
  | "condition_rejected"
  /** IAM Credentials: the caller may not impersonate the service account. */
  | "permission_denied"
  /** The resource does not exist (a service account, or a URL that is not the expected service). */
  | "not_found"
  /** The upstream did not accept our bearer token. */
  | "unauthenticated"
  /** A success status with an answer that cannot be used. */
  | "bad_answer"
  /** The token's times disagree with this machine's clock. */
  | "clock"
  /** The local OCI credential (security token, session) has expired. */
  | "credential_expired"
  /** Local credential material cannot be read or used: key, passphrase, profile. */
  | "credential_unusable"
  /** The OCI instance metadata service does not answer: not an OCI instance. */
  | "not_on_oci"
  /** Anything else a library reported without an HTTP status. */
  | "failed";

export interface HopErrorOptions {
  code: HopErrorCode;
  /** HTTP status the upstream answered, if it answered. */
  status?: number;
  /** The upstream's own error code (OAuth `error`, Google `status`, OCI `code`). */
  upstreamError?: string;
  /** Whether trying again may succeed (network errors, 5xx, 429). Default false. */
  retryable?: boolean;
  /** Seconds the upstream asked us to wait (Retry-After), if any. */
  retryAfterSeconds?: number;
  cause?: unknown;
}

/** Longest `detail` kept: room for our own words and a few hundred characters of what an upstream said. */
export const MAX_DETAIL_CHARS = 600;
/** Characters kept of the end of a detail that is cut: where the attempt count and hints go. */
const KEPT_TAIL_CHARS = 120;
/** Longest upstream error code kept: OAuth and Google codes are short words. */
const MAX_UPSTREAM_ERROR_CHARS = 100;

/**
 * Text bounded to `max` characters: the middle of a longer one is left out and
 * counted, so the start (what happened) and the end (what was added after the
 * upstream's words) survive. Never splits a surrogate pair.
 */
export function bounded(s: string, max = MAX_DETAIL_CHARS, tail = Math.min(KEPT_TAIL_CHARS, Math.floor(max / 4))): string {
  if (s.length <= max) return s;
  const marker = (n: number) => ` … [${n} characters left out] … `;
  let head = max - tail - marker(s.length).length;
  let from = s.length - tail;
  if (/[\uD800-\uDBFF]/.test(s.charAt(head - 1))) head--;
  if (/[\uDC00-\uDFFF]/.test(s.charAt(from))) from++;
  return `${s.slice(0, Math.max(0, head))}${marker(from - head)}${s.slice(from)}`;
}

/**
 * A failure of one hop: which hop, a stable code, and what happened in words
 * (`detail`, which repeats what the upstream said). The message is
 * `<hop>: <detail>`. Never contains token material: details are built from
 * status codes and the servers' error fields.
 *
 * Every word an upstream says reaches answers, the status page and logs through
 * here, so this is where it is bounded: a server that answers a megabyte of
 * error message cannot make every consumer carry it.
 */
export class HopError extends Error {
  readonly hop: Hop;
  readonly code: HopErrorCode;
  /** What happened, without the hop's name. */
  readonly detail: string;
  readonly status?: number;
  readonly upstreamError?: string;
  readonly retryable: boolean;
  readonly retryAfterSeconds?: number;

  constructor(hop: Hop, detail: string, opts: HopErrorOptions) {
    const said = bounded(detail);
    super(`${hop}: ${said}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "HopError";
    this.hop = hop;
    this.code = opts.code;
    this.detail = said;
    this.status = opts.status;
    this.upstreamError = opts.upstreamError === undefined ? undefined : bounded(opts.upstreamError, MAX_UPSTREAM_ERROR_CHARS, 0);
    this.retryable = opts.retryable ?? false;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

/**
 * The same failure, with what the retry loop adds when it gives up (the attempt
 * count): every field kept, the original error as the cause's cause.
 */
export function withDetail(e: HopError, detail: string): HopError {
  return new HopError(e.hop, detail, {
    code: e.code,
    status: e.status,
    upstreamError: e.upstreamError,
    retryable: e.retryable,
    retryAfterSeconds: e.retryAfterSeconds,
    cause: e.cause,
  });
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 408 || status >= 500;
}
