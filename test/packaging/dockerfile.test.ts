import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import t from "tap";
import { startStack } from "../helpers/stack.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Docker's syntax, as far as this Dockerfile uses it: comments, line continuations, ARG before FROM, stages. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const logical: Instruction[] = [];
  let buf = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!buf && (line === "" || line.startsWith("#"))) return;
    if (buf && line.startsWith("#")) return; // comments inside a continuation are dropped
    if (!buf) start = i + 1;
    if (line.endsWith("\\")) {
      buf += `${line.slice(0, -1)} `;
      return;
    }
    buf += line;
    const m = /^(\w+)\s+([\s\S]*)$/.exec(buf)!;
    logical.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
    buf = "";
  });
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of logical) {
    if (ins.op === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)!;
      const from = m[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? "");
      stages.push({ from, name: m[2], instructions: [] });
    } else if (!stages.length && ins.op === "ARG") {
      const [k, v = ""] = ins.args.split("=");
      args[k!] = v;
    } else if (stages.length) {
      stages[stages.length - 1]!.instructions.push(ins);
    }
  }
  return { args, stages };
}

const dockerfile = fs.readFileSync(path.join(root, "Dockerfile"), "utf8");
const { stages } = parseDockerfile(dockerfile);
const build = stages[0]!;
const runtime = stages[stages.length - 1]!;
const all = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op);
const last = (s: Stage, op: string) => all(s, op).at(-1);

t.test("two stages, both on Node 24", async (t) => {
  t.ok(stages.length >= 2, "multi-stage");
  t.equal(build.name, "build");
  for (const s of stages) t.match(s.from, /^node:24(-|$)/, `stage ${s.name}: a Node 24 image (${s.from})`);
  t.ok(
    all(runtime, "COPY").length > 0 && all(runtime, "COPY").every((c) => c.args.startsWith("--from=build ")),
    "the runtime stage copies only what the build stage made",
  );
});

t.test("the build stage installs, compiles and prunes", async (t) => {
  const runs = all(build, "RUN").map((r) => r.args);
  const at = (re: RegExp) => runs.findIndex((r) => re.test(r));
  t.ok(at(/\bnpm ci\b/) >= 0, "npm ci");
  t.ok(at(/\bnpm run build\b/) > at(/\bnpm ci\b/), "npm run build after it");
  t.ok(at(/\bnpm prune --omit=dev\b/) >= at(/\bnpm run build\b/), "then npm prune --omit=dev");
  const copies = all(build, "COPY").map((c) => c.args);
  t.ok(
    copies.findIndex((c) => /package-lock\.json/.test(c)) < copies.findIndex((c) => /\bsrc\b/.test(c)),
    "dependencies are installed before the sources are copied (layer reuse)",
  );
  if (runs.some((r) => /npm ci\b.*--ignore-scripts/.test(r))) {
    // Safe only while no dependency needs its install script.
    const lock = fs.readFileSync(path.join(root, "package-lock.json"), "utf8");
    t.notMatch(lock, /"hasInstallScript":\s*true/, "no dependency has an install script that --ignore-scripts would skip");
  }
});

t.test("the runtime stage: non-root, port, health check, entry point, loopback default", async (t) => {
  const user = last(runtime, "USER")?.args;
  t.ok(user, "USER is set");
  const [u, g] = user!.split(":");
  t.match(u, /^\d+$/, "numeric uid, checkable by Kubernetes runAsNonRoot");
  t.not(Number(u), 0, "not root");
  t.not(u, "root");
  if (g !== undefined) t.not(Number(g), 0, "not the root group");
  t.equal(last(runtime, "EXPOSE")?.args, "8181");
  t.same(JSON.parse(last(runtime, "ENTRYPOINT")!.args), ["node", "/app/bin/oci2gcp.js"]);
  t.same(JSON.parse(last(runtime, "CMD")!.args), ["serve"]);
  const env = all(runtime, "ENV")
    .map((e) => e.args)
    .join(" ");
  t.match(env, /\bOCI2GCP_HOST=127\.0\.0\.1\b/, "listens on loopback unless told otherwise");
  const hc = last(runtime, "HEALTHCHECK")!;
  t.ok(hc, "HEALTHCHECK present");
  const cmd = JSON.parse(hc.args.slice(hc.args.indexOf("CMD") + 3).trim()) as string[];
  t.equal(cmd[0], "node", "the health check uses node (no curl in slim images)");
  t.match(cmd[2], /\/healthz/);
  // What the runtime stage copies exists in the build stage's /app: package.json (ESM), dist, bin, node_modules.
  const copied = all(runtime, "COPY").map((c) => c.args.split(/\s+/)[1]);
  t.same(copied.sort(), ["/app/bin", "/app/dist", "/app/node_modules", "/app/package.json"]);
  t.ok(fs.existsSync(path.join(root, "bin/oci2gcp.js")), "the entry point is in the repository");
});

t.test("the health check command answers 0 for a live daemon and 1 otherwise", async (t) => {
  const hc = last(runtime, "HEALTHCHECK")!;
  const cmd = JSON.parse(hc.args.slice(hc.args.indexOf("CMD") + 3).trim()) as string[];
  const s = await startStack();
  t.teardown(() => s.close());
  const port = new URL(s.url).port;
  const exec = (env: Record<string, string>) =>
    run(process.execPath, cmd.slice(1), { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 15_000 }).then(
      () => 0,
      (e: { code?: number }) => e.code ?? -1,
    );
  t.equal(await exec({ OCI2GCP_HOST: "127.0.0.1", OCI2GCP_PORT: port }), 0, "healthy");
  t.equal(await exec({ OCI2GCP_HOST: "0.0.0.0", OCI2GCP_PORT: port }), 0, "a wildcard listen address is asked on 127.0.0.1");
  await s.close();
  t.equal(await exec({ OCI2GCP_HOST: "127.0.0.1", OCI2GCP_PORT: port }), 1, "unhealthy once the daemon is gone");
});

t.test(".dockerignore lets in exactly what the Dockerfile copies from the context", async (t) => {
  const rules = fs
    .readFileSync(path.join(root, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  t.equal(rules[0], "*", "everything is excluded first");
  const allowed = new Set(rules.filter((r) => r.startsWith("!")).map((r) => r.slice(1).replace(/\/$/, "")));
  const fromContext = stages
    .flatMap((s) => all(s, "COPY"))
    .filter((c) => !c.args.startsWith("--from="))
    .flatMap((c) =>
      c.args
        .split(/\s+/)
        .filter((a) => !a.startsWith("--"))
        .slice(0, -1),
    );
  t.ok(fromContext.length > 0);
  for (const src of fromContext) {
    t.ok(allowed.has(src.replace(/\/$/, "")), `${src} is in the build context`);
    t.ok(fs.existsSync(path.join(root, src)), `${src} exists`);
  }
  for (const secretish of [".git", "node_modules", "dist", ".tap", "config", "test"])
    t.notOk(allowed.has(secretish), `${secretish} stays out of the context`);
  t.notOk(allowed.has("bench"), "the benchmark stays out of the context, so out of the image");
  t.notOk(fs.existsSync(path.join(root, "src/bench")), "and out of src/, which the image builds");
});
