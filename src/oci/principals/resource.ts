import common from "oci-common";
import type { Config } from "../../config/config.js";
import type { TokenSource } from "../../token/token-source.js";
import { type Provider, principalError, readProvider, type SigningIdentity, withEnv } from "./shared.js";

/** The resource principal of an OCI Function (RPST version 2.2), from the configured token and key. */
export function resourcePrincipal(rp: Config["oci"]["resourcePrincipal"], timeoutMs: number): TokenSource<SigningIdentity> {
  return {
    async token() {
      try {
        const p = withEnv(
          {
            OCI_RESOURCE_PRINCIPAL_VERSION: "2.2",
            OCI_RESOURCE_PRINCIPAL_RPST: rp.rpst,
            OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: rp.privateKey,
            OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE: rp.passphrase,
            OCI_RESOURCE_PRINCIPAL_REGION: rp.region,
          },
          () => common.ResourcePrincipalAuthenticationDetailsProvider.builder(),
        ) as unknown as Provider;
        return await readProvider(p, "resource principal", timeoutMs);
      } catch (e) {
        throw principalError(e, "resource principal");
      }
    },
  };
}
