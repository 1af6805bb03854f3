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

/**
 * A failure of one hop: which hop, a stable code, and what happened in words
 * (`detail`, which repeats what the upstream said). The message is
 * `<hop>: <detail>`. Never contains token material: details are built from
 * status codes and the servers' error fields.
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
    super(`${hop}: ${detail}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "HopError";
    this.hop = hop;
    this.code = opts.code;
    this.detail = detail;
    this.status = opts.status;
    this.upstreamError = opts.upstreamError;
    this.retryable = opts.retryable ?? false;
    this.retryAfterSeconds = opts.retryAfterSeconds;
  }
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 408 || status >= 500;
}
