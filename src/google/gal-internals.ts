/**
 * What we take from google-auth-library beyond its public entry point, in one
 * place. test/google/gal-internals.test.ts checks each piece against the
 * installed library, so that an upgrade which moves or changes one fails there,
 * by name, rather than somewhere in the STS hop.
 */

import { createRequire } from "node:module";

// StsCredentials (the RFC 8693 token exchange behind the library's external-account
// clients) is not exported from the package root. The package has no "exports" map,
// so its build path can be imported; it has been stable across 10.x.
import { StsCredentials } from "google-auth-library/build/src/auth/stscredentials.js";

// The classes the hops use, from their build paths too: the package root loads all of
// the library's 45 modules (every client type, gtoken, the AWS and pluggable clients),
// about 2 MB and 10 ms more than these 13. They are the objects the root re-exports.
export { AuthClient } from "google-auth-library/build/src/auth/authclient.js";
export { Impersonated } from "google-auth-library/build/src/auth/impersonated.js";
export type { StsCredentials };

/**
 * gaxios as google-auth-library itself loads it: the CommonJS build, resolved from
 * the library's own directory. The library checks `instanceof` against that copy;
 * importing gaxios from ESM would load its ESM build, a second copy.
 */
export const gaxios = createRequire(createRequire(import.meta.url).resolve("google-auth-library"))("gaxios") as typeof import("gaxios");

type ConstructionOptions = Exclude<ConstructorParameters<typeof StsCredentials>[0], string | URL | undefined>;

/** The request exchangeToken takes, and what it resolves to. */
export type StsExchangeRequest = Parameters<StsCredentials["exchangeToken"]>[0];
export type StsExchangeResponse = Awaited<ReturnType<StsCredentials["exchangeToken"]>>;

/**
 * A token-exchange client that POSTs to `tokenExchangeEndpoint` with `transporter`
 * (no client authentication: the subject token is the only credential).
 */
export function stsCredentials(o: {
  tokenExchangeEndpoint: string;
  transporter: NonNullable<ConstructionOptions["transporter"]>;
}): StsCredentials {
  return new StsCredentials({ tokenExchangeEndpoint: o.tokenExchangeEndpoint, transporter: o.transporter });
}
