import type { Config } from "./config/config.js";
import { configuredRetry, Hops } from "./hops.js";
import type { DomainToken } from "./oci/identity-domain.js";
import type { SigningIdentity } from "./oci/principal.js";
import { CLOUD_PLATFORM } from "./protocol.js";
import {
  type Admission,
  type CacheEvents,
  type CachePolicy,
  type CacheState,
  CachingTokenSource,
  DEFAULT_BACKOFF,
  KeyedTokenCache,
} from "./token/cache.js";
import type { Token, TokenSource } from "./token/token-source.js";
import type { Hop } from "./upstream/hop-error.js";

/** Sorted, de-duplicated scopes: one cache entry per set, whatever order a client lists them in. */
export function normaliseScopes(scopes: readonly string[]): string[] {
  return [...new Set(scopes.map((s) => s.trim()).filter(Boolean))].sort();
}

/** The key of an account's access tokens for a scope set in the cache. */
function accessKey(email: string, scopeKey: string): string {
  return `${email} ${scopeKey}`;
}

function idKey(email: string, format: string, audience: string): string {
  return `${email} ${format} ${audience}`;
}

/**
 * The account whose token a cache key of `access` or `ids` is for: its first word when
 * that is an email (accessKey, idKey); undefined for the federated identity's tokens,
 * which are keyed by their scopes alone.
 */
function accountOfKey(key: string): string | undefined {
  const first = key.split(" ", 1)[0]!;
  return first.includes("@") ? first : undefined;
}

export interface AccessTokenRequest {
  /** An email of a configured account, or "default". */
  account: string;
  scopes?: readonly string[];
  admit?: Admission<Hop>;
}

export interface IdTokenRequest {
  account: string;
  audience: string;
  /** "full" includes the email claims. */
  format: "standard" | "full";
  admit?: Admission<Hop>;
}

export class NoSuchAccountError extends Error {
  constructor(readonly account: string) {
    super(`no service account ${account} is configured`);
    this.name = "NoSuchAccountError";
  }
}

export class NoImpersonationError extends Error {
  constructor() {
    super(
      "ID tokens need a service account to impersonate, and none is configured: " +
        "set google.serviceAccounts ($OCI2GCP_SERVICE_ACCOUNTS) or $GCP_IMPERSONATION_URL",
    );
    this.name = "NoImpersonationError";
  }
}

/**
 * The whole chain, OCI principal → identity domain → STS → impersonation, as
 * cached token sources. Everything above this (HTTP, CLI, library) asks it for
 * tokens and never needs to know how a hop is cached.
 */
export class Chain {
  readonly principal: CachingTokenSource<SigningIdentity, Hop>;
  readonly subject: CachingTokenSource<DomainToken, Hop>;
  /** The federated token used to call IAM Credentials. */
  private readonly federated: CachingTokenSource<Token, Hop>;
  private readonly access: KeyedTokenCache<Hop>;
  private readonly ids: KeyedTokenCache<Hop>;
  private readonly hops: Hops;
  /** STS for a scope set, given a subject token that is not near its end. */
  private readonly sts: (scopes: string[]) => TokenSource;
  readonly accounts: readonly string[];
  readonly defaultScopes: string[];

  constructor(
    readonly config: Config,
    events: CacheEvents<Hop> = {},
    overrides: { principal?: TokenSource<SigningIdentity> } = {},
  ) {
    const subjectPolicy: CachePolicy = {
      renewBeforeMs: config.cache.subjectRenewBeforeSeconds * 1000,
      minRemainingMs: config.cache.subjectMinRemainingSeconds * 1000,
      ...DEFAULT_BACKOFF,
    };
    const googlePolicy: CachePolicy = {
      renewBeforeMs: config.cache.renewBeforeSeconds * 1000,
      minRemainingMs: config.cache.minRemainingSeconds * 1000,
      ...DEFAULT_BACKOFF,
    };
    const hops = new Hops(config, configuredRetry(config));
    this.hops = hops;
    this.accounts = config.google.serviceAccounts;
    this.defaultScopes = normaliseScopes(config.google.scopes);
    this.principal = new CachingTokenSource(overrides.principal ?? hops.principal(), "OCI principal", subjectPolicy, "", events);
    this.subject = new CachingTokenSource(hops.identityDomain(this.principal), "identity domain", subjectPolicy, "", events);
    // STS gives a federated token no longer than the subject token has left: hand it a
    // subject token that is not near its end, so federated tokens get their full lifetime.
    const subjectForSts: TokenSource<DomainToken> = { token: () => this.subject.renewed() };
    this.sts = (scopes) => hops.sts(subjectForSts, scopes);
    this.federated = new CachingTokenSource(this.sts([CLOUD_PLATFORM]), "STS", googlePolicy, CLOUD_PLATFORM, events);
    const max = config.server.maxCachedVariants * Math.max(1, this.accounts.length);
    // Every account's token for the configured scopes is pinned: no flood of client-chosen scope sets evicts it.
    const defaultScopes = this.defaultScopes.join(" ");
    const pinned = this.accounts.length ? this.accounts.map((a) => accessKey(a, defaultScopes)) : [defaultScopes];
    this.access = new KeyedTokenCache(this.accounts.length ? "impersonation" : "STS", googlePolicy, max, events, { pinned });
    this.ids = new KeyedTokenCache("impersonation", googlePolicy, max, events);
  }

  /** "default" or a configured email → the email; undefined without service accounts. */
  resolveAccount(name: string): string | undefined {
    if (this.accounts.length === 0) {
      if (name === "default") return undefined;
      throw new NoSuchAccountError(name);
    }
    if (name === "default") return this.accounts[0];
    if (this.accounts.includes(name)) return name;
    throw new NoSuchAccountError(name);
  }

  /** The domain JWT, the subject token Google STS takes. */
  subjectToken(admit?: Admission<Hop>): Promise<DomainToken> {
    return this.subject.token(admit);
  }

  accessToken(req: AccessTokenRequest): Promise<Token> {
    const email = this.resolveAccount(req.account);
    const scopes = req.scopes?.length ? normaliseScopes(req.scopes) : this.defaultScopes;
    return this.accessCache(email, scopes, true)!.token(req.admit);
  }

  /**
   * The access token of `account` for the default scopes when it is in the cache
   * and `accessToken()` would answer with it at once, and `proceed()` (asked only
   * then) agrees: counted as that hit. Otherwise undefined, and nothing is
   * counted or started.
   */
  cachedAccessToken(account: string, proceed: () => boolean = () => true): Token | undefined {
    const cache = this.accessCache(this.resolveAccount(account), this.defaultScopes, false);
    if (!cache?.peek() || !proceed()) return undefined;
    return cache.hit();
  }

  /** The cache of access tokens for an account (undefined: the federated identity) and a normalised scope set. */
  private accessCache(email: string | undefined, scopes: string[], create: boolean): CachingTokenSource<Token, Hop> | undefined {
    const scopeKey = scopes.join(" ");
    if (email === undefined) {
      if (scopeKey === CLOUD_PLATFORM) return this.federated;
      return create ? this.access.get(scopeKey, () => this.sts(scopes)) : this.access.find(scopeKey);
    }
    const key = accessKey(email, scopeKey);
    if (!create) return this.access.find(key);
    return this.access.get(key, () => this.hops.accessToken(this.federated, email, scopes));
  }

  idToken(req: IdTokenRequest): Promise<Token> {
    const email = this.resolveAccount(req.account);
    if (email === undefined) return Promise.reject(new NoImpersonationError());
    const includeEmail = req.format === "full";
    return this.ids
      .get(idKey(email, req.format, req.audience), () => this.hops.idToken(this.federated, email, req.audience, includeEmail))
      .token(req.admit);
  }

  /** Every cache's state, for status, metrics and readiness; never the tokens. */
  states(): { kind: string; account?: string; state: CacheState<Hop> }[] {
    const byAccount = (kind: string) => (c: CachingTokenSource<Token, Hop>) => {
      const state = c.state();
      return { kind, account: accountOfKey(state.key), state };
    };
    return [
      { kind: "oci-session", state: this.principal.state() },
      { kind: "subject-token", state: this.subject.state() },
      { kind: "federated-token", state: this.federated.state() },
      ...this.access.entries().map(byAccount("access-token")),
      ...this.ids.entries().map(byAccount("id-token")),
    ];
  }

  close(): void {
    this.principal.close();
    this.subject.close();
    this.federated.close();
    this.access.close();
    this.ids.close();
  }
}
