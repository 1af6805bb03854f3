import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { writeAtomically } from "../src/sink/token-file.js";
import { claimsOf, startStack } from "./helpers/stack.js";

t.test("the token file follows renewals atomically, mode 0600", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sink-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "subject.jwt");
  const s = await startStack({
    overrides: {
      "tokenFile.path": file,
      "tokenFile.refreshSeconds": 1,
      "cache.subjectRenewBeforeSeconds": 3,
      "cache.subjectMinRemainingSeconds": 1,
    },
  });
  t.teardown(() => s.close());
  await fetch(`${s.emu.url}/_emulator/settings`, { method: "POST", body: JSON.stringify({ oci: { domainTokenSeconds: 6 } }) });
  // Wait for the first write.
  for (let i = 0; i < 50 && !fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 100));
  t.ok(fs.existsSync(file), "the file appears");
  t.equal(fs.statSync(file).mode & 0o777, 0o600, "mode 0600");

  // Read continuously while the token is renewed: every read is a whole, unexpired JWT.
  const seen = new Set<string>();
  let reads = 0;
  let bad = 0;
  const until = Date.now() + 9_000;
  while (Date.now() < until) {
    const v = fs.readFileSync(file, "utf8");
    reads++;
    try {
      const c = claimsOf(v);
      if (typeof c.exp !== "number" || c.exp * 1000 <= Date.now()) bad++;
      seen.add(v);
    } catch {
      bad++;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  t.ok(reads > 200, `read the file ${reads} times`);
  t.equal(bad, 0, "never a partial or expired token");
  t.ok(seen.size >= 2, `the file was renewed (${seen.size} tokens seen)`);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, "still 0600 after renewals");
  t.same(fs.readdirSync(dir), ["subject.jwt"], "no temporary files left");
  s.secrets.add(fs.readFileSync(file, "utf8"));
  t.same(s.leaks(), [], "the token never reaches the log");
});

t.test("writeAtomically replaces, never truncates in place", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sink-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "f");
  writeAtomically(file, "one");
  const ino1 = fs.statSync(file).ino;
  writeAtomically(file, "two");
  t.equal(fs.readFileSync(file, "utf8"), "two");
  t.not(fs.statSync(file).ino, ino1, "a new inode: readers holding the old file keep a whole token");
});
