import { type Hop, HopError, isRetryableStatus } from "../upstream/hop-error.js";
import { parseRetryAfter } from "../upstream/retry.js";

interface GaxiosLike {
  status?: number;
  code?: string | number;
  message?: string;
  name?: string;
  response?: { status?: number; data?: unknown; headers?: { get?(n: string): string | null } };
  cause?: { code?: string; name?: string; cause?: unknown };
}

/**
 * What a network failure comes down to: the first error code along the chain of
 * causes (ECONNREFUSED, UND_ERR_SOCKET, ...), else the innermost cause's message
 * (fetch wraps every failure in a bare "fetch failed").
 */
function rootCause(e: unknown): string | undefined {
  let message: string | undefined;
  for (
    let c = e as { code?: unknown; cause?: unknown; message?: unknown } | undefined, i = 0;
    c && typeof c === "object" && i < 5;
    c = c.cause as typeof c, i++
  ) {
    if (typeof c.code === "string") return c.code;
    if (typeof c.message === "string" && c.message) message = c.message;
  }
  return message;
}

/**
 * Turns what google-auth-library throws (GaxiosError, OAuth-converted errors)
 * into a HopError that names the hop and repeats what Google said: the OAuth
 * `error`/`error_description`, or Google's `error.status`/`error.message`.
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
        ? `non-JSON body: ${data.replace(/\s+/g, " ").slice(0, 200)}`
        : "no error details";
    return new HopError(hop, `${what}: HTTP ${status}: ${said}`, {
      code: "refused",
      status,
      upstreamError: code,
      retryable: isRetryableStatus(status),
      retryAfterSeconds: parseRetryAfter(g.response?.headers?.get?.("retry-after")),
      cause: e,
    });
  }
  // gaxios enforces its timeout with its own AbortController: an abort is the timeout (nothing else aborts).
  const timedOut =
    g.name === "TimeoutError" || g.name === "AbortError" || g.cause?.name === "TimeoutError" || g.cause?.name === "AbortError";
  // Impersonated rewrites the message of what it throws to "unable to impersonate: Error: <message>".
  const message = g.message?.replace(/^(?:unable to impersonate: )?(?:Error: )?/, "");
  const why = timedOut
    ? "no answer within upstream.timeoutMs"
    : ((typeof g.code === "string" ? g.code : undefined) ?? rootCause(g.cause) ?? message ?? String(e));
  return new HopError(hop, `${what} failed: ${why}`, { code: timedOut ? "timeout" : "unreachable", retryable: true, cause: e });
}
