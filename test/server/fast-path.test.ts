/**
 * The cached-token fast path answers before Fastify's routing: it must be
 * indistinguishable from the route it stands in for (bytes, guard, flood guard,
 * metrics, Unix socket), and hand everything else to Fastify.
 */

import http from "node:http";
import path from "node:path";
import t, { type Test } from "tap";
import { DEMO_SERVICE_ACCOUNT, type Emulators, startEmulators } from "../../src/emulator/index.js";
import { fastPathOf } from "../../src/server/app.js";
import { FEDERATED_ACCOUNT } from "../../src/server/metadata.js";
import { type Stack, startStack, tempDir } from "../helpers/stack.js";

const SA = "/computeMetadata/v1/instance/service-accounts";
const TOKEN = `${SA}/default/token`;
const FLAVOR = { host: "localhost", "metadata-flavor": "Google" };

/** A GET with exactly these headers; the answer's head as sent, header lines in order. */
function raw(
  target: { port?: number; socketPath?: string },
  p: string,
  headers: Record<string, string>,
): Promise<{ status: number; head: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", ...target, path: p, headers, agent: false, setHost: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const head: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) head.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
        resolve({ status: res.statusCode ?? 0, head, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Counts which path answered: wraps the daemon's fast path. */
function spy(d: Stack): { fast: number; fastify: number } {
  const fp = fastPathOf(d.daemon.app);
  const handle = fp.handle.bind(fp);
  const n = { fast: 0, fastify: 0 };
  fp.handle = (req, res) => {
    const answered = handle(req, res);
    if (answered) n.fast++;
    else n.fastify++;
    return answered;
  };
  return n;
}

let emu: Emulators;
const dir = tempDir("oci2gcp-fast-");
t.before(async () => {
  emu = await startEmulators();
});
t.teardown(() => emu?.close());

const sameBytes = (serviceAccounts: string[], names: string[]) => async (t: Test) => {
  const d = await startStack({ emu, logLevel: "info", serviceAccounts });
  t.teardown(() => d.close());
  const port = Number(new URL(d.url).port);
  const n = spy(d);
  for (const account of names) {
    const url = `${SA}/${account}/token`;
    // The first request has no token to answer with: Fastify obtains it.
    const cold = await raw({ port }, url, FLAVOR);
    t.equal(cold.status, 200, `${account}: first request answered`);
    const before = { ...n };
    const fast = await raw({ port }, url, FLAVOR);
    t.equal(n.fast - before.fast, 1, `${account}: the cached token came from the fast path`);
    // A trailing "?" is the same request to Fastify, and not one the fast path takes.
    const slow = await raw({ port }, `${url}?`, FLAVOR);
    t.equal(n.fast - before.fast, 1, `${account}: "${url}?" went to Fastify`);
    t.equal(fast.status, slow.status);
    const norm = (h: string[]) => h.filter((l) => !l.startsWith("Date: "));
    t.same(norm(fast.head), norm(slow.head), `${account}: the same header lines in the same order`);
    t.ok(
      fast.head.some((l) => l.startsWith("Date: ")),
      "a Date header",
    );
    const a = JSON.parse(fast.body) as Record<string, unknown>;
    const b = JSON.parse(slow.body) as Record<string, unknown>;
    t.same(Object.keys(a), ["access_token", "expires_in", "token_type"], "the metadata server's key order");
    t.equal(a.access_token, b.access_token, "the same token");
    t.ok(Math.abs(Number(a.expires_in) - Number(b.expires_in)) <= 1, "the same expires_in");
    t.equal(fast.body.replace(/"expires_in":\d+/, ""), slow.body.replace(/"expires_in":\d+/, ""), "the same body, expires_in aside");
    d.secrets.add(String(a.access_token));
  }
  t.same(d.leaks(), []);
};
t.test("the same bytes as the Fastify route: impersonated accounts", sameBytes([DEMO_SERVICE_ACCOUNT], ["default", DEMO_SERVICE_ACCOUNT]));
t.test("the same bytes as the Fastify route: the federated identity", sameBytes([], ["default", FEDERATED_ACCOUNT]));

t.test("what the fast path does not take goes to Fastify, refusals included", async (t) => {
  const d = await startStack({ emu, logLevel: "info", warm: true });
  t.teardown(() => d.close());
  const port = Number(new URL(d.url).port);
  t.equal((await raw({ port }, TOKEN, FLAVOR)).status, 200);
  const n = spy(d);
  const cases: [string, string, Record<string, string>, number][] = [
    ["no Metadata-Flavor", TOKEN, { host: "localhost" }, 403],
    ["X-Forwarded-For", TOKEN, { ...FLAVOR, "x-forwarded-for": "10.0.0.1" }, 403],
    ["a foreign Host", TOKEN, { host: "evil.example.com", "metadata-flavor": "Google" }, 403],
    ["an Origin", TOKEN, { ...FLAVOR, origin: "https://evil.example.com" }, 403],
    ["Sec-Fetch-Site cross-site", TOKEN, { ...FLAVOR, "sec-fetch-site": "cross-site" }, 403],
    ["an unknown account", `${SA}/nobody@example.com/token`, FLAVOR, 404],
    ["other scopes", `${TOKEN}?scopes=https://www.googleapis.com/auth/devstorage.read_only`, FLAVOR, 200],
    ["a percent-encoded account", `${SA}/${DEMO_SERVICE_ACCOUNT.replace("@", "%40")}/token`, FLAVOR, 200],
  ];
  for (const [what, url, headers, status] of cases) {
    const before = n.fast;
    const r = await raw({ port }, url, headers);
    t.equal(r.status, status, `${what}: ${status}`);
    t.equal(n.fast, before, `${what}: answered by Fastify`);
    t.ok(r.head.includes("Metadata-Flavor: Google") || r.head.includes("metadata-flavor: Google"), `${what}: with Metadata-Flavor`);
  }
  const head = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: TOKEN, method: "HEAD", headers: FLAVOR, agent: false, setHost: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.end();
  });
  t.equal(head, 200, "HEAD: answered by Fastify");
  t.equal(n.fast, 0, "none of these took the fast path");
  t.equal(n.fastify, cases.length + 1);
});

t.test("one flood-guard count and one metric per request, whichever path answers", async (t) => {
  const sock = path.join(dir, "flood.sock");
  const d = await startStack({
    emu,
    logLevel: "info",
    warm: true,
    overrides: { "server.maxRequestsPerMinute": 6, "server.socketPath": sock },
  });
  t.teardown(() => d.close());
  const port = Number(new URL(d.url).port);
  // One request was spent making sure the token is cached.
  t.equal((await raw({ port }, TOKEN, FLAVOR)).status, 200);
  const n = spy(d);
  for (let i = 0; i < 3; i++) t.equal((await raw({ port }, TOKEN, FLAVOR)).status, 200, `token ${i + 2}`);
  t.equal(n.fast, 3, "three from the fast path");
  t.equal((await raw({ port }, `${SA}/default/email`, FLAVOR)).status, 200, "a Fastify route: the fifth request");
  t.equal((await raw({ port }, `${TOKEN}?`, FLAVOR)).status, 200, "the token through Fastify: the sixth");
  const over = await raw({ port }, TOKEN, FLAVOR);
  t.equal(over.status, 429, "the seventh within the minute, on the fast path's URL: 429");
  t.ok(
    over.head.some((l) => /^retry-after: [1-9]/i.test(l)),
    "with Retry-After",
  );
  t.equal((await raw({ port }, `${SA}/default/email`, FLAVOR)).status, 429, "and on Fastify's routes");
  t.equal(n.fast, 3, "refused requests are answered by Fastify");

  // The Unix socket's clients share one key, on the fast path too.
  t.equal((await raw({ socketPath: sock }, TOKEN, FLAVOR)).status, 200, "socket: a first token");
  t.equal(n.fast, 4, "the socket's request took the fast path");

  const metrics = await (await fetch(`${d.url}/metrics`)).text();
  const route = 'route="/computeMetadata/v1/instance/service-accounts/:account/token"';
  const count = (status: string) =>
    Number(new RegExp(`^oci2gcp_http_requests_total\\{${route},method="GET",status="${status}"\\} (\\d+)$`, "m").exec(metrics)?.[1] ?? 0);
  t.equal(count("200"), 6, "200s counted: one warm-up, three fast, one through Fastify, one on the socket");
  t.equal(count("429"), 1, "the refused token request counted once");
  t.match(metrics, new RegExp(`^oci2gcp_http_request_duration_seconds_count\\{${route}\\} 7$`, "m"), "and timed");
});

t.test("off at debug level (Fastify logs each request) and once shutting down", async (t) => {
  const d = await startStack({ emu, logLevel: "debug", warm: true });
  t.teardown(() => d.close());
  const port = Number(new URL(d.url).port);
  const n = spy(d);
  t.equal((await raw({ port }, TOKEN, FLAVOR)).status, 200);
  t.equal((await raw({ port }, TOKEN, FLAVOR)).status, 200);
  t.equal(n.fast, 0, "no fast answers at debug level");
  t.equal(
    d.logs().filter((l) => l.msg === "request" && l.route === "/computeMetadata/v1/instance/service-accounts/:account/token").length,
    2,
    "each request logged",
  );

  const i = await startStack({ emu, logLevel: "info", warm: true });
  const iport = Number(new URL(i.url).port);
  t.equal((await raw({ port: iport }, TOKEN, FLAVOR)).status, 200);
  const m = spy(i);
  t.equal((await raw({ port: iport }, TOKEN, FLAVOR)).status, 200);
  t.equal(m.fast, 1, "at info level the cached token comes from the fast path");
  fastPathOf(i.daemon.app).disable();
  t.equal((await raw({ port: iport }, TOKEN, FLAVOR)).status, 200);
  t.equal(m.fast, 1, "disabled: Fastify answers");
  await i.close();
});
