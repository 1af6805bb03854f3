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
