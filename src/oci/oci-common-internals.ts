import { createRequire } from "node:module";
import common, { type InstancePrincipalsAuthenticationDetailsProviderBuilder } from "oci-common";
import { parseRetryAfter, snippet } from "../upstream/retry.js";

/**
 * Every reach into oci-common's private internals, in one place. Each function
 * checks the shape it relies on and throws when an oci-common release no longer
 * has it, instead of quietly going without the workaround;
 * test/oci/oci-common-internals.test.ts checks each shape against the installed
 * oci-common.
 */

let version: string | undefined;

/** The installed oci-common's version, read from its package.json when first needed. */
export function ociCommonVersion(): string {
  if (version === undefined) {
    try {
      const v = (createRequire(import.meta.url)("oci-common/package.json") as { version?: unknown }).version;
      version = typeof v === "string" ? v : "(unknown version)";
    } catch {
      version = "(unknown version)";
    }
  }
  return version;
}

function missing(what: string, why: string): Error {
  return new Error(`oci-common ${ociCommonVersion()}: ${what} not found; oci2gcp relies on it to ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/**
 * oci-common's auth circuit breaker opens after one failed federation round
 * (three attempts) and then refuses every federation for 30-49 s, long after the
 * auth service is back. oci2gcp's caches back off on their own: replace the
 * builder's breaker (the protected `_authCircuitBreaker`, which `build()` hands
 * to the federation client) with a disabled one. Call before `build()`.
 */
export function disableAuthCircuitBreaker(builder: InstancePrincipalsAuthenticationDetailsProviderBuilder): void {
  const b = builder as unknown as Record<string, unknown>;
  if (!isObject(b._authCircuitBreaker)) {
    throw missing(
      "the instance-principal builder's _authCircuitBreaker",
      "turn off the auth circuit breaker, which refuses every federation for 30-49 s after one failed round",
    );
  }
  b._authCircuitBreaker = new common.CircuitBreaker({ disableClientCircuitBreaker: true });
}

/** The parts of oci-common's X509FederationClient used below (all private or protected). */
interface FederationClient {
  getTokenAsync(): Promise<Response>;
  httpClient: { httpOptions?: object };
}

function federationClientOf(provider: object, why: string): Record<string, unknown> {
  const fc = (provider as { federationClient?: unknown }).federationClient;
  if (!isObject(fc)) throw missing("the instance-principal provider's federationClient", why);
  return fc;
}

/** What the auth service said to the last refused federation call. */
export interface FederationAnswer {
  last?: { status: number; code?: string; text: string; retryAfterSeconds?: number };
}

/**
 * oci-common's X509 federation client throws only "failed with status: NNN" and
 * drops the auth service's answer. Wrap its private `getTokenAsync` to keep the
 * `code: message` of the last refused federation call, read from a clone of the
 * response, for the error message. Call after `build()`.
 */
export function captureFederationAnswers(provider: object): FederationAnswer {
  const why = "report what the auth service answered to a refused federation";
  const fc = federationClientOf(provider, why) as unknown as FederationClient;
  const orig = fc.getTokenAsync;
  if (typeof orig !== "function") throw missing("the federation client's getTokenAsync", why);
  const state: FederationAnswer = {};
  fc.getTokenAsync = async () => {
    const res = await orig.call(fc);
    if (res && typeof res.status === "number" && res.status !== 200 && typeof res.clone === "function") {
      const body = await res
        .clone()
        .text()
        .catch(() => "");
      let code: string | undefined;
      let said = snippet(body);
      try {
        const b = JSON.parse(body) as { code?: unknown; message?: unknown };
        if (typeof b.code === "string") {
          code = b.code;
          said = `${b.code}${typeof b.message === "string" ? `: ${snippet(b.message)}` : ""}`;
        }
      } catch {
        // Not JSON: the snippet says what it was.
      }
      state.last = {
        status: res.status,
        code,
        text: said ? `HTTP ${res.status}: ${said}` : `HTTP ${res.status}`,
        retryAfterSeconds: parseRetryAfter(res.headers?.get?.("retry-after")),
      };
    }
    return res;
  };
  return state;
}

/**
 * oci-common sends the federation request with fetch and no timeout: give each
 * call its own, through the private `httpOptions` that its FetchHttpClient merges
 * into every request (read at each send, so each call gets a fresh signal).
 * Call after `build()`.
 */
export function timeEachFederationCall(provider: object, timeoutMs: number): void {
  const why = "give each federation call a timeout";
  const fc = federationClientOf(provider, why);
  const http = fc.httpClient;
  if (!isObject(http)) throw missing("the federation client's httpClient", why);
  if (!("httpOptions" in http)) throw missing("the federation client's httpClient.httpOptions", why);
  http.httpOptions = {
    get signal() {
      return AbortSignal.timeout(timeoutMs);
    },
  };
}
