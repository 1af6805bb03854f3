import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tsc = path.join(root, "node_modules/typescript/bin/tsc");
const readJson = (f: string) => JSON.parse(fs.readFileSync(path.join(root, f), "utf8"));

t.test("the package's build compiles src/ alone: no benchmark in dist/", async (t) => {
  t.notOk(fs.existsSync(path.join(root, "src/bench")), "no bench under src/");
  const { stdout } = await run(process.execPath, [tsc, "-p", "tsconfig.json", "--listFilesOnly"], { cwd: root, maxBuffer: 64 << 20 });
  const ours = stdout
    .split("\n")
    .map((f) => path.relative(root, f.trim()))
    .filter((f) => f && !f.startsWith("..") && !f.split(path.sep).includes("node_modules"));
  t.ok(ours.length > 0 && ours.every((f) => f.startsWith("src/")), "every input of the build is under src/");
  t.equal(readJson("tsconfig.json").compilerOptions.outDir, "dist");
});

t.test("the benchmark compiles on its own, into bench/dist, against the built package", async (t) => {
  const cfg = readJson("bench/tsconfig.json");
  t.equal(path.resolve(root, "bench", cfg.compilerOptions.outDir), path.join(root, "bench/dist"), "its own output folder");
  t.ok(fs.existsSync(path.join(root, "bench/src/run.ts")));
  t.match(readJson("package.json").scripts.bench, /tsc -p bench\/tsconfig\.json && node bench\/dist\/run\.js/, "npm run bench builds it");
  // Type errors come back on stdout; tsc exits non-zero with them.
  const r = await run(process.execPath, [tsc, "-p", "bench/tsconfig.json", "--noEmit"], { cwd: root }).then(
    () => "",
    (e: { stdout?: string; message: string }) => e.stdout || e.message,
  );
  t.equal(r, "", "no type error (npm test builds dist/ first)");
  const sources = fs.readdirSync(path.join(root, "bench/src")).filter((f) => f.endsWith(".ts"));
  for (const f of sources) {
    const text = fs.readFileSync(path.join(root, "bench/src", f), "utf8");
    for (const m of text.matchAll(/from "(\.\.\/[^"]+)"/g))
      t.match(m[1], /^\.\.\/\.\.\/dist\//, `${f}: ${m[1]} reaches the package only through its build`);
  }
});

t.test("the npm package holds no benchmark", async (t) => {
  const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root, maxBuffer: 64 << 20 });
  const files = (JSON.parse(stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  t.ok(files.includes("dist/index.js"), "the package is packed with its build");
  t.same(
    files.filter((f) => f.startsWith("bench/")),
    [],
    "nothing of bench/, sources or build",
  );
});
