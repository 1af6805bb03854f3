import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT } from "../protocol.js";
import type { Token, TokenSource } from "../token/token-source.js";
import { HopError } from "../upstream/hop-error.js";
import { type RetryPolicy, withRetry } from "../upstream/retry.js";
import { googleError } from "./errors.js";
import { type StsCredentials, type StsExchangeResponse, stsCredentials } from "./gal-internals.js";
import type { Transport } from "./transport.js";

const HOP = "STS" as const;

/** Re-exported for the modules that still take it from here; protocol.ts defines it. */
export { JWT_TOKEN_TYPE };

const MAX_LIFETIME_S = 12 * 3600;

/** Checks an `expires_in` from Google: a positive, sane number of seconds. */
export function checkLifetime(hop: "STS" | "impersonation", v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > MAX_LIFETIME_S) {
    throw new HopError(hop, `the answer's lifetime is ${JSON.stringify(v)}, not between 1 s and ${MAX_LIFETIME_S} s`, {
      code: "bad_answer",
      retryable: true,
    });
  }
  return v;
}

/**
 * Exchanges the domain JWT at Google STS (workload identity federation) for a
 * federated access token, with google-auth-library's StsCredentials.
 */
export class StsTokenSource implements TokenSource {
  private readonly sts: StsCredentials;

  constructor(
    private readonly subject: TokenSource,
    private readonly opts: { stsUrl: string; audience: string; scopes: string[]; transporter: Transport; retry: RetryPolicy },
  ) {
    this.sts = stsCredentials({ tokenExchangeEndpoint: opts.stsUrl, transporter: opts.transporter });
  }

  async token(): Promise<Token> {
    // A failure of the identity-domain hop reaches the caller as it is: that hop has
    // retried already, and retrying it again here would multiply the attempts.
    await this.subject.token();
    return withRetry(this.opts.retry, () => this.once());
  }

  private async once(): Promise<Token> {
    const subject = await this.subject.token();
    // expires_in counts from when STS answered, which is before the answer arrived:
    // count from when the request left, so that the lifetime is never overstated.
    const sent = Date.now();
    let res: StsExchangeResponse;
    try {
      res = await this.sts.exchangeToken({
        grantType: TOKEN_EXCHANGE_GRANT,
        audience: this.opts.audience,
        scope: this.opts.scopes,
        requestedTokenType: ACCESS_TOKEN_TYPE,
        subjectToken: subject.value,
        subjectTokenType: JWT_TOKEN_TYPE,
      });
    } catch (e) {
      throw googleError(HOP, "token exchange", e);
    }
    const data = res as unknown as Record<string, unknown>;
    if (!data || typeof data !== "object" || typeof data.access_token !== "string" || data.access_token === "") {
      throw new HopError(HOP, "the token exchange answered 200 without an access_token", { code: "bad_answer", retryable: true });
    }
    const life = checkLifetime(HOP, data.expires_in);
    return { value: data.access_token, expiresAt: sent + life * 1000, obtainedAt: sent };
  }
}
