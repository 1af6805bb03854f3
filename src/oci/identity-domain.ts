import { decodeJwtClaims } from "../jwt.js";
import type { Token, TokenSource } from "../token/token-source.js";
import { HopError, type HopErrorCode, isRetryableStatus } from "../upstream/hop-error.js";
import { networkCode, networkWords, noAnswerWithin } from "../upstream/network.js";
import { errorBodyText, notJsonBody, parseRetryAfter, type RetryPolicy, snippet, withRetry } from "../upstream/retry.js";
import type { SigningIdentity } from "./principal.js";
import { signRequest } from "./signer.js";

const HOP = "identity domain" as const;
export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
const CONTENT_TYPE = "application/x-www-form-urlencoded;charset=utf-8";
/** Longest lifetime believed from an identity domain; anything longer is a broken answer. */
const MAX_LIFETIME_S = 24 * 3600;
/** Largest disagreement tolerated between `exp` and `expires_in` (clock skew). */
const MAX_SKEW_S = 120;

/** The domain JWT, with its claims for diagnostics (the claims are not secret; the token is). */
export interface DomainToken extends Token {
  readonly claims: Record<string, unknown>;
}

/** Form encoding that keeps `:` literal, as the documented request body shows it. */
function formValue(v: string): string {
  return encodeURIComponent(v).replace(/%3A/gi, ":");
}

export function tokenExchangeBody(scope: string, grantType = TOKEN_EXCHANGE_GRANT): string {
  return `grant_type=${formValue(grantType)}&scope=${formValue(scope)}&requested_token_type=${formValue(ACCESS_TOKEN_TYPE)}`;
}

/**
 * Exchanges the OCI principal for a domain JWT at the identity domain's
 * `/oauth2/v1/token`, signing the request as the OCI Python SDK does.
 */
export class IdentityDomainTokenSource implements TokenSource<DomainToken> {
  private readonly url: URL;
  private readonly body: string;

  constructor(
    private readonly principal: TokenSource<SigningIdentity> & { invalidate?(): void },
    private readonly opts: { domainUrl: string; scope: string; timeoutMs: number; retry: RetryPolicy; grantType?: string },
  ) {
    this.url = new URL(`${opts.domainUrl}/oauth2/v1/token`);
    this.body = tokenExchangeBody(opts.scope, opts.grantType);
  }

  async token(): Promise<DomainToken> {
    // A failure of the OCI principal reaches the caller as it is, not retried again here.
    await this.principal.token();
    try {
      return await withRetry(this.opts.retry, () => this.once());
    } catch (e) {
      // The domain refused the OCI session itself (expired early, revoked, clock skew at
      // the OCI side): get a new session once, instead of failing until it renews on schedule.
      if (e instanceof HopError && e.status === 401 && this.principal.invalidate && /expired|security token|session/i.test(e.message)) {
        this.principal.invalidate();
        await this.principal.token();
        return this.once();
      }
      throw e;
    }
  }

  private async once(): Promise<DomainToken> {
    const id = await this.principal.token();
    const req = signRequest({
      method: "POST",
      url: this.url,
      body: this.body,
      contentType: CONTENT_TYPE,
      keyId: id.keyId,
      privateKey: id.privateKey,
    });
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: { ...req.headers, accept: "application/json" },
        body: req.body,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
        redirect: "error",
      });
      text = await res.text();
    } catch (e) {
      const err = e as Error;
      const code = networkCode(err.cause);
      const why =
        err.name === "TimeoutError" ? noAnswerWithin(this.opts.timeoutMs) : code ? networkWords(code, "the identity domain") : err.message;
      throw new HopError(HOP, `POST ${this.url.origin}/oauth2/v1/token failed: ${why}`, { code: "unreachable", retryable: true, cause: e });
    }
    return parseDomainAnswer(res.status, text, res.headers.get("retry-after"));
  }
}

/**
 * What a refusal means, from the status and what the domain said: identity
 * domains answer most refusals with 400 or 401 and say which in words. The
 * order matters: an expired security token is also an invalid_client.
 */
function refusalCode(status: number, said: string): HopErrorCode {
  if (status === 404) return "not_found";
  if (/expired/i.test(said)) return "expired";
  if (/signature|digest|invalid_client/i.test(said)) return "signature_rejected";
  if (/unauthorized_client|invalid_grant|unsupported_grant_type|not authorized|not allowed/i.test(said)) return "grant_not_allowed";
  return "refused";
}

export function parseDomainAnswer(status: number, text: string, retryAfter: string | null): DomainToken {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const obj = body && typeof body === "object" ? (body as Record<string, unknown>) : undefined;
  if (status !== 200) {
    const error = typeof obj?.error === "string" ? obj.error : typeof obj?.code === "string" ? obj.code : undefined;
    const desc =
      typeof obj?.error_description === "string" ? obj.error_description : typeof obj?.message === "string" ? obj.message : undefined;
    const said = error ? `${error}${desc ? `: ${desc}` : ""}` : obj ? snippet(text) : `non-JSON body: ${errorBodyText(text)}`;
    throw new HopError(HOP, `HTTP ${status}: ${said}`, {
      code: refusalCode(status, said),
      status,
      upstreamError: error,
      retryable: isRetryableStatus(status),
      retryAfterSeconds: parseRetryAfter(retryAfter),
    });
  }
  if (!obj) throw new HopError(HOP, `HTTP 200 with ${notJsonBody(text)}`, { code: "bad_answer", retryable: true });
  const tok = obj.access_token;
  if (typeof tok !== "string" || tok === "")
    throw new HopError(HOP, "HTTP 200 without an access_token", { code: "bad_answer", retryable: true });
  const claims = decodeJwtClaims(tok);
  if (!claims) throw new HopError(HOP, "the access_token is not a JWT", { code: "bad_answer", retryable: true });
  const now = Date.now();
  const exp = claims.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp))
    throw new HopError(HOP, "the domain JWT has no numeric exp claim", { code: "bad_answer", retryable: true });
  // RFC 6749 makes expires_in a number; some servers send it as a string of digits ("3600").
  const expiresIn = typeof obj.expires_in === "string" && /^[0-9]+$/.test(obj.expires_in) ? Number(obj.expires_in) : obj.expires_in;
  if (expiresIn !== undefined) {
    if (typeof expiresIn !== "number" || !Number.isFinite(expiresIn) || expiresIn <= 0 || expiresIn > MAX_LIFETIME_S) {
      throw new HopError(HOP, `expires_in is ${JSON.stringify(obj.expires_in)}, not a lifetime between 1 s and ${MAX_LIFETIME_S} s`, {
        code: "bad_answer",
        retryable: true,
      });
    }
    const skew = Math.round(exp - (now / 1000 + expiresIn));
    if (Math.abs(skew) > MAX_SKEW_S) {
      throw new HopError(
        HOP,
        `the domain JWT's exp disagrees with expires_in by ${skew} s: this machine's clock and the identity domain's differ; fix the clock (NTP)`,
        { code: "clock", retryable: true },
      );
    }
  }
  if (exp * 1000 <= now)
    throw new HopError(HOP, `the domain JWT expired ${Math.round(now / 1000 - exp)} s ago on arrival: check this machine's clock`, {
      code: "clock",
      retryable: true,
    });
  if (exp - now / 1000 > MAX_LIFETIME_S + MAX_SKEW_S)
    throw new HopError(HOP, "the domain JWT's exp is more than a day away: check this machine's clock", { code: "clock", retryable: true });
  const iat = claims.iat;
  if (typeof iat === "number" && iat - now / 1000 > MAX_SKEW_S) {
    throw new HopError(
      HOP,
      `the domain JWT was issued ${Math.round(iat - now / 1000)} s in the future: this machine's clock is behind; fix it (NTP)`,
      { code: "clock", retryable: true },
    );
  }
  const expiresAt = Math.min(exp * 1000, expiresIn !== undefined ? now + (expiresIn as number) * 1000 : Infinity);
  return { value: tok, expiresAt, obtainedAt: now, claims };
}
