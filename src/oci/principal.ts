import fs from "node:fs";
import type { Config } from "../config/config.js";
import type { TokenSource } from "../token/token-source.js";
import type { SigningIdentity } from "./principals/shared.js";

export type { SigningIdentity } from "./principals/shared.js";

/** The configured principal's own module, loaded on first use: a daemon loads the code of its principal only. */
async function load(cfg: Config, timeoutMs: number): Promise<TokenSource<SigningIdentity>> {
  const o = cfg.oci;
  switch (o.principal) {
    case "instance":
      return (await import("./principals/instance.js")).instancePrincipal(o, timeoutMs);
    case "resource":
      return (await import("./principals/resource.js")).resourcePrincipal(o.resourcePrincipal, timeoutMs);
    case "oke-workload":
      return (await import("./principals/oke-workload.js")).okeWorkloadPrincipal(o.oke, timeoutMs);
    case "config-file":
    case "session":
      return (await import("./principals/config-file.js")).configFilePrincipal(o.principal, o.configFile, o.profile, timeoutMs);
  }
}

/**
 * The OCI principal as a TokenSource of signing identities. Each token() call
 * obtains a fresh identity: callers wrap it in a CachingTokenSource, which renews
 * ahead of expiry and once at a time (oci-common does neither).
 */
export function principalSource(cfg: Config, timeoutMs: number): TokenSource<SigningIdentity> {
  let source: Promise<TokenSource<SigningIdentity>> | undefined;
  return {
    async token() {
      source ??= load(cfg, timeoutMs);
      return (await source).token();
    },
  };
}

/** True when others than the owner may read the file: a private key there is exposed. */
export function isWorldOrGroupReadable(file: string): boolean {
  try {
    return (fs.statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}
