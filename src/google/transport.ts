import { notJsonBody } from "../upstream/retry.js";
import { type AuthClient, gaxios } from "./gal-internals.js";

/** A success status whose body is not the JSON object every Google endpoint we call answers. */
export class NotJsonAnswerError extends Error {
  /** The message as written here: Impersonated rewrites `message` of what passes through it. */
  readonly said: string;

  constructor(message: string) {
    super(message);
    this.name = "NotJsonAnswerError";
    this.said = message;
  }
}

/** The transport type google-auth-library's clients take. */
export type Transport = NonNullable<NonNullable<ConstructorParameters<typeof AuthClient>[0]>["transporter"]>;

// google-auth-library's own copy of gaxios (see gal-internals.ts).
const Gaxios = gaxios.Gaxios as unknown as new (defaults: object) => Transport;

/**
 * The HTTP transport for google-auth-library's clients: a timeout on every call
 * and no retries of its own, since each hop retries with its own policy
 * (jittered backoff, Retry-After, nothing on 4xx) and the library's would
 * multiply with it.
 */
export function transport(timeoutMs: number): Transport {
  // Node's own fetch, as the identity-domain hop uses: gaxios would otherwise load
  // node-fetch, a third HTTP client stack, costing start-up time and CPU per call.
  // Behind a proxy gaxios keeps node-fetch: only that way does it honour the
  // proxy variables (Node 20's fetch ignores its `agent` and the environment).
  const g = new Gaxios({ timeout: timeoutMs, ...(proxyConfigured() ? {} : { fetchImplementation: globalThis.fetch }) });
  g.interceptors.request.add({
    resolved: async (opts) => {
      opts.retry = false;
      delete opts.retryConfig;
      return opts;
    },
  });
  // Every Google endpoint called answers a JSON object. A 2xx with anything else (an
  // HTML page from a proxy, a truncated body) is a broken answer: say so, instead of
  // letting the library fail on it with a TypeError that quotes the body.
  g.interceptors.response.add({
    resolved: async (res) => {
      const data = (res as { data?: unknown }).data;
      if (!data || typeof data !== "object") {
        // Described, never quoted: a body that is not the answer is not an error message either.
        throw new NotJsonAnswerError(
          `HTTP ${res.status} with ${typeof data === "string" ? notJsonBody(data) : data == null ? "an empty body" : "JSON that is not an object"}`,
        );
      }
      return res;
    },
  });
  return g;
}

/** Whether gaxios would send requests through a proxy (the variables it reads). */
function proxyConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return !!(env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy);
}
