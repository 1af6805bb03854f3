import { type Hop, HopError, type HopErrorCode, isRetryableStatus } from "../upstream/hop-error.js";
import { networkCode, networkWords, noAnswerWithin } from "../upstream/network.js";
import { errorBodyText, parseRetryAfter } from "../upstream/retry.js";
import { NotJsonAnswerError } from "./transport.js";

interface GaxiosLike {
  status?: number;
  code?: string | number;
  message?: string;
  name?: string;
  config?: { timeout?: number };
  response?: { status?: number; data?: unknown; headers?: { get?(n: string): string | null } };
  cause?: { code?: string; name?: string; cause?: unknown };
}

/** The innermost message along the chain of causes (fetch wraps every failure in a bare "fetch failed"). */
function rootMessage(e: unknown): string | undefined {
  let message: string | undefined;
  for (
    let c = e as { cause?: unknown; message?: unknown } | undefined, i = 0;
    c && typeof c === "object" && i < 5;
    c = c.cause as typeof c, i++
  ) {
    if (typeof c.message === "string" && c.message) message = c.message;
  }
  return message;
}

/** The server a hop calls, as an operator knows it. */
const SERVER: Record<Hop, string> = {
  STS: "STS",
  impersonation: "IAM Credentials",
  "identity domain": "the identity domain",
  "OCI principal": "the OCI service",
};

/**
 * What STS's refusal means, from its OAuth error and description: the only place
 * that reads STS's words. STS answers 400 to nearly everything; `invalid_target`
 * and a malformed audience parameter concern the pool or provider we named, while
 * `invalid_grant` concerns the token we presented (its aud, iss, signature, times).
 */
function stsRefusal(said: string): HopErrorCode {
  if (/invalid_target/.test(said) || /audience.*(invalid|should be)/i.test(said)) return "audience_rejected";
  if (/issuer/i.test(said) && !/connecting/i.test(said)) return "issuer_rejected";
  if (/audience/i.test(said)) return "audience_rejected";
  // "Error connecting to the given credential's issuer" is how STS reports a kid it has no key for.
  if (/signature|connecting to the given credential's issuer|jwk|key/i.test(said)) return "signature_rejected";
  if (/stale|expired|issued at/i.test(said)) return "expired";
  if (/attribute condition/i.test(said) || /unauthorized_client/.test(said)) return "condition_rejected";
  return "refused";
}

/** What IAM Credentials' refusal means: its status, or Google's status name in the body. */
function iamRefusal(status: number, said: string): HopErrorCode {
  if (status === 403 || /PERMISSION_DENIED/.test(said)) return "permission_denied";
  if (status === 404 || /NOT_FOUND/.test(said)) return "not_found";
  if (status === 401) return "unauthenticated";
  return "refused";
}

/** A refusal's code; an answer that may change on a retry (429, 5xx) is a plain refusal. */
function refusalCode(hop: Hop, status: number, said: string): HopErrorCode {
  if (isRetryableStatus(status)) return "refused";
  return hop === "STS" ? stsRefusal(said) : iamRefusal(status, said);
}

/**
 * Turns what google-auth-library throws (GaxiosError, OAuth-converted errors)
 * into a HopError that names the hop and repeats what Google said: the OAuth
 * `error`/`error_description`, or Google's `error.status`/`error.message`, and
 * classifies a refusal once, here, so that callers match its code.
 */
export function googleError(hop: Hop, what: string, e: unknown): HopError {
  if (e instanceof HopError) return e;
  const g = (e ?? {}) as GaxiosLike;
  const status = g.response?.status ?? (typeof g.status === "number" ? g.status : undefined);
  const data = g.response?.data;
  if (status !== undefined) {
    let code: string | undefined;
    let desc: string | undefined;
    if (data && typeof data === "object") {
      const d = data as Record<string, unknown>;
      if (typeof d.error === "string") {
        code = d.error;
        desc = typeof d.error_description === "string" ? d.error_description : undefined;
      } else if (d.error && typeof d.error === "object") {
        const ge = d.error as Record<string, unknown>;
        code = typeof ge.status === "string" ? ge.status : undefined;
        desc = typeof ge.message === "string" ? ge.message : undefined;
      }
    }
    const said = code
      ? `${code}${desc ? `: ${desc}` : ""}`
      : typeof data === "string"
        ? `non-JSON body: ${errorBodyText(data)}`
        : "no error details";
    return new HopError(hop, `${what}: HTTP ${status}: ${said}`, {
      // Only the error fields are read for the code: a proxy's HTML page says nothing about our token.
      code: refusalCode(hop, status, code ? said : ""),
      status,
      upstreamError: code,
      retryable: isRetryableStatus(status),
      retryAfterSeconds: parseRetryAfter(g.response?.headers?.get?.("retry-after")),
      cause: e,
    });
  }
  if (e instanceof NotJsonAnswerError)
    return new HopError(hop, `${what} failed: ${e.said}`, { code: "bad_answer", retryable: true, cause: e });
  // gaxios enforces its timeout with its own AbortController: an abort is the timeout (nothing else aborts).
  const timedOut =
    g.name === "TimeoutError" || g.name === "AbortError" || g.cause?.name === "TimeoutError" || g.cause?.name === "AbortError";
  // Impersonated rewrites the message of what it throws to "unable to impersonate: Error: <message>".
  const message = g.message?.replace(/^(?:unable to impersonate: )?(?:Error: )?/, "");
  const code = (typeof g.code === "string" ? g.code : undefined) ?? networkCode(g.cause);
  const why = timedOut
    ? noAnswerWithin(g.config?.timeout)
    : code
      ? networkWords(code, SERVER[hop])
      : (rootMessage(g.cause) ?? message ?? String(e));
  return new HopError(hop, `${what} failed: ${why}`, { code: timedOut ? "timeout" : "unreachable", retryable: true, cause: e });
}
