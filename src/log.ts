import { pino, type Logger, type LoggerOptions } from "pino";

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
  [/\b(Bearer|Signature)\s+[^\s,"]+/gi, "$1 [redacted]"],
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

function scrubDeep(v: unknown, depth = 0): unknown {
  if (typeof v === "string") return scrub(v);
  if (depth > 4 || !v || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map((x) => scrubDeep(x, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrubDeep(x, depth + 1);
  return out;
}

function errSerializer(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const o: Record<string, unknown> = { type: e.name, message: e.message };
  for (const k of ["hop", "status", "upstreamError", "retryAfterSeconds", "code"]) {
    const v = (e as unknown as Record<string, unknown>)[k];
    if (v !== undefined) o[k] = v;
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
        const a = args.map((x) => (typeof x === "string" ? scrub(x) : x));
        return method.apply(this, a as Parameters<typeof method>);
      },
    },
  };
  return destination ? pino(opts, destination) : pino(opts);
}
