/**
 * What a network failure means, in words, from the error code Node or undici
 * reports: "fetch failed" and a bare "UND_ERR_SOCKET" say nothing to an operator.
 * The code stays in brackets, for searching and for support.
 */

const WORDS: Record<string, (server: string) => string> = {
  ECONNREFUSED: (s) => `${s} refused the connection: nothing listens at that address and port`,
  ECONNRESET: (s) => `the connection was reset before ${s} answered`,
  EPIPE: (s) => `the connection was closed while the request to ${s} was being sent`,
  UND_ERR_SOCKET: (s) => `the connection was closed before ${s} answered`,
  ENOTFOUND: (s) => `the host name of ${s} does not resolve (DNS)`,
  EAI_AGAIN: (s) => `the host name of ${s} could not be resolved now (DNS did not answer)`,
  ETIMEDOUT: (s) => `the connection to ${s} timed out`,
  UND_ERR_CONNECT_TIMEOUT: (s) => `the connection to ${s} could not be opened in time`,
  UND_ERR_HEADERS_TIMEOUT: (s) => `${s} accepted the connection but sent no answer in time`,
  UND_ERR_BODY_TIMEOUT: (s) => `${s} stopped sending its answer`,
  EHOSTUNREACH: (s) => `there is no route to ${s}`,
  ENETUNREACH: (s) => `the network of ${s} is unreachable`,
  CERT_HAS_EXPIRED: (s) => `the TLS certificate of ${s} has expired`,
  DEPTH_ZERO_SELF_SIGNED_CERT: (s) => `the TLS certificate of ${s} is self-signed and not trusted`,
  SELF_SIGNED_CERT_IN_CHAIN: (s) => `the TLS certificate chain of ${s} has a self-signed certificate that is not trusted`,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: (s) =>
    `the TLS certificate of ${s} cannot be verified (an intermediate certificate is missing or not trusted)`,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: (s) =>
    `the issuer of ${s}'s TLS certificate is not trusted here (a proxy or a missing CA certificate?)`,
  ERR_TLS_CERT_ALTNAME_INVALID: (s) => `the TLS certificate of ${s} is not for that host name`,
  CERT_NOT_YET_VALID: (s) => `the TLS certificate of ${s} is not yet valid: check this machine's clock`,
};

/** The first string `code` along an error's chain of causes (fetch wraps every failure in a bare "fetch failed"). */
export function networkCode(e: unknown): string | undefined {
  for (
    let c = e as { code?: unknown; cause?: unknown } | undefined, i = 0;
    c && typeof c === "object" && i < 5;
    c = c.cause as typeof c, i++
  ) {
    if (typeof c.code === "string") return c.code;
  }
  return undefined;
}

/** Whether `code` is a network failure this module has words for (not, say, a service's own error code). */
export function isNetworkCode(code: string | undefined): code is string {
  return code !== undefined && Object.hasOwn(WORDS, code);
}

/** A network error code in words, naming the server, with the code in brackets; the bare code when it is not a known one. */
export function networkWords(code: string, server: string): string {
  const words = WORDS[code];
  if (words) return `${words(server)} (${code})`;
  if (/CERT|TLS|SSL/.test(code)) return `the TLS connection to ${server} failed: its certificate is not accepted (${code})`;
  return `the connection to ${server} failed (${code})`;
}

/** "no answer within 800 ms (upstream.timeoutMs)": the value and the setting to change. */
export function noAnswerWithin(ms: number | undefined, setting = "upstream.timeoutMs"): string {
  return ms === undefined ? `no answer within ${setting}` : `no answer within ${ms} ms (${setting})`;
}
