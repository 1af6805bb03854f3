/**
 * What keeps the daemon's tokens for local workloads only: the request guards
 * (proxies, foreign Host names, browsers), the Unix socket and its mode, the
 * per-client upstream budget, the flood guard, and the bounds on what a request
 * may ask for. Every refusal happens before any upstream call.
 */

import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { calls, type Stack, startStack, tempDir } from "../helpers/stack.js";

const SA = "/computeMetadata/v1/instance/service-accounts/default";
const TOKEN = `${SA}/token`;

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A GET with exactly these headers (Host included), over TCP or a Unix socket. */
function raw(
  target: { port?: number; socketPath?: string; localAddress?: string },
  p: string,
  headers: Record<string, string>,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: target.port,
        socketPath: target.socketPath,
        localAddress: target.localAddress,
        path: p,
        method: "GET",
        headers,
        agent: false,
        setHost: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

let emu: Emulators;
let d: Stack;
let port: number;
let socketPath: string;
const dir = tempDir("oci2gcp-guards-");

t.before(async () => {
  emu = await startEmulators();
  socketPath = path.join(dir, "oci2gcp.sock");
  d = await startStack({
    emu,
    overrides: {
      "server.socketPath": socketPath,
      "server.socketMode": "0600",
      "server.upstreamBudgetPerMinute": 3,
      "server.maxCachedVariants": 4,
    },
    warm: true,
  });
  port = Number(new URL(d.url).port);
  // Warm: the default access token is cached.
  const r = await d.get(TOKEN);
  if (r.status !== 200) throw new Error(`warm-up: ${r.status} ${r.text}`);
});
t.teardown(async () => {
  await d?.close();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const flavor = { "metadata-flavor": "Google" };

t.test("proxied, foreign and browser requests are refused with 403 before any upstream call", async (t) => {
  const before = await calls(emu);
  // A path that would need an upstream call if it got through (a new scope set).
  const p = `${TOKEN}?scopes=https://www.googleapis.com/auth/guarded`;
  const host = `127.0.0.1:${port}`;
  const refused: [string, Record<string, string>][] = [
    ["X-Forwarded-For", { host, ...flavor, "x-forwarded-for": "10.1.2.3" }],
    ["X-Forwarded-For empty", { host, ...flavor, "x-forwarded-for": "" }],
    ["Forwarded", { host, ...flavor, forwarded: "for=10.1.2.3;proto=http" }],
    ["Host evil.example", { host: "evil.example", ...flavor }],
    ["Host evil.example:8181", { host: "evil.example:8181", ...flavor }],
    [`Host evil.example:${port}`, { host: `evil.example:${port}`, ...flavor }],
    ["Host 127.0.0.1.evil.example", { host: `127.0.0.1.evil.example:${port}`, ...flavor }],
    ["Host localhost.evil.example", { host: "localhost.evil.example", ...flavor }],
    ["Host metadata.google.internal.evil.example", { host: "metadata.google.internal.evil.example", ...flavor }],
    ["Host 10.0.0.1", { host: "10.0.0.1", ...flavor }],
    ["Origin", { host, ...flavor, origin: "https://evil.example" }],
    ["Origin null", { host, ...flavor, origin: "null" }],
    ["Sec-Fetch-Site cross-site", { host, ...flavor, "sec-fetch-site": "cross-site" }],
    ["Sec-Fetch-Site same-site", { host, ...flavor, "sec-fetch-site": "same-site" }],
    ["no Metadata-Flavor", { host }],
    ["Metadata-Flavor: google (wrong case of the value)", { host, "metadata-flavor": "google" }],
  ];
  for (const [what, headers] of refused) {
    const r = await raw({ port }, p, headers);
    t.equal(r.status, 403, `${what}: 403`);
    t.equal(r.headers["metadata-flavor"], "Google", `${what}: still a metadata-server answer`);
    t.notMatch(r.body, /ya29\.|eyJ/, `${what}: no token in the body`);
  }
  // HTTP/1.1 without Host is refused by Node's parser itself (400), before the guard.
  const noHost = await raw({ port }, p, { ...flavor });
  t.ok(noHost.status === 400 || noHost.status === 403, `no Host: ${noHost.status}`);
  t.notMatch(noHost.body, /ya29\.|eyJ/);
  // The ops and root paths are guarded against proxies, foreign hosts and browsers too.
  for (const q of ["/", "/healthz", "/computeMetadata/v1/"]) {
    t.equal((await raw({ port }, q, { host: "evil.example", ...flavor })).status, 403, `${q} with a foreign Host`);
    t.equal((await raw({ port }, q, { host, ...flavor, "x-forwarded-for": "1.2.3.4" })).status, 403, `${q} through a proxy`);
  }
  t.same(await calls(emu), before, "no upstream call for any refused request");
});

t.test("local names of the daemon pass", async (t) => {
  const allowed = [
    "localhost",
    `localhost:${port}`,
    "127.0.0.1",
    `127.0.0.1:${port}`,
    "metadata.google.internal",
    "metadata.google.internal:80",
    "169.254.169.254",
    "169.254.169.254:80",
    "LOCALHOST",
    `[::1]:${port}`,
  ];
  for (const host of allowed) {
    const r = await raw({ port }, TOKEN, { host, ...flavor });
    t.equal(r.status, 200, `Host ${host}`);
  }
  const r = await raw({ port }, TOKEN, { host: "localhost", ...flavor, "sec-fetch-site": "none" });
  t.equal(r.status, 200, "Sec-Fetch-Site: none (typed in by the user) passes");
  t.equal(
    (await raw({ port }, TOKEN, { host: "localhost", ...flavor, "sec-fetch-site": "same-origin" })).status,
    200,
    "Sec-Fetch-Site: same-origin passes",
  );
});

t.test("the Unix socket listener answers and has the configured mode", async (t) => {
  const st = fs.statSync(socketPath);
  t.ok(st.isSocket(), "a socket");
  t.equal(st.mode & 0o777, 0o600, "mode 0600 as configured");
  const r = await raw({ socketPath }, TOKEN, { host: "localhost", ...flavor });
  t.equal(r.status, 200);
  t.equal(r.headers["content-type"], "application/json");
  t.match(JSON.parse(r.body), { token_type: "Bearer" });
  t.equal(
    (await raw({ socketPath }, TOKEN, { host: "localhost", ...flavor, "x-forwarded-for": "1.2.3.4" })).status,
    403,
    "guarded like TCP",
  );
  t.equal((await raw({ socketPath }, TOKEN, { host: "evil.example", ...flavor })).status, 403);
  t.equal(
    (await raw({ socketPath }, "/oci2gcp/v1/subject-token", { host: "localhost", ...flavor })).status,
    200,
    "subject token over the socket",
  );
});

t.test("the upstream budget: new audiences beyond it get 429, cached answers are still served", async (t) => {
  const id = (aud: string) => `${SA}/identity?audience=${encodeURIComponent(aud)}`;
  const me = { port, localAddress: "127.0.0.1" };
  const other = { port, localAddress: "127.0.0.2" };
  const get = (who: typeof me, p: string) => raw(who, p, { host: "localhost", ...flavor });
  // server.upstreamBudgetPerMinute = 3: three new audiences start upstream calls...
  for (let i = 1; i <= 3; i++) t.equal((await get(me, id(`https://budget${i}.example.com`))).status, 200, `new audience ${i}`);
  const before = await calls(emu);
  // ...the fourth does not.
  const over = await get(me, id("https://budget4.example.com"));
  t.equal(over.status, 429, "beyond the budget: 429");
  t.ok(Number(over.headers["retry-after"]) >= 1, `Retry-After ${over.headers["retry-after"]}`);
  t.match(over.body, /too many requests that need new upstream calls/);
  t.equal((await calls(emu))["google.iam.generateIdToken"], before["google.iam.generateIdToken"], "no upstream call for it");
  // Cached answers, to this client and to others, are still served.
  t.equal((await get(me, id("https://budget1.example.com"))).status, 200, "a cached audience, same client");
  t.equal((await get(me, TOKEN)).status, 200, "the cached access token, same client");
  t.equal((await get(other, id("https://budget2.example.com"))).status, 200, "a cached audience, another client");
  // Any local process can bind any of 127.0.0.0/8: all loopback addresses are one client.
  const callsBefore = (await calls(emu))["google.iam.generateIdToken"];
  for (let i = 2; i <= 20; i++) {
    const r = await get({ port, localAddress: `127.0.0.${i}` }, id(`https://rotate${i}.example.com`));
    t.equal(r.status, 429, `a new audience from 127.0.0.${i}: over the same budget`);
  }
  t.equal((await calls(emu))["google.iam.generateIdToken"], callsBefore, "rotating source addresses starts no upstream call");
  const sock = (p: string) => raw({ socketPath }, p, { host: "localhost", ...flavor });
  t.equal((await sock(id("https://budget5.example.com"))).status, 200, "another client (the Unix socket) has its own budget");
  t.equal((await get(me, id("https://budget6.example.com"))).status, 429, "still over for the first client");
});

t.test("bounds on what a request may ask for", async (t) => {
  const host = "localhost";
  const tooMany = Array.from({ length: 33 }, (_, i) => `https://www.googleapis.com/auth/s${i}`).join(",");
  t.equal((await raw({ port }, `${TOKEN}?scopes=${tooMany}`, { host, ...flavor })).status, 400, "33 scopes: 400");
  t.equal((await raw({ port }, `${TOKEN}?scopes=${"s".repeat(257)}`, { host, ...flavor })).status, 400, "a 257-character scope: 400");
  t.equal(
    (await raw({ port }, `${SA}/identity?audience=https://${"a".repeat(2049)}`, { host, ...flavor })).status,
    400,
    "a 2049-character audience: 400",
  );
  t.equal((await raw({ port }, `${SA}/identity?audience=`, { host, ...flavor })).status, 400, "an empty audience: 400");
  const long = await raw({ port }, `${TOKEN}?x=${"a".repeat(9000)}`, { host, ...flavor });
  t.ok(long.status === 414 || long.status === 431, `a 9 KB URL: ${long.status}`);
  const huge = await raw({ port }, `${TOKEN}?x=${"a".repeat(70_000)}`, { host, ...flavor }).catch((e: Error) => ({
    status: -1,
    body: e.message,
    headers: {},
  }));
  t.ok(huge.status === 414 || huge.status === 431, `a 70 KB URL: ${huge.status}`);
  // Many distinct audiences: the cache of ID-token variants stays at server.maxCachedVariants.
  // (A daemon without an upstream budget: loopback clients share one, which would stop them first.)
  const v = await startStack({ emu, overrides: { "server.upstreamBudgetPerMinute": 0, "server.maxCachedVariants": 4 } });
  t.teardown(() => v.close());
  const vport = Number(new URL(v.url).port);
  for (let i = 0; i < 12; i++) {
    const r = await raw({ port: vport }, `${SA}/identity?audience=https://many${i}.example.com`, { host, ...flavor });
    t.equal(r.status, 200, `audience ${i}`);
  }
  const ids = v.daemon.chain.states().filter((s) => s.kind === "id-token");
  t.ok(ids.length <= 4, `${ids.length} ID-token variants cached (server.maxCachedVariants = 4)`);
  t.equal(ids.length, 4, "the most recent ones are kept");
});

t.test("the flood guard (@fastify/rate-limit): beyond server.maxRequestsPerMinute, 429", async (t) => {
  const sock = path.join(dir, "flood.sock");
  const f = await startStack({ emu, overrides: { "server.maxRequestsPerMinute": 5, "server.socketPath": sock } });
  t.teardown(() => f.close());
  const fport = Number(new URL(f.url).port);
  const get = (target: { port?: number; socketPath?: string; localAddress?: string }) =>
    raw(target, "/computeMetadata/v1/project/project-id", { host: "localhost", ...flavor });
  for (let i = 1; i <= 5; i++) t.equal((await get({ port: fport, localAddress: "127.0.0.1" })).status, 200, `request ${i}`);
  const flood = await get({ port: fport, localAddress: "127.0.0.1" });
  t.equal(flood.status, 429, "the sixth within the minute: 429");
  t.ok(Number(flood.headers["retry-after"]) >= 1, `Retry-After ${flood.headers["retry-after"]}`);
  t.equal((await get({ port: fport, localAddress: "127.0.0.2" })).status, 429, "another loopback address is the same client");
  t.equal((await get({ port: fport, localAddress: "127.0.0.3" })).status, 429, "and so is a third");
  // Clients of the Unix socket have no address: they share one allowance, apart from loopback's.
  for (let i = 1; i <= 5; i++) t.equal((await get({ socketPath: sock })).status, 200, `socket request ${i}`);
  t.equal((await get({ socketPath: sock })).status, 429, "the socket's sixth: 429");
  t.same(f.leaks(), []);
});

t.test("no secret in the trace-level log", async (t) => {
  t.same(d.leaks(), []);
});
