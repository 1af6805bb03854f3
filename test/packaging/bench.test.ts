import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { wrapMarkdown } from "../../bench/src/report.js";

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

t.test("the report's prose is wrapped at 100 columns; tables, headings and comments are not", async (t) => {
  const words = Array.from({ length: 40 }, (_, i) => `w${i}`);
  const item = `- ${words.join(" ")} ${"x".repeat(60)}`;
  const heading = `## ${"h ".repeat(60)}`;
  const row = `| ${"cell | ".repeat(30)}`;
  const comment = `<!-- ${"c ".repeat(60)}-->`;
  // Wrapped before "-", the second line would start a list.
  const dash = `${"a".repeat(99)} - b`;
  const out = wrapMarkdown([heading, item, row, comment, dash]);
  t.same(out.slice(0, 1), [heading]);
  const itemLines = out.slice(1, out.indexOf(row));
  t.ok(itemLines.length > 1 && itemLines.every((l) => l.length <= 100), "the list item is wrapped at 100 columns");
  t.ok(
    itemLines[0]!.startsWith("- ") && itemLines.slice(1).every((l) => /^ {2}\S/.test(l)),
    "its continuation lines are indented under it",
  );
  t.equal(itemLines.join(" ").replace(/\s+/g, " "), item, "no word lost or split");
  t.same(out.slice(out.indexOf(row), out.indexOf(row) + 2), [row, comment], "a table row and a comment stay whole");
  t.same(out.slice(-2), [`${"a".repeat(99)} -`, "b"], "no line starts with a list marker it did not have");
  t.same(wrapMarkdown(out), out, "wrapping twice changes nothing");
});

t.test("BENCHMARKS.md: no line over 160 characters, its prose as the bench wraps it", async (t) => {
  const lines = fs.readFileSync(path.join(root, "BENCHMARKS.md"), "utf8").replace(/\n$/, "").split("\n");
  t.same(
    lines.filter((l) => l.length > 160),
    [],
  );
  t.same(wrapMarkdown(lines), lines, "what the next run writes between the markers looks like what is there");
});
