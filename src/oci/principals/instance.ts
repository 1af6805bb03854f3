import common from "oci-common";
import type { Config } from "../../config/config.js";
import type { TokenSource } from "../../token/token-source.js";
import { HopError } from "../../upstream/hop-error.js";
import { networkCode, networkWords } from "../../upstream/network.js";
import {
  captureFederationAnswers,
  disableAuthCircuitBreaker,
  type FederationAnswer,
  timeEachFederationCall,
} from "../oci-common-internals.js";
import { PregeneratedSessionKeySupplier } from "../session-keys.js";
import { HOP, identityFrom, type Provider, principalError, type SigningIdentity, withTimeout } from "./shared.js";

/** Probes the instance metadata service quickly, so that "not on OCI" fails fast and clearly. */
function unanswered(e: unknown, timeoutMs: number): string {
  const err = e as Error;
  if (err.name === "TimeoutError") return `no answer within ${timeoutMs} ms`;
  const code = networkCode(err.cause);
  return code ? networkWords(code, "it") : String(err.cause ?? err.message);
}

async function probeMetadata(base: string, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${base}instance/region`, {
      headers: { authorization: "Bearer Oracle" },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new HopError(
      HOP,
      `the OCI instance metadata service at ${base} did not answer (${unanswered(e, timeoutMs)}): ` +
        "the instance principal works only on an OCI compute instance; elsewhere choose another oci.principal",
      { code: "not_on_oci", retryable: true },
    );
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status !== 200) {
    throw new HopError(HOP, `the OCI instance metadata service at ${base} answered HTTP ${res.status} to instance/region`, {
      code: "refused",
      status: res.status,
      retryable: res.status >= 500,
    });
  }
}

/**
 * The instance principal of an OCI compute instance: a security token from the
 * auth service's federation, signed for with the instance's certificate from
 * the metadata service, and a session key generated ahead of time.
 */
export function instancePrincipal(
  o: Pick<Config["oci"], "metadataUrl" | "federationUrl">,
  timeoutMs: number,
): TokenSource<SigningIdentity> {
  let provider: Provider | undefined;
  let keys: PregeneratedSessionKeySupplier | undefined;
  let federationAnswer: FederationAnswer | undefined;
  return {
    async token() {
      try {
        if (!provider) {
          await probeMetadata(o.metadataUrl, Math.min(timeoutMs, 3000));
          keys ??= await PregeneratedSessionKeySupplier.create();
          const b = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
          b.metadataBaseUrl = o.metadataUrl;
          if (o.federationUrl) b.federationEndpoint = o.federationUrl;
          b.sessionKeySupplier = keys as never;
          disableAuthCircuitBreaker(b);
          const built = (await withTimeout(
            b.build(),
            timeoutMs * 2,
            "reading the instance identity from the metadata service",
          )) as unknown as Provider;
          federationAnswer = captureFederationAnswers(built);
          timeEachFederationCall(built, timeoutMs);
          provider = built;
        } else {
          await keys!.ready();
        }
        if (federationAnswer) federationAnswer.last = undefined;
        // Each federation call is cut at timeoutMs; oci-common makes up to three, 1-2 s apart.
        const token = await withTimeout(provider.refresh!(), timeoutMs * 3 + 5000, "federating the instance principal");
        const pair = keys!.getKeyPair();
        return await identityFrom(`ST$${token}`, pair.getPrivate(), undefined, "instance principal");
      } catch (e) {
        const err = principalError(e, "instance principal");
        // oci-common reports only the status of a refused federation; add what the auth service said.
        const said = federationAnswer?.last;
        if (said && !(e instanceof HopError)) {
          throw new HopError(HOP, `${err.detail} (${said.text})`, {
            code: "refused",
            status: said.status,
            upstreamError: said.code,
            retryable: err.retryable,
            // oci-common does not retry a 429; the cache's backoff honours Retry-After.
            retryAfterSeconds: said.retryAfterSeconds,
            cause: e,
          });
        }
        throw err;
      }
    },
  };
}
