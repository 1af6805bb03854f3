import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import t from "tap";
import { parse as parseYaml } from "yaml";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, type Emulators, startEmulators } from "../../src/emulator/index.js";
import * as api from "../../src/index.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const fnDir = path.join(root, "examples/oci-function");
const READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only";

type Handler = (input: unknown, ctx?: { config?: Record<string, string> }) => Promise<{ project: string; buckets: { name: string }[] }>;
type CreateHandler = (deps: { credentials: () => api.OciGoogleCredentials; fetch?: typeof fetch; storageUrl?: string }) => Handler;

/** The environment OCI Functions gives a function, plus its configuration, pointed at the emulators. */
function functionEnv(emu: Emulators): NodeJS.ProcessEnv {
  const rp = emu.oci.mintResourcePrincipal();
  return {
    OCI_RESOURCE_PRINCIPAL_VERSION: "2.2",
    OCI_RESOURCE_PRINCIPAL_RPST: rp.rpst,
    OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: rp.privateKeyPem,
    OCI_RESOURCE_PRINCIPAL_REGION: rp.region,
    OCI_IAM_DOMAIN_URL: emu.oci.domainUrl,
    GCP_AUDIENCE: emu.google.audience,
    OCI2GCP_STS_URL: emu.google.stsUrl,
    OCI2GCP_IAM_CREDENTIALS_URL: emu.google.iamCredentialsUrl,
    OCI2GCP_SERVICE_ACCOUNTS: DEMO_SERVICE_ACCOUNT,
    GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID,
  };
}

/**
 * A stand-in for the Cloud Storage JSON API that checks the bearer token as
 * Google would: issued by (emulated) Google, for the service account, with a
 * storage scope.
 */
function fakeStorage(emu: Emulators) {
  const seen: { url: URL; email?: string; scopes: string[] }[] = [];
  const fetchImpl = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(String(input));
    const auth = new Headers(init?.headers).get("authorization") ?? "";
    const info = emu.google.tokenInfo(auth.replace(/^Bearer /, ""));
    seen.push({ url, email: info?.email, scopes: info?.scopes ?? [] });
    if (!info) return Response.json({ error: { code: 401, message: "Invalid Credentials" } }, { status: 401 });
    if (!info.scopes.some((s) => s === READ_ONLY || s.endsWith("/cloud-platform"))) {
      return Response.json({ error: { code: 403, message: "Insufficient scope" } }, { status: 403 });
    }
    if (url.searchParams.get("project") === "forbidden-project") {
      return Response.json({ error: { code: 403, message: `${info.email} does not have storage.buckets.list access` } }, { status: 403 });
    }
    return Response.json({ items: [{ name: "bucket-a", location: "EU", storageClass: "STANDARD", etag: "x" }] });
  }) as typeof fetch;
  return { fetch: fetchImpl, seen };
}

t.test("handler.js: lists buckets with a token from the resource principal, through the library", async (t) => {
  const emu = await startEmulators();
  t.teardown(() => emu.close());
  const { createHandler } = (await import(pathToFileURL(path.join(fnDir, "handler.js")).href)) as { createHandler: CreateHandler };
  let creds: api.OciGoogleCredentials | undefined;
  const env = functionEnv(emu);
  t.teardown(() => creds?.close());
  const storage = fakeStorage(emu);
  const handler = createHandler({ credentials: () => (creds ??= api.OciGoogleCredentials.fromEnvironment({ env })), fetch: storage.fetch });

  const out = await handler({}, { config: {} });
  t.equal(creds!.config.oci.principal, "resource", "OCI_RESOURCE_PRINCIPAL_VERSION selects the resource principal");
  t.same(out, { project: DEMO_PROJECT_ID, buckets: [{ name: "bucket-a", location: "EU", storageClass: "STANDARD" }] });
  t.equal(storage.seen.length, 1);
  t.equal(storage.seen[0]!.url.origin + storage.seen[0]!.url.pathname, "https://storage.googleapis.com/storage/v1/b");
  t.equal(storage.seen[0]!.url.searchParams.get("project"), DEMO_PROJECT_ID);
  t.equal(storage.seen[0]!.email, DEMO_SERVICE_ACCOUNT, "a token of the impersonated service account");
  t.same(storage.seen[0]!.scopes, [READ_ONLY], "asked with the read-only storage scope only");

  // The project from the input wins; the token is reused.
  t.equal((await handler({ project: "other-project" }, { config: {} })).project, "other-project");
  t.equal(storage.seen[1]!.url.searchParams.get("project"), "other-project");
  t.equal((await handler('{"project": "text-project"}', { config: {} })).project, "text-project", "a JSON body sent as text");

  // Google's refusal reaches the caller with its message.
  await t.rejects(handler({ project: "forbidden-project" }), /Cloud Storage answered 403: .*storage\.buckets\.list/);
});

t.test("func.js: wires the FDK to the handler with OciGoogleCredentials.fromEnvironment()", async (t) => {
  // func.js as the function's container runs it, with a stand-in for
  // @fnproject/fdk (not installed here) and this repository as "oci2gcp".
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-fn-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ["func.js", "handler.js", "package.json"]) fs.copyFileSync(path.join(fnDir, f), path.join(dir, f));
  const fdkDir = path.join(dir, "node_modules/@fnproject/fdk");
  fs.mkdirSync(fdkDir, { recursive: true });
  fs.writeFileSync(path.join(fdkDir, "package.json"), JSON.stringify({ name: "@fnproject/fdk", main: "fn-fdk.js" }));
  fs.writeFileSync(
    path.join(fdkDir, "fn-fdk.js"),
    "exports.handle = (fn) => { globalThis.__fnHandlers = [...(globalThis.__fnHandlers || []), fn]; };\n",
  );
  fs.symlinkSync(root, path.join(dir, "node_modules/oci2gcp"), "dir");
  t.ok(fs.existsSync(path.join(root, "dist/index.js")), "the package is built (npm test runs tsc first)");

  const emu = await startEmulators();
  t.teardown(() => emu.close());
  Object.assign(process.env, functionEnv(emu));
  // func.js calls the real Cloud Storage with the global fetch: route those
  // calls (and only those) to the stand-in before func.js takes the global.
  const storage = fakeStorage(emu);
  const realFetch = globalThis.fetch;
  globalThis.fetch = ((input: string | URL | Request, init?: RequestInit) =>
    String(input).startsWith("https://storage.googleapis.com/") ? storage.fetch(input, init) : realFetch(input, init)) as typeof fetch;
  t.teardown(() => {
    globalThis.fetch = realFetch;
  });
  await import(pathToFileURL(path.join(dir, "func.js")).href);
  const handlers = (globalThis as { __fnHandlers?: Handler[] }).__fnHandlers ?? [];
  t.equal(handlers.length, 1, "func.js hands exactly one handler to fdk.handle");
  const out = await handlers[0]!({}, { config: {} });
  t.same(
    out.buckets.map((b) => b.name),
    ["bucket-a"],
  );
  t.equal(storage.seen[0]!.email, DEMO_SERVICE_ACCOUNT);
});

t.test("the function's files: package.json, func.yaml and the API names func.js uses", async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(fnDir, "package.json"), "utf8"));
  t.equal(pkg.type, "module", "func.js is an ES module (oci2gcp is ESM only)");
  t.ok(pkg.dependencies["@fnproject/fdk"], "depends on the FDK");
  t.ok(pkg.dependencies.oci2gcp, "depends on oci2gcp");
  const own = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
  if (pkg.dependencies.oci2gcp.startsWith("file:")) {
    t.equal(pkg.dependencies.oci2gcp, `file:${own.name}-${own.version}.tgz`, "the tarball `npm pack` writes for this version");
  }

  const fn = parseYaml(fs.readFileSync(path.join(fnDir, "func.yaml"), "utf8"));
  t.equal(fn.runtime, "node");
  t.equal(fn.entrypoint, "node func.js");
  t.equal(fn.schema_version, 20180708);
  const nodeMajor = (img: string) => Number(/:(\d+)/.exec(img)?.[1]);
  const needed = Number(/\d+/.exec(own.engines.node)![0]);
  t.ok(nodeMajor(fn.build_image) >= needed && nodeMajor(fn.run_image) >= needed, `FDK images with node >= ${needed}`);

  const src = fs.readFileSync(path.join(fnDir, "func.js"), "utf8");
  const imported = /import\s*\{([^}]+)\}\s*from\s*"oci2gcp"/
    .exec(src)![1]!
    .split(",")
    .map((s) => s.trim());
  for (const name of imported) t.ok(name in api, `oci2gcp exports ${name}`);
  t.match(src, /OciGoogleCredentials\.fromEnvironment\(/);
  t.ok(typeof api.OciGoogleCredentials.fromEnvironment === "function");
  const handler = fs.readFileSync(path.join(fnDir, "handler.js"), "utf8");
  for (const m of handler.matchAll(/creds\.(\w+)/g))
    t.ok(m[1]! in api.OciGoogleCredentials.prototype || m[1] === "config", `OciGoogleCredentials has ${m[1]}`);
});
