import type { Config } from "./config/config.js";
import { ImpersonatedAccessTokenSource, ImpersonatedIdTokenSource, type ImpersonationOptions } from "./google/impersonation.js";
import { StsTokenSource } from "./google/sts.js";
import { type Transport, transport } from "./google/transport.js";
import { type DomainToken, IdentityDomainTokenSource } from "./oci/identity-domain.js";
import { principalSource, type SigningIdentity } from "./oci/principal.js";
import type { TokenSource } from "./token/token-source.js";
import { DEFAULT_RETRY, type RetryPolicy } from "./upstream/retry.js";

/** The retry policy of the configuration: what the daemon and the library use. */
export function configuredRetry(config: Config): RetryPolicy {
  return { ...DEFAULT_RETRY, attempts: config.upstream.attempts };
}

/**
 * google.delegates as a map from a service account to its delegation chain, each
 * entry `EMAIL=DELEGATE1 DELEGATE2` (spaces or `>` between delegates).
 */
export function delegationChains(entries: readonly string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const e of entries) {
    const eq = e.indexOf("=");
    const target = e.slice(0, eq).trim();
    const chain = e
      .slice(eq + 1)
      .split(/[\s>]+/)
      .filter(Boolean);
    if (eq < 0 || !target.includes("@") || chain.length === 0 || !chain.every((d) => d.includes("@"))) {
      throw new Error(`google.delegates: ${JSON.stringify(e)} is not EMAIL=DELEGATE_EMAIL [DELEGATE_EMAIL...]`);
    }
    chains.set(target.toLowerCase(), chain);
  }
  return chains;
}

/** One attempt and no wait: what doctor uses, so that it reports what the upstream said the first time. */
export const ONE_ATTEMPT: RetryPolicy = { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 };

/**
 * Each hop of the chain as a bare TokenSource built from the configuration, a
 * retry policy and one transport for the Google hops. Chain wraps them in
 * caches; doctor calls them once each. How a hop is cached is no concern here.
 */
export class Hops {
  readonly transporter: Transport;
  private readonly impersonation: Omit<ImpersonationOptions, "serviceAccount">;
  private readonly delegates: Map<string, string[]>;

  constructor(
    readonly config: Config,
    readonly retry: RetryPolicy,
  ) {
    this.transporter = transport(config.upstream.timeoutMs);
    this.delegates = delegationChains(config.google.delegates);
    this.impersonation = {
      iamCredentialsUrl: config.google.iamCredentialsUrl,
      universeDomain: config.google.universeDomain,
      transporter: this.transporter,
      retry,
    };
  }

  /** The configured OCI principal: a signing identity (key id and private key). */
  principal(): TokenSource<SigningIdentity> {
    return principalSource(this.config, this.config.upstream.timeoutMs);
  }

  /** The identity domain's token exchange: the domain JWT, signed for by `principal`. */
  identityDomain(principal: TokenSource<SigningIdentity>): TokenSource<DomainToken> {
    return new IdentityDomainTokenSource(principal, {
      domainUrl: this.config.identityDomain.url,
      scope: this.config.identityDomain.scope,
      timeoutMs: this.config.upstream.timeoutMs,
      retry: this.retry,
    });
  }

  /** Google STS: a federated access token for `scopes` in exchange for the domain JWT. */
  sts(subject: TokenSource<DomainToken>, scopes: string[]): TokenSource {
    return new StsTokenSource(subject, {
      stsUrl: this.config.google.stsUrl,
      audience: this.config.google.audience,
      scopes,
      transporter: this.transporter,
      retry: this.retry,
    });
  }

  /** generateAccessToken of `serviceAccount` for `scopes`, called with the federated token. */
  accessToken(federated: TokenSource, serviceAccount: string, scopes: string[]): TokenSource {
    return new ImpersonatedAccessTokenSource(federated, this.options(serviceAccount), scopes, this.config.google.tokenLifetimeSeconds);
  }

  /** generateIdToken of `serviceAccount` for `audience`, called with the federated token. */
  idToken(federated: TokenSource, serviceAccount: string, audience: string, includeEmail: boolean): TokenSource {
    return new ImpersonatedIdTokenSource(federated, this.options(serviceAccount), audience, includeEmail);
  }

  private options(serviceAccount: string): ImpersonationOptions {
    return { ...this.impersonation, serviceAccount, delegates: this.delegates.get(serviceAccount.toLowerCase()) ?? [] };
  }
}
