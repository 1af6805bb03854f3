/**
 * Resolving the configuration is pure: the sources go in as values and the
 * filesystem is never touched; the checks that read files are a separate step
 * that loadConfig runs on the resolved Config, reporting both kinds of problem
 * together.
 */
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { ConfigError, checkConfigFiles, loadConfig, type RawConfigSources, resolveConfig } from "../../src/config/config.js";
import { tempDir } from "../helpers/stack.js";

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
const BASE = { "identityDomain.url": DOMAIN, "google.audience": AUDIENCE };

const dir = tempDir("oci2gcp-resolve-");
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const missing = (name: string) => path.join(dir, "missing", name);

/** Settings that name files, none of which exists. */
const FILES_THAT_DO_NOT_EXIST: Record<string, unknown>[] = [
  { "oci.principal": "config-file", "oci.configFile": missing("oci-config") },
  { "oci.principal": "session", "oci.configFile": missing("oci-config") },
  {
    "oci.principal": "oke-workload",
    "oci.oke.serviceHost": "10.0.0.1",
    "oci.oke.caCertPath": missing("ca"),
    "oci.oke.tokenPath": missing("t"),
  },
  {
    "oci.principal": "resource",
    "oci.resourcePrincipal.rpst": missing("rpst"),
    "oci.resourcePrincipal.privateKey": missing("key.pem"),
    "oci.resourcePrincipal.region": "us-ashburn-1",
  },
  { "tokenFile.path": missing("token") },
];

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

t.test("resolveConfig never touches the filesystem", async (t) => {
  const touched: string[] = [];
  const noFs = new Proxy(fs, {
    get(target, name) {
      const v = Reflect.get(target, name);
      if (typeof v !== "function") return v;
      return () => {
        touched.push(String(name));
        throw new Error(`fs.${String(name)} called`);
      };
    },
  });
  const { resolveConfig: pureResolve } = await t.mockImport<typeof import("../../src/config/resolve.js")>("../../src/config/resolve.js", {
    "node:fs": { ...noFs, default: noFs },
  });
  for (const overrides of FILES_THAT_DO_NOT_EXIST) {
    const c = pureResolve({ env: {}, overrides: { ...BASE, ...overrides } });
    t.equal(c.identityDomain.url, DOMAIN, `resolved: ${JSON.stringify(overrides)}`);
  }
  const file = {
    name: "/etc/oci2gcp.json",
    content: { google: { audience: AUDIENCE, serviceAccounts: ["sa@p.iam.gserviceaccount.com"] } },
  };
  const c = pureResolve({ file, env: { OCI_IAM_DOMAIN_URL: DOMAIN }, flags: { "--port": "9000" } });
  t.same(c.google.serviceAccounts, ["sa@p.iam.gserviceaccount.com"], "from the file's content");
  t.equal(c.server.port, 9000, "from a flag");
  t.same(touched, [], "no fs call");
});

t.test("the same sources: resolveConfig accepts them, checkConfigFiles names each missing file, loadConfig reports it", async (t) => {
  for (const overrides of FILES_THAT_DO_NOT_EXIST) {
    const c = resolveConfig({ env: {}, overrides: { ...BASE, ...overrides } });
    const fileProblems = checkConfigFiles(c);
    const named = Object.values(overrides).filter((v) => typeof v === "string" && v.startsWith(missing(""))).length;
    t.equal(fileProblems.length, named, `${JSON.stringify(overrides)}: one problem per file`);
    for (const p of fileProblems) t.match(p, /cannot (read|write to the directory) \S*missing/);
    t.same(
      problemsOf(() => loadConfig({ env: {}, overrides: { ...BASE, ...overrides } })),
      fileProblems,
      "loadConfig: the same problems",
    );
  }
});

t.test("loadConfig lists the problems of values and of files together", async (t) => {
  const problems = problemsOf(() =>
    loadConfig({ env: {}, overrides: { ...BASE, "server.port": 70000, "oci.principal": "config-file", "oci.configFile": missing("c") } }),
  );
  t.equal(problems.length, 2);
  t.match(problems[0], /^server\.port must be at most 65535/);
  t.match(problems[1], /^oci\.configFile: cannot read \S+ \(ENOENT\)/);
  const raw: RawConfigSources = { env: {}, overrides: { ...BASE, "server.port": 70000 } };
  t.same(
    problemsOf(() => resolveConfig(raw)),
    ["server.port must be at most 65535, got 70000"],
    "resolveConfig alone: the value's problem",
  );
});

t.test("a type mismatch stops before validation, as before", async (t) => {
  t.same(
    problemsOf(() => resolveConfig({ env: { OCI2GCP_PORT: "eighty" }, overrides: BASE })),
    [
      'server.port ($OCI2GCP_PORT) must be a whole number >= 0, got "eighty"; set "server.port" in the config file / $OCI2GCP_PORT / --port',
    ],
  );
});
