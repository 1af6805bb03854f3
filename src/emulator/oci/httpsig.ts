import crypto from "node:crypto";
import type { EmulatorRequest } from "../core.js";

/**
 * Verifier of OCI HTTP request signatures (draft-cavage-http-signatures as OCI profiles it),
 * written from the specification for the emulator, independent of the daemon's signer.
 *
 *   Authorization: Signature version="1",keyId="...",algorithm="rsa-sha256",
 *                  headers="(request-target) host date ...",signature="<base64>"
 */

export interface ParsedSignature {
  version?: string;
  keyId: string;
  algorithm: string;
  headers: string[];
  signature: Buffer;
}

/** What a failed check reports: `problem` names it in words for error messages. */
export interface SignatureFailure {
  ok: false;
  problem: string;
  /** "expired" when a security token is past its `exp`, so callers can word errors. */
  kind: "malformed" | "headers" | "date" | "digest" | "key" | "expired" | "signature";
}

export interface SignatureSuccess<P> {
  ok: true;
  keyId: string;
  signedHeaders: string[];
  principal: P;
}

export type KeyResolution<P> = { ok: true; key: crypto.KeyObject; principal: P } | { ok: false; problem: string; expired?: boolean };

export interface VerifyOptions<P> {
  maxClockSkewSeconds: number;
  /** Maps a keyId to the public key that must verify the signature. */
  resolveKey: (keyId: string) => KeyResolution<P>;
  now?: () => number;
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

export function parseSignatureHeader(value: string | undefined): ParsedSignature | string {
  if (!value) return "missing Authorization header";
  const m = /^\s*Signature\s+(.*)$/is.exec(value);
  if (!m) return "Authorization header is not an HTTP signature (expected 'Signature keyId=...')";
  const params = new Map<string, string>();
  const re = /\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)/gy;
  const rest = m[1]!;
  let pos = 0;
  while (pos < rest.length) {
    re.lastIndex = pos;
    const p = re.exec(rest);
    if (!p) return "Authorization header has a malformed parameter list";
    const name = p[1]!.toLowerCase();
    if (params.has(name)) return `Authorization header repeats parameter ${name}`;
    params.set(name, p[2]!);
    pos = re.lastIndex;
  }
  const keyId = params.get("keyid");
  const algorithm = params.get("algorithm");
  const signature = params.get("signature");
  if (!keyId) return "signature keyId is missing";
  if (!signature) return "signature value is missing";
  if (!algorithm) return "signature algorithm is missing";
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(signature)) return "signature value is not base64";
  const headersParam = params.get("headers");
  // The specification's default list is just "date".
  const headers = (headersParam ?? "date")
    .split(" ")
    .filter((h) => h !== "")
    .map((h) => h.toLowerCase());
  const out: ParsedSignature = { keyId, algorithm, headers, signature: Buffer.from(signature, "base64") };
  const version = params.get("version");
  if (version !== undefined) out.version = version;
  return out;
}

function headerValue(req: EmulatorRequest, name: string): string | undefined {
  const v = req.headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(", ") : v;
}

/** The string that was signed, per the `headers` list. Undefined names a missing header. */
export function signingString(req: EmulatorRequest, headers: string[]): { ok: true; value: string } | { ok: false; missing: string } {
  const lines: string[] = [];
  for (const h of headers) {
    if (h === "(request-target)") {
      lines.push(`(request-target): ${req.method.toLowerCase()} ${req.target}`);
      continue;
    }
    const v = headerValue(req, h);
    if (v === undefined) return { ok: false, missing: h };
    lines.push(`${h}: ${v}`);
  }
  return { ok: true, value: lines.join("\n") };
}

export function verifyOciRequest<P>(req: EmulatorRequest, opts: VerifyOptions<P>): SignatureSuccess<P> | SignatureFailure {
  const parsed = parseSignatureHeader(headerValue(req, "authorization"));
  if (typeof parsed === "string") return { ok: false, problem: parsed, kind: "malformed" };
  if (parsed.version !== "1") {
    return {
      ok: false,
      problem: `signature version must be "1" (got ${parsed.version === undefined ? "none" : JSON.stringify(parsed.version)})`,
      kind: "malformed",
    };
  }
  if (parsed.algorithm.toLowerCase() !== "rsa-sha256") {
    return {
      ok: false,
      problem: `unsupported signature algorithm ${JSON.stringify(parsed.algorithm)} (expected rsa-sha256)`,
      kind: "malformed",
    };
  }

  // Which headers must be covered by the signature.
  const list = new Set(parsed.headers);
  const required = ["(request-target)", "host"];
  if (BODY_METHODS.has(req.method)) required.push("content-length", "content-type", "x-content-sha256");
  const missing = required.filter((h) => !list.has(h));
  if (!list.has("date") && !list.has("x-date")) missing.push("date or x-date");
  if (missing.length) {
    return { ok: false, problem: `signed headers list is missing: ${missing.join(", ")}`, kind: "headers" };
  }
  for (const h of parsed.headers) {
    if (h !== "(request-target)" && headerValue(req, h) === undefined) {
      return { ok: false, problem: `signed header ${JSON.stringify(h)} is not in the request`, kind: "headers" };
    }
  }

  // Freshness: x-date takes precedence over date when both are signed.
  const dateHeader = list.has("x-date") ? "x-date" : "date";
  const dateValue = headerValue(req, dateHeader)!;
  const when = Date.parse(dateValue);
  if (Number.isNaN(when))
    return { ok: false, problem: `${dateHeader} header is not a valid date: ${JSON.stringify(dateValue)}`, kind: "date" };
  const now = (opts.now ?? Date.now)();
  const skew = Math.abs(now - when) / 1000;
  if (skew > opts.maxClockSkewSeconds) {
    return {
      ok: false,
      problem: `${dateHeader} header is ${Math.round(skew)} s away from the server clock (maximum ${opts.maxClockSkewSeconds} s): stale or future date`,
      kind: "date",
    };
  }

  // Body integrity for methods with a body.
  if (BODY_METHODS.has(req.method) || list.has("x-content-sha256")) {
    const digest = crypto.createHash("sha256").update(req.body).digest("base64");
    const sent = headerValue(req, "x-content-sha256");
    if (sent !== undefined && sent !== digest) {
      return { ok: false, problem: "body digest mismatch: x-content-sha256 is not the SHA-256 of the body", kind: "digest" };
    }
  }
  const cl = headerValue(req, "content-length");
  if (cl !== undefined && (!/^\d+$/.test(cl.trim()) || Number(cl) !== req.body.length)) {
    return { ok: false, problem: `content-length ${JSON.stringify(cl)} does not match the body length ${req.body.length}`, kind: "digest" };
  }

  const key = opts.resolveKey(parsed.keyId);
  if (!key.ok) return { ok: false, problem: key.problem, kind: key.expired ? "expired" : "key" };

  const s = signingString(req, parsed.headers);
  if (!s.ok) return { ok: false, problem: `signed header ${JSON.stringify(s.missing)} is not in the request`, kind: "headers" };
  let good = false;
  try {
    good = crypto.verify("sha256", Buffer.from(s.value, "utf8"), key.key, parsed.signature);
  } catch {
    good = false;
  }
  if (!good) return { ok: false, problem: "signature does not verify with the key named by keyId", kind: "signature" };
  return { ok: true, keyId: parsed.keyId, signedHeaders: parsed.headers, principal: key.principal };
}
