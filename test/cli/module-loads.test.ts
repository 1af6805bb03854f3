import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";

const DIST = path.resolve("dist");

/**
 * The packages a compiled module loads, in a fresh process. All the packages
 * asked about are CommonJS, so Node's require cache lists them even when ESM imports them.
 */
function packagesLoadedBy(module: string): string[] {
  const script = `
    import { createRequire } from "node:module";
    await import(${JSON.stringify(path.join(DIST, module))});
    const names = Object.keys(createRequire(import.meta.url).cache)
      .map((k) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(k)?.[1])
      .filter(Boolean);
    process.stdout.write(JSON.stringify([...new Set(names)]));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as string[];
}

const cases: [string, string[]][] = [
  // A credential file names the daemon's path: that needs no server, no hop, no cloud SDK.
  ["cli/cred-config.js", ["fastify", "prom-client", "google-auth-library", "oci-common"]],
  ["cli/status.js", ["fastify", "prom-client", "google-auth-library", "oci-common", "pino"]],
  ["cli/subject-token.js", ["fastify", "prom-client", "google-auth-library", "oci-common", "pino"]],
  // doctor checks the hops; it serves nothing.
  ["cli/doctor.js", ["fastify", "@fastify/rate-limit", "prom-client"]],
];

t.test("the check sees a package that a module does load", async (t) => {
  if (!fs.existsSync(path.join(DIST, "log.js"))) {
    t.fail("dist/log.js is missing: run `npx tsc -p .` first");
    return;
  }
  t.ok(packagesLoadedBy("log.js").includes("pino"), "log.js loads pino, and the check says so");
});

for (const [module, forbidden] of cases) {
  t.test(`dist/${module} loads none of ${forbidden.join(", ")}`, async (t) => {
    if (!fs.existsSync(path.join(DIST, module))) {
      t.fail(`dist/${module} is missing: run \`npx tsc -p .\` first`);
      return;
    }
    const loaded = packagesLoadedBy(module);
    for (const p of forbidden) t.notOk(loaded.includes(p), `${module} does not load ${p}`);
  });
}

/**
 * Our modules (dist/, relative) that obtaining a signing identity of `principal`
 * loads, in a fresh process: the chain's hops built from the configuration and
 * one token() call, which fails fast here (nothing listens at the URLs). ES modules
 * are seen by a loader hook.
 */
function oursLoadedByPrincipal(principal: string): string[] {
  const hooks =
    "let port; export function initialize(d) { port = d.port; } " +
    "export async function load(url, context, next) { port.postMessage(url); return next(url, context); }";
  const script = `
    import { register } from "node:module";
    import { MessageChannel } from "node:worker_threads";
    const urls = new Set();
    const { port1, port2 } = new MessageChannel();
    port1.on("message", (u) => urls.add(u));
    register("data:text/javascript," + encodeURIComponent(${JSON.stringify(hooks)}), { data: { port: port2 }, transferList: [port2] });
    const { loadConfig } = await import(${JSON.stringify(path.join(DIST, "config/config.js"))});
    const { Hops, ONE_ATTEMPT } = await import(${JSON.stringify(path.join(DIST, "hops.js"))});
    const config = loadConfig({ env: {}, overrides: {
      "oci.principal": ${JSON.stringify(principal)},
      "oci.metadataUrl": "http://127.0.0.1:9/opc/v2/",
      "oci.resourcePrincipal.rpst": "not-a-token",
      "oci.resourcePrincipal.privateKey": "not-a-key",
      "oci.resourcePrincipal.region": "us-ashburn-1",
      "identityDomain.url": "http://127.0.0.1:9",
      "google.audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/p",
      "upstream.timeoutMs": 1000,
    } });
    await new Hops(config, ONE_ATTEMPT).principal().token().catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    port1.close();
    const dist = ${JSON.stringify(`file://${DIST}/`)};
    process.stdout.write(JSON.stringify([...urls].filter((u) => u.startsWith(dist)).map((u) => u.slice(dist.length))));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })) as string[];
}

const PRINCIPAL_MODULES = [
  "oci/principals/instance.js",
  "oci/principals/resource.js",
  "oci/principals/oke-workload.js",
  "oci/principals/config-file.js",
];

t.test("the instance principal loads the code of no other principal", async (t) => {
  if (!fs.existsSync(path.join(DIST, "hops.js"))) {
    t.fail("dist/hops.js is missing: run `npx tsc -p .` first");
    return;
  }
  const instance = oursLoadedByPrincipal("instance");
  t.same(
    PRINCIPAL_MODULES.filter((m) => instance.includes(m)),
    ["oci/principals/instance.js"],
    "of the principals' modules, only instance.js is loaded",
  );
  // The same check sees another principal's module where that principal is configured.
  const resource = oursLoadedByPrincipal("resource");
  t.same(
    PRINCIPAL_MODULES.filter((m) => resource.includes(m)),
    ["oci/principals/resource.js"],
    "the resource principal loads resource.js and no other principal's module",
  );
});
