/**
 * oci2gcp as a library: the same chain as the daemon, in-process. For an OCI
 * Function (resource principal) or any program that wants Google credentials
 * from its OCI identity without running the daemon.
 *
 *   import { OciGoogleCredentials } from "oci2gcp";
 *   const creds = OciGoogleCredentials.fromEnvironment();
 *   const storage = new Storage({ authClient: creds.authClient() });
 *
 * Importing it loads the chain only: the daemon (Fastify, prom-client) is in
 * "oci2gcp/daemon".
 */
import type { AuthClient } from "google-auth-library";
import { Chain } from "./chain.js";
import { type Config, loadConfig } from "./config/config.js";
import { TokenSourceAuthClient } from "./google/auth-client.js";
import type { DomainToken } from "./oci/identity-domain.js";
import type { Token } from "./token/token-source.js";

export { Chain, NoImpersonationError, NoSuchAccountError, normaliseScopes } from "./chain.js";
export { type Config, ConfigError, loadConfig } from "./config/config.js";
export { SETTINGS, type Setting } from "./config/settings.js";
export { TokenSourceAuthClient } from "./google/auth-client.js";
export { createLogger } from "./log.js";
export type { DomainToken } from "./oci/identity-domain.js";
export { CachingTokenSource, KeyedTokenCache } from "./token/cache.js";
export type { Token, TokenSource } from "./token/token-source.js";
export { type Hop, HopError } from "./upstream/hop-error.js";

export interface FromEnvironmentOptions {
  /** Environment to read; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** A JSON config file, as `oci2gcp serve --config`. */
  configFile?: string;
  /** Settings by path (e.g. {"google.serviceAccounts": ["sa@p.iam.gserviceaccount.com"]}), winning over everything. */
  overrides?: Record<string, unknown>;
}

/** Google credentials obtained from this workload's OCI identity, cached and renewed in-process. */
export class OciGoogleCredentials {
  readonly chain: Chain;

  constructor(readonly config: Config) {
    this.chain = new Chain(config);
  }

  /**
   * Configuration from the environment, as the daemon reads it. Inside an OCI
   * Function (OCI_RESOURCE_PRINCIPAL_VERSION is set) the resource principal is
   * used unless OCI2GCP_PRINCIPAL says otherwise.
   */
  static fromEnvironment(o: FromEnvironmentOptions = {}): OciGoogleCredentials {
    const env = o.env ?? process.env;
    const overrides: Record<string, unknown> = { ...o.overrides };
    if (!env.OCI2GCP_PRINCIPAL && env.OCI_RESOURCE_PRINCIPAL_VERSION && !("oci.principal" in overrides))
      overrides["oci.principal"] = "resource";
    return new OciGoogleCredentials(loadConfig({ env, file: o.configFile, overrides }));
  }

  /** An access token of the first service account (or the federated token without one). */
  getAccessToken(opts: { account?: string; scopes?: string[] } = {}): Promise<Token> {
    return this.chain.accessToken({ account: opts.account ?? "default", scopes: opts.scopes });
  }

  /** A Google-signed ID token for `audience` (needs a service account). */
  getIdToken(audience: string, opts: { account?: string; includeEmail?: boolean } = {}): Promise<Token> {
    return this.chain.idToken({ account: opts.account ?? "default", audience, format: opts.includeEmail ? "full" : "standard" });
  }

  /** The identity-domain JWT (the subject token Google STS takes). */
  getSubjectToken(): Promise<DomainToken> {
    return this.chain.subjectToken();
  }

  /** An AuthClient for `@google-cloud/*` clients and googleapis: `new Storage({ authClient })`. */
  authClient(opts: { account?: string; scopes?: string[] } = {}): AuthClient {
    const c = new TokenSourceAuthClient(() => this.getAccessToken(opts), { universe_domain: this.config.google.universeDomain });
    if (this.config.google.projectId) c.projectId = this.config.google.projectId;
    return c;
  }

  /** Stops background renewal. */
  close(): void {
    this.chain.close();
  }
}
