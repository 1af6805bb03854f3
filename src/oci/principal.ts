import fs from "node:fs";
import type { Config } from "../config/config.js";
import type { TokenSource } from "../token/token-source.js";
import { configFilePrincipal } from "./principals/config-file.js";
import { instancePrincipal } from "./principals/instance.js";
import { okeWorkloadPrincipal } from "./principals/oke-workload.js";
import { resourcePrincipal } from "./principals/resource.js";
import type { SigningIdentity } from "./principals/shared.js";

export type { SigningIdentity } from "./principals/shared.js";

/**
 * The OCI principal as a TokenSource of signing identities. Each token() call
 * obtains a fresh identity: callers wrap it in a CachingTokenSource, which renews
 * ahead of expiry and once at a time (oci-common does neither).
 */
export function principalSource(cfg: Config, timeoutMs: number): TokenSource<SigningIdentity> {
  const o = cfg.oci;
  switch (o.principal) {
    case "instance":
      return instancePrincipal(o, timeoutMs);
    case "resource":
      return resourcePrincipal(o.resourcePrincipal, timeoutMs);
    case "oke-workload":
      return okeWorkloadPrincipal(o.oke, timeoutMs);
    case "config-file":
    case "session":
      return configFilePrincipal(o.principal, o.configFile, o.profile, timeoutMs);
  }
}

/** True when others than the owner may read the file: a private key there is exposed. */
export function isWorldOrGroupReadable(file: string): boolean {
  try {
    return (fs.statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}
