/**
 * The layering of src/, read from its import graph: the Oracle and Google hops
 * know nothing of each other, the token layer knows nothing outside itself, the
 * emulators share no code with what they emulate (so that tests against them
 * mean something), and the library entry never loads the daemon's HTTP side.
 */
import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import ts from "typescript";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const run = promisify(execFile);

/** Packages the library entry must not load: the daemon's HTTP server, its rate limiter and its metrics. */
const DAEMON_PACKAGES = ["fastify", "@fastify/rate-limit", "prom-client"];

interface Edge {
  /** As written: "./x.js", "fastify". */
  specifier: string;
  /** The file it names, relative to the repository (src/x.ts), for a relative specifier. */
  target?: string;
  /** `import type`, `export type`, or every named binding a type: erased from the JavaScript. */
  typeOnly: boolean;
  dynamic: boolean;
}

/** Every import of one file: static imports, re-exports and `import("...")` with a literal specifier. */
function importsOf(file: string, text: string): Edge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const edges: Edge[] = [];
  const add = (specifier: string, typeOnly: boolean, dynamic: boolean) => {
    let target: string | undefined;
    if (specifier.startsWith("."))
      target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)).replace(/\.js$/, ".ts");
    edges.push({ specifier, target, typeOnly, dynamic });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.importClause;
      const bindings = c?.namedBindings;
      const allTypes =
        !!c &&
        !c.name &&
        !!bindings &&
        ts.isNamedImports(bindings) &&
        bindings.elements.length > 0 &&
        bindings.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier.text, !!c?.isTypeOnly || allTypes, false);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.exportClause;
      const allTypes = !!c && ts.isNamedExports(c) && c.elements.length > 0 && c.elements.every((e) => e.isTypeOnly);
      add(node.moduleSpecifier.text, node.isTypeOnly || allTypes, false);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      add(node.arguments[0].text, false, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

type Graph = Map<string, Edge[]>;

function readGraph(): Graph {
  const graph: Graph = new Map();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".d.ts"))
        graph.set(rel, importsOf(rel, fs.readFileSync(path.join(root, rel), "utf8")));
    }
  };
  walk("src");
  return graph;
}

const under = (file: string | undefined, dir: string) => !!file?.startsWith(`${dir}/`);
const isPackage = (specifier: string, name: string) => specifier === name || specifier.startsWith(`${name}/`);

/** Imports from one folder of src/ into another that it must not know. */
function crossings(graph: Graph, from: string, forbidden: (target: string) => boolean): string[] {
  const out: string[] = [];
  for (const [file, edges] of graph)
    if (under(file, from)) for (const e of edges) if (e.target && forbidden(e.target)) out.push(`${file} imports ${e.target}`);
  return out;
}

/**
 * What the library entry loads: every module reachable from src/index.ts over
 * imports that survive compilation (dynamic ones included: loaded later is still
 * loaded), with the path that reaches it.
 */
function reachable(graph: Graph, entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>([[entry, [entry]]]);
  const queue = [entry];
  for (let file = queue.shift(); file; file = queue.shift()) {
    for (const e of graph.get(file) ?? []) {
      if (e.typeOnly || !e.target || seen.has(e.target)) continue;
      seen.set(e.target, [...seen.get(file)!, e.target]);
      queue.push(e.target);
    }
  }
  return seen;
}

function entryLoadsDaemon(graph: Graph, entry = "src/index.ts"): string[] {
  const out: string[] = [];
  for (const [file, via] of reachable(graph, entry)) {
    if (under(file, "src/server")) out.push(`reaches ${file}: ${via.join(" → ")}`);
    for (const e of graph.get(file) ?? []) {
      const pkg = DAEMON_PACKAGES.find((p) => isPackage(e.specifier, p));
      if (pkg && !e.typeOnly) out.push(`loads ${e.specifier}: ${[...via, e.specifier].join(" → ")}`);
    }
  }
  return out;
}

/** Every rule, by name, with what breaks it. */
function rules(graph: Graph): Record<string, string[]> {
  const ours = (target: string) => under(target, "src");
  return {
    "src/google does not import src/oci": crossings(graph, "src/google", (x) => under(x, "src/oci")),
    "src/oci does not import src/google": crossings(graph, "src/oci", (x) => under(x, "src/google")),
    "src/token imports nothing of ours outside src/token": crossings(graph, "src/token", (x) => ours(x) && !under(x, "src/token")),
    "src/emulator imports neither src/oci nor src/google": crossings(
      graph,
      "src/emulator",
      (x) => under(x, "src/oci") || under(x, "src/google"),
    ),
    "the library entry (src/index.ts) loads neither src/server nor fastify, @fastify/rate-limit, prom-client": entryLoadsDaemon(graph),
  };
}

t.test("the parse sees every kind of import, and which ones are erased", async (t) => {
  const edges = importsOf(
    "src/google/x.ts",
    [
      'import a from "../oci/a.js";',
      'import type { B } from "../oci/b.js";',
      'import { type C } from "../oci/c.js";',
      'import { type D, d } from "../oci/d.js";',
      'export { e } from "./e.js";',
      'export type { F } from "./f.js";',
      'import "./g.js";',
      'const h = () => import("../server/h.js");',
      '// import("./not-an-import.js")',
      'const s = "import x from \\"./not-either.js\\"";',
      'import * as i from "fastify";',
    ].join("\n"),
  );
  t.same(
    edges.map((e) => [e.target ?? e.specifier, e.typeOnly, e.dynamic]),
    [
      ["src/oci/a.ts", false, false],
      ["src/oci/b.ts", true, false],
      ["src/oci/c.ts", true, false],
      ["src/oci/d.ts", false, false],
      ["src/google/e.ts", false, false],
      ["src/google/f.ts", true, false],
      ["src/google/g.ts", false, false],
      ["src/server/h.ts", false, true],
      ["fastify", false, false],
    ],
  );
});

t.test("each rule catches what breaks it", async (t) => {
  const graph: Graph = new Map();
  const put = (file: string, text: string) => graph.set(file, importsOf(file, text));
  put("src/index.ts", 'import { c } from "./chain.js";\nimport type { X } from "./server/types.js";');
  put("src/chain.ts", 'import { j } from "./google/sts.js";\nconst lazy = () => import("./daemon.js");');
  put("src/daemon.ts", 'import { app } from "./server/app.js";');
  put("src/server/app.ts", 'import fastify from "fastify";');
  put("src/server/types.ts", "export interface X {}");
  put("src/google/sts.ts", 'import { decode } from "../oci/jwt.js";\nimport type { R } from "prom-client";');
  put("src/oci/jwt.ts", 'import type { T } from "../google/types.js";\nimport { register } from "prom-client";');
  put("src/token/cache.ts", 'import { HopError } from "../upstream/hop-error.js";\nimport { LRUCache } from "lru-cache";');
  put("src/emulator/index.ts", 'import { sign } from "../oci/jwt.js";');
  t.same(rules(graph), {
    "src/google does not import src/oci": ["src/google/sts.ts imports src/oci/jwt.ts"],
    "src/oci does not import src/google": ["src/oci/jwt.ts imports src/google/types.ts"],
    "src/token imports nothing of ours outside src/token": ["src/token/cache.ts imports src/upstream/hop-error.ts"],
    "src/emulator imports neither src/oci nor src/google": ["src/emulator/index.ts imports src/oci/jwt.ts"],
    "the library entry (src/index.ts) loads neither src/server nor fastify, @fastify/rate-limit, prom-client": [
      "loads prom-client: src/index.ts → src/chain.ts → src/google/sts.ts → src/oci/jwt.ts → prom-client",
      "reaches src/server/app.ts: src/index.ts → src/chain.ts → src/daemon.ts → src/server/app.ts",
      "loads fastify: src/index.ts → src/chain.ts → src/daemon.ts → src/server/app.ts → fastify",
    ],
  });
});

t.test("src/ keeps its layers", async (t) => {
  const graph = readGraph();
  t.ok(reachable(graph, "src/index.ts").has("src/chain.ts"), "the graph is read: the library entry reaches the chain");
  t.ok(
    [...graph.keys()].some((f) => under(f, "src/google")) && [...graph.keys()].some((f) => under(f, "src/token")),
    "every layer is there",
  );
  for (const [rule, broken] of Object.entries(rules(graph))) t.same(broken, [], rule);
});

t.test('import("oci2gcp") in a fresh process loads none of the daemon\'s packages', async (t) => {
  const loaded = async (target: string) => {
    const { stdout } = await run(process.execPath, [path.join(root, "test/helpers/loaded-packages.mjs"), target], { cwd: root });
    return JSON.parse(stdout) as { modules: number; ours: number; packages: string[] };
  };
  t.ok(fs.existsSync(path.join(root, "dist/index.js")), "the package is built (npm test runs tsc first)");
  const lib = await loaded("./dist/index.js");
  // oci-common is not among them: the configured principal's module loads it at the first token.
  t.ok(lib.packages.includes("google-auth-library") && lib.packages.includes("pino"), "the chain's packages are seen");
  t.same(
    lib.packages.filter((p) => DAEMON_PACKAGES.includes(p)),
    [],
    `none of ${DAEMON_PACKAGES.join(", ")}`,
  );
  // The same measure sees them where they belong.
  const daemon = await loaded("oci2gcp/daemon");
  t.same(
    DAEMON_PACKAGES.filter((p) => !daemon.packages.includes(p)),
    [],
    "oci2gcp/daemon loads them",
  );
});
