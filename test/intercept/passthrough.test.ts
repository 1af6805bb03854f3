import http from "node:http";
import net from "node:net";
import t, { type Test } from "tap";
import type { Emulators } from "../../src/emulator/index.js";
import { isGooglePath, isPassthrough } from "../../src/server/passthrough.js";
import { type Stack, startStack, startTestEmulators } from "../helpers/stack.js";

// The daemon with server.intercept on, in front of a stand-in for OCI's metadata
// service that records the bytes it receives and answers with bytes of its own.

interface Upstream {
  origin: string;
  port: number;
  received: Buffer[];
  close(): Promise<void>;
}

/** A raw TCP server: records each connection's bytes; answers when `answer` decides the request is complete. */
async function rawUpstream(answer: (got: Buffer, sock: net.Socket) => boolean): Promise<Upstream> {
  const received: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on("close", () => socks.delete(sock));
    let got = Buffer.alloc(0);
    const i = received.push(got) - 1;
    let done = false;
    sock.on("data", (d) => {
      got = Buffer.concat([got, d]);
      received[i] = got;
      if (!done && answer(got, sock)) done = true;
    });
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    received,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Sends raw bytes to host:port and returns everything read until the server closes (or `until` says enough). */
function rawExchange(port: number, request: string | Buffer, until?: (got: Buffer) => boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let got = Buffer.alloc(0);
    sock.on("data", (d) => {
      got = Buffer.concat([got, d]);
      if (until?.(got)) {
        sock.destroy();
        resolve(got);
      }
    });
    sock.on("end", () => resolve(got));
    sock.on("error", reject);
    sock.write(request);
  });
}

/** A GET with headers of our choosing, Host included (fetch replaces Host). */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      })
      .on("error", reject);
  });
}

const headersEnd = (b: Buffer) => b.indexOf("\r\n\r\n") >= 0;

// One set of emulators for every daemon here (each set costs a dozen RSA keys and certificates):
// the daemons relay to stand-ins for OCI's metadata service, not to the emulators.
let shared: Promise<Emulators> | undefined;
t.teardown(async () => (await shared)?.close());
const emulators = () => (shared ??= startTestEmulators());

/** A daemon on the shared emulators whose OCI metadata service is `up`, relaying to it when `intercept`; both closed at the end of `t`. */
async function relayTo(t: Test, up: { origin: string; close(): Promise<void> }, intercept: boolean): Promise<Stack> {
  const s = await startStack({
    emu: await emulators(),
    logLevel: "warn",
    overrides: { ...(intercept && { "server.intercept": true }), "oci.metadataUrl": `${up.origin}/opc/v2/` },
  });
  t.teardown(async () => {
    await s.close();
    await up.close();
  });
  return s;
}

t.test("which requests are Google's", async (t) => {
  t.ok(isGooglePath("/"));
  t.ok(isGooglePath("/?recursive=true"));
  t.ok(isGooglePath("/computeMetadata"));
  t.ok(isGooglePath("/computeMetadata/v1/instance/service-accounts/default/token?scopes=a"));
  t.notOk(isGooglePath("/computeMetadataX"));
  t.notOk(isGooglePath("/opc/v2/instance/"));
  t.notOk(isGooglePath("/openstack/latest/meta_data.json"));
  t.ok(isPassthrough({ url: "/opc/v1/instance/", headers: { host: "169.254.169.254" } }));
  t.ok(isPassthrough({ url: "/opc/v1/instance/", headers: {} }), "an HTTP/1.0 request without Host");
  t.ok(isPassthrough({ url: "/opc/v1/instance/", headers: { host: "METADATA.google.internal:80" } }));
  t.notOk(isPassthrough({ url: "/healthz", headers: { host: "127.0.0.1:8181" } }), "addressed to the daemon: its own");
  t.notOk(isPassthrough({ url: "/computeMetadata/v1/", headers: { host: "169.254.169.254" } }));
});

t.test("OCI-style requests pass through byte for byte", async (t) => {
  const answerBytes = Buffer.from(
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Odd-CASE: kept\r\nopc-request-id: r1\r\nContent-Length: 15\r\n" +
      "Connection: close\r\n\r\n" +
      '{"id":"ocid1"}\n',
  );
  const up = await rawUpstream((got, sock) => {
    if (!headersEnd(got)) return false;
    sock.end(answerBytes);
    return true;
  });
  const s = await relayTo(t, up, true);
  const port = Number(new URL(s.url).port);
  const request =
    "GET /opc/v2/instance/?x=1&y=%2F HTTP/1.1\r\nHost: 169.254.169.254\r\nAuthorization: Bearer Oracle\r\n" +
    "User-Agent: Oracle-JavaSDK/3\r\nX-Mixed-Case: a\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  const got = await rawExchange(port, request);
  t.equal(up.received.length, 1, "one connection to OCI's service");
  t.equal(up.received[0]!.toString("latin1"), request, "OCI's service received exactly the client's request");
  t.equal(got.toString("latin1"), answerBytes.toString("latin1"), "the client received exactly OCI's answer");
  t.notMatch(up.received[0]!.toString("latin1"), /forwarded|via:/i, "no Forwarded, X-Forwarded-* or Via");
});

t.test("bodies and answers are streamed; no Metadata-Flavor needed; the daemon's own routes stay its own", async (t) => {
  let release: () => void = () => {};
  let held = false;
  const up = await rawUpstream((got, sock) => {
    const text = got.toString("latin1");
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const len = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
    if (got.length < end + 4 + len) return false;
    sock.write("HTTP/1.1 201 Made Here\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
    const rest = () => sock.end("6\r\nsecond\r\n0\r\n\r\n");
    // The first answer waits for the test; later ones finish at once.
    if (held) rest();
    else release = rest;
    held = true;
    return true;
  });
  const s = await relayTo(t, up, true);
  const port = Number(new URL(s.url).port);
  const body = "x".repeat(5000);
  const req = `PUT /openstack/latest/thing HTTP/1.1\r\nHost: 169.254.169.254\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
  const first = await rawExchange(port, req, (g) => g.toString("latin1").includes("first"));
  t.match(first.toString("latin1"), /^HTTP\/1\.1 201 Made Here\r\n/, "status and reason phrase as OCI's service sent them");
  t.match(first.toString("latin1"), /first/, "the first piece arrives before OCI's service has finished answering");
  t.notMatch(first.toString("latin1"), /metadata-flavor/i, "not a Google answer");
  t.ok(up.received[0]!.toString("latin1").endsWith(body), "a body larger than the daemon's own limit went through whole");
  release();

  const full = await rawExchange(port, req);
  t.match(full.toString("latin1"), /first[\s\S]*second/, "the whole streamed answer");

  const ops = await fetch(`${s.url}/healthz`);
  t.equal(ops.status, 200, "/healthz addressed to the daemon is the daemon's");
  const own = await fetch(`${s.url}/opc/v2/instance/`, { headers: { authorization: "Bearer Oracle" } });
  t.equal(own.status, 403, "a request addressed to the daemon's own address is not relayed");
  const n = up.received.length;
  const root = await get(`${s.url}/`, { host: "169.254.169.254" });
  t.equal(root.headers["metadata-flavor"], "Google", "GET / without Metadata-Flavor is Google's answer (Go's probe)");
  t.equal(root.text, "computeMetadata/\n");
  const proj = await s.get("/computeMetadata/v1/project/project-id", { host: "metadata.google.internal" });
  t.equal(proj.status, 200, "Google's paths at the well-known name are the daemon's");
  t.equal(up.received.length, n, "none of those reached OCI's service");
});

t.test("OCI's service unreachable: 502 saying so", async (t) => {
  const closed = await rawUpstream(() => false);
  await closed.close();
  const s = await startStack({
    emu: await emulators(),
    logLevel: "silent",
    overrides: { "server.intercept": true, "oci.metadataUrl": `${closed.origin}/opc/v2/` },
  });
  t.teardown(() => s.close());
  const res = await get(`${s.url}/opc/v2/instance/`, { host: "169.254.169.254", authorization: "Bearer Oracle" });
  t.equal(res.status, 502);
  t.match(res.text, /OCI's instance metadata service at http:\/\/127\.0\.0\.1:\d+ could not be reached/);
});

t.test("a redirection that catches the daemon's own connections is detected, not looped", async (t) => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  // OCI's service "is" the daemon itself: what a rule without the daemon's uid exception does.
  const s = await startStack({
    emu: await emulators(),
    logLevel: "silent",
    overrides: { "server.intercept": true, "server.port": port, "oci.metadataUrl": `http://127.0.0.1:${port}/opc/v2/` },
  });
  t.teardown(() => s.close());
  const res = await get(`${s.url}/opc/v2/instance/`, { host: "169.254.169.254", authorization: "Bearer Oracle" });
  t.equal(res.status, 508);
  t.match(res.text, /--daemon-user/);
});

t.test("without server.intercept nothing is relayed", async (t) => {
  const up = await rawUpstream(() => false);
  const s = await relayTo(t, up, false);
  const res = await get(`${s.url}/opc/v2/instance/`, { host: "169.254.169.254", authorization: "Bearer Oracle" });
  t.equal(res.status, 403, "the guard's answer (no Metadata-Flavor)");
  t.equal(up.received.length, 0);
});
