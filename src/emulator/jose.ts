import crypto from "node:crypto";

/**
 * RS256 JWTs and JWKs for the emulators, on node:crypto alone. The daemon never
 * imports this: the emulators' checks must not share code with what they check.
 */

export function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}

export interface JwtParts {
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

export function signJwt(payload: Record<string, unknown>, key: crypto.KeyObject, kid?: string): string {
  const header: Record<string, unknown> = { alg: "RS256", typ: "JWT" };
  if (kid) header.kid = kid;
  return signJwtWithHeader(header, payload, key);
}

/** An RS256 JWT with exactly this header (its `alg` must be RS256). */
export function signJwtWithHeader(header: Record<string, unknown>, payload: Record<string, unknown>, key: crypto.KeyObject): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = crypto.sign("sha256", Buffer.from(input), key);
  return `${input}.${b64url(sig)}`;
}

/** The X.509 thumbprints of JOSE (RFC 7517): base64url SHA-1 (`x5t`) and SHA-256 (`x5t#S256`) of the DER. */
export function certThumbprints(der: Buffer): { x5t: string; "x5t#S256": string } {
  return {
    x5t: b64url(crypto.createHash("sha1").update(der).digest()),
    "x5t#S256": b64url(crypto.createHash("sha256").update(der).digest()),
  };
}

/** Splits and parses a compact JWT without checking it; undefined when it is not one. */
export function decodeJwt(token: string): JwtParts | undefined {
  const parts = token.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, "base64url").toString("utf8"));
    const payload = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    if (!header || typeof header !== "object" || !payload || typeof payload !== "object") return undefined;
    return { header, payload, signingInput: `${parts[0]}.${parts[1]}`, signature: Buffer.from(parts[2]!, "base64url") };
  } catch {
    return undefined;
  }
}

/** Verifies an RS256 signature; the caller checks the claims. */
export function verifyJwtSignature(jwt: JwtParts, key: crypto.KeyObject): boolean {
  if (jwt.header.alg !== "RS256") return false;
  try {
    return crypto.verify("sha256", Buffer.from(jwt.signingInput), key, jwt.signature);
  } catch {
    return false;
  }
}

export interface RsaJwk {
  kty: "RSA";
  n: string;
  e: string;
  kid?: string;
  alg?: string;
  use?: string;
}

export function publicJwk(key: crypto.KeyObject, kid?: string): RsaJwk {
  const pub = key.type === "private" ? crypto.createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" }) as { kty: string; n: string; e: string };
  const out: RsaJwk = { kty: "RSA", n: jwk.n, e: jwk.e };
  if (kid) Object.assign(out, { kid, alg: "RS256", use: "sig" });
  return out;
}

export function keyFromJwk(jwk: unknown): crypto.KeyObject | undefined {
  if (!jwk || typeof jwk !== "object") return undefined;
  const j = jwk as Record<string, unknown>;
  if (j.kty !== "RSA" || typeof j.n !== "string" || typeof j.e !== "string") return undefined;
  try {
    return crypto.createPublicKey({ key: { kty: "RSA", n: j.n, e: j.e }, format: "jwk" });
  } catch {
    return undefined;
  }
}

export function newRsaKey(): crypto.KeyObject {
  return crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
