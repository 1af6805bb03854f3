/**
 * From the configuration's sources, already read, to a validated Config: no
 * file is opened here (see files.ts for the checks that do), so every rule
 * about values can be tested with plain objects.
 */
import path from "node:path";
import { validateAccess } from "../access/policy.js";
import { ConfigError } from "./config-error.js";
import { alwaysSet, type Config } from "./config-type.js";
import { isLoopbackHost, normaliseListenHost } from "./host.js";
import { expandHome } from "./oci-config-file.js";
import { SETTINGS, type Setting } from "./settings.js";

export interface RawConfigSources {
  /** The config file's top-level JSON object, and the file's name for messages. */
  file?: { name: string; content: Record<string, unknown> };
  /** Environment variables; none when absent (the caller passes process.env). */
  env?: Record<string, string | undefined>;
  /** Flag values by flag name (e.g. "--port"), as given on the command line. */
  flags?: Record<string, string | boolean | string[]>;
  /** Values that win over everything (used by the demo and by tests), by setting path. */
  overrides?: Record<string, unknown>;
}

/**
 * Merges the sources (later wins: defaults, file, environment, flags,
 * overrides) and validates the result. `moreChecks` sees the merged and
 * normalised Config and adds its problems to the same list (loadConfig passes
 * the filesystem checks), so every problem is reported at once. Throws
 * ConfigError.
 */
export function resolveConfig(src: RawConfigSources, moreChecks?: (config: Config) => string[]): Config {
  const problems: string[] = [];
  const config = merge(src, problems);
  if (problems.length) throw new ConfigError(problems);
  validate(config, problems);
  if (moreChecks) problems.push(...moreChecks(config));
  if (problems.length) throw new ConfigError(problems);
  for (const s of SETTINGS) {
    if (alwaysSet(s) && getPath(config, s.path) === undefined) {
      throw new Error(`${s.path} is typed as always set but has no value after validation`);
    }
  }
  return config;
}

type Raw = Record<string, unknown>;

function getPath(o: Raw, p: string): unknown {
  let cur: unknown = o;
  for (const k of p.split(".")) {
    if (!cur || typeof cur !== "object") return undefined;
    cur = (cur as Raw)[k];
  }
  return cur;
}

/** Sets the value at a dotted path; the objects on the way are created even for an undefined value, as Config has them. */
function setPath(o: Raw, p: string, v: unknown): void {
  const ks = p.split(".");
  let cur = o;
  for (const k of ks.slice(0, -1)) {
    if (!cur[k] || typeof cur[k] !== "object") cur[k] = {};
    cur = cur[k] as Raw;
  }
  if (v !== undefined) cur[ks[ks.length - 1]!] = v;
}

function describe(s: Setting): string {
  const where = [`"${s.path}" in the config file`, ...s.env.map((e) => `$${e}`), ...(s.flag ? [s.flag] : [])];
  return where.join(" / ");
}

/**
 * What is wrong with a config-file value for a setting of this type, with the
 * fix; undefined when it has the documented JSON type. The environment and
 * flags carry text (so "8181", "true" and "a,b" are read there); the file
 * carries JSON, and a value of the wrong JSON type is refused rather than
 * converted, so that a mistake such as a string where a list belongs is seen.
 */
function fileTypeProblem(s: Setting, v: unknown): string | undefined {
  const got = `got ${JSON.stringify(v)}`;
  switch (s.type) {
    case "list": {
      if (Array.isArray(v) && v.every((x) => typeof x === "string")) return undefined;
      const items = typeof v === "string" ? v.split(/[,\s]+/).filter(Boolean) : undefined;
      const fix = items ? `; write ${JSON.stringify(items)} (comma-separated lists are for the environment)` : "";
      return `must be a JSON array of strings, ${got}${fix}`;
    }
    case "int": {
      if (typeof v === "number") return undefined;
      const digits = typeof v === "string" && /^\s*\d+\s*$/.test(v) ? v.trim() : "a whole number >= 0";
      return `must be a JSON number, ${got}; write ${digits} without quotes`;
    }
    case "bool": {
      if (typeof v === "boolean") return undefined;
      const text = typeof v === "string" ? v.trim() : "";
      const word = /^(1|true|yes|on)$/i.test(text) ? "true" : /^(0|false|no|off)$/i.test(text) ? "false" : "true or false";
      return `must be true or false (a JSON boolean), ${got}; write ${word} without quotes`;
    }
    default:
      return undefined;
  }
}

function coerce(s: Setting, v: unknown, problems: string[], origin: string, inFile = false): unknown {
  if (v === undefined || v === null) return undefined;
  const fileProblem = inFile ? fileTypeProblem(s, v) : undefined;
  if (fileProblem) {
    problems.push(`${s.path} (${origin}) ${fileProblem}`);
    return undefined;
  }
  switch (s.type) {
    case "string":
      if (typeof v !== "string") {
        problems.push(`${s.path} (${origin}) must be a string; set ${describe(s)}`);
        return undefined;
      }
      return v.trim() === "" ? undefined : v.trim();
    case "int": {
      const n = typeof v === "number" ? v : typeof v === "string" && /^\s*-?\d+\s*$/.test(v) ? Number(v) : NaN;
      if (!Number.isSafeInteger(n) || n < 0) {
        problems.push(`${s.path} (${origin}) must be a whole number >= 0, got ${JSON.stringify(v)}; set ${describe(s)}`);
        return undefined;
      }
      return n;
    }
    case "bool":
      if (typeof v === "boolean") return v;
      if (typeof v === "string" && /^(1|true|yes|on)$/i.test(v.trim())) return true;
      if (typeof v === "string" && /^(0|false|no|off|)$/i.test(v.trim())) return false;
      problems.push(`${s.path} (${origin}) must be true or false, got ${JSON.stringify(v)}`);
      return undefined;
    case "list": {
      const items = Array.isArray(v) ? v : typeof v === "string" ? v.split(/[,\s]+/) : null;
      if (!items || items.some((x) => typeof x !== "string")) {
        problems.push(`${s.path} (${origin}) must be a list of strings (comma separated in the environment)`);
        return undefined;
      }
      return (items as string[]).map((x) => x.trim()).filter(Boolean);
    }
    case "json":
      return v;
    case "enum":
      if (typeof v !== "string" || !s.values!.includes(v.trim())) {
        problems.push(`${s.path} (${origin}) is ${JSON.stringify(v)}; it must be one of: ${s.values!.join(", ")}`);
        return undefined;
      }
      return v.trim();
  }
}

/**
 * Defaults, then the config file, the environment, flags and overrides (later
 * wins), coerced to each setting's type: the Config before validation.
 */
function merge(src: RawConfigSources, problems: string[]): Config {
  const env = src.env ?? {};
  const file = src.file?.content ?? {};
  const fileName = src.file?.name;
  const out: Raw = {};
  const known = new Set(SETTINGS.map((s) => s.path));
  // A JSON setting's value is whole: an object given there is not a group of settings.
  const whole = new Set(SETTINGS.filter((s) => s.type === "json").map((s) => s.path));
  for (const p of leafPaths(file, "", whole)) {
    if (known.has(p)) continue;
    if ([...known].some((k) => k.startsWith(`${p}.`))) {
      // A group given a value: the settings under it would be silently left at their defaults.
      problems.push(`"${p}" in ${fileName} must be a JSON object of settings, got ${JSON.stringify(getPath(file, p))}`);
    } else {
      problems.push(`unknown setting "${p}" in ${fileName}; known settings are listed in the README's configuration reference`);
    }
  }
  for (const s of SETTINGS) {
    let v: unknown = s.default;
    const fv = coerce(s, getPath(file, s.path), problems, `config file ${fileName}`, true);
    if (fv !== undefined) v = fv;
    // The first variable listed wins when several are set.
    for (const name of [...s.env].reverse()) {
      const ev = coerce(s, env[name], problems, `$${name}`);
      if (ev !== undefined) v = ev;
    }
    if (s.flag && src.flags && src.flags[s.flag] !== undefined) {
      const fl = coerce(s, src.flags[s.flag], problems, s.flag);
      if (fl !== undefined) v = fl;
    }
    if (src.overrides && s.path in src.overrides) v = src.overrides[s.path];
    setPath(out, s.path, Array.isArray(v) ? [...v] : v);
  }
  return out as unknown as Config;
}

function leafPaths(o: Raw, prefix = "", whole: ReadonlySet<string> = new Set()): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v) && !whole.has(p)) out.push(...leafPaths(v as Raw, p, whole));
    else out.push(p);
  }
  return out;
}

const AUDIENCE_RE = /^\/\/iam\.([a-z0-9.-]+)\/projects\/([^/]+)\/locations\/global\/workloadIdentityPools\/([^/]+)\/providers\/([^/]+)$/;
const IMPERSONATION_RE = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/;
const EMAIL_RE = /^[^\s@/:]+@[^\s@/:]+\.[^\s@/:]+$/;

function checkUpstreamUrl(name: string, envName: string, value: string, problems: string[], allowLinkLocal = false): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    problems.push(`${name} ($${envName}) is not a URL: ${JSON.stringify(value)}; give a full https:// URL`);
    return undefined;
  }
  const plainOk = isLoopbackHost(u.hostname) || (allowLinkLocal && u.hostname === "169.254.169.254");
  if (u.protocol !== "https:" && !(u.protocol === "http:" && plainOk)) {
    problems.push(
      `${name} ($${envName}) must use https (plain http is accepted only for loopback addresses` +
        `${allowLinkLocal ? " and 169.254.169.254" : ""}), got ${u.protocol}//${u.host}`,
    );
    return undefined;
  }
  if (u.username || u.password) {
    problems.push(`${name} ($${envName}) must not carry credentials in the URL`);
    return undefined;
  }
  return u.toString();
}

function validate(c: Config, problems: string[]): void {
  for (const s of SETTINGS) {
    if (s.required && getPath(c, s.path) === undefined) {
      const where = [`$${s.env[0]}`, ...(s.flag ? [s.flag] : [])].join(", ");
      problems.push(`${s.path} is not set: give ${s.required.give} with ${where} or "${s.path}" (${s.required.example})`);
    }
  }

  // Identity domain: a URL or a bare host name.
  if (c.identityDomain.url) {
    const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(c.identityDomain.url) ? c.identityDomain.url : `https://${c.identityDomain.url}`;
    const u = checkUpstreamUrl("identityDomain.url", "OCI_IAM_DOMAIN_URL", raw, problems);
    if (u) c.identityDomain.url = u.replace(/\/+$/, "");
  }

  // Impersonation URL: its service account comes first.
  if (c.google.impersonationUrl) {
    const u = checkUpstreamUrl("google.impersonationUrl", "GCP_IMPERSONATION_URL", c.google.impersonationUrl, problems);
    if (u) {
      const url = new URL(u);
      const m = IMPERSONATION_RE.exec(url.pathname);
      if (!m) {
        problems.push(
          "google.impersonationUrl ($GCP_IMPERSONATION_URL) does not look like " +
            `https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken (got path ${url.pathname})`,
        );
      } else {
        const email = decodeURIComponent(m[1]!);
        c.google.serviceAccounts = [email, ...c.google.serviceAccounts.filter((s) => s !== email)];
        if (c.google.iamCredentialsUrl === "https://iamcredentials.googleapis.com") c.google.iamCredentialsUrl = url.origin;
      }
    }
  }
  for (const sa of c.google.serviceAccounts) {
    if (!EMAIL_RE.test(sa))
      problems.push(`google.serviceAccounts: ${JSON.stringify(sa)} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)`);
  }
  if (new Set(c.google.serviceAccounts).size !== c.google.serviceAccounts.length) {
    problems.push("google.serviceAccounts lists the same account twice");
  }

  // Audience of the workload identity pool provider.
  if (c.google.audience) {
    const a = c.google.audience.replace(/^https:/, "");
    const m = AUDIENCE_RE.exec(a);
    if (!m) {
      problems.push(
        "google.audience ($GCP_AUDIENCE) is not a workload identity pool provider: expected " +
          "//iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER, " +
          `got ${JSON.stringify(c.google.audience)}`,
      );
    } else if (!/^\d+$/.test(m[2]!)) {
      problems.push(
        `google.audience ($GCP_AUDIENCE): the project segment ${JSON.stringify(m[2])} is not a number; ` +
          "Google wants the project NUMBER there, not the project id " +
          `(find it with: gcloud projects describe ${m[2]} --format='value(projectNumber)')`,
      );
    } else {
      c.google.audience = a;
      c.google.projectNumber ??= m[2]!;
    }
  }
  if (c.google.projectNumber !== undefined && !/^\d+$/.test(c.google.projectNumber)) {
    problems.push(`google.projectNumber ($OCI2GCP_PROJECT_NUMBER) must be digits, got ${JSON.stringify(c.google.projectNumber)}`);
  }
  const sts = checkUpstreamUrl("google.stsUrl", "OCI2GCP_STS_URL", c.google.stsUrl, problems);
  if (sts) c.google.stsUrl = sts;
  const iam = checkUpstreamUrl("google.iamCredentialsUrl", "OCI2GCP_IAM_CREDENTIALS_URL", c.google.iamCredentialsUrl, problems);
  if (iam) c.google.iamCredentialsUrl = iam.replace(/\/+$/, "");
  if (c.google.scopes.length === 0) problems.push("google.scopes ($OCI2GCP_SCOPES) must list at least one scope");
  if (c.google.tokenLifetimeSeconds < 600 || c.google.tokenLifetimeSeconds > 43200) {
    problems.push(
      `google.tokenLifetimeSeconds ($OCI2GCP_TOKEN_LIFETIME_SECONDS) must be between 600 and 43200, got ${c.google.tokenLifetimeSeconds}`,
    );
  }

  // OCI side.
  const md = checkUpstreamUrl("oci.metadataUrl", "OCI2GCP_OCI_METADATA_URL", c.oci.metadataUrl, problems, true);
  if (md) c.oci.metadataUrl = md.endsWith("/") ? md : `${md}/`;
  if (c.oci.federationUrl) {
    const f = checkUpstreamUrl("oci.federationUrl", "OCI2GCP_OCI_FEDERATION_URL", c.oci.federationUrl, problems);
    if (f) c.oci.federationUrl = f.replace(/\/+$/, "");
  }
  c.oci.configFile = expandHome(c.oci.configFile);
  if (c.oci.principal === "resource") {
    const rp = c.oci.resourcePrincipal;
    if (!rp.rpst)
      problems.push(
        "oci.principal is resource but no resource principal token is set: " +
          '$OCI_RESOURCE_PRINCIPAL_RPST (OCI Functions sets it) or "oci.resourcePrincipal.rpst"',
      );
    if (!rp.privateKey)
      problems.push(
        'oci.principal is resource but no private key is set: $OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM or "oci.resourcePrincipal.privateKey"',
      );
    if (!rp.region)
      problems.push('oci.principal is resource but no region is set: $OCI_RESOURCE_PRINCIPAL_REGION or "oci.resourcePrincipal.region"');
  }
  if (c.oci.principal === "oke-workload") {
    if (!c.oci.oke.serviceHost)
      problems.push(
        'oci.principal is oke-workload but $KUBERNETES_SERVICE_HOST is not set: run inside an OKE pod, or set "oci.oke.serviceHost"',
      );
  }
  // Server.
  const host = normaliseListenHost(c.server.host);
  if (host === undefined) {
    problems.push(
      `server.host ($OCI2GCP_HOST) must be an IP address or a host name without a port, got ${JSON.stringify(c.server.host)}; ` +
        "e.g. 127.0.0.1, ::1 or [::1] (the port is server.port)",
    );
  } else c.server.host = host;
  if (host !== undefined && !isLoopbackHost(c.server.host) && !c.server.allowNonLoopback) {
    problems.push(
      `server.host is ${c.server.host}, which is not a loopback address: every process that can reach it gets Google tokens. ` +
        "Keep 127.0.0.1, or confirm with --allow-non-loopback / $OCI2GCP_ALLOW_NON_LOOPBACK=true",
    );
  }
  if (c.server.port > 65535) problems.push(`server.port must be at most 65535, got ${c.server.port}`);
  if (!/^0?[0-7]{3}$/.test(c.server.socketMode))
    problems.push(`server.socketMode must be an octal file mode such as 0660, got ${JSON.stringify(c.server.socketMode)}`);
  const access = validateAccess({ rules: c.access.rules, socketRule: c.access.socketRule }, c.google.serviceAccounts);
  problems.push(...access.problems);
  if (c.server.socketGroup !== undefined && !/^(\d+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/.test(c.server.socketGroup)) {
    problems.push(`server.socketGroup must be a group name or a numeric gid, got ${JSON.stringify(c.server.socketGroup)}`);
  }
  if (c.server.maxCachedVariants < 1) problems.push("server.maxCachedVariants must be at least 1");
  for (const h of c.server.allowedHosts) {
    if (normaliseListenHost(h) === undefined) {
      problems.push(
        `server.allowedHosts: ${JSON.stringify(h)} is not a host name or an IP address; list names without port or scheme, ` +
          "e.g. oci2gcp.default.svc or 10.0.0.5",
      );
    }
  }
  if (c.cache.minRemainingSeconds >= c.cache.renewBeforeSeconds) {
    problems.push(
      `cache.minRemainingSeconds (${c.cache.minRemainingSeconds}) must be below cache.renewBeforeSeconds ` +
        `(${c.cache.renewBeforeSeconds}), or renewal would start after tokens stop being served`,
    );
  }
  if (c.cache.subjectMinRemainingSeconds >= c.cache.subjectRenewBeforeSeconds) {
    problems.push("cache.subjectMinRemainingSeconds must be below cache.subjectRenewBeforeSeconds");
  }
  if (c.tokenFile.path) c.tokenFile.path = path.resolve(expandHome(c.tokenFile.path));
  if (c.tokenFile.refreshSeconds < 1) problems.push("tokenFile.refreshSeconds must be at least 1");
  if (c.upstream.attempts < 1) problems.push("upstream.attempts must be at least 1");
  if (c.upstream.timeoutMs < 100) problems.push("upstream.timeoutMs must be at least 100");
}
