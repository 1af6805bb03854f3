import { decodeJwtClaims } from "../jwt.js";
import type { Token, TokenSource } from "../token/token-source.js";
import { HopError } from "../upstream/hop-error.js";
import { type RetryPolicy, withRetry } from "../upstream/retry.js";
import { TokenSourceAuthClient } from "./auth-client.js";
import { googleError } from "./errors.js";
import { Impersonated } from "./gal-internals.js";
import { checkLifetime } from "./sts.js";
import type { Transport } from "./transport.js";

const HOP = "impersonation" as const;

export interface ImpersonationOptions {
  serviceAccount: string;
  /** The delegation chain to the service account (emails), first delegate first. */
  delegates?: readonly string[];
  iamCredentialsUrl: string;
  universeDomain: string;
  transporter: Transport;
  retry: RetryPolicy;
}

function impersonated(federated: TokenSource, o: ImpersonationOptions, scopes: string[], lifetimeSeconds: number): Impersonated {
  return new Impersonated({
    // The federated token from our own cache is the credential Impersonated calls IAM Credentials with.
    sourceClient: new TokenSourceAuthClient(() => federated.token(), {
      transporter: o.transporter,
      universe_domain: o.universeDomain,
    }),
    targetPrincipal: o.serviceAccount,
    targetScopes: scopes,
    lifetime: lifetimeSeconds,
    // IAM Credentials names each delegate by its resource name.
    delegates: (o.delegates ?? []).map((d) => `projects/-/serviceAccounts/${d}`),
    endpoint: o.iamCredentialsUrl,
  });
}

/**
 * The federated token, obtained before calling IAM Credentials: a failure of the
 * STS hop then reaches the caller as it is, neither retried again by this hop's
 * retries (the STS hop has retried already) nor rewritten by google-auth-library,
 * whose Impersonated prefixes "unable to impersonate: " to the message of the
 * error object it is given, which here is the error shared by every waiter.
 */
async function sourceToken(federated: TokenSource): Promise<void> {
  await federated.token();
}

/** generateAccessToken for one service account and scope set. */
export class ImpersonatedAccessTokenSource implements TokenSource {
  private readonly client: Impersonated;

  constructor(
    private readonly federated: TokenSource,
    private readonly o: ImpersonationOptions,
    scopes: string[],
    lifetimeSeconds: number,
  ) {
    this.client = impersonated(federated, o, scopes, lifetimeSeconds);
  }

  async token(): Promise<Token> {
    await sourceToken(this.federated);
    return withRetry(this.o.retry, async () => {
      let tokens: { access_token?: string | null; expiry_date?: number | null };
      try {
        tokens = (await this.client.refreshAccessToken()).credentials;
      } catch (e) {
        throw googleError(HOP, `generateAccessToken for ${this.o.serviceAccount}`, e);
      }
      const now = Date.now();
      if (typeof tokens.access_token !== "string" || tokens.access_token === "") {
        throw new HopError(HOP, `generateAccessToken for ${this.o.serviceAccount} answered without an accessToken`, {
          code: "bad_answer",
          retryable: true,
        });
      }
      const exp = tokens.expiry_date;
      if (typeof exp !== "number" || Number.isNaN(exp)) {
        throw new HopError(HOP, `generateAccessToken for ${this.o.serviceAccount} answered without a valid expireTime`, {
          code: "bad_answer",
          retryable: true,
        });
      }
      checkLifetime(HOP, (exp - now) / 1000);
      return { value: tokens.access_token, expiresAt: exp, obtainedAt: now };
    });
  }
}

/** generateIdToken for one service account, audience and claim set. */
export class ImpersonatedIdTokenSource implements TokenSource {
  private readonly client: Impersonated;

  constructor(
    private readonly federated: TokenSource,
    private readonly o: ImpersonationOptions,
    private readonly audience: string,
    private readonly includeEmail: boolean,
  ) {
    this.client = impersonated(federated, o, [], 3600);
  }

  async token(): Promise<Token> {
    await sourceToken(this.federated);
    return withRetry(this.o.retry, async () => {
      let jwt: string;
      try {
        jwt = await this.client.fetchIdToken(this.audience, { includeEmail: this.includeEmail });
      } catch (e) {
        throw googleError(HOP, `generateIdToken for ${this.o.serviceAccount}`, e);
      }
      const claims = typeof jwt === "string" ? decodeJwtClaims(jwt) : undefined;
      const now = Date.now();
      if (!claims || typeof claims.exp !== "number") {
        throw new HopError(HOP, `generateIdToken for ${this.o.serviceAccount} answered with something that is not a JWT`, {
          code: "bad_answer",
          retryable: true,
        });
      }
      checkLifetime(HOP, claims.exp - now / 1000);
      return { value: jwt, expiresAt: claims.exp * 1000, obtainedAt: now };
    });
  }
}
