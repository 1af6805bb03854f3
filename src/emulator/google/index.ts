import crypto from "node:crypto";
import { promisify } from "node:util";
import type { EmulatorRequest, EmulatorResponse, EmulatorServer } from "../core.js";
import { decodeJwt, type JwtParts, keyFromJwk, nowSeconds, publicJwk, signJwt, verifyJwtSignature } from "../jose.js";
import { selfSignedCertificatePem } from "./x509.js";

/**
 * Google Security Token Service (workload identity federation, OIDC provider with a
 * JWKS) and IAM Credentials (generateAccessToken, generateIdToken), plus the
 * `oauth2/v3/certs` and `tokeninfo` endpoints, checking what the real services check
 * and answering with their status codes, bodies and wording (as far as public
 * observations of the real services go).
 */

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
export const JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt";
export const ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token";
export const CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform";
const IAM_SCOPE = "https://www.googleapis.com/auth/iam";
const GOOGLE_ISSUER = "https://accounts.google.com";

export interface GoogleEmulatorOptions {
  /** Default "123456789012". */
  projectNumber?: string;
  /** Default "oci-pool". */
  poolId?: string;
  /** Default "oci-provider". */
  providerId?: string;
  /** The issuer the provider trusts (the identity domain's `iss`). */
  issuer: string;
  /** The provider's allowed audiences; empty means Google's default, `https:` + the provider resource name. */
  allowedAudiences: string[];
  /** The provider's JWKS, fetched with global fetch, cached briefly, refetched on an unknown kid. */
  jwksUrl: string;
  /** SAs the pool principals may impersonate (roles/iam.workloadIdentityUser granted). */
  serviceAccounts: string[];
  /** The provider's attribute condition; false or a throw rejects the exchange (unauthorized_client). */
  attributeCondition?: (claims: Record<string, unknown>) => boolean;
  /** The provider's `google.subject` mapping; default `assertion.sub`. */
  subjectMapping?: (claims: Record<string, unknown>) => unknown;
  /** Default 3600. The federated token lives min(this, JWT exp - now). */
  federatedTokenSeconds?: number;
  /** Default 3600: generateAccessToken's lifetime cap. */
  maxAccessTokenSeconds?: number;
  /** Default 3600. */
  idTokenSeconds?: number;
  /**
   * Service account → the one delegation chain (emails, first delegate first) allowed to reach it:
   * a request for it must send exactly that chain as `delegates`.
   */
  delegationChains?: Record<string, string[]>;
}

/** The runtime settings, group "google" of `/_emulator/settings`; read at request time. */
export type GoogleSettings = {
  federatedTokenSeconds: number;
  maxAccessTokenSeconds: number;
  idTokenSeconds: number;
  /** Tolerance on the subject token's `exp` and `iat` (Google: about 60 s). */
  clockSkewSeconds: number;
  /** How long a fetched JWKS is used before it is fetched again. */
  jwksCacheSeconds: number;
  /** Real tokeninfo answers invalid_token for federated tokens; true makes it describe them. */
  tokeninfoFederated: boolean;
};

export interface TokenInfo {
  kind: "federated" | "service_account";
  /** The service account, for service_account tokens. */
  email?: string;
  scopes: string[];
  /** federated: `principal://iam.googleapis.com/projects/<num>/locations/global/workloadIdentityPools/<pool>/subject/<sub>`; service_account: the SA email. */
  subject: string;
  /** service_account: the subject of the token that minted it (a principal:// URL or an SA email). */
  delegator?: string;
  /** Unix seconds; fractional for federated tokens, which live from the moment they are issued. */
  expiresAt: number;
}

export interface GoogleEmulator {
  stsUrl: string;
  iamCredentialsUrl: string;
  jwksUrl: string;
  tokenInfoUrl: string;
  audience: string;
  projectNumber: string;
  settings: GoogleSettings;
  /** What an access token is, or undefined if unknown or expired. */
  tokenInfo(accessToken: string): TokenInfo | undefined;
  /** The numeric unique id the emulator gives a service account (the ID tokens' `sub`). */
  uniqueId(email: string): string;
  /** The principal an STS exchange of a token with this `sub` represents. */
  principalFor(subject: string): string;
  /** Lets the pool principals impersonate one more service account (once a config names it). */
  addServiceAccount(email: string): void;
}

interface TokenRecord extends TokenInfo {
  token: string;
}

const STS_JSON = { "content-type": "application/json; charset=utf-8" };
const API_JSON = { "content-type": "application/json; charset=UTF-8" };

/** Thrown by the request helpers to answer at once. */
class Reply {
  constructor(readonly res: EmulatorResponse) {}
}

/** Wraps a handler so that a thrown Reply becomes the answer. */
function guard(h: (req: EmulatorRequest) => EmulatorResponse | Promise<EmulatorResponse>) {
  return async (req: EmulatorRequest): Promise<EmulatorResponse> => {
    try {
      return await h(req);
    } catch (e) {
      if (e instanceof Reply) return e.res;
      throw e;
    }
  };
}

function stsError(error: string, description: string): EmulatorResponse {
  return { status: 400, headers: STS_JSON, body: JSON.stringify({ error, error_description: description }) };
}

const STATUS_CODES: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
};

/** Google API error body `{error: {code, message, status, details?}}`, pretty-printed as Google's front end does. */
function apiError(status: string, message: string, details?: unknown[], headers?: Record<string, string>): EmulatorResponse {
  const code = STATUS_CODES[status] ?? 500;
  const error: Record<string, unknown> = { code, message, status };
  if (details) error.details = details;
  return { status: code, headers: { ...API_JSON, ...headers }, body: `${JSON.stringify({ error }, null, 2)}\n` };
}

function apiOk(body: unknown): EmulatorResponse {
  return { status: 200, headers: API_JSON, body: `${JSON.stringify(body, null, 2)}\n` };
}

const INVALID_ARGUMENT = "Request contains an invalid argument.";
const AUTH_HELP =
  "Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

function errorInfo(reason: string, domain: string, metadata: Record<string, string>): Record<string, unknown> {
  return { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason, domain, metadata };
}

function randomToken(prefix: string): string {
  return `${prefix}${crypto.randomBytes(48).toString("base64url")}`;
}

/** RFC 3339 with whole seconds and `Z`, as Google's Timestamp JSON (Python parses `%Y-%m-%dT%H:%M:%SZ`). */
export function rfc3339(unixSeconds: number): string {
  return new Date(unixSeconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function camelToSnake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function headerValue(req: EmulatorRequest, name: string): string {
  const v = req.headers[name];
  return Array.isArray(v) ? (v[0] ?? "") : (v ?? "");
}

/** STS parameters from a form body or a JSON body (snake_case or camelCase keys). */
function stsParams(req: EmulatorRequest): Map<string, string> | undefined {
  const ct = headerValue(req, "content-type").toLowerCase();
  const out = new Map<string, string>();
  if (ct.includes("json")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(req.body.toString("utf8"));
    } catch {
      return undefined;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (v === undefined || v === null) continue;
      const key = camelToSnake(k);
      if (typeof v === "string") out.set(key, v);
      else if (Array.isArray(v)) out.set(key, v.map(String).join(" "));
      else if (typeof v === "object") out.set(key, JSON.stringify(v));
      else out.set(key, String(v));
    }
    return out;
  }
  for (const [k, v] of new URLSearchParams(req.body.toString("utf8"))) if (!out.has(k)) out.set(k, v);
  return out;
}

/** The STS `options` parameter: JSON, or JSON percent-encoded once more (Python google-auth sends that). */
function parseStsOptions(raw: string | undefined): Record<string, unknown> | undefined {
  if (raw === undefined || raw === "") return undefined;
  for (const candidate of [raw, safeDecode(raw)]) {
    if (candidate === undefined) continue;
    try {
      const v = JSON.parse(candidate);
      if (v && typeof v === "object") return v as Record<string, unknown>;
    } catch {
      /* try the next form */
    }
  }
  return undefined;
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

const PROVIDER_AUDIENCE =
  /^\/\/iam\.googleapis\.com\/(projects\/[^/]+\/locations\/[^/]+\/workloadIdentityPools\/[^/]+\/providers\/[^/]+|locations\/[^/]+\/workforcePools\/[^/]+\/providers\/[^/]+)$/;
const SCOPE_FORM = /^(https:\/\/www\.googleapis\.com\/auth\/[A-Za-z0-9._\-/]+|openid|email|profile)$/;

interface JwksCache {
  byKid: Map<string, crypto.KeyObject>;
  all: crypto.KeyObject[];
  fetchedAt: number;
}

export async function registerGoogle(server: EmulatorServer, opts: GoogleEmulatorOptions): Promise<GoogleEmulator> {
  const base = server.url;
  if (!base) throw new Error("registerGoogle: call it after `await server.listen()`");
  const projectNumber = opts.projectNumber ?? "123456789012";
  const poolId = opts.poolId ?? "oci-pool";
  const providerId = opts.providerId ?? "oci-provider";
  const providerName = `projects/${projectNumber}/locations/global/workloadIdentityPools/${poolId}/providers/${providerId}`;
  const audience = `//iam.googleapis.com/${providerName}`;
  const allowedAudiences = opts.allowedAudiences.length > 0 ? [...opts.allowedAudiences] : [`https://iam.googleapis.com/${providerName}`];
  const principalFor = (sub: string) =>
    `principal://iam.googleapis.com/projects/${projectNumber}/locations/global/workloadIdentityPools/${poolId}/subject/${sub}`;

  const settings: GoogleSettings = {
    federatedTokenSeconds: opts.federatedTokenSeconds ?? 3600,
    maxAccessTokenSeconds: opts.maxAccessTokenSeconds ?? 3600,
    idTokenSeconds: opts.idTokenSeconds ?? 3600,
    clockSkewSeconds: 60,
    jwksCacheSeconds: 30,
    tokeninfoFederated: false,
  };
  server.settings("google", settings);

  const uniqueId = (email: string): string => {
    const h = crypto.createHash("sha256").update(email.toLowerCase()).digest();
    const n = h.readBigUInt64BE(0) * 65536n + BigInt(h.readUInt16BE(8));
    return `1${(n % 10n ** 20n).toString().padStart(20, "0")}`;
  };
  const accounts = new Map<string, string>();
  const addServiceAccount = (sa: string) => {
    accounts.set(sa.toLowerCase(), sa);
    accounts.set(uniqueId(sa), sa);
  };
  for (const sa of opts.serviceAccounts) addServiceAccount(sa);

  // Signing key for the ID tokens, published at /oauth2/v3/certs (JWK) and /oauth2/v1/certs (X.509).
  const { privateKey: signingKey } = await promisify(crypto.generateKeyPair)("rsa", { modulusLength: 2048 });
  const kid = crypto
    .createHash("sha1")
    .update(crypto.createPublicKey(signingKey).export({ type: "spki", format: "der" }))
    .digest("hex");
  const nowMs = Date.now();
  const certPem = selfSignedCertificatePem(
    signingKey,
    "emulator.accounts.google.com",
    new Date(nowMs - 3600_000),
    new Date(nowMs + 14 * 86400_000),
  );

  const tokens = new Map<string, TokenRecord>();
  const live = (token: string): TokenRecord | undefined => {
    const rec = tokens.get(token);
    if (!rec) return undefined;
    if (rec.expiresAt <= Date.now() / 1000) {
      tokens.delete(token);
      return undefined;
    }
    return rec;
  };
  const remember = (rec: TokenRecord): void => {
    if (tokens.size > 1000) for (const t of [...tokens.keys()]) live(t);
    tokens.set(rec.token, rec);
  };

  // ---- provider JWKS ------------------------------------------------------------------
  let jwks: JwksCache | undefined;
  const fetchJwks = async (): Promise<JwksCache | undefined> => {
    try {
      const res = await fetch(opts.jwksUrl, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(5000) });
      if (res.status !== 200) return undefined;
      const doc = (await res.json()) as { keys?: unknown };
      if (!doc || !Array.isArray(doc.keys)) return undefined;
      const cache: JwksCache = { byKid: new Map(), all: [], fetchedAt: Date.now() };
      for (const k of doc.keys as Record<string, unknown>[]) {
        if (k && typeof k === "object" && k.use !== undefined && k.use !== "sig") continue;
        const key = keyFromJwk(k);
        if (!key) continue;
        cache.all.push(key);
        if (typeof k.kid === "string") cache.byKid.set(k.kid, key);
      }
      jwks = cache;
      return cache;
    } catch {
      return undefined;
    }
  };
  const currentJwks = async (): Promise<JwksCache | undefined> => {
    if (jwks && Date.now() - jwks.fetchedAt < settings.jwksCacheSeconds * 1000) return jwks;
    return fetchJwks();
  };

  /** undefined when the signature verifies, else the STS error. */
  const checkSignature = async (jwt: JwtParts): Promise<EmulatorResponse | undefined> => {
    const unreachable = stsError("invalid_grant", "Error connecting to the given credential's issuer.");
    const cached = jwks;
    let keys = await currentJwks();
    if (!keys) return unreachable;
    const jwtKid = jwt.header.kid;
    let candidates: crypto.KeyObject[];
    if (typeof jwtKid === "string") {
      let key = keys.byKid.get(jwtKid);
      if (!key && keys === cached) {
        // Unknown kid with a cached set: the provider may have rotated; fetch once more.
        keys = await fetchJwks();
        key = keys?.byKid.get(jwtKid);
      }
      if (!key) return unreachable;
      candidates = [key];
    } else {
      candidates = keys.all;
    }
    if (!candidates.some((k) => verifyJwtSignature(jwt, k))) {
      return stsError("invalid_grant", "Unable to verify the ID Token signature.");
    }
    return undefined;
  };

  // ---- STS ------------------------------------------------------------------------------
  server.route("google.sts.token", "POST", /^\/v1\/token$/, async (req) => {
    const p = stsParams(req);
    if (!p) return stsError("invalid_request", "Invalid JSON payload received.");
    const grantType = p.get("grant_type");
    if (!grantType) return stsError("invalid_request", 'Invalid value for "grant_type". The "grant_type" parameter is required.');
    if (grantType !== TOKEN_EXCHANGE_GRANT) {
      return stsError("unsupported_grant_type", `Invalid value for "grant_type". Only "${TOKEN_EXCHANGE_GRANT}" is supported.`);
    }
    const aud = p.get("audience");
    if (!aud || !PROVIDER_AUDIENCE.test(aud)) {
      return stsError(
        "invalid_request",
        'Invalid value for "audience". This value should be the full resource name of the Identity Provider. ' +
          "See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.",
      );
    }
    const requested = p.get("requested_token_type");
    if (requested !== ACCESS_TOKEN_TYPE) {
      return stsError("invalid_request", `Invalid value for "requested_token_type". Only "${ACCESS_TOKEN_TYPE}" is supported.`);
    }
    const subjectTokenType = p.get("subject_token_type");
    if (subjectTokenType !== JWT_TOKEN_TYPE && subjectTokenType !== ID_TOKEN_TYPE) {
      return stsError(
        "invalid_request",
        `Invalid value for "subject_token_type". An OIDC provider accepts "${JWT_TOKEN_TYPE}" or "${ID_TOKEN_TYPE}".`,
      );
    }
    const subjectToken = p.get("subject_token");
    if (!subjectToken) return stsError("invalid_request", 'Invalid value for "subject_token". The "subject_token" parameter is required.');
    parseStsOptions(p.get("options")); // accepted (e.g. userProject), no effect for a workload pool
    if (aud !== audience) {
      return stsError(
        "invalid_target",
        'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn\'t exist.',
      );
    }
    const scopes = (p.get("scope") ?? "").split(/\s+/).filter(Boolean);
    if (scopes.length === 0) scopes.push(CLOUD_PLATFORM_SCOPE);

    const jwt = decodeJwt(subjectToken);
    if (!jwt) return stsError("invalid_grant", "Unable to parse the ID Token.");
    const sigError = await checkSignature(jwt);
    if (sigError) return sigError;
    const claims = jwt.payload;
    if (claims.iss !== opts.issuer) {
      return stsError(
        "invalid_grant",
        `The issuer in ID Token ${typeof claims.iss === "string" ? claims.iss : "null"} does not match the expected one in config: ${opts.issuer}`,
      );
    }
    const tokenAud =
      typeof claims.aud === "string"
        ? [claims.aud]
        : Array.isArray(claims.aud)
          ? claims.aud.filter((a): a is string => typeof a === "string")
          : [];
    if (!tokenAud.some((a) => allowedAudiences.includes(a))) {
      return stsError("invalid_grant", `The audience in ID Token [${tokenAud.join(", ")}] does not match the expected audience.`);
    }
    const now = nowSeconds();
    const skew = settings.clockSkewSeconds;
    const iat = claims.iat;
    const exp = claims.exp;
    if (typeof iat !== "number" || !Number.isFinite(iat)) return stsError("invalid_grant", "ID Token issued at null is stale to sign-in.");
    if (typeof exp !== "number" || !Number.isFinite(exp) || now > exp + skew || iat > now + skew) {
      return stsError("invalid_grant", `ID Token issued at ${iat} is stale to sign-in.`);
    }
    let subject: unknown;
    try {
      subject = opts.subjectMapping ? opts.subjectMapping(claims) : claims.sub;
    } catch {
      subject = undefined;
    }
    if (typeof subject !== "string" || subject === "") {
      return stsError(
        "invalid_request",
        "The mapped attribute google.subject must not be empty. Either modify your attribute mapping or the incoming assertion to produce a non-empty google.subject.",
      );
    }
    if (Buffer.byteLength(subject, "utf8") > 127) {
      return stsError(
        "invalid_request",
        "The size of mapped attribute google.subject exceeds the 127 bytes limit. " +
          "Either modify your attribute mapping or the incoming assertion to produce a mapped attribute that is less than 127 bytes.",
      );
    }
    if (opts.attributeCondition) {
      let ok = false;
      try {
        ok = opts.attributeCondition(claims) === true;
      } catch {
        ok = false;
      }
      if (!ok) return stsError("unauthorized_client", "The given credential is rejected by the attribute condition.");
    }
    // The token lives federatedTokenSeconds from this moment, or until the JWT expires
    // when that comes first (by whole seconds, as exp counts); expires_in is what is left,
    // rounded down, so that it never promises more than the token has.
    const issued = Date.now() / 1000;
    const expiresAt = exp - now < settings.federatedTokenSeconds ? exp : issued + settings.federatedTokenSeconds;
    const expiresIn = Math.max(1, Math.floor(expiresAt - issued));
    const token = randomToken("ya29.d.emu_");
    remember({ token, kind: "federated", scopes, subject: principalFor(subject), expiresAt });
    return {
      status: 200,
      headers: STS_JSON,
      body: JSON.stringify({ access_token: token, issued_token_type: ACCESS_TOKEN_TYPE, token_type: "Bearer", expires_in: expiresIn }),
    };
  });

  // ---- IAM Credentials ------------------------------------------------------------------
  /** The live caller token, or throws the 401/403 Google gives. */
  const authenticate = (req: EmulatorRequest, method: string): TokenRecord => {
    const metadata = { service: "iamcredentials.googleapis.com", method: `google.iam.credentials.v1.IAMCredentials.${method}` };
    const auth = headerValue(req, "authorization");
    if (!auth) {
      throw new Reply(
        apiError(
          "UNAUTHENTICATED",
          `Request is missing required authentication credential. ${AUTH_HELP}`,
          [errorInfo("CREDENTIALS_MISSING", "googleapis.com", metadata)],
          { "www-authenticate": 'Bearer realm="https://accounts.google.com/"' },
        ),
      );
    }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    const rec = m ? live(m[1]!) : undefined;
    if (!rec) {
      throw new Reply(
        apiError(
          "UNAUTHENTICATED",
          `Request had invalid authentication credentials. ${AUTH_HELP}`,
          [errorInfo("ACCESS_TOKEN_TYPE_UNSUPPORTED", "googleapis.com", metadata)],
          { "www-authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"' },
        ),
      );
    }
    if (!rec.scopes.includes(CLOUD_PLATFORM_SCOPE) && !rec.scopes.includes(IAM_SCOPE)) {
      throw new Reply(
        apiError(
          "PERMISSION_DENIED",
          "Request had insufficient authentication scopes.",
          [errorInfo("ACCESS_TOKEN_SCOPE_INSUFFICIENT", "googleapis.com", metadata)],
          {
            "www-authenticate": `Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="${IAM_SCOPE} ${CLOUD_PLATFORM_SCOPE}"`,
          },
        ),
      );
    }
    return rec;
  };

  /** Parses the JSON body against the request message's fields (proto and JSON names), like Google's front end. */
  const jsonBody = (req: EmulatorRequest, fields: string[]): Record<string, unknown> => {
    const text = req.body.toString("utf8");
    if (text.trim() === "") return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new Reply(apiError("INVALID_ARGUMENT", `Invalid JSON payload received. ${(e as Error).message}`));
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Reply(apiError("INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object."));
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      const name = fields.find((f) => f === k || camelToSnake(f) === k);
      if (!name) throw new Reply(apiError("INVALID_ARGUMENT", `Invalid JSON payload received. Unknown name "${k}": Cannot find field.`));
      out[name] = v;
    }
    return out;
  };

  const stringList = (v: unknown, field: string): string[] => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw new Reply(apiError("INVALID_ARGUMENT", `Invalid value at '${field}' (TYPE_STRING), ${JSON.stringify(v)}`));
    }
    return v as string[];
  };

  const denied = (permission: string): Reply =>
    new Reply(
      apiError("PERMISSION_DENIED", `Permission '${permission}' denied on resource (or it may not exist).`, [
        errorInfo("IAM_PERMISSION_DENIED", "iam.googleapis.com", { permission }),
      ]),
    );

  /** The SA named in the path (email or unique id, maybe percent-encoded), with the delegation chain checked. */
  const resolveAccount = (rawSa: string, delegatesRaw: unknown, permission: string): string => {
    const name = safeDecode(rawSa);
    const email = name === undefined ? undefined : accounts.get(name.toLowerCase());
    for (const d of stringList(delegatesRaw, "delegates")) {
      const m = /^projects\/-\/serviceAccounts\/([^/]+)$/.exec(d);
      if (!m) throw new Reply(apiError("INVALID_ARGUMENT", INVALID_ARGUMENT));
      if (!accounts.has(m[1]!.toLowerCase())) throw denied(permission);
    }
    if (!email) throw denied(permission);
    const allowed = opts.delegationChains?.[email];
    if (allowed) {
      const sent = stringList(delegatesRaw, "delegates").map((d) => d.replace(/^projects\/-\/serviceAccounts\//, "").toLowerCase());
      if (sent.join(" ") !== allowed.map((d) => d.toLowerCase()).join(" ")) throw denied(permission);
    }
    return email;
  };

  const saPath = (verb: string) => new RegExp(`^/v1/projects/(?<project>[^/]+)/serviceAccounts/(?<sa>[^/]+?)(?::|%3[Aa])${verb}$`);

  server.route(
    "google.iam.generateAccessToken",
    "POST",
    saPath("generateAccessToken"),
    guard((req) => {
      const caller = authenticate(req, "GenerateAccessToken");
      const b = jsonBody(req, ["delegates", "scope", "lifetime"]);
      const email = resolveAccount(req.params.sa ?? "", b.delegates, "iam.serviceAccounts.getAccessToken");
      const scopeList = stringList(b.scope, "scope");
      if (scopeList.length === 0) return apiError("INVALID_ARGUMENT", INVALID_ARGUMENT);
      const scopes = scopeList.map((s) => (s === "" ? CLOUD_PLATFORM_SCOPE : s));
      if (!scopes.every((s) => SCOPE_FORM.test(s))) return apiError("INVALID_ARGUMENT", INVALID_ARGUMENT);
      let lifetime = 3600;
      if (b.lifetime !== undefined && b.lifetime !== null) {
        const m = typeof b.lifetime === "string" ? /^(\d+)(?:\.(\d{1,9}))?s$/.exec(b.lifetime) : null;
        if (!m) {
          return apiError(
            "INVALID_ARGUMENT",
            `Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), ${JSON.stringify(b.lifetime)}`,
          );
        }
        lifetime = Number(m[1]);
      }
      if (lifetime <= 0) return apiError("INVALID_ARGUMENT", "Lifetime of access token must be larger then zero.");
      const max = settings.maxAccessTokenSeconds;
      if (lifetime > max) {
        const limit = max % 3600 === 0 ? `${max / 3600} hour${max === 3600 ? "" : "s"}` : `${max} seconds`;
        return apiError(
          "INVALID_ARGUMENT",
          `The lifetime of the access token can not have lifetimes of more than ${limit}. ` +
            "Use the Org Policy Constraint constraints/iam.allowServiceAccountCredentialLifetimeExtension to allow up to 12 hours.",
        );
      }
      const expiresAt = nowSeconds() + lifetime;
      const token = randomToken("ya29.c.emu_");
      remember({ token, kind: "service_account", email, scopes, subject: email, delegator: caller.subject, expiresAt });
      return apiOk({ accessToken: token, expireTime: rfc3339(expiresAt) });
    }),
  );

  server.route(
    "google.iam.generateIdToken",
    "POST",
    saPath("generateIdToken"),
    guard((req) => {
      authenticate(req, "GenerateIdToken");
      const b = jsonBody(req, ["delegates", "audience", "includeEmail", "useEmailAzp"]);
      const email = resolveAccount(req.params.sa ?? "", b.delegates, "iam.serviceAccounts.getOpenIdToken");
      for (const f of ["includeEmail", "useEmailAzp"]) {
        if (b[f] !== undefined && b[f] !== null && typeof b[f] !== "boolean") {
          return apiError("INVALID_ARGUMENT", `Invalid value at '${camelToSnake(f)}' (TYPE_BOOL), ${JSON.stringify(b[f])}`);
        }
      }
      if (typeof b.audience !== "string" || b.audience === "") return apiError("INVALID_ARGUMENT", INVALID_ARGUMENT);
      const id = uniqueId(email);
      const iat = nowSeconds();
      // Google's claim order: alphabetical.
      const claims: Record<string, unknown> = { aud: b.audience, azp: b.useEmailAzp === true ? email : id };
      if (b.includeEmail === true) {
        claims.email = email;
        claims.email_verified = true;
      }
      Object.assign(claims, { exp: iat + settings.idTokenSeconds, iat, iss: GOOGLE_ISSUER, sub: id });
      return apiOk({ token: signJwt(claims, signingKey, kid) });
    }),
  );

  // ---- certs and tokeninfo --------------------------------------------------------------
  const certsHeaders = { ...API_JSON, "cache-control": "public, max-age=3600, must-revalidate, no-transform" };
  server.route("google.jwks", "GET", /^\/oauth2\/v3\/certs$/, () => ({
    status: 200,
    headers: certsHeaders,
    body: `${JSON.stringify({ keys: [publicJwk(signingKey, kid)] }, null, 2)}\n`,
  }));
  server.route("google.jwks", "GET", /^\/oauth2\/v1\/certs$/, () => ({
    status: 200,
    headers: certsHeaders,
    body: `${JSON.stringify({ [kid]: certPem }, null, 2)}\n`,
  }));

  const tokenInfoHandler = (req: EmulatorRequest): EmulatorResponse => {
    const invalid = {
      status: 400,
      headers: API_JSON,
      body: `${JSON.stringify({ error: "invalid_token", error_description: "Invalid Value" }, null, 2)}\n`,
    };
    const form = req.method === "POST" ? new URLSearchParams(req.body.toString("utf8")) : new URLSearchParams();
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(headerValue(req, "authorization"))?.[1];
    const idToken = req.query.get("id_token") ?? form.get("id_token");
    if (idToken) {
      const jwt = decodeJwt(idToken);
      if (!jwt || jwt.header.kid !== kid || !verifyJwtSignature(jwt, signingKey)) return invalid;
      const exp = jwt.payload.exp;
      if (typeof exp !== "number" || exp <= nowSeconds()) return invalid;
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(jwt.payload)) out[k] = typeof v === "string" ? v : JSON.stringify(v);
      Object.assign(out, { alg: "RS256", kid, typ: "JWT" });
      return apiOk(out);
    }
    const accessToken = req.query.get("access_token") ?? form.get("access_token") ?? bearer;
    const rec = accessToken ? live(accessToken) : undefined;
    if (!rec || (rec.kind === "federated" && !settings.tokeninfoFederated)) return invalid;
    const now = nowSeconds();
    const who = rec.kind === "service_account" ? uniqueId(rec.email!) : rec.subject;
    const out: Record<string, string> = { azp: who, aud: who };
    if (rec.kind === "service_account" && rec.scopes.some((s) => s === "email" || s === "https://www.googleapis.com/auth/userinfo.email")) {
      out.sub = who;
    }
    out.scope = rec.scopes.join(" ");
    out.exp = String(Math.floor(rec.expiresAt));
    out.expires_in = String(Math.floor(rec.expiresAt) - now);
    if (out.sub) {
      out.email = rec.email!;
      out.email_verified = "true";
    }
    out.access_type = "online";
    return apiOk(out);
  };
  for (const method of ["GET", "POST"]) {
    server.route("google.tokeninfo", method, /^\/(?:oauth2\/v3\/)?tokeninfo$/, tokenInfoHandler);
  }

  return {
    stsUrl: `${base}/v1/token`,
    iamCredentialsUrl: base,
    jwksUrl: `${base}/oauth2/v3/certs`,
    tokenInfoUrl: `${base}/oauth2/v3/tokeninfo`,
    audience,
    projectNumber,
    settings,
    tokenInfo(accessToken: string): TokenInfo | undefined {
      const rec = live(accessToken);
      if (!rec) return undefined;
      const { token: _token, ...info } = rec;
      return { ...info, scopes: [...info.scopes] };
    },
    uniqueId,
    principalFor,
    addServiceAccount,
  };
}
