import crypto from "node:crypto";

/**
 * Reading JWKS documents and checking a JWT against them, for doctor's key
 * check. An identity domain names its one signing key "SIGNING_KEY" whatever the
 * key is, so a key id says nothing: what tells keys apart is the key itself and
 * the thumbprints of its certificate (x5t, x5t#S256), which the domain's JWTs
 * also carry in their header.
 */

export interface Jwks {
  keys: Record<string, unknown>[];
}

/** One key of a JWKS, as far as it can be read. */
export interface KeyInfo {
  kid?: string;
  /** The public key, from n and e or else from the first certificate of x5c. */
  key?: crypto.KeyObject;
  /** The first certificate of x5c: the one of the key. */
  cert?: crypto.X509Certificate;
  /** base64url SHA-1 of the certificate's DER: given, or computed from x5c. */
  x5t?: string;
  /** base64url SHA-256 of the certificate's DER: given, or computed from x5c. */
  x5tS256?: string;
}

/**
 * The JWKS in a document: a JWKS itself (what the domain publishes and
 * `--jwk-json-path` uploads), or a provider as `gcloud iam
 * workload-identity-pools providers describe --format=json` prints it, whose
 * `oidc.jwksJson` holds the JWKS as a string. Throws an Error saying what is missing.
 */
export function jwksFrom(doc: unknown): Jwks {
  let d = doc as Record<string, unknown> | undefined;
  const oidc = d && typeof d === "object" ? (d.oidc as Record<string, unknown> | undefined) : undefined;
  if (oidc && typeof oidc === "object" && d && !("keys" in d)) {
    if (typeof oidc.jwksJson !== "string")
      throw new Error("the provider has no oidc.jwksJson: its keys come from the issuer's discovery document");
    try {
      d = JSON.parse(oidc.jwksJson) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`oidc.jwksJson is not JSON: ${(e as Error).message}`);
    }
  }
  if (!d || typeof d !== "object" || !Array.isArray(d.keys))
    throw new Error('not a JWKS ({"keys": [...]}) nor a provider with oidc.jwksJson');
  return { keys: d.keys.filter((k): k is Record<string, unknown> => !!k && typeof k === "object") };
}

function b64url(b: Buffer): string {
  return b.toString("base64url");
}

export function keyInfo(jwk: Record<string, unknown>): KeyInfo {
  const info: KeyInfo = {};
  if (typeof jwk.kid === "string") info.kid = jwk.kid;
  const x5c = Array.isArray(jwk.x5c) && typeof jwk.x5c[0] === "string" ? jwk.x5c[0] : undefined;
  if (x5c) {
    try {
      info.cert = new crypto.X509Certificate(Buffer.from(x5c, "base64"));
    } catch {
      info.cert = undefined;
    }
  }
  if (jwk.kty === "RSA" && typeof jwk.n === "string" && typeof jwk.e === "string") {
    try {
      info.key = crypto.createPublicKey({ key: { kty: "RSA", n: jwk.n, e: jwk.e }, format: "jwk" });
    } catch {
      info.key = undefined;
    }
  }
  info.key ??= info.cert?.publicKey;
  const der = info.cert?.raw;
  info.x5t = typeof jwk.x5t === "string" ? jwk.x5t : der && b64url(crypto.createHash("sha1").update(der).digest());
  info.x5tS256 = typeof jwk["x5t#S256"] === "string" ? jwk["x5t#S256"] : der && b64url(crypto.createHash("sha256").update(der).digest());
  return info;
}

export interface JwtParts {
  header: Record<string, unknown>;
  signingInput: string;
  signature: Buffer;
}

/** The header and signature of a compact JWT; undefined when it is not one. */
export function jwtParts(jwt: string): JwtParts | undefined {
  const [h, p, s] = jwt.split(".");
  if (!h || !p || s === undefined) return undefined;
  try {
    const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as unknown;
    if (!header || typeof header !== "object") return undefined;
    return { header: header as Record<string, unknown>, signingInput: `${h}.${p}`, signature: Buffer.from(s, "base64url") };
  } catch {
    return undefined;
  }
}

/** Whether `key` verifies the JWT's RS256 signature (the only algorithm identity domains use). */
export function verifies(jwt: JwtParts, key: crypto.KeyObject): boolean {
  if (jwt.header.alg !== "RS256" || key.asymmetricKeyType !== "rsa") return false;
  try {
    return crypto.verify("sha256", Buffer.from(jwt.signingInput), key, jwt.signature);
  } catch {
    return false;
  }
}

/** Whether two keys' certificates are the same by a thumbprint both have; undefined when they share none. */
export function sameCertificate(a: Pick<KeyInfo, "x5t" | "x5tS256">, b: Pick<KeyInfo, "x5t" | "x5tS256">): boolean | undefined {
  if (a.x5tS256 && b.x5tS256) return a.x5tS256 === b.x5tS256;
  if (a.x5t && b.x5t) return a.x5t === b.x5t;
  return undefined;
}
