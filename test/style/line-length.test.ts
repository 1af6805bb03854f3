import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const MAX = 200;
const SOURCE = /\.(ts|js|mjs|cjs)$/;
const SKIP = new Set(["node_modules", "dist", ".tap", "coverage"]);

function* sourceFiles(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sourceFiles(p);
    else if (SOURCE.test(e.name)) yield p;
  }
}

t.test(`no line of code is longer than ${MAX} characters`, async (t) => {
  const long: string[] = [];
  let files = 0;
  for (const top of ["src", "test", "bench", "bin", "examples"]) {
    const dir = path.join(ROOT, top);
    if (!fs.existsSync(dir)) continue;
    for (const f of sourceFiles(dir)) {
      files++;
      fs.readFileSync(f, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (line.length > MAX) long.push(`${path.relative(ROOT, f)}:${i + 1} (${line.length})`);
        });
    }
  }
  t.ok(files > 100, `read ${files} source files`);
  t.same(long, [], "lines over the limit");
});
