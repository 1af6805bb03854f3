import crypto from "node:crypto";
import fs from "node:fs";
import common from "oci-common";
import type { Config } from "../config/config.js";
import { HopError, type Token, type TokenSource } from "../token/token-source.js";
import { PregeneratedSessionKeySupplier } from "./session-keys.js";

/** What signs the identity-domain request: an OCI key id and its private key. */
export interface SigningIdentity extends Token {
  /** `ST$<security token>` or `tenancy/user/fingerprint`. The value is the key id. */
  readonly keyId: string;
  readonly privateKey: crypto.KeyObject;
  /** Claims of the security token, when there is one (never the token itself). */
  readonly claims?: Record<string, unknown>;
}

const HOP = "OCI principal" as const;
/** API keys do not expire; re-read the config this often to pick up rotations. */
const API_KEY_REREAD_MS = 60 * 60 * 1000;

type Provider = {
  getKeyId(): Promise<string>;
  getPrivateKey(): Promise<string> | string;
  getPassphrase(): string | null | undefined | Promise<string | null | undefined>;
  refresh?(): Promise<string>;
};

export function decodeJwtClaims(jwt: string): Record<string, unknown> | undefined {
  const parts = jwt.split(".");
  if (parts.length !== 3) return undefined;
  try {
    const c = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8"));
    return c && typeof c === "object" && !Array.isArray(c) ? c : undefined;
  } catch {
    return undefined;
  }
}

/** oci-common throws Errors and plain objects alike; make one HopError of either. */
export function principalError(e: unknown, context: string): HopError {
  if (e instanceof HopError) return e;
  const msg =
    e instanceof Error ? e.message : e && typeof e === "object" && "message" in e ? String((e as { message: unknown }).message) : String(e);
  const status = /status:? (\d{3})/.exec(msg)?.[1];
  const code = Number(status);
  return new HopError(HOP, `${context}: ${msg}`, {
    status: status ? code : undefined,
    retryable: !status || code >= 500 || code === 429,
    cause: e,
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HopError(HOP, `${what} did not finish within ${ms} ms`, { retryable: true })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** oci-common's resource-principal and OKE builders read process.env; build them against given values. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
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

async function identityFrom(keyId: string, privateKeyPem: string, passphrase: string | null | undefined, label: string): Promise<SigningIdentity> {
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey({ key: privateKeyPem, passphrase: passphrase ?? undefined });
  } catch (e) {
    throw new HopError(HOP, `the ${label} private key cannot be read (${(e as Error).message}); check the key and its passphrase`);
  }
  const now = Date.now();
  if (keyId.startsWith("ST$")) {
    const claims = decodeJwtClaims(keyId.slice(3));
    const exp = claims?.exp;
    if (typeof exp !== "number") throw new HopError(HOP, `the ${label} security token is not a JWT with an exp claim`);
    if (exp * 1000 <= now) {
      throw new HopError(HOP, `the ${label} security token expired at ${new Date(exp * 1000).toISOString()}`);
    }
    const { jwk: _jwk, ...safeClaims } = claims!;
    return { value: keyId, keyId, privateKey, expiresAt: exp * 1000, obtainedAt: now, claims: safeClaims };
  }
  return { value: keyId, keyId, privateKey, expiresAt: now + API_KEY_REREAD_MS, obtainedAt: now };
}

async function readProvider(p: Provider, label: string, timeoutMs: number): Promise<SigningIdentity> {
  const keyId = await withTimeout(p.getKeyId(), timeoutMs, `obtaining the ${label} key id`);
  const pem = await p.getPrivateKey();
  const pass = await p.getPassphrase();
  return identityFrom(keyId.trim(), pem, pass, label);
}

/** Probes the instance metadata service quickly, so that "not on OCI" fails fast and clearly. */
async function probeMetadata(base: string, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(`${base}instance/region`, {
      headers: { authorization: "Bearer Oracle" },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw new HopError(HOP, `the OCI instance metadata service at ${base} did not answer (${(e as Error).cause ?? (e as Error).message}): the instance principal works only on an OCI compute instance; elsewhere choose another oci.principal`, { retryable: true });
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status !== 200) {
    throw new HopError(HOP, `the OCI instance metadata service at ${base} answered HTTP ${res.status} to instance/region`, {
      status: res.status,
      retryable: res.status >= 500,
    });
  }
}

/**
 * The OCI principal as a TokenSource of signing identities. Each token() call
 * obtains a fresh identity: callers wrap it in a CachingTokenSource, which renews
 * ahead of expiry and once at a time (oci-common does neither).
 */
export function principalSource(cfg: Config, timeoutMs: number): TokenSource<SigningIdentity> {
  const o = cfg.oci;
  switch (o.principal) {
    case "instance": {
      let provider: Provider | undefined;
      let keys: PregeneratedSessionKeySupplier | undefined;
      return {
        async token() {
          try {
            if (!provider) {
              await probeMetadata(o.metadataUrl, Math.min(timeoutMs, 3000));
              keys ??= await PregeneratedSessionKeySupplier.create();
              const b = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
              b.metadataBaseUrl = o.metadataUrl;
              if (o.federationUrl) b.federationEndpoint = o.federationUrl;
              b.sessionKeySupplier = keys as never;
              provider = (await withTimeout(b.build(), timeoutMs * 2, "reading the instance identity from the metadata service")) as unknown as Provider;
            } else {
              await keys!.ready();
            }
            const token = await withTimeout(provider.refresh!(), timeoutMs * 3, "federating the instance principal");
            const pair = keys!.getKeyPair();
            return await identityFrom(`ST$${token}`, pair.getPrivate(), undefined, "instance principal");
          } catch (e) {
            throw principalError(e, "instance principal");
          }
        },
      };
    }
    case "resource": {
      const rp = o.resourcePrincipal;
      return {
        async token() {
          try {
            const p = withEnv(
              {
                OCI_RESOURCE_PRINCIPAL_VERSION: "2.2",
                OCI_RESOURCE_PRINCIPAL_RPST: rp.rpst,
                OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: rp.privateKey,
                OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE: rp.passphrase,
                OCI_RESOURCE_PRINCIPAL_REGION: rp.region,
              },
              () => common.ResourcePrincipalAuthenticationDetailsProvider.builder(),
            ) as unknown as Provider;
            return await readProvider(p, "resource principal", timeoutMs);
          } catch (e) {
            throw principalError(e, "resource principal");
          }
        },
      };
    }
    case "oke-workload": {
      return {
        async token() {
          try {
            // Rebuilt at each renewal: oci-common reads the projected service account token only at build.
            const p = withEnv(
              { KUBERNETES_SERVICE_HOST: o.oke.serviceHost, KUBERNETES_SERVICE_PORT_PROXYMUX: String(o.oke.proxymuxPort) },
              () => common.OkeWorkloadIdentityAuthenticationDetailsProvider.builder(o.oke.caCertPath, o.oke.tokenPath),
            ) as unknown as Provider;
            return await readProvider(p, "OKE workload identity", timeoutMs);
          } catch (e) {
            throw principalError(e, "OKE workload identity");
          }
        },
      };
    }
    case "config-file":
    case "session": {
      const label = o.principal === "session" ? "session token" : "API key";
      return {
        async token() {
          try {
            const p = (
              o.principal === "session"
                ? new common.SessionAuthDetailProvider(o.configFile, o.profile)
                : new common.ConfigFileAuthenticationDetailsProvider(o.configFile, o.profile)
            ) as unknown as Provider;
            return await readProvider(p, `${label} (profile ${o.profile} of ${o.configFile})`, timeoutMs);
          } catch (e) {
            const err = principalError(e, `${label} profile ${o.profile} in ${o.configFile}`);
            if (o.principal === "session" && /expired/.test(err.message)) {
              throw new HopError(HOP, `${stripHop(err.message)}; run: oci session refresh --profile ${o.profile}`, { cause: e });
            }
            throw err;
          }
        },
      };
    }
  }
}

function stripHop(m: string): string {
  return m.startsWith(`${HOP}: `) ? m.slice(HOP.length + 2) : m;
}

/** True when others than the owner may read the file: a private key there is exposed. */
export function isWorldOrGroupReadable(file: string): boolean {
  try {
    return (fs.statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}
