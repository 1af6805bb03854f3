import crypto from "node:crypto";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { EmulatorRequest, EmulatorResponse, EmulatorServer } from "../core.js";
import {
  certThumbprints,
  decodeJwt,
  keyFromJwk,
  newRsaKey,
  nowSeconds,
  publicJwk,
  signJwt,
  signJwtWithHeader,
  verifyJwtSignature,
} from "../jose.js";
import { certSha1Fingerprint, colonHex, createCertificate, type IssuedCert, newRsaKeyAsync } from "../x509.js";
import { type KeyResolution, verifyOciRequest } from "./httpsig.js";

/**
 * The OCI side of the chain, emulated on loopback: instance metadata v2, the auth service's
 * X.509 federation, an identity domain's token exchange and JWKS, OKE's proxymux, and the
 * material for resource principals, session tokens and API-key users. It checks what the
 * real services check, with its own code on node:crypto (never oci-common).
 */

export interface OciEmulatorOptions {
  /** Default "us-ashburn-1". */
  region?: string;
  /** Default "ocid1.tenancy.oc1..aaaaemulatortenancy". */
  tenancy?: string;
  /** Lifetime of security tokens from /v1/x509 and from the OKE proxymux, default 1200. */
  federationTokenSeconds?: number;
  /** Lifetime of domain JWTs, default 3600. */
  domainTokenSeconds?: number;
  /** Allowed distance of the signed date or x-date header from the clock, default 300. */
  maxClockSkewSeconds?: number;
  /** Validity of the identity domain's signing certificate from now, default ten years (as Oracle's). */
  domainSigningCertSeconds?: number;
}

/** The mutable settings, exposed as group "oci" through /_emulator/settings. */
export type OciSettings = {
  federationTokenSeconds: number;
  domainTokenSeconds: number;
  maxClockSkewSeconds: number;
  /** What /opc/v2/instance/region answers: the region id, or set a short code such as "iad". */
  metadataRegion: string;
};

export interface OkeProxymux {
  host: string;
  port: number;
  /** The CA that issued the listener's certificate (what ca.crt holds in a pod). */
  caCertPem: string;
  /** The Kubernetes service account token the proxymux accepts. */
  serviceAccountToken: string;
}

export interface OciEmulator {
  /** `${server.url}/opc/v2/` */
  metadataBaseUrl: string;
  /** server.url (oci-common appends /v1/x509) */
  federationEndpoint: string;
  /** server.url: the identity domain lives at the same origin. */
  domainUrl: string;
  /** `${server.url}/admin/v1/SigningCert/jwk` */
  domainJwksUrl: string;
  /** "https://identity.oraclecloud.com/" */
  domainIssuer: string;
  /** The PEM of the certificate of the key the domain signs its JWTs with (first in the JWKS's x5c). */
  domainSigningCertPem: string;
  tenancy: string;
  region: string;
  instanceId: string;
  compartmentId: string;
  /** The auth service's public key (SPKI PEM): it signs every security token the emulator issues. */
  authServicePublicKeyPem: string;
  mintResourcePrincipal(opts?: { lifetimeSeconds?: number }): { rpst: string; privateKeyPem: string; region: string };
  mintSessionToken(opts?: { lifetimeSeconds?: number }): { token: string; privateKeyPem: string };
  createApiKeyUser(): { tenancy: string; user: string; fingerprint: string; privateKeyPem: string };
  startOkeProxymux(): Promise<OkeProxymux>;
  settings: OciSettings;
  /** Closes the OKE listener if started; the EmulatorServer is closed by its owner. */
  close(): Promise<void>;
}

export const ENDPOINTS = {
  metadata: "oci.metadata",
  federation: "oci.federation",
  token: "oci.identityDomain.token",
  jwks: "oci.identityDomain.jwks",
  proxymux: "oci.oke.proxymux",
} as const;

const AUTH_ISSUER = "authService.oracle.com";
const DOMAIN_ISSUER = "https://identity.oraclecloud.com/";
const DOMAIN_ID = "ocid1.domain.oc1..emulator";
const DOMAIN_KID = "SIGNING_KEY";
const AUTH_KID = "asw";
const GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token";
const K8S_ISSUER = "https://kubernetes.default.svc.cluster.local";

type Principal =
  | { kind: "instance"; instanceId: string; compartmentId: string; tenancy: string }
  | { kind: "resource"; resType: string; resId: string; resCompartment: string; resTenant: string; claims: Record<string, unknown> }
  | { kind: "user"; userId: string; tenancy: string; via: "apiKey" | "session" };

interface ApiKeyUser {
  user: string;
  fingerprint: string;
  key: crypto.KeyObject;
}

function requestId(): string {
  return crypto.randomBytes(16).toString("hex").toUpperCase();
}

function ociError(status: number, code: string, message: string): EmulatorResponse {
  return { status, headers: { "content-type": "application/json", "opc-request-id": requestId() }, body: { code, message } };
}

function oauthError(status: number, error: string, description: string): EmulatorResponse {
  return {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache" },
    body: { error, error_description: description },
  };
}

/** A PEM public key from base64 DER without armour (what oci-common sends); undefined when not RSA SPKI. */
function publicKeyFromBareBase64(value: unknown): crypto.KeyObject | undefined {
  if (typeof value !== "string") return undefined;
  const b64 = value.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  const pem = `-----BEGIN PUBLIC KEY-----\n${(b64.match(/.{1,64}/g) ?? []).join("\n")}\n-----END PUBLIC KEY-----\n`;
  try {
    const key = crypto.createPublicKey(pem);
    return key.asymmetricKeyType === "rsa" ? key : undefined;
  } catch {
    return undefined;
  }
}

function certFromBareBase64(value: unknown): crypto.X509Certificate | undefined {
  if (typeof value !== "string") return undefined;
  const b64 = value.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  if (!b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined;
  try {
    return new crypto.X509Certificate(Buffer.from(b64, "base64"));
  } catch {
    return undefined;
  }
}

/** OCI API-key fingerprint: MD5 of the DER public key, colon-separated lowercase hex. */
function apiKeyFingerprint(key: crypto.KeyObject): string {
  const pub = key.type === "private" ? crypto.createPublicKey(key) : key;
  return colonHex(
    crypto
      .createHash("md5")
      .update(pub.export({ format: "der", type: "spki" }))
      .digest(),
  );
}

function contentTypeIs(header: string | string[] | undefined, wanted: string): boolean {
  if (typeof header !== "string") return false;
  return header.split(";")[0]!.trim().toLowerCase() === wanted;
}

export async function registerOci(server: EmulatorServer, opts: OciEmulatorOptions = {}): Promise<OciEmulator> {
  const base = server.url;
  if (!base) throw new Error("registerOci: call it after `await server.listen()` (it needs server.url)");
  const region = opts.region ?? "us-ashburn-1";
  const tenancy = opts.tenancy ?? "ocid1.tenancy.oc1..aaaaemulatortenancy";
  const compartmentId = "ocid1.compartment.oc1..aaaaemulatorcompartment";
  const instanceId = `ocid1.instance.oc1.${region}.aaaaemulatorinstance`;
  const domainUrl = base;

  const settings: OciSettings = {
    federationTokenSeconds: opts.federationTokenSeconds ?? 1200,
    domainTokenSeconds: opts.domainTokenSeconds ?? 3600,
    maxClockSkewSeconds: opts.maxClockSkewSeconds ?? 300,
    metadataRegion: region,
  };

  // Keys: the auth service signs security tokens, the domain its own JWTs; a PKI for instances.
  const [authKey, domainKey, k8sKey] = await Promise.all([newRsaKeyAsync(), newRsaKeyAsync(), newRsaKeyAsync()]);
  const rootCa = await createCertificate({
    subject: [
      ["CN", "Emulated OCI Root CA"],
      ["O", "oci2gcp emulator"],
    ],
    isCa: true,
    validSeconds: 10 * 365 * 86400,
  });
  const intermediate = await createCertificate({
    subject: [
      ["CN", "Emulated OCI Instance Intermediate CA"],
      ["O", "oci2gcp emulator"],
    ],
    issuer: rootCa,
    isCa: true,
    pathLen: 0,
    validSeconds: 365 * 86400,
  });
  const leaf = await createCertificate({
    subject: [
      ["CN", instanceId],
      ["OU", "opc-certtype:instance"],
      ["OU", `opc-compartment:${compartmentId}`],
      ["OU", `opc-instance:${instanceId}`],
      ["OU", `opc-tenant:${tenancy}`],
    ],
    issuer: intermediate,
    clientAuth: true,
  });
  // The identity domain signs with a certificate of its tenant's CA and publishes both, as Oracle does.
  const domainCa = await createCertificate({
    subject: [
      ["CN", "Emulated Cloud9CA"],
      ["O", "oci2gcp emulator"],
    ],
    isCa: true,
    validSeconds: 20 * 365 * 86400,
  });
  const domainCert = await createCertificate({
    subject: [
      ["CN", "sslDomains"],
      ["CN", "Cloud9"],
      ["CN", "idcs-emulator"],
    ],
    issuer: domainCa,
    key: domainKey,
    validSeconds: opts.domainSigningCertSeconds ?? 10 * 365 * 86400,
  });
  const domainThumbprints = certThumbprints(domainCert.der);
  // Oracle's header and JWK field order; no `typ`, and `key_ops` rather than `use`.
  const domainJwtHeader = { ...domainThumbprints, kid: DOMAIN_KID, alg: "RS256" };
  const { n, e } = publicJwk(domainKey);
  const domainJwk = {
    kty: "RSA",
    "x5t#S256": domainThumbprints["x5t#S256"],
    e,
    x5t: domainThumbprints.x5t,
    kid: DOMAIN_KID,
    x5c: [domainCert.der.toString("base64"), domainCa.der.toString("base64")],
    key_ops: ["encrypt", "sign"],
    alg: "RS256",
    n,
  };
  const issuedLeaves = new Map<string, IssuedCert>([[leaf.der.toString("base64"), leaf]]);
  const apiKeyUsers = new Map<string, ApiKeyUser>();
  let userCounter = 0;
  let rpCounter = 0;

  server.settings("oci", settings);

  function issueSecurityToken(claims: Record<string, unknown>, sessionKey: crypto.KeyObject, lifetimeSeconds: number): string {
    const iat = nowSeconds();
    const payload = {
      ...claims,
      jwk: JSON.stringify(publicJwk(sessionKey, crypto.randomUUID())),
      iss: AUTH_ISSUER,
      aud: "oci",
      iat,
      exp: iat + lifetimeSeconds,
      jti: crypto.randomUUID(),
    };
    return signJwt(payload, authKey, AUTH_KID);
  }

  // ---- instance metadata v2 -------------------------------------------------------------
  const instanceDoc = (): Record<string, unknown> => ({
    availabilityDomain: "EMU:US-ASHBURN-AD-1",
    faultDomain: "FAULT-DOMAIN-1",
    compartmentId,
    displayName: "oci2gcp-emulated-instance",
    hostname: "oci2gcp-emulated-instance",
    id: instanceId,
    region: settings.metadataRegion,
    canonicalRegionName: region,
    ociAdName: "emu:AD-1",
    regionInfo: { realmKey: "oc1", realmDomainComponent: "oraclecloud.com", regionKey: "EMU", regionIdentifier: region },
    shape: "VM.Standard.E4.Flex",
    state: "Running",
    tenantId: tenancy,
    timeCreated: 1700000000000,
  });

  server.route(ENDPOINTS.metadata, "GET", /^\/opc\/v2\/(?<rest>.*)$/, (req) => {
    const auth = req.headers.authorization;
    if (auth !== "Bearer Oracle") {
      return ociError(401, "NotAuthenticated", "Authorization header 'Bearer Oracle' is required for the v2 metadata endpoints");
    }
    if (
      req.headers.forwarded !== undefined ||
      req.headers["x-forwarded-for"] !== undefined ||
      req.headers["x-forwarded-host"] !== undefined
    ) {
      return ociError(401, "NotAuthenticated", "requests with Forwarded, X-Forwarded-For or X-Forwarded-Host headers are refused");
    }
    const rest = req.params.rest ?? "";
    const text = (body: string): EmulatorResponse => ({ status: 200, headers: { "content-type": "text/plain" }, body });
    switch (rest) {
      case "instance/region":
        return text(settings.metadataRegion);
      case "instance":
      case "instance/":
        return { status: 200, body: instanceDoc() };
      case "identity/cert.pem":
        return text(leaf.certPem);
      case "identity/key.pem":
        return text(leaf.keyPem);
      case "identity/intermediate.pem":
        return text(intermediate.certPem);
    }
    const m = /^instance\/([A-Za-z]+)$/.exec(rest);
    if (m) {
      const v = instanceDoc()[m[1]!];
      if (typeof v === "string" || typeof v === "number") return text(String(v));
      if (v !== undefined) return { status: 200, body: v };
    }
    return ociError(404, "NotFound", `no metadata at /opc/v2/${rest}`);
  });

  // ---- auth service: X.509 federation -----------------------------------------------------
  server.route(ENDPOINTS.federation, "POST", /^\/v1\/x509$/, (req) => {
    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(req.body.toString("utf8"));
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      body = parsed as Record<string, unknown>;
    } catch {
      return ociError(
        400,
        "InvalidParameter",
        "request body must be a JSON object {certificate, publicKey, intermediateCertificates, purpose}",
      );
    }
    const cert = certFromBareBase64(body.certificate);
    if (!cert) return ociError(400, "InvalidParameter", "certificate must be a base64 DER X.509 certificate (PEM body without armour)");
    if (body.purpose !== undefined && typeof body.purpose !== "string")
      return ociError(400, "InvalidParameter", "purpose must be a string");
    if (body.intermediateCertificates !== undefined && !Array.isArray(body.intermediateCertificates)) {
      return ociError(400, "InvalidParameter", "intermediateCertificates must be an array");
    }
    const intermediates: crypto.X509Certificate[] = [];
    for (const c of (body.intermediateCertificates as unknown[] | undefined) ?? []) {
      const x = certFromBareBase64(c);
      if (!x) return ociError(400, "InvalidParameter", "intermediateCertificates holds something that is not a certificate");
      intermediates.push(x);
    }

    const checked = verifyOciRequest<IssuedCert>(req, {
      maxClockSkewSeconds: settings.maxClockSkewSeconds,
      resolveKey: (keyId): KeyResolution<IssuedCert> => {
        const parts = keyId.split("/");
        if (parts.length !== 3 || parts[1] !== "fed-x509") {
          return { ok: false, problem: `keyId must be <tenancy>/fed-x509/<certificate fingerprint>, got ${JSON.stringify(keyId)}` };
        }
        const [keyTenancy, , fp] = parts as [string, string, string];
        const issued = issuedLeaves.get(cert.raw.toString("base64"));
        if (!issued) return { ok: false, problem: "the certificate was not issued by this auth service" };
        if (fp.toLowerCase() !== certSha1Fingerprint(cert.raw)) {
          return { ok: false, problem: "keyId fingerprint is not the SHA-1 fingerprint of the certificate in the body" };
        }
        if (keyTenancy !== tenancy || !cert.subject.includes(`opc-tenant:${keyTenancy}`)) {
          return { ok: false, problem: "keyId tenancy does not match the certificate's tenancy" };
        }
        if (!intermediates.some((i) => i.raw.equals(intermediate.der))) {
          return { ok: false, problem: "intermediateCertificates does not hold the certificate's issuer" };
        }
        if (!cert.checkIssued(intermediate.cert) || !cert.verify(intermediate.cert.publicKey)) {
          return { ok: false, problem: "the certificate does not chain to the instance intermediate CA" };
        }
        const now = Date.now();
        if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) {
          return { ok: false, problem: "the certificate is outside its validity period" };
        }
        return { ok: true, key: cert.publicKey, principal: issued };
      },
    });
    if (!checked.ok)
      return ociError(
        401,
        "NotAuthenticated",
        `The required information to complete authentication was not provided or was incorrect: ${checked.problem}`,
      );

    const sessionKey = publicKeyFromBareBase64(body.publicKey);
    if (!sessionKey) return ociError(400, "InvalidParameter", "publicKey must be an RSA public key (base64 SPKI, PEM body without armour)");
    const token = issueSecurityToken(
      {
        sub: instanceId,
        "opc-instance": instanceId,
        "opc-compartment": compartmentId,
        "opc-tenant": tenancy,
        "opc-certtype": "instance",
        ptype: "instance",
        ttype: "x509",
      },
      sessionKey,
      settings.federationTokenSeconds,
    );
    return { status: 200, headers: { "content-type": "application/json", "opc-request-id": requestId() }, body: { token } };
  });

  // ---- identity domain --------------------------------------------------------------------
  function resolveDomainKey(keyId: string): KeyResolution<Principal> {
    if (keyId.startsWith("ST$")) {
      const jwt = decodeJwt(keyId.slice(3));
      if (!jwt) return { ok: false, problem: "keyId ST$<token>: the security token is not a JWT" };
      if (!verifyJwtSignature(jwt, authKey))
        return { ok: false, problem: "security token signature does not verify (not issued by this auth service)" };
      const c = jwt.payload;
      if (c.iss !== AUTH_ISSUER) return { ok: false, problem: `security token issuer ${JSON.stringify(c.iss)} is not ${AUTH_ISSUER}` };
      if (typeof c.exp !== "number") return { ok: false, problem: "security token has no exp" };
      if (c.exp <= nowSeconds()) {
        return { ok: false, expired: true, problem: `security token expired at ${new Date(c.exp * 1000).toISOString()}` };
      }
      let jwk: unknown;
      try {
        jwk = typeof c.jwk === "string" ? JSON.parse(c.jwk) : undefined;
      } catch {
        jwk = undefined;
      }
      const key = keyFromJwk(jwk);
      if (!key) return { ok: false, problem: "security token has no usable jwk claim" };
      const str = (v: unknown): string => (typeof v === "string" ? v : "");
      switch (c.ttype) {
        case "x509":
          return {
            ok: true,
            key,
            principal: {
              kind: "instance",
              instanceId: str(c["opc-instance"]),
              compartmentId: str(c["opc-compartment"]),
              tenancy: str(c["opc-tenant"]),
            },
          };
        case "res": {
          const extra: Record<string, unknown> = {};
          for (const k of ["cluster_id", "namespace", "service_account"]) if (c[k] !== undefined) extra[k] = c[k];
          return {
            ok: true,
            key,
            principal: {
              kind: "resource",
              resType: str(c.res_type),
              resId: str(c.res_id),
              resCompartment: str(c.res_compartment),
              resTenant: str(c.res_tenant),
              claims: extra,
            },
          };
        }
        case "login":
          return { ok: true, key, principal: { kind: "user", userId: str(c.sub), tenancy: str(c.tenant), via: "session" } };
        default:
          return { ok: false, problem: `security token type ${JSON.stringify(c.ttype)} is not accepted` };
      }
    }
    const parts = keyId.split("/");
    if (parts.length !== 3)
      return { ok: false, problem: `keyId ${JSON.stringify(keyId)} is neither ST$<security token> nor <tenancy>/<user>/<fingerprint>` };
    const [keyTenancy, user, fp] = parts as [string, string, string];
    if (user === "fed-x509") return { ok: false, problem: "fed-x509 keyIds are only accepted by the auth service's /v1/x509" };
    if (keyTenancy !== tenancy) return { ok: false, problem: `unknown tenancy ${JSON.stringify(keyTenancy)} in keyId` };
    const u = apiKeyUsers.get(user);
    if (!u) return { ok: false, problem: `unknown user ${JSON.stringify(user)} in keyId` };
    if (fp.toLowerCase() !== u.fingerprint) return { ok: false, problem: "keyId fingerprint does not match an API key of the user" };
    return { ok: true, key: u.key, principal: { kind: "user", userId: u.user, tenancy, via: "apiKey" } };
  }

  server.route(ENDPOINTS.token, "POST", /^\/oauth2\/v1\/token$/, (req: EmulatorRequest) => {
    const checked = verifyOciRequest<Principal>(req, { maxClockSkewSeconds: settings.maxClockSkewSeconds, resolveKey: resolveDomainKey });
    if (!checked.ok) return oauthError(401, "invalid_client", checked.problem);
    if (!contentTypeIs(req.headers["content-type"], "application/x-www-form-urlencoded")) {
      return oauthError(
        400,
        "invalid_request",
        `content-type must be application/x-www-form-urlencoded, got ${JSON.stringify(req.headers["content-type"] ?? "")}`,
      );
    }
    const form = new URLSearchParams(req.body.toString("utf8"));
    for (const k of new Set(form.keys())) {
      if (form.getAll(k).length > 1) return oauthError(400, "invalid_request", `parameter ${k} is repeated`);
    }
    const grantType = form.get("grant_type");
    if (!grantType) return oauthError(400, "invalid_request", "grant_type is required");
    if (grantType !== GRANT_TOKEN_EXCHANGE) {
      return oauthError(400, "unsupported_grant_type", `grant_type must be ${GRANT_TOKEN_EXCHANGE}, got ${JSON.stringify(grantType)}`);
    }
    const rtt = form.get("requested_token_type");
    if (rtt !== TOKEN_TYPE_ACCESS) {
      return oauthError(400, "invalid_request", `requested_token_type must be ${TOKEN_TYPE_ACCESS}, got ${JSON.stringify(rtt ?? "")}`);
    }
    const scope = form.get("scope");
    if (!scope?.trim()) return oauthError(400, "invalid_request", "scope is required");

    const p = checked.principal;
    const iat = nowSeconds();
    const claims: Record<string, unknown> = {
      iss: DOMAIN_ISSUER,
      aud: [domainUrl, DOMAIN_ISSUER],
      tenant: tenancy,
      domain_id: DOMAIN_ID,
      scope,
      jti: crypto.randomUUID(),
      iat,
      exp: iat + settings.domainTokenSeconds,
    };
    if (p.kind === "instance") {
      Object.assign(claims, { sub: p.instanceId, sub_type: "instance", ipst_instance: p.instanceId, ipst_compartment: p.compartmentId });
    } else if (p.kind === "resource") {
      Object.assign(claims, {
        sub: p.resId,
        sub_type: "resource",
        res_type: p.resType,
        res_id: p.resId,
        res_compartment: p.resCompartment,
        res_tenant: p.resTenant,
        ...p.claims,
      });
    } else {
      Object.assign(claims, {
        sub: p.userId,
        sub_type: "user",
        user_ocid: p.userId,
        auth_via: p.via === "apiKey" ? "api_key" : "session_token",
      });
    }
    const access = signJwtWithHeader(domainJwtHeader, claims, domainKey);
    return {
      status: 200,
      headers: { "content-type": "application/json", "cache-control": "no-store", pragma: "no-cache" },
      body: { access_token: access, token_type: "Bearer", expires_in: settings.domainTokenSeconds },
    };
  });

  server.route(ENDPOINTS.jwks, "GET", /^\/admin\/v1\/SigningCert\/jwk$/, () => ({
    status: 200,
    body: { keys: [domainJwk] },
  }));

  // ---- OKE proxymux (separate HTTPS listener) -----------------------------------------------
  server.declareEndpoint(ENDPOINTS.proxymux);
  let oke: { server: https.Server; sockets: Set<Socket>; info: OkeProxymux } | undefined;
  let okeStarting: Promise<OkeProxymux> | undefined;

  async function startOke(): Promise<OkeProxymux> {
    const ca = await createCertificate({ subject: [["CN", "Emulated OKE cluster CA"]], isCa: true, validSeconds: 365 * 86400 });
    const tlsCert = await createCertificate({
      subject: [["CN", "proxymux"]],
      issuer: ca,
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
      serverAuth: true,
    });
    const iat = nowSeconds();
    const serviceAccountToken = signJwt(
      {
        iss: K8S_ISSUER,
        aud: [K8S_ISSUER],
        sub: "system:serviceaccount:default:oci2gcp",
        "kubernetes.io": { namespace: "default", serviceaccount: { name: "oci2gcp", uid: crypto.randomUUID() } },
        iat,
        nbf: iat,
        exp: iat + 365 * 86400,
      },
      k8sKey,
      "k8s-emulator",
    );
    const clusterId = `ocid1.cluster.oc1.${region}.aaaaemulatorcluster`;
    const handler = (req: EmulatorRequest): EmulatorResponse => {
      if (req.method !== "POST" || req.path !== "/resourcePrincipalSessionTokens") {
        return ociError(404, "NotFound", `no proxymux endpoint for ${req.method} ${req.path}`);
      }
      const auth = req.headers.authorization;
      const m = typeof auth === "string" ? /^Bearer\s+(.+)$/s.exec(auth.trim()) : null;
      if (!m) return ociError(401, "NotAuthenticated", "Authorization: Bearer <service account token> is required");
      if (m[1]!.trim() !== serviceAccountToken) return ociError(401, "NotAuthenticated", "the service account token is not valid");
      let podKey: unknown;
      try {
        podKey = (JSON.parse(req.body.toString("utf8")) as Record<string, unknown>)?.podKey;
      } catch {
        return ociError(400, "InvalidParameter", 'request body must be JSON {"podKey": ...}');
      }
      const sessionKey = publicKeyFromBareBase64(podKey);
      if (!sessionKey) return ociError(400, "InvalidParameter", "podKey must be an RSA public key (base64 SPKI, PEM body without armour)");
      const resId = `ocid1.workload.oc1.${region}.aaaaemulatorworkload`;
      const token = issueSecurityToken(
        {
          sub: resId,
          res_type: "workload",
          res_id: resId,
          res_compartment: compartmentId,
          res_tenant: tenancy,
          cluster_id: clusterId,
          namespace: "default",
          service_account: "oci2gcp",
          ptype: "resource",
          ttype: "res",
        },
        sessionKey,
        settings.federationTokenSeconds,
      );
      return {
        status: 200,
        headers: { "content-type": "application/json" },
        body: Buffer.from(JSON.stringify({ token: `ST$${token}` }), "utf8").toString("base64"),
      };
    };
    const hs = https.createServer({ key: tlsCert.keyPem, cert: tlsCert.certPem }, (req, res) => {
      void server.handleExternal(ENDPOINTS.proxymux, req, res, handler);
    });
    const sockets = new Set<Socket>();
    hs.on("connection", (s: Socket) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      hs.once("error", reject);
      hs.listen(0, "127.0.0.1", () => resolve());
    });
    const port = (hs.address() as AddressInfo).port;
    const info: OkeProxymux = { host: "127.0.0.1", port, caCertPem: ca.certPem, serviceAccountToken };
    oke = { server: hs, sockets, info };
    return info;
  }

  return {
    metadataBaseUrl: `${base}/opc/v2/`,
    federationEndpoint: base,
    domainUrl,
    domainJwksUrl: `${base}/admin/v1/SigningCert/jwk`,
    domainIssuer: DOMAIN_ISSUER,
    domainSigningCertPem: domainCert.certPem,
    tenancy,
    region,
    instanceId,
    compartmentId,
    authServicePublicKeyPem: crypto.createPublicKey(authKey).export({ format: "pem", type: "spki" }).toString(),
    settings,

    mintResourcePrincipal(o = {}) {
      const sessionKey = newRsaKey();
      rpCounter += 1;
      const resId = `ocid1.fnfunc.oc1.${region}.aaaaemulatorfunction${rpCounter}`;
      const rpst = issueSecurityToken(
        {
          sub: resId,
          res_type: "fnfunc",
          res_id: resId,
          res_compartment: compartmentId,
          res_tenant: tenancy,
          ptype: "resource",
          ttype: "res",
        },
        sessionKey,
        o.lifetimeSeconds ?? 3600,
      );
      return { rpst, privateKeyPem: sessionKey.export({ format: "pem", type: "pkcs1" }).toString(), region };
    },

    mintSessionToken(o = {}) {
      const sessionKey = newRsaKey();
      userCounter += 1;
      const user = `ocid1.user.oc1..aaaaemulatorsessionuser${userCounter}`;
      const iat = nowSeconds();
      const lifetime = o.lifetimeSeconds ?? 3600;
      const token = issueSecurityToken(
        { sub: user, tenant: tenancy, ptype: "user", ttype: "login", sess_exp: iat + Math.max(lifetime, 86400) },
        sessionKey,
        lifetime,
      );
      return { token, privateKeyPem: sessionKey.export({ format: "pem", type: "pkcs8" }).toString() };
    },

    createApiKeyUser() {
      const key = newRsaKey();
      userCounter += 1;
      const user = `ocid1.user.oc1..aaaaemulatoruser${userCounter}`;
      const fingerprint = apiKeyFingerprint(key);
      apiKeyUsers.set(user, { user, fingerprint, key: crypto.createPublicKey(key) });
      return { tenancy, user, fingerprint, privateKeyPem: key.export({ format: "pem", type: "pkcs8" }).toString() };
    },

    startOkeProxymux() {
      if (oke) return Promise.resolve(oke.info);
      okeStarting ??= startOke();
      return okeStarting;
    },

    async close() {
      if (!oke) {
        if (!okeStarting) return;
        await okeStarting.catch(() => undefined);
        if (!oke) return;
      }
      const o = oke;
      oke = undefined;
      okeStarting = undefined;
      for (const s of o.sockets) s.destroy();
      await new Promise<void>((resolve) => o.server.close(() => resolve()));
    },
  };
}
