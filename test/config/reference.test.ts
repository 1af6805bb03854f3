import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";
import { loadConfig } from "../../src/config/config.js";
import { configReference, REFERENCE_END, REFERENCE_START, referenceBlock, replaceReferenceBlock } from "../../src/config/reference.js";
import { SETTINGS } from "../../src/config/settings.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const readme = () => fs.readFileSync(path.join(root, "README.md"), "utf8");

t.test("the README's configuration reference is the one SETTINGS renders (run `npm run docs` after changing a setting)", async (t) => {
  const text = readme();
  t.equal(text.split(REFERENCE_START).length, 2, "one start marker");
  t.equal(text.split(REFERENCE_END).length, 2, "one end marker");
  t.ok(text.indexOf("## Configuration reference") < text.indexOf(REFERENCE_START), "the block sits under its heading");
  t.equal(referenceBlock(text), configReference());
});

t.test("every setting has a row with its path, variables, flag and default", async (t) => {
  const rows = configReference().trimEnd().split("\n");
  t.equal(rows.length, SETTINGS.length + 2, "a header, a rule and one row per setting");
  const cells = (row: string) => row.slice(2, -2).split(/ (?<!\\)\| /);
  t.same(cells(rows[0]!), ["setting", "environment", "flag", "type", "default", "description"]);
  for (const [i, s] of SETTINGS.entries()) {
    const c = cells(rows[i + 2]!);
    t.equal(c.length, 6, `${s.path}: six cells`);
    t.equal(c[0], `\`${s.path}\``, `${s.path}: path`);
    t.same(
      c[1] ? c[1].split(", ") : [],
      s.env.map((e) => `\`${e}\``),
      `${s.path}: environment variables`,
    );
    t.equal(c[2], s.flag ? `\`${s.flag}\`` : "", `${s.path}: flag`);
    if (s.default !== undefined && !Array.isArray(s.default)) t.equal(c[4], `\`${s.default}\``, `${s.path}: default`);
    if (Array.isArray(s.default) && s.default.length) t.match(c[4], s.default[0]!, `${s.path}: list default`);
    t.ok(c[5]!.startsWith(s.doc.replace(/\|/g, "\\|")), `${s.path}: description`);
    for (const v of s.values ?? []) t.match(c[5], `\`${v}\``, `${s.path}: allowed value ${v}`);
  }
});

t.test("table cells survive a | in a description", async (t) => {
  const table = configReference();
  for (const line of table.trimEnd().split("\n")) {
    t.equal(line.split(/(?<!\\)\|/).length - 2, 6, "six cells in every line");
  }
});

t.test("replaceReferenceBlock rewrites only the block, and needs the markers", async (t) => {
  const doc = `# x\n\nbefore\n${REFERENCE_START}\nstale | table\n${REFERENCE_END}\nafter\n`;
  const out = replaceReferenceBlock(doc, "| new |\n");
  t.equal(out, `# x\n\nbefore\n${REFERENCE_START}\n| new |\n${REFERENCE_END}\nafter\n`);
  t.equal(referenceBlock(out), "| new |\n");
  t.equal(replaceReferenceBlock(out, "| new |\n"), out, "idempotent");
  t.throws(() => replaceReferenceBlock("# no markers\n"), /config-reference/);
});

t.test("config/oci2gcp.example.json is a valid config: every key a setting, loadConfig accepts it", async (t) => {
  const file = path.join(root, "config/oci2gcp.example.json");
  const c = loadConfig({ file, env: {} });
  t.equal(c.oci.principal, "instance");
  t.equal(c.server.host, "127.0.0.1", "loopback");
  t.equal(c.server.port, 8181);
  t.equal(c.server.socketPath, "/run/oci2gcp/oci2gcp.sock", "the socket in the systemd unit's RuntimeDirectory");
  t.match(c.identityDomain.url, /^https:\/\/idcs-[0-9a-f]+\.identity\.oraclecloud\.com$/);
  t.equal(c.google.projectNumber, "123456789012", "the project number comes from the audience");
  t.same(c.google.serviceAccounts, ["workload@my-project.iam.gserviceaccount.com"]);
  // Every leaf of the file is a setting (loadConfig refuses unknown ones; this says which).
  const known = new Set(SETTINGS.map((s) => s.path));
  const leaves = (o: Record<string, unknown>, p = ""): string[] =>
    Object.entries(o).flatMap(([k, v]) =>
      v && typeof v === "object" && !Array.isArray(v) ? leaves(v as Record<string, unknown>, `${p}${k}.`) : [`${p}${k}`],
    );
  for (const leaf of leaves(JSON.parse(fs.readFileSync(file, "utf8")))) t.ok(known.has(leaf), `${leaf} is a setting`);
});

t.test("`npm run docs` regenerates the README block", async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> };
  t.match(pkg.scripts.docs, /config-reference --update README\.md$/, "the docs script rewrites README.md");
  // What the script runs, on a copy of the README whose block is stale.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-docs-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const copy = path.join(dir, "README.md");
  fs.writeFileSync(copy, replaceReferenceBlock(readme(), "| stale |\n"));
  const bin = path.join(root, "bin/oci2gcp.js");
  const out = execFileSync(process.execPath, [bin, "config-reference", "--update", copy], { encoding: "utf8" });
  t.match(out, /updated/);
  t.equal(fs.readFileSync(copy, "utf8"), replaceReferenceBlock(readme()), "the block is regenerated, the rest untouched");
  t.match(execFileSync(process.execPath, [bin, "config-reference", "--update", copy], { encoding: "utf8" }), /already up to date/);
  // Without --update it prints the table.
  t.equal(execFileSync(process.execPath, [bin, "config-reference"], { encoding: "utf8" }), configReference());
});
