import crypto from "node:crypto";
import { decodeJwtClaims } from "../../jwt.js";
import type { Token } from "../../token/token-source.js";
import { HopError } from "../../upstream/hop-error.js";
import { isNetworkCode, networkCode, networkWords } from "../../upstream/network.js";

/** What signs the identity-domain request: an OCI key id and its private key. */
export interface SigningIdentity extends Token {
  /** `ST$<security token>` or `tenancy/user/fingerprint`. The value is the key id. */
  readonly keyId: string;
  readonly privateKey: crypto.KeyObject;
  /** Claims of the security token, when there is one (never the token itself). */
  readonly claims?: Record<string, unknown>;
}

export const HOP = "OCI principal" as const;
/** Longest lifetime believed of an OCI security token (a day, plus clock skew). */
const MAX_SECURITY_TOKEN_MS = (24 * 3600 + 120) * 1000;
/** API keys do not expire; re-read the config this often to pick up rotations. */
const API_KEY_REREAD_MS = 60 * 60 * 1000;

/** The part of oci-common's authentication details providers that is read here. */
export type Provider = {
  getKeyId(): Promise<string>;
  getPrivateKey(): Promise<string> | string;
  getPassphrase(): string | null | undefined | Promise<string | null | undefined>;
  refresh?(): Promise<string>;
};

/** oci-common throws Errors and plain objects alike; make one HopError of either. */
export function principalError(e: unknown, context: string): HopError {
  if (e instanceof HopError) return e;
  const msg =
    e instanceof Error ? e.message : e && typeof e === "object" && "message" in e ? String((e as { message: unknown }).message) : String(e);
  const status = /status:? (\d{3})/.exec(msg)?.[1];
  const code = Number(status);
  const network = networkCode(e);
  // JSON.parse's message quotes the start of the body: an answer that is not JSON is described, not quoted.
  const said = isNetworkCode(network)
    ? networkWords(network, "the OCI service")
    : e instanceof SyntaxError
      ? "the answer is not JSON"
      : msg;
  return new HopError(HOP, `${context}: ${said}`, {
    code: status ? "refused" : "failed",
    status: status ? code : undefined,
    retryable: !status || code >= 500 || code === 429,
    cause: e,
  });
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HopError(HOP, `${what} did not finish within ${ms} ms`, { code: "timeout", retryable: true })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** oci-common's resource-principal and OKE builders read process.env; build them against given values. */
export function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

export async function identityFrom(
  keyId: string,
  privateKeyPem: string,
  passphrase: string | null | undefined,
  label: string,
): Promise<SigningIdentity> {
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey({ key: privateKeyPem, passphrase: passphrase ?? undefined });
  } catch (e) {
    throw new HopError(HOP, `the ${label} private key cannot be read (${(e as Error).message}); check the key and its passphrase`, {
      code: "credential_unusable",
    });
  }
  const now = Date.now();
  if (keyId.startsWith("ST$")) {
    const claims = decodeJwtClaims(keyId.slice(3));
    const exp = claims?.exp;
    if (typeof exp !== "number")
      throw new HopError(HOP, `the ${label} security token is not a JWT with an exp claim`, { code: "credential_unusable" });
    if (exp * 1000 <= now) {
      throw new HopError(HOP, `the ${label} security token expired at ${new Date(exp * 1000).toISOString()}`, {
        code: "credential_expired",
      });
    }
    // OCI security tokens live minutes to hours. Believing an exp further away would keep
    // a broken token (or one misread through a wrong clock) cached long after it stops working.
    if (exp * 1000 - now > MAX_SECURITY_TOKEN_MS) {
      throw new HopError(
        HOP,
        `the ${label} security token expires ${new Date(exp * 1000).toISOString()}, more than a day away: check this machine's clock (NTP)`,
        { code: "clock", retryable: true },
      );
    }
    const { jwk: _jwk, ...safeClaims } = claims!;
    return { value: keyId, keyId, privateKey, expiresAt: exp * 1000, obtainedAt: now, claims: safeClaims };
  }
  return { value: keyId, keyId, privateKey, expiresAt: now + API_KEY_REREAD_MS, obtainedAt: now };
}

export async function readProvider(p: Provider, label: string, timeoutMs: number): Promise<SigningIdentity> {
  const keyId = await withTimeout(p.getKeyId(), timeoutMs, `obtaining the ${label} key id`);
  const pem = await p.getPrivateKey();
  const pass = await p.getPassphrase();
  return identityFrom(keyId.trim(), pem, pass, label);
}
