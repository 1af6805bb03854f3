/**
 * Config is derived from the settings table. The type-level half of this file
 * is checked by `tsc -p tsconfig.test.json` (part of `npm test`): a setting's
 * type, its place and whether it is optional all come from its row. The
 * runtime half checks what the type promises: every setting typed as always
 * present has a value once loaded.
 */
import t from "tap";
import { type Config, ConfigError, loadConfig } from "../../src/config/config.js";
import { type PRINCIPAL_KINDS, SETTINGS } from "../../src/config/settings.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

// A row's type decides the value's type.
expectType<Equal<Config["server"]["port"], number>>(true);
expectType<Equal<Config["server"]["allowNonLoopback"], boolean>>(true);
expectType<Equal<Config["google"]["scopes"], string[]>>(true);
expectType<Equal<Config["oci"]["principal"], (typeof PRINCIPAL_KINDS)[number]>>(true);
expectType<Equal<Config["log"]["level"], "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent">>(true);
// A default, `required` or `derivedFrom` makes it always present; otherwise it is optional.
expectType<Equal<Config["identityDomain"], { url: string; scope: string }>>(true);
expectType<Equal<Config["tokenFile"], { path?: string; refreshSeconds: number }>>(true);
expectType<Equal<Config["google"]["projectNumber"], string>>(true);
expectType<Equal<Config["oci"]["resourcePrincipal"], { rpst?: string; privateKey?: string; passphrase?: string; region?: string }>>(true);
// Only the table's settings exist, at their paths, and values keep their types (never run: only compiled).
export function typeChecks(c: Config): void {
  // @ts-expect-error: no such setting in the table
  c.server.noSuchSetting;
  // @ts-expect-error: a leaf of a dotted path lives under its group, not at the top
  c.port;
  // @ts-expect-error: an enum takes only its values
  c.log.level = "verbose";
  // @ts-expect-error: a setting typed as always present cannot be unset
  c.google.audience = undefined;
  c.tokenFile.path = undefined; // an optional one can
  c.google.tokenLifetimeSeconds = 900; // a Config stays mutable (the benchmarks shorten lifetimes)
}

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const BASE = { "identityDomain.url": "https://idcs-0123456789abcdef.identity.oraclecloud.com", "google.audience": AUDIENCE };

const at = (o: unknown, p: string): unknown =>
  p.split(".").reduce<unknown>((cur, k) => (cur && typeof cur === "object" ? (cur as Record<string, unknown>)[k] : undefined), o);

t.test("every setting typed as always present has a value once loaded; the others' groups exist", async (t) => {
  const config = loadConfig({ env: {}, overrides: BASE });
  for (const s of SETTINGS) {
    const group = s.path.split(".").slice(0, -1).join(".");
    t.type(at(config, group), "object", `${s.path}: its group is an object`);
    if (s.default !== undefined || s.required || s.derivedFrom) t.not(at(config, s.path), undefined, `${s.path} has a value`);
  }
  t.equal(config.google.projectNumber, "123456789012", "derived from the audience");
});

t.test("the table is consistent: unique paths, derivations from real settings, required settings reachable", async (t) => {
  const paths = SETTINGS.map((s) => s.path);
  t.equal(new Set(paths).size, paths.length, "no path twice");
  for (const s of SETTINGS) {
    if (s.derivedFrom) t.ok(paths.includes(s.derivedFrom), `${s.path} is derived from a setting`);
    if (s.required) {
      t.ok(s.env.length > 0 && s.flag, `${s.path}: an environment variable and a flag to name in the error`);
      t.equal(s.default, undefined, `${s.path}: required and without default`);
    }
  }
});

t.test("a required setting that is missing: the error names it, where to set it and an example", async (t) => {
  const problems = (overrides: Record<string, unknown>): string[] => {
    try {
      loadConfig({ env: {}, overrides });
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };
  t.same(problems({}), [
    'identityDomain.url is not set: give the IAM identity domain URL with $OCI_IAM_DOMAIN_URL, --domain-url or "identityDomain.url"' +
      " (e.g. https://idcs-0123456789abcdef.identity.oraclecloud.com)",
    'google.audience is not set: give the workload identity pool provider with $GCP_AUDIENCE, --audience or "google.audience"' +
      " (//iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER)",
  ]);
  t.same(problems(BASE), [], "both given: valid");
});
