import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";

const DIST = path.resolve("dist");

/**
 * V8's peak compiler memory (MiB) in a fresh process within 4 s of one fetch
 * over loopback, with `oci2gcp serve --help` run first or not: serve sets its
 * V8 flags before it reads its arguments.
 */
function peakAfterFetch(serveFirst: boolean): number {
  const script = `
    import http from "node:http";
    import v8 from "node:v8";
    if (${serveFirst}) {
      const { serve } = await import(${JSON.stringify(path.join(DIST, "cli/serve.js"))});
      const write = process.stdout.write;
      process.stdout.write = () => true;
      await serve(["--help"]);
      process.stdout.write = write;
    }
    const server = http.createServer((_req, res) => res.end("ok"));
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    await (await fetch("http://127.0.0.1:" + server.address().port + "/")).text();
    server.close();
    // The second compilation runs in the background: give it time (less when it shows).
    const peak = () => v8.getHeapStatistics().peak_malloced_memory / 1048576;
    for (let i = 0; i < 40 && peak() < 15; i++) await new Promise((r) => setTimeout(r, 100));
    process.stdout.write(String(peak()));
  `;
  return Number(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" }));
}

t.test("serve keeps V8 from compiling fetch's WebAssembly HTTP parser a second time", async (t) => {
  if (!fs.existsSync(path.join(DIST, "cli/serve.js"))) {
    t.fail("dist/cli/serve.js is missing: run `npx tsc -p .` first");
    return;
  }
  const plain = peakAfterFetch(false);
  const served = peakAfterFetch(true);
  // Node 20's V8 compiles the parser a second time; newer ones (Node 24) tier it up lazily and never
  // reach that peak here, so there the flag has nothing to save and must merely cost nothing.
  if (process.versions.node.startsWith("20.") || plain > 15) {
    t.ok(plain > 15, `without serve's flags a fetch peaks at ${plain.toFixed(1)} MiB of V8 compiler memory`);
    t.ok(served < 8, `after serve set its flags the same fetch peaks at ${served.toFixed(1)} MiB`);
  } else {
    t.comment(`node ${process.version} does not compile the parser a second time (${plain.toFixed(1)} MiB without the flags)`);
    t.ok(served <= plain + 1, `with serve's flags the fetch peaks at ${served.toFixed(1)} MiB, no more than without`);
  }
});
