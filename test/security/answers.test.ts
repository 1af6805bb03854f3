/**
 * Every answer the daemon gives goes through the guard's decision and is in
 * the metadata server's form, the framework's and Node's own error answers
 * included: Host and absolute-form targets are parsed strictly, refused
 * requests are refused before anything else looks at them, and no answer
 * repeats anything of the request.
 */

import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import t, { type Test } from "tap";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { calls, type Stack, startStack, tempDir } from "../helpers/stack.js";

const SA = "/computeMetadata/v1/instance/service-accounts";
const TOKEN = `${SA}/default/token`;
/** Put into requests, looked for in answers. */
const MARK = "zzmarkzz";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Sends these bytes as they are and reads the one answer (the connection is closed after it). */
function send(target: { port?: number; socketPath?: string }, raw: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const sock = target.socketPath ? net.connect(target.socketPath) : net.connect({ host: "127.0.0.1", port: target.port! });
    const chunks: Buffer[] = [];
    sock.on("data", (c: Buffer) => chunks.push(c));
    sock.on("error", reject);
    sock.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const [head = "", ...rest] = text.split("\r\n\r\n");
      const [statusLine = "", ...lines] = head.split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(":");
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body: rest.join("\r\n\r\n") });
    });
    sock.end(raw);
  });
}

const get = (target: string, headers: string[]) =>
  `GET ${target} HTTP/1.1\r\n${headers.map((h) => `${h}\r\n`).join("")}Connection: close\r\n\r\n`;

/** The headers every answer carries, as the real metadata server sends them, and nosniff. */
function inMetadataForm(t: Test, a: Answer, what: string): void {
  t.equal(a.headers["metadata-flavor"], "Google", `${what}: Metadata-Flavor`);
  t.equal(a.headers["x-content-type-options"], "nosniff", `${what}: nosniff`);
  t.equal(a.headers.server, "Metadata Server for VM", `${what}: Server`);
  t.equal(a.headers["x-frame-options"], "SAMEORIGIN", `${what}: X-Frame-Options`);
  t.equal(a.headers["x-xss-protection"], "0", `${what}: X-XSS-Protection`);
  t.notMatch(a.body, MARK, `${what}: nothing of the request in the body`);
  t.notMatch(JSON.stringify(a.headers), MARK, `${what}: nor in the headers`);
  t.notMatch(a.body, /ya29\.|eyJ/, `${what}: no token`);
}

let emu: Emulators;
let d: Stack;
let port: number;
let socketPath: string;
const dir = tempDir("oci2gcp-answers-");

t.before(async () => {
  emu = await startEmulators();
  socketPath = path.join(dir, "oci2gcp.sock");
  d = await startStack({ emu, overrides: { "server.socketPath": socketPath, "server.allowedHosts": ["oci2gcp.Default.svc", "10.9.8.7"] } });
  port = Number(new URL(d.url).port);
  const r = await d.get(TOKEN);
  if (r.status !== 200) throw new Error(`warm-up: ${r.status} ${r.text}`);
});
t.teardown(async () => {
  await d?.close();
  await emu?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test("Host is a name or an address and an optional numeric port, nothing else", async (t) => {
  const before = await calls(emu);
  const hosts = [
    `localhost:${port} evil`,
    "localhost evil.example",
    "localhost:abc",
    "localhost:",
    "localhost:99999",
    "localhost:-1",
    `user@localhost:${port}`,
    `localhost@evil.example`,
    "localhost,evil.example",
    "localhost/x",
    "[::1",
    "[evil.example]",
    "",
    `${MARK}.example`,
  ];
  for (const host of hosts) {
    for (const target of [TOKEN, `${TOKEN}?scopes=https://www.googleapis.com/auth/strict`, "/"]) {
      const a = await send({ port }, get(target, [`Host: ${host}`, "Metadata-Flavor: Google"]));
      t.equal(a.status, 403, `Host ${JSON.stringify(host)}, ${target}: 403`);
      inMetadataForm(t, a, `Host ${JSON.stringify(host)}`);
    }
  }
  for (const host of ["localhost", `localhost:${port}`, "LocalHost:80", "metadata.google.internal", "[::1]:8181", "127.0.0.1"]) {
    t.equal((await send({ port }, get(TOKEN, [`Host: ${host}`, "Metadata-Flavor: Google"]))).status, 200, `Host ${host}: 200`);
  }
  t.same(await calls(emu), before, "no upstream call");
});

t.test("server.allowedHosts: more names, checked as strictly as the built-in ones", async (t) => {
  for (const host of ["oci2gcp.default.svc", `OCI2GCP.default.svc:${port}`, "10.9.8.7", "10.9.8.7:80"]) {
    t.equal((await send({ port }, get(TOKEN, [`Host: ${host}`, "Metadata-Flavor: Google"]))).status, 200, `Host ${host}: 200`);
  }
  for (const host of [
    "oci2gcp.default.svc.evil.example",
    "evil.oci2gcp.default.svc",
    "oci2gcp.default.svc:abc",
    "oci2gcp.default.svc evil",
  ]) {
    t.equal((await send({ port }, get(TOKEN, [`Host: ${host}`, "Metadata-Flavor: Google"]))).status, 403, `Host ${host}: 403`);
  }
  const a = await send({ port }, get(`http://oci2gcp.default.svc${TOKEN}`, ["Host: oci2gcp.default.svc", "Metadata-Flavor: Google"]));
  t.equal(a.status, 200, "and in an absolute-form target");
  const problem = (hosts: unknown) => {
    try {
      loadConfig({
        env: {},
        overrides: {
          "identityDomain.url": "https://idcs-0123456789abcdef.identity.oraclecloud.com",
          "google.audience":
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider",
          "server.allowedHosts": hosts,
        },
      });
    } catch (e) {
      if (e instanceof ConfigError) return e.message;
      throw e;
    }
    return "(no error)";
  };
  t.match(problem(["oci2gcp.default.svc:8181"]), /server\.allowedHosts: "oci2gcp\.default\.svc:8181" is not a host name or an IP address/);
  t.match(problem(["http://x"]), /server\.allowedHosts: "http:\/\/x"/);
  t.match(problem(["a b"]), /server\.allowedHosts: "a b"/);
  t.equal(problem(["oci2gcp.default.svc", "::1", "[fd00::1]"]), "(no error)", "names and addresses, IPv6 with or without brackets");
});

t.test("an absolute-form target: its authority is checked like Host, its path is what the guard decides on", async (t) => {
  const before = await calls(emu);
  const local = ["Host: localhost", "Metadata-Flavor: Google"];
  for (const target of [
    `http://evil.example${TOKEN}`,
    `http://evil.example:${port}${TOKEN}`,
    `http://localhost:abc${TOKEN}`,
    `http://user@localhost${TOKEN}`,
    `https://localhost${TOKEN}`,
    `http://${MARK}/`,
    `ftp://localhost${TOKEN}`,
    "*",
  ]) {
    const a = await send({ port }, get(target, local));
    t.equal(a.status, 403, `${target}: 403`);
    inMetadataForm(t, a, target);
  }
  const root = await send({ port }, get("/", ["Host: localhost"]));
  const proxied = await send({ port }, get("http://169.254.169.254/", ["Host: localhost"]));
  t.equal(root.status, 200, "GET /: 200 without Metadata-Flavor");
  t.same([proxied.status, proxied.body], [root.status, root.body], "GET http://169.254.169.254/: the same answer");
  for (const p of ["/healthz", "/computeMetadata/v1/project/project-id"]) {
    const plain = await send({ port }, get(p, ["Host: localhost"]));
    const abs = await send({ port }, get(`http://metadata.google.internal${p}`, ["Host: localhost"]));
    t.same([abs.status, abs.body], [plain.status, plain.body], `${p}: the same answer in absolute form`);
  }
  const tok = await send({ port }, get(`http://metadata.google.internal${TOKEN}`, local));
  t.equal(tok.status, 200, "a token by an absolute-form target naming the metadata server");
  t.same(await calls(emu), before, "no upstream call");
});

t.test("framework and parser errors: after the guard, in the metadata server's form, nothing reflected", async (t) => {
  const local = ["Host: localhost", "Metadata-Flavor: Google"];
  const foreign = [`Host: ${MARK}.example`, "Metadata-Flavor: Google"];
  const badUrls = [
    [`${SA}/%E0${MARK}/email`, "bad percent-encoding"],
    [`${SA}/${MARK}${"a".repeat(400)}/email`, "a path parameter over maxParamLength"],
    [`/x?${MARK}${"a".repeat(9000)}`, "a URL over 8 KB"],
  ];
  for (const [target, what] of badUrls) {
    const refused = await send({ port }, get(target!, foreign));
    t.equal(refused.status, 403, `${what}, foreign Host: the guard refuses it`);
    inMetadataForm(t, refused, `${what}, refused`);
    const bare = await send({ port }, get(target!, ["Host: localhost"]));
    t.equal(bare.status === 403 || bare.status === 404 || bare.status === 414, true, `${what}, no Metadata-Flavor: ${bare.status}`);
    const a = await send({ port }, get(target!, local));
    t.ok(a.status >= 400 && a.status < 500, `${what}: ${a.status}`);
    inMetadataForm(t, a, what!);
  }
  const before = await calls(emu);
  const parserErrors: [string, string][] = [
    ["a header line without a colon", `GET / HTTP/1.1\r\nHost: localhost\r\n${MARK}\r\n\r\n`],
    ["not HTTP", `${MARK} ${MARK}\r\n\r\n`],
    ["a control character in a header value", `GET / HTTP/1.1\r\nHost: localhost\r\nX-A: ${MARK}\x01\r\n\r\n`],
    ["headers over the size limit", `GET / HTTP/1.1\r\nHost: localhost\r\nX-A: ${MARK}${"a".repeat(20_000)}\r\n\r\n`],
    ["a bad Content-Length", `GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${MARK}\r\n\r\n`],
  ];
  for (const [what, raw] of parserErrors) {
    for (const target of [{ port }, { socketPath }]) {
      const a = await send(target, raw);
      t.ok(a.status === 400 || a.status === 431, `${what}${target.socketPath ? " (socket)" : ""}: ${a.status}`);
      inMetadataForm(t, a, what);
      t.notMatch(a.headers["content-type"], /json/, `${what}: not Fastify's JSON`);
    }
  }
  for (const version of ["1.1", "1.0"]) {
    for (const target of [{ port }, { socketPath }]) {
      const a = await send(target, `GET ${TOKEN} HTTP/${version}\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n`);
      t.equal(a.status, 403, `HTTP/${version} without Host${target.socketPath ? " (socket)" : ""}: the guard refuses it`);
      inMetadataForm(t, a, `HTTP/${version} without Host`);
    }
  }
  t.same(await calls(emu), before, "no upstream call");
});

t.test("every route's answers carry nosniff, the cached-token fast path's included", async (t) => {
  for (const p of [TOKEN, "/", "/computeMetadata/v1/nothing", "/healthz", `${SA}/default/identity`]) {
    const a = await send({ port }, get(p, ["Host: localhost", "Metadata-Flavor: Google"]));
    t.equal(a.headers["x-content-type-options"], "nosniff", `${p}: ${a.status}, nosniff`);
  }
});
