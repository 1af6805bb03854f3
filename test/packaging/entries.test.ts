import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));

// Imported by name, as a consumer does (a package may import itself through its
// "exports"): what is checked is the built package, not src/. A specifier held in
// a variable keeps the type check independent of a build.
const load = (specifier: string) => import(specifier) as Promise<Record<string, unknown>>;

t.test("package.json: the library as the main entry, the daemon as oci2gcp/daemon", async (t) => {
  t.same(Object.keys(pkg.exports).sort(), [".", "./daemon"]);
  t.equal(pkg.exports["."].default, "./dist/index.js");
  t.equal(pkg.exports["./daemon"].default, "./dist/daemon-entry.js");
  for (const e of Object.values(pkg.exports) as { types: string; default: string }[]) {
    t.ok(fs.existsSync(path.join(root, e.default)), `${e.default} is built (npm test runs tsc first)`);
    t.ok(fs.existsSync(path.join(root, e.types)), `${e.types} is built`);
  }
});

t.test('import("oci2gcp"): the in-process API, without the daemon', async (t) => {
  const lib = await load("oci2gcp");
  for (const name of ["OciGoogleCredentials", "Chain", "loadConfig", "ConfigError", "createLogger", "CachingTokenSource", "HopError"])
    t.type(lib[name], "function", `exports ${name}`);
  t.notOk("startDaemon" in lib, "startDaemon is not on the main entry");
});

t.test('import("oci2gcp/daemon"): the daemon of `oci2gcp serve`', async (t) => {
  const daemon = await load("oci2gcp/daemon");
  t.type(daemon.startDaemon, "function");
  t.type(daemon.routeConsoleToLogger, "function");
  t.match(daemon.DAEMON_NODE_OPTIONS, /--max-old-space-size=\d+/);
});
