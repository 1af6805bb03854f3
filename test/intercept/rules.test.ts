import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { BEGIN, END, HOSTS_LINE, hasBlock, installHosts, removeHosts, withBlock, withoutBlock } from "../../src/intercept/hosts.js";
import { iptablesChainRules, nftInstallScript } from "../../src/intercept/rules.js";
import { tempDir } from "../helpers/stack.js";

t.test("nft script: replaces our table in one transaction, daemon uid exempt first", async (t) => {
  const s = nftInstallScript({ port: 8181, daemonUid: 999, onlyUids: [], onlyGids: [] });
  const lines = s.split("\n").map((l) => l.trim());
  t.same(lines.slice(0, 2), ["table ip oci2gcp", "delete table ip oci2gcp"], "declared then deleted: valid whether or not it exists");
  const rules = lines.filter((l) => l.startsWith("ip daddr"));
  t.same(rules, ["ip daddr 169.254.169.254 tcp dport 80 meta skuid 999 return", "ip daddr 169.254.169.254 tcp dport 80 redirect to :8181"]);
  const only = nftInstallScript({ port: 1, daemonUid: 9, onlyUids: [1001, 1002], onlyGids: [50] });
  t.match(only, /meta skuid \{ 1001, 1002 \} redirect to :1/);
  t.match(only, /meta skgid \{ 50 \} redirect to :1/);
  t.notMatch(only, /dport 80 redirect/, "no catch-all rule when only some users are redirected");
});

t.test("iptables chain: RETURN for the daemon, then the redirects", async (t) => {
  t.same(iptablesChainRules({ port: 8181, daemonUid: 999, onlyUids: [], onlyGids: [] }), [
    ["-m", "owner", "--uid-owner", "999", "-j", "RETURN"],
    ["-p", "tcp", "-j", "REDIRECT", "--to-ports", "8181"],
  ]);
});

t.test("hosts block: added at the top, removed to the byte", async (t) => {
  for (const original of ["127.0.0.1 localhost\n", "127.0.0.1 localhost", "", "# x\n\n::1 ip6-localhost\n"]) {
    const w = withBlock(original);
    t.ok(w.startsWith(`${BEGIN}\n${HOSTS_LINE}\n${END}\n`));
    t.ok(hasBlock(w));
    t.equal(withBlock(w), w, "idempotent");
    t.equal(withoutBlock(w).text, original, `restored exactly: ${JSON.stringify(original)}`);
  }
  const edited = `a\n${withBlock("b\n")}`;
  t.equal(withoutBlock(edited).text, "a\nb\n", "found where an edit moved it");
  t.same(withoutBlock("no block\n"), { text: "no block\n", had: false });

  const dir = tempDir();
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = path.join(dir, "hosts");
  fs.writeFileSync(f, "127.0.0.1 localhost", { mode: 0o644 });
  t.equal(installHosts(f), true);
  t.equal(installHosts(f), false, "a second install writes nothing");
  t.equal(fs.statSync(f).mode & 0o777, 0o644, "mode kept");
  t.equal(removeHosts(f), true);
  t.equal(fs.readFileSync(f, "utf8"), "127.0.0.1 localhost");
  t.equal(removeHosts(f), false);
});
