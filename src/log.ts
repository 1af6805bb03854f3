import { format } from "node:util";
import { type Logger, type LoggerOptions, pino } from "pino";
import { bounded } from "./upstream/hop-error.js";

export type { Logger };

/** Field names that may hold a secret wherever they appear in a log object. */
const SECRET_FIELDS = [
  "token",
  "access_token",
  "accessToken",
  "id_token",
  "idToken",
  "subject_token",
  "refresh_token",
  "value",
  "keyId",
  "privateKey",
  "private_key",
  "authorization",
  "Authorization",
  "signature",
  "rpst",
  "password",
  "passphrase",
];

export const REDACT_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((f) => `*.${f}`),
  ...SECRET_FIELDS.map((f) => `*.*.${f}`),
  "req.headers.cookie",
  "*.headers.cookie",
];

const SCRUBBERS: [RegExp, string][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g, "[private key]"],
  [/\bST\$[A-Za-z0-9_.=-]+/g, "ST$[redacted]"],
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g, "[jwt]"],
  // An HTTP signature's whole parameter list (keyId, signature, ...), not just any word after "signature".
  [/\b(Signature)\s+(?:[A-Za-z]+\s*=\s*"[^"]*"\s*,?\s*)+/gi, "$1 [redacted] "],
  [/\b(Bearer)\s+[^\s,"]+/gi, "$1 [redacted]"],
  [/signature="[^"]*"/gi, 'signature="[redacted]"'],
  [/\bya29\.[A-Za-z0-9_.-]+/g, "[google token]"],
  [/([?&](?:access_token|id_token|token|subject_token)=)[^&\s"]+/gi, "$1[redacted]"],
];

/** Removes anything shaped like a token, key or signature from free text. */
export function scrub(s: string): string {
  let out = s;
  for (const [re, to] of SCRUBBERS) out = out.replace(re, to);
  return out;
}

const MAX_DEPTH = 6;

function scrubDeep(v: unknown, depth = 0): unknown {
  if (typeof v === "string") return scrub(v);
  if (!v || typeof v !== "object") return v;
  // Errors keep name, message and hop fields (their own properties are not enumerable).
  if (v instanceof Error) return scrubDeep(errSerializer(v), depth);
  if (depth > MAX_DEPTH) {
    // Deeper than anything the daemon logs on purpose: flatten rather than pass unscrubbed.
    try {
      return scrub(JSON.stringify(v));
    } catch {
      return "[unserializable]";
    }
  }
  if (Array.isArray(v)) return v.map((x) => scrubDeep(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrubDeep(x, depth + 1);
  return out;
}

/** Longest error message logged: a library can put a whole upstream answer in one. */
const MAX_ERROR_MESSAGE_CHARS = 1000;
/** Longest other string field of an error logged (its code, upstream error). */
const MAX_ERROR_FIELD_CHARS = 200;

function errSerializer(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const o: Record<string, unknown> = {
    type: bounded(String(e.name), MAX_ERROR_FIELD_CHARS, 0),
    message: bounded(String(e.message), MAX_ERROR_MESSAGE_CHARS),
  };
  for (const k of ["hop", "status", "upstreamError", "retryAfterSeconds", "code"]) {
    const v = (e as unknown as Record<string, unknown>)[k];
    if (v !== undefined) o[k] = typeof v === "string" ? bounded(v, MAX_ERROR_FIELD_CHARS, 0) : v;
  }
  return o;
}

/**
 * The logger: pino with redaction by field name and every string scrubbed of
 * token-shaped text, so that no token, key or signature reaches a log at any
 * level, even from a third-party message. Stacks are left out (they can carry
 * request data), errors are logged by name, message and hop.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const opts: LoggerOptions = {
    name: "oci2gcp",
    level,
    redact: { paths: REDACT_PATHS, censor: "[redacted]" },
    serializers: { err: errSerializer, error: errSerializer },
    formatters: {
      log: (o) => scrubDeep(o) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        let a: unknown[] = args;
        // log.error(err[, msg]): pino would take the message from the Error unscrubbed.
        if (a[0] instanceof Error)
          a = [{ err: a[0] }, typeof a[1] === "string" ? a[1] : bounded(a[0].message, MAX_ERROR_MESSAGE_CHARS), ...a.slice(2)];
        // The first argument, when an object, is scrubbed by formatters.log; the rest are
        // the message and its interpolation values (%s, %j, %o), scrubbed here.
        a = a.map((x, i) => (typeof x === "string" ? scrub(x) : i === 0 ? x : scrubDeep(x)));
        return method.apply(this, a as Parameters<typeof method>);
      },
    },
  };
  const log = destination ? pino(opts, destination) : pino(opts);
  // pino serializes a child's bindings once, at child(), past formatters.log and the
  // hooks: scrub them there. Children inherit this child() from the root.
  const child = log.child;
  log.child = function (this: Logger, bindings, options) {
    return child.call(this, scrubDeep(bindings) as typeof bindings, options);
  } as typeof log.child;
  return log;
}

/**
 * oci-common writes status lines with console.log, which would interleave with
 * the JSON log on stdout. In the daemon they go to the logger (scrubbed) at debug.
 */
export function routeConsoleToLogger(log: Logger): void {
  const to = (...args: unknown[]) => log.debug({ source: "oci-common" }, format(...args));
  console.log = to;
  console.info = to;
  console.warn = (...args: unknown[]) => log.warn({ source: "library" }, format(...args));
}
