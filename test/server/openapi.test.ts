import fs from "node:fs";
import t from "tap";
import { parse } from "yaml";
import { startStack } from "../helpers/stack.js";

t.test("openapi.yaml describes exactly the routes the daemon serves", async (t) => {
  const s = await startStack();
  t.teardown(() => s.close());
  const spec = parse(fs.readFileSync("openapi.yaml", "utf8")) as { paths: Record<string, Record<string, unknown>> };
  const served = s.daemon.app.servedRoutes.map((r) => `${r.method.toLowerCase()} ${r.url.replace(/:([A-Za-z]+)/g, "{$1}")}`);
  t.ok(served.length > 20, `the app reports its routes (${served.length})`);
  const documented = Object.entries(spec.paths).flatMap(([p, ops]) =>
    Object.keys(ops)
      .filter((k) => k !== "parameters")
      .map((m) => `${m} ${p}`),
  );
  for (const r of served) t.ok(documented.includes(r), `documented: ${r}`);
  for (const d of documented) t.ok(served.includes(d), `served: ${d}`);
  // Every documented status of a simple GET path is one the daemon can answer: spot-check that paths exist for real.
  for (const p of Object.keys(spec.paths).filter((p) => !p.includes("{"))) {
    const res = await s.get(p);
    t.not(res.status, 404, `${p} is not a 404`);
  }
});
