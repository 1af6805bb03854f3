import type { AccountFiles } from "../access/accounts.js";
import { type AccessRule, Policy } from "../access/policy.js";
import { type Config, ConfigError } from "../config/config.js";
import { Hops, ONE_ATTEMPT } from "../hops.js";
import type { DomainToken } from "../oci/identity-domain.js";
import type { SigningIdentity } from "../oci/principal.js";
import { CLOUD_PLATFORM } from "../protocol.js";
import type { Token, TokenSource } from "../token/token-source.js";
import { HopError, type HopErrorCode } from "../upstream/hop-error.js";
import { type Jwks, jwksFrom, jwtParts, type KeyInfo, keyInfo, sameCertificate, verifies } from "./keys.js";

export type CheckStatus = "ok" | "fail" | "warn" | "skipped";

export interface Check {
  name: string;
  status: CheckStatus;
  /** What was found (never a token). */
  details: string[];
  /** Likely cause and fix, when something is wrong. */
  cause?: string;
  fix?: string;
  /** What the server said. */
  said?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: Check[];
  /** Claims of the domain JWT, for attribute mappings and conditions. */
  claims?: Record<string, unknown>;
}

function fixed<T extends Token>(t: T): TokenSource<T> {
  return { token: async () => t };
}

function said(e: unknown): string {
  if (e instanceof HopError) return e.detail;
  return e instanceof Error ? e.message : String(e);
}

function fmtTime(ms: number): string {
  return `${new Date(ms).toISOString()} (in ${Math.round((ms - Date.now()) / 1000)} s)`;
}

/** Pool and provider of the audience, for the commands in the fixes. */
function poolParts(audience: string): { number: string; pool: string; provider: string } {
  const m = /projects\/([^/]+)\/locations\/global\/workloadIdentityPools\/([^/]+)\/providers\/([^/]+)/.exec(audience);
  return { number: m?.[1] ?? "PROJECT_NUMBER", pool: m?.[2] ?? "POOL", provider: m?.[3] ?? "PROVIDER" };
}

/** The code of what went wrong: a HopError's, else "failed" (a fault of ours or a library's). */
function codeOf(e: unknown): HopErrorCode {
  return e instanceof HopError ? e.code : "failed";
}

function principalDiagnosis(config: Config, e: unknown): Pick<Check, "cause" | "fix"> {
  switch (config.oci.principal) {
    case "instance":
      if (codeOf(e) === "not_on_oci") {
        return {
          cause: "the OCI instance metadata service is not reachable",
          fix: "run on an OCI compute instance (or choose another oci.principal); check that nothing blocks 169.254.169.254",
        };
      }
      return {
        cause: "the OCI auth service refused to federate the instance certificate",
        fix: "check that the instance is in a dynamic group of the tenancy and that this machine's clock is right",
      };
    case "resource":
      return {
        cause: "the resource principal material cannot be used",
        fix:
          "inside an OCI Function the runtime sets OCI_RESOURCE_PRINCIPAL_*; " +
          "elsewhere set oci.resourcePrincipal.* to a current RPST and its key",
      };
    case "oke-workload":
      return {
        cause: "OKE workload identity did not issue a token",
        fix:
          "run in an enhanced OKE cluster pod with a service account token mounted; " +
          "check KUBERNETES_SERVICE_HOST and the proxymux port (12250)",
      };
    case "session":
      return {
        cause: "the session token profile cannot be used",
        fix: `refresh it: oci session refresh --profile ${config.oci.profile} (or oci session authenticate)`,
      };
    default:
      return {
        cause: "the API key profile cannot be used",
        fix: `check the ${config.oci.profile} profile in ${config.oci.configFile}: user, tenancy, fingerprint and key_file`,
      };
  }
}

const CHECK_CLOCK = "check this machine's clock (NTP)";

function domainDiagnosis(config: Config, e: unknown): Pick<Check, "cause" | "fix"> {
  switch (codeOf(e)) {
    case "unreachable":
    case "timeout":
      return {
        cause: `the identity domain at ${config.identityDomain.url} cannot be reached`,
        fix: "check OCI_IAM_DOMAIN_URL (the domain URL from the OCI console, Identity > Domains) and HTTPS egress from this machine",
      };
    case "not_found":
      return {
        cause: "this URL does not serve /oauth2/v1/token: it is not an identity domain",
        fix: "set OCI_IAM_DOMAIN_URL to the identity domain URL (https://idcs-….identity.oraclecloud.com)",
      };
    case "expired":
      return {
        cause: "the OCI security token had expired when the identity domain checked it",
        fix: `${CHECK_CLOCK}; renew the OCI session`,
      };
    case "signature_rejected":
      return {
        cause: "the identity domain refused the request signature",
        fix:
          "check that the principal's key matches its key id (API key uploaded for the user, current session token) " +
          "and that this machine's clock is right",
      };
    case "grant_not_allowed":
      return {
        cause: "the identity domain does not allow this principal to exchange tokens",
        fix: "in the identity domain, allow the token-exchange grant for this principal (see 'Setting up Google and OCI' in the README)",
      };
    case "clock":
      return { cause: "the domain JWT's times disagree with this machine's clock", fix: CHECK_CLOCK };
    case "bad_answer":
      return { cause: "the identity domain answered with something that is not a token", fix: "see what it said above" };
  }
  const status = e instanceof HopError ? e.status : undefined;
  if (status !== undefined && status >= 500)
    return { cause: "the identity domain failed", fix: "try again later; check the OCI status page" };
  return { cause: "the identity domain rejected the token exchange", fix: "see what it said above" };
}

/** The gcloud command that changes the provider, to which the fixes add a flag. */
function providerCommand(config: Config, verb: "update-oidc" | "describe"): string {
  const { number, pool, provider } = poolParts(config.google.audience);
  return `gcloud iam workload-identity-pools providers ${verb} ${provider} --workload-identity-pool=${pool} --location=global --project=${number}`;
}

/** How to upload the domain's current keys to the provider. */
function uploadKeysFix(config: Config): string {
  return (
    `upload the identity domain's current keys: curl -o jwks.json ${config.identityDomain.url}/admin/v1/SigningCert/jwk, ` +
    `then ${providerCommand(config, "update-oidc")} --jwk-json-path=jwks.json`
  );
}

function stsDiagnosis(config: Config, claims: Record<string, unknown> | undefined, e: unknown): Pick<Check, "cause" | "fix"> {
  const prov = providerCommand(config, "update-oidc");
  switch (codeOf(e)) {
    case "unreachable":
    case "timeout":
      return { cause: "Google STS cannot be reached", fix: `check HTTPS egress to ${new URL(config.google.stsUrl).host}` };
    case "audience_rejected": {
      // invalid_grant is about the token presented (its aud); anything else about the audience we named.
      if ((e as HopError).upstreamError === "invalid_grant") {
        const aud = Array.isArray(claims?.aud) ? (claims!.aud as unknown[]).join(",") : String(claims?.aud);
        return {
          cause: "the provider's allowed audiences do not include the token's aud",
          fix: `${prov} --allowed-audiences=${config.identityDomain.url} (the token's aud is ${aud})`,
        };
      }
      return {
        cause: "STS refused the audience: the pool or provider does not exist, is disabled, or the project number is wrong",
        fix: "check GCP_AUDIENCE: //iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER",
      };
    }
    case "issuer_rejected":
      return {
        cause: "the provider does not accept the token's issuer",
        fix:
          `set the provider's issuer to ${JSON.stringify(claims?.iss)}: ` +
          `${prov} --issuer-uri=${String(claims?.iss ?? "https://identity.oraclecloud.com/")}`,
      };
    case "signature_rejected":
      return { cause: "the provider cannot verify the token's signature with the keys it has", fix: uploadKeysFix(config) };
    case "expired":
      return { cause: "STS considers the token expired or issued in the future", fix: CHECK_CLOCK };
    case "condition_rejected":
      return {
        cause: "the provider's attribute condition rejected the token",
        fix: "compare the provider's attribute condition with the claims shown above",
      };
    case "bad_answer":
      return { cause: "STS answered with something that is not a token", fix: "see what it said above" };
    default:
      return { cause: "STS rejected the exchange", fix: "see what it said above" };
  }
}

function impersonationDiagnosis(
  config: Config,
  sa: string,
  claims: Record<string, unknown> | undefined,
  e: unknown,
): Pick<Check, "cause" | "fix"> {
  const { number, pool } = poolParts(config.google.audience);
  switch (codeOf(e)) {
    case "unreachable":
    case "timeout":
      return { cause: "IAM Credentials cannot be reached", fix: `check HTTPS egress to ${new URL(config.google.iamCredentialsUrl).host}` };
    case "permission_denied": {
      const member =
        `principal://iam.googleapis.com/projects/${number}/locations/global/workloadIdentityPools/${pool}` +
        `/subject/${String(claims?.sub ?? "SUBJECT")}`;
      return {
        cause: `impersonation of ${sa} denied: the pool principal lacks roles/iam.workloadIdentityUser on it (or the account does not exist)`,
        fix: `gcloud iam service-accounts add-iam-policy-binding ${sa} --role=roles/iam.workloadIdentityUser --member=${member}`,
      };
    }
    case "not_found":
      return {
        cause: `the service account ${sa} does not exist`,
        fix: "check the email in google.serviceAccounts / GCP_IMPERSONATION_URL",
      };
    case "unauthenticated":
      return {
        cause: "IAM Credentials did not accept the federated token",
        fix: "the federated token needs the cloud-platform scope; check that STS and IAM Credentials are in the same universe",
      };
    case "bad_answer":
      return { cause: "IAM Credentials answered with something that is not a token", fix: "see what it said above" };
    default:
      return { cause: "IAM Credentials refused the request", fix: "see what it said above" };
  }
}

/**
 * Who may obtain what: the access policy in one sentence and each rule's
 * accounts; names the user and group databases do not know fail the check.
 */
export async function accessCheck(config: Config, files?: AccountFiles): Promise<Check> {
  const name = "access";
  let policy: Policy;
  try {
    policy = await Policy.fromConfig(config.access, config.google.serviceAccounts, files);
  } catch (e) {
    const problems = e instanceof ConfigError ? e.problems : [(e as Error).message];
    return {
      name,
      status: "fail",
      details: problems,
      cause: "access.rules names what this system does not know",
      fix: "fix the names above",
    };
  }
  const details = [policy.describe({ unixSocket: !!config.server.socketPath })];
  const rules = (config.access.rules ?? []) as AccessRule[];
  rules.forEach((r, i) => {
    const who = [...(r.users ?? []).map((u) => `user ${u}`), ...(r.groups ?? []).map((g) => `group ${g}`)].join(", ");
    const label = r.name === undefined ? `rule ${i}` : `rule ${i} (${r.name})`;
    details.push(`${label}: ${who}: ${r.serviceAccounts.join(", ")}${r.subjectToken ? "; and the subject token" : ""}`);
  });
  if (!policy.isOpen && config.tokenFile.path) {
    return {
      name,
      status: "warn",
      details,
      cause: `tokenFile.path (${config.tokenFile.path}) holds the subject token, whatever the rules say`,
      fix: "keep it readable by the daemon's user alone, or leave tokenFile.path unset when rules restrict the subject token",
    };
  }
  return { name, status: "ok", details };
}

/**
 * Walks the chain hop by hop with the configured settings, without caches, and
 * reports each hop's result, with the likely cause and fix of a failure.
 */
export async function runDoctor(
  config: Config,
  o: {
    principal?: TokenSource<SigningIdentity>;
    idTokenAudience?: string;
    /** The keys the Google provider holds (its oidc.jwksJson), when the operator has given them. */
    providerJwks?: Jwks;
    /** Where the user and group databases are read for access.rules; default /etc/passwd and /etc/group. */
    accountFiles?: AccountFiles;
  } = {},
): Promise<DoctorReport> {
  const checks: Check[] = [];
  const hops = new Hops(config, ONE_ATTEMPT);
  const skip = (name: string) => checks.push({ name, status: "skipped", details: ["not checked: an earlier hop failed"] });
  checks.push({
    name: "configuration",
    status: "ok",
    details: [
      `principal: ${config.oci.principal}`,
      `identity domain: ${config.identityDomain.url}`,
      `audience: ${config.google.audience}`,
      `service accounts: ${config.google.serviceAccounts.length ? config.google.serviceAccounts.join(", ") : "none (the federated token is served)"}`,
    ],
  });

  const clients = clientWarnings(config);
  if (clients) checks.push(clients);
  checks.push(await accessCheck(config, o.accountFiles));

  // OCI principal.
  let id: SigningIdentity;
  try {
    id = await (o.principal ?? hops.principal()).token();
    const c = id.claims ?? {};
    const details = [
      id.keyId.startsWith("ST$") ? `security token valid until ${fmtTime(id.expiresAt)}` : "API key (key id tenancy/user/fingerprint)",
    ];
    for (const k of ["sub", "opc-tenant", "res_tenant", "tenant", "opc-compartment", "res_compartment", "ttype", "res_type"]) {
      if (c[k] !== undefined) details.push(`${k}: ${String(c[k])}`);
    }
    checks.push({ name: "OCI principal", status: "ok", details });
  } catch (e) {
    checks.push({ name: "OCI principal", status: "fail", details: [], said: said(e), ...principalDiagnosis(config, e) });
    ["identity domain", "STS", "impersonation"].forEach(skip);
    return { ok: false, checks };
  }

  // Identity domain.
  let domain: DomainToken;
  try {
    domain = await hops.identityDomain(fixed(id)).token();
    checks.push({
      name: "identity domain",
      status: "ok",
      details: [`domain JWT valid until ${fmtTime(domain.expiresAt)}; its claims are shown below`],
    });
  } catch (e) {
    checks.push({ name: "identity domain", status: "fail", details: [], said: said(e), ...domainDiagnosis(config, e) });
    ["STS", "impersonation"].forEach(skip);
    return { ok: false, checks };
  }
  const claims = domain.claims;
  checks.push(await keysCheck(config, domain.value, o.providerJwks));

  // STS.
  let federated: Token;
  try {
    federated = await hops.sts(fixed(domain), [CLOUD_PLATFORM]).token();
    checks.push({ name: "STS", status: "ok", details: [`federated token valid until ${fmtTime(federated.expiresAt)}`] });
  } catch (e) {
    checks.push({ name: "STS", status: "fail", details: [], said: said(e), ...stsDiagnosis(config, claims, e) });
    skip("impersonation");
    return { ok: false, checks, claims };
  }

  // Impersonation, each account: an access token and an ID token.
  for (const sa of config.google.serviceAccounts) {
    try {
      const t = await hops.accessToken(fixed(federated), sa, config.google.scopes).token();
      const details = [`access token valid until ${fmtTime(t.expiresAt)}`];
      try {
        await hops.idToken(fixed(federated), sa, o.idTokenAudience ?? "https://oci2gcp.invalid/doctor", false).token();
        details.push("ID tokens: ok");
        checks.push({ name: `impersonation ${sa}`, status: "ok", details });
      } catch (e) {
        checks.push({
          name: `impersonation ${sa}`,
          status: "warn",
          details,
          said: said(e),
          cause: "access tokens work, ID tokens do not",
          fix: impersonationDiagnosis(config, sa, claims, e).fix,
        });
      }
    } catch (e) {
      checks.push({
        name: `impersonation ${sa}`,
        status: "fail",
        details: [],
        said: said(e),
        ...impersonationDiagnosis(config, sa, claims, e),
      });
    }
  }
  if (config.google.serviceAccounts.length === 0)
    checks.push({ name: "impersonation", status: "skipped", details: ["no service account configured"] });
  return { ok: !checks.some((c) => c.status === "fail"), checks, claims };
}

/** Settings without which some Google clients fail although the chain works. */
export function clientWarnings(config: Config): Check | undefined {
  const details: string[] = [];
  const fixes: string[] = [];
  if (!config.google.projectId) {
    details.push("no google.projectId: gcloud raises on the 404 of project/project-id, and clients cannot tell their project");
    fixes.push("set google.projectId ($GOOGLE_CLOUD_PROJECT)");
  }
  if (config.google.serviceAccounts.length === 0) {
    details.push(
      "no service account: the federated token is served, which some Google APIs refuse; there are no ID tokens, " +
        "and regional access boundary lookups need a service account email",
    );
    fixes.push("set google.serviceAccounts ($OCI2GCP_SERVICE_ACCOUNTS) to an account the pool may impersonate");
  }
  if (details.length === 0) return undefined;
  return {
    name: "clients",
    status: "warn",
    details,
    cause: "some Google clients will fail with this configuration",
    fix: fixes.join("; "),
  };
}

const KEYS = "identity domain keys";
/** A signing certificate this close to its end is worth a warning: the domain will sign with a new key. */
const EXPIRY_WARNING_DAYS = 30;

/** The domain's published JWKS, or what stood in the way and whether the domain answered at all. */
async function domainJwks(url: string, timeoutMs: number): Promise<{ jwks: Jwks } | { problem: string; refused: boolean }> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: "application/json" } });
  } catch (e) {
    return { problem: `GET ${url} failed: ${(e as Error).message}`, refused: false };
  }
  const body = (await res.json().catch(() => undefined)) as unknown;
  if (res.status !== 200) return { problem: `GET ${url}: HTTP ${res.status}`, refused: true };
  try {
    return { jwks: jwksFrom(body) };
  } catch (e) {
    return { problem: `GET ${url}: ${(e as Error).message}`, refused: false };
  }
}

function certLine(who: string, k: KeyInfo): string {
  const c = k.cert!;
  const cn =
    c.subject
      .split("\n")
      .filter((l) => l.startsWith("CN="))
      .pop()
      ?.slice(3) ?? c.subject.replace(/\n/g, ", ");
  const days = Math.floor((Date.parse(c.validTo) - Date.now()) / 86_400_000);
  return `${who} signing certificate ${JSON.stringify(cn)} (x5t ${k.x5t}) valid until ${new Date(c.validTo).toISOString()} (in ${days} days)`;
}

/**
 * Whether the Google provider can verify the domain's JWTs. Identity domains
 * give their one signing key the constant kid "SIGNING_KEY", so comparing kids
 * proves nothing: the domain JWT's signature is checked against the keys the
 * provider holds where the operator gave them (--provider-jwks), and where those
 * hold only thumbprints, the thumbprints of the signing certificate are compared.
 * The domain's own JWKS says which certificate it signs with and until when.
 */
async function keysCheck(config: Config, token: string, provider: Jwks | undefined): Promise<Check> {
  const url = `${config.identityDomain.url}/admin/v1/SigningCert/jwk`;
  const jwt = jwtParts(token);
  if (!jwt) return { name: KEYS, status: "fail", details: ["the domain's token is not a JWT"] };
  const details: string[] = [];
  const problems: Pick<Check, "status" | "cause" | "fix">[] = [];
  // What the token says it was signed with: its header carries the certificate's thumbprints.
  const signedWith: KeyInfo = {
    x5t: typeof jwt.header.x5t === "string" ? jwt.header.x5t : undefined,
    x5tS256: typeof jwt.header["x5t#S256"] === "string" ? jwt.header["x5t#S256"] : undefined,
  };

  const published = await domainJwks(url, config.upstream.timeoutMs);
  let signing: KeyInfo | undefined;
  if ("problem" in published) {
    details.push(published.problem);
    if (!provider && !published.refused) return { name: KEYS, status: "warn", details };
    if (!provider) {
      return {
        name: KEYS,
        status: "warn",
        details,
        cause: "the domain's signing keys are not public (the domain requires login for them)",
        fix:
          "download them as a domain administrator (or allow public access to the signing certificate in the domain settings) " +
          "and upload them to the provider with --jwk-json-path",
      };
    }
  } else {
    const keys = published.jwks.keys.map(keyInfo);
    signing = keys.find((k) => k.key && verifies(jwt, k.key));
    if (signing) {
      details.push(`${keys.length} key(s) published; the token verifies with the domain's key ${JSON.stringify(signing.kid)}`);
      signedWith.x5t = signing.x5t ?? signedWith.x5t;
      signedWith.x5tS256 = signing.x5tS256 ?? signedWith.x5tS256;
    } else {
      details.push(`${keys.length} key(s) published; none verifies the token`);
      problems.push({
        status: "warn",
        cause: "the domain's published keys do not verify its own token: it may have changed its signing certificate just now",
        fix: "run doctor again; if this stays, upload the domain's current keys to the provider",
      });
    }
  }

  const cert = signing?.cert ? signing : undefined;
  if (cert) {
    details.push(certLine("the domain's", cert));
    const left = Date.parse(cert.cert!.validTo) - Date.now();
    if (left < EXPIRY_WARNING_DAYS * 86_400_000) {
      problems.push({
        status: "warn",
        cause:
          left <= 0
            ? "the domain's signing certificate has expired"
            : `the domain's signing certificate expires within ${EXPIRY_WARNING_DAYS} days: it will then sign with a new certificate (and key)`,
        fix: `when it changes, ${uploadKeysFix(config)}`,
      });
    }
  }

  if (!provider) {
    details.push(
      "the provider's keys were not read (STS checks them below); to compare them here, save them with " +
        `${providerCommand(config, "describe")} --format=json > provider.json and run doctor --provider-jwks provider.json`,
    );
  } else {
    const held = provider.keys.map(keyInfo);
    const usable = held.filter((k) => k.key);
    const old: Pick<Check, "status" | "cause" | "fix"> = {
      status: "fail",
      cause: "the provider holds other keys than the domain signs with (an old JWKS: the domain's key id never changes)",
      fix: uploadKeysFix(config),
    };
    if (usable.length) {
      const match = usable.find((k) => verifies(jwt, k.key!));
      if (match) details.push("the provider's keys verify the domain's token");
      else {
        details.push(`none of the provider's ${usable.length} key(s) verifies the domain's token`);
        problems.push(old);
      }
      for (const k of usable) {
        if (k.cert && (!cert || sameCertificate(k, cert) !== true)) details.push(certLine("the provider's", k));
      }
    } else {
      // No key material, only thumbprints: compare the certificates.
      const same = held.map((k) => sameCertificate(k, signedWith));
      if (same.includes(true)) details.push("the provider holds the thumbprint of the domain's signing certificate");
      else if (same.includes(false)) {
        details.push("the provider's certificate thumbprints are not those of the domain's signing certificate");
        problems.push(old);
      } else {
        details.push("the provider's JWKS has neither keys nor certificate thumbprints to compare");
        problems.push({ status: "warn", cause: "the provider's keys cannot be compared", fix: "give doctor the provider's oidc.jwksJson" });
      }
    }
  }

  const worst = problems.find((p) => p.status === "fail") ?? problems[0];
  return { name: KEYS, status: worst?.status ?? "ok", details, cause: worst?.cause, fix: worst?.fix };
}

/** Attribute-mapping hints from the claims, for the provider configuration. */
export function mappingHints(claims: Record<string, unknown>): string[] {
  const hints = ["google.subject=assertion.sub"];
  for (const k of ["tenant", "sub_type", "domain_id", "ipst_compartment", "res_compartment", "client_id"]) {
    if (claims[k] !== undefined) hints.push(`attribute.${k.replace(/[^a-z0-9_]/gi, "_")}=assertion.${k}`);
  }
  return hints;
}

export function renderReport(r: DoctorReport): string {
  const lines: string[] = ["oci2gcp doctor", ""];
  const label: Record<CheckStatus, string> = { ok: "OK  ", fail: "FAIL", warn: "WARN", skipped: "SKIP" };
  for (const c of r.checks) {
    lines.push(`[${label[c.status]}] ${c.name}`);
    for (const d of c.details) lines.push(`       ${d}`);
    if (c.said) lines.push(`       server said: ${c.said}`);
    if (c.cause) lines.push(`       likely cause: ${c.cause}`);
    if (c.fix) lines.push(`       fix: ${c.fix}`);
  }
  if (r.claims) {
    lines.push("", "Claims of the domain JWT (for the provider's attribute mapping and condition):");
    for (const [k, v] of Object.entries(r.claims)) lines.push(`  ${k}: ${JSON.stringify(v)}`);
    lines.push("", "Attribute mapping suggestion:", `  ${mappingHints(r.claims).join(",")}`);
  }
  lines.push("", r.ok ? "The chain works end to end." : "The chain is broken at the first FAIL above.");
  return `${lines.join("\n")}\n`;
}
