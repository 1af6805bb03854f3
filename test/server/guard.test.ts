/**
 * The guard's decision on its own: the Host values it has decided before are
 * decided the same way again, however many values it has seen, and the origin
 * form (which it does not parse) is judged like any other target.
 */
import t from "tap";
import { normaliseListenHost } from "../../src/config/host.js";
import { hostOfAuthority, makeRefusal } from "../../src/server/guard.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const FLAVOR = { "metadata-flavor": "Google" };
const refused = (why: string | undefined, text: string) => why?.includes(text) === true;

t.test("a Host value decided before gets the same decision", async (t) => {
  const refusal = makeRefusal({ ownHosts: ["127.0.0.1"], allowedHosts: ["metadata.svc"] });
  for (let i = 0; i < 3; i++) {
    t.equal(refusal({ host: "127.0.0.1:8080", ...FLAVOR }, TOKEN), undefined, `own address, time ${i + 1}`);
    t.equal(refusal({ host: "Metadata.SVC", ...FLAVOR }, TOKEN), undefined, `allowed name in capitals, time ${i + 1}`);
    t.ok(refused(refusal({ host: "evil.example.com", ...FLAVOR }, TOKEN), "Host header"), `foreign name, time ${i + 1}`);
    t.ok(refused(refusal({ host: "127.0.0.1:99999", ...FLAVOR }, TOKEN), "Host header"), `port out of range, time ${i + 1}`);
    t.ok(refused(refusal({ ...FLAVOR }, TOKEN), "Host header"), `no Host, time ${i + 1}`);
  }
});

t.test("more distinct Host values than are kept: every decision stays right", async (t) => {
  const refusal = makeRefusal({ ownHosts: ["127.0.0.1"] });
  let wrong = 0;
  for (let i = 0; i < 500; i++) {
    if (refusal({ host: `evil${i}.example.com`, ...FLAVOR }, TOKEN) === undefined) wrong++;
    if (refusal({ host: `localhost:${1024 + i}`, ...FLAVOR }, TOKEN) !== undefined) wrong++;
  }
  t.equal(wrong, 0, "no foreign name let through, no own name refused");
  const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
  for (let i = 0; i < 2; i++) {
    t.ok(refused(refusal({ host: long, ...FLAVOR }, TOKEN), "Host header"), `a 253-character foreign name, time ${i + 1}`);
    t.ok(refused(refusal({ host: `${long}x`.repeat(40), ...FLAVOR }, TOKEN), "Host header"), `a 10 kB Host value, time ${i + 1}`);
  }
  t.ok(refused(refusal({ host: "evil0.example.com", ...FLAVOR }, TOKEN), "Host header"), "the first foreign name, decided again");
  t.equal(refusal({ host: "localhost:1024", ...FLAVOR }, TOKEN), undefined, "the first own name, decided again");
});

t.test("a name decided for the Host header is decided the same in an absolute target", async (t) => {
  const refusal = makeRefusal({ ownHosts: ["127.0.0.1"] });
  const host = { host: "localhost", ...FLAVOR };
  t.equal(refusal(host, `http://localhost${TOKEN}`), undefined, "own name in the target");
  t.ok(refused(refusal({ host: "evil.example.com", ...FLAVOR }, TOKEN), "Host header"), "a foreign Host, decided first");
  t.ok(refused(refusal(host, `http://evil.example.com${TOKEN}`), "request target names a host"), "the same name in the target");
});

t.test("the flavor is required by path, in origin and absolute form alike", async (t) => {
  const refusal = makeRefusal({ ownHosts: ["127.0.0.1"] });
  const host = { host: "localhost" };
  t.equal(refusal(host, "/healthz"), undefined, "a probe without the flavor");
  t.equal(refusal(host, "/metrics?name=x"), undefined, "a probe with a query, without the flavor");
  t.equal(refusal(host, "http://localhost/readyz?x"), undefined, "a probe in absolute form, without the flavor");
  t.equal(refusal(host, "http://localhost?x"), undefined, "the root in absolute form, without the flavor");
  t.ok(refused(refusal(host, TOKEN), "Metadata-Flavor"), "the token without the flavor");
  t.ok(refused(refusal(host, `${TOKEN}?/healthz`), "Metadata-Flavor"), "the token with a query naming a probe");
  t.ok(refused(refusal(host, `http://localhost${TOKEN}`), "Metadata-Flavor"), "the token in absolute form without the flavor");
  t.ok(refused(refusal({ ...host, ...FLAVOR }, "*"), "neither a path"), "an asterisk target");
  t.ok(refused(refusal({ ...host, ...FLAVOR }, "https://localhost/"), "neither a path"), "an https:// target");
});

t.test("host names: one rule for the config and the guard, but a trailing dot only in a listen address", async (t) => {
  const long = `${"a".repeat(63)}.`.repeat(4).slice(0, 253);
  for (const [name, ok] of [
    ["node-1.example.internal", true],
    ["node-1.example.internal.", false],
    [`${"a".repeat(64)}.example`, false],
    ["-x.example", false],
    [long.endsWith(".") ? long.slice(0, -1) : long, true],
    [`${long}x`, false],
  ] as const) {
    t.equal(
      hostOfAuthority(name) !== undefined,
      ok,
      `the guard ${ok ? "takes" : "refuses"} ${name.length > 40 ? `a ${name.length}-character name` : name}`,
    );
  }
  t.equal(normaliseListenHost("node-1.example.internal."), "node-1.example.internal.", "a listen address may end in a dot");
  t.equal(normaliseListenHost(`${"a".repeat(64)}.example`), undefined);
});
