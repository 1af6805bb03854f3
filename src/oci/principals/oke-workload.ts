import common from "oci-common";
import type { Config } from "../../config/config.js";
import type { TokenSource } from "../../token/token-source.js";
import { type Provider, principalError, readProvider, type SigningIdentity, withEnv } from "./shared.js";

/** The OKE workload identity of a pod, from its projected service account token. */
export function okeWorkloadPrincipal(oke: Config["oci"]["oke"], timeoutMs: number): TokenSource<SigningIdentity> {
  return {
    async token() {
      try {
        // Rebuilt at each renewal: oci-common reads the projected service account token only at build.
        const p = withEnv({ KUBERNETES_SERVICE_HOST: oke.serviceHost, KUBERNETES_SERVICE_PORT_PROXYMUX: String(oke.proxymuxPort) }, () =>
          common.OkeWorkloadIdentityAuthenticationDetailsProvider.builder(oke.caCertPath, oke.tokenPath),
        ) as unknown as Provider;
        return await readProvider(p, "OKE workload identity", timeoutMs);
      } catch (e) {
        throw principalError(e, "OKE workload identity");
      }
    },
  };
}
