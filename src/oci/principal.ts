import crypto from "node:crypto";
import fs from "node:fs";
import common from "oci-common";
import type { Config } from "../config/config.js";
import { decodeJwtClaims } from "../jwt.js";
import type { Token, TokenSource } from "../token/token-source.js";
import { HopError } from "../upstream/hop-error.js";
import { parseRetryAfter, snippet } from "../upstream/retry.js";
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
/** Longest lifetime believed of an OCI security token (a day, plus clock skew). */
const MAX_SECURITY_TOKEN_MS = (24 * 3600 + 120) * 1000;
/** API keys do not expire; re-read the config this often to pick up rotations. */
const API_KEY_REREAD_MS = 60 * 60 * 1000;

type Provider = {
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
  return new HopError(HOP, `${context}: ${msg}`, {
    code: status ? "refused" : "failed",
    status: status ? code : undefined,
    retryable: !status || code >= 500 || code === 429,
    cause: e,
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HopError(HOP, `${what} did not finish within ${ms} ms`, { code: "timeout", retryable: true })), ms);
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

async function identityFrom(
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
    throw new HopError(
      HOP,
      `the OCI instance metadata service at ${base} did not answer (${(e as Error).cause ?? (e as Error).message}): the instance principal works only on an OCI compute instance; elsewhere choose another oci.principal`,
      { code: "not_on_oci", retryable: true },
    );
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status !== 200) {
    throw new HopError(HOP, `the OCI instance metadata service at ${base} answered HTTP ${res.status} to instance/region`, {
      code: "refused",
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
      let federationAnswer: FederationAnswer | undefined;
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
              // oci-common's auth circuit breaker opens after one failed federation round
              // (three attempts) and then refuses every federation for 30-49 s, long after
              // the auth service is back. The caches above back off on their own: no breaker.
              (b as unknown as { _authCircuitBreaker: unknown })._authCircuitBreaker = new common.CircuitBreaker({
                disableClientCircuitBreaker: true,
              } as never);
              provider = (await withTimeout(
                b.build(),
                timeoutMs * 2,
                "reading the instance identity from the metadata service",
              )) as unknown as Provider;
              federationAnswer = captureFederationErrors(provider);
              timeEachFederationCall(provider, timeoutMs);
            } else {
              await keys!.ready();
            }
            if (federationAnswer) federationAnswer.last = undefined;
            // Each federation call is cut at timeoutMs; oci-common makes up to three, 1-2 s apart.
            const token = await withTimeout(provider.refresh!(), timeoutMs * 3 + 5000, "federating the instance principal");
            const pair = keys!.getKeyPair();
            return await identityFrom(`ST$${token}`, pair.getPrivate(), undefined, "instance principal");
          } catch (e) {
            const err = principalError(e, "instance principal");
            // oci-common reports only the status of a refused federation; add what the auth service said.
            const said = federationAnswer?.last;
            if (said && !(e instanceof HopError)) {
              throw new HopError(HOP, `${err.detail} (${said.text})`, {
                code: "refused",
                status: said.status,
                upstreamError: said.code,
                retryable: err.retryable,
                // oci-common does not retry a 429; the cache's backoff honours Retry-After.
                retryAfterSeconds: said.retryAfterSeconds,
                cause: e,
              });
            }
            throw err;
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
            if (o.principal === "session") checkSessionProfile(o.configFile, o.profile);
            const p = (o.principal === "session"
              ? new common.SessionAuthDetailProvider(o.configFile, o.profile)
              : new common.ConfigFileAuthenticationDetailsProvider(o.configFile, o.profile)) as unknown as Provider;
            return await readProvider(p, `${label} (profile ${o.profile} of ${o.configFile})`, timeoutMs);
          } catch (e) {
            const err = principalError(e, `${label} profile ${o.profile} in ${o.configFile}`);
            if (o.principal === "session" && /expired/.test(err.message)) {
              throw new HopError(HOP, `${err.detail}; run: oci session refresh --profile ${o.profile}`, {
                code: "credential_expired",
                cause: e,
              });
            }
            throw err;
          }
        },
      };
    }
  }
}

/**
 * oci-common's X509 federation client throws only "failed with status: NNN" and
 * drops the auth service's answer. Keep the `code: message` of the last refused
 * federation call, read from a clone of the response, for the error message.
 */
interface FederationAnswer {
  last?: { status: number; code?: string; text: string; retryAfterSeconds?: number };
}

function captureFederationErrors(provider: Provider): FederationAnswer {
  const state: FederationAnswer = {};
  const fc = (provider as unknown as { federationClient?: { getTokenAsync?: () => Promise<Response> } }).federationClient;
  const orig = fc?.getTokenAsync;
  if (!fc || typeof orig !== "function") return state;
  fc.getTokenAsync = async () => {
    const res = await orig.call(fc);
    if (res && typeof res.status === "number" && res.status !== 200 && typeof res.clone === "function") {
      const body = await res
        .clone()
        .text()
        .catch(() => "");
      let code: string | undefined;
      let said = snippet(body);
      try {
        const b = JSON.parse(body) as { code?: unknown; message?: unknown };
        if (typeof b.code === "string") {
          code = b.code;
          said = `${b.code}${typeof b.message === "string" ? `: ${snippet(b.message)}` : ""}`;
        }
      } catch {
        // Not JSON: the snippet says what it was.
      }
      state.last = {
        status: res.status,
        code,
        text: said ? `HTTP ${res.status}: ${said}` : `HTTP ${res.status}`,
        retryAfterSeconds: parseRetryAfter(res.headers?.get?.("retry-after")),
      };
    }
    return res;
  };
  return state;
}

/**
 * oci-common sends the federation request with fetch and no timeout: give each
 * call its own, through the options its HTTP client merges into every request
 * (read at each send, so each call gets a fresh signal).
 */
function timeEachFederationCall(provider: Provider, timeoutMs: number): void {
  const fc = (provider as unknown as { federationClient?: { httpClient?: { httpOptions?: object } } }).federationClient;
  if (!fc?.httpClient) return;
  fc.httpClient.httpOptions = {
    get signal() {
      return AbortSignal.timeout(timeoutMs);
    },
  };
}

/**
 * oci-common reports a session profile without `security_token_file` as
 * "missing user in config" (or, when the profile has a user, signs with the key
 * id "ST$undefined"), and an unreadable token file as "Failed to read private
 * key". Check the profile first and say what is wrong.
 */
function checkSessionProfile(file: string, profile: string): void {
  const entry = (common.ConfigFileReader.parseFileFromPath(file, profile) as { get(k: string): string | null }).get("security_token_file");
  if (!entry) {
    throw new HopError(
      HOP,
      `profile ${profile} in ${file} has no security_token_file, so it is not a session profile: create one with oci session authenticate --profile-name ${profile}, or choose oci.principal config-file for an API key`,
      { code: "credential_unusable" },
    );
  }
  const tokenFile = common.ConfigFileReader.expandUserHome(entry);
  try {
    fs.accessSync(tokenFile, fs.constants.R_OK);
  } catch (e) {
    throw new HopError(
      HOP,
      `the security_token_file ${tokenFile} of profile ${profile} in ${file} cannot be read (${(e as NodeJS.ErrnoException).code}); run: oci session authenticate --profile-name ${profile}`,
      { code: "credential_unusable" },
    );
  }
}

/** True when others than the owner may read the file: a private key there is exposed. */
export function isWorldOrGroupReadable(file: string): boolean {
  try {
    return (fs.statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}
