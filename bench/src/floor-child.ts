// The floor that the daemon's libraries set by themselves: a process that loads
// what `oci2gcp serve` loads to answer its first token (Fastify, pino,
// prom-client with its default metrics, the modules of google-auth-library the
// hops use, oci-common, and Node's fetch, which google-auth-library's transport
// uses) and does nothing else. It answers every request with the bytes of the
// daemon's token answer (status, headers and body from the environment, as the
// bare node:http server does) in front of Fastify, the way the daemon's fast
// path does; it sets the V8 flags the daemon sets on itself ($BENCH_V8_FLAGS)
// and samples the event loop as the daemon's metrics do
// ($BENCH_EVENT_LOOP_SAMPLE_MS).
import http from "node:http";
import v8 from "node:v8";
import Fastify from "fastify";
import { Impersonated } from "google-auth-library/build/src/auth/impersonated.js";
import { StsCredentials } from "google-auth-library/build/src/auth/stscredentials.js";
import common from "oci-common";
import pino from "pino";
import client from "prom-client";

if (process.env.BENCH_V8_FLAGS) v8.setFlagsFromString(process.env.BENCH_V8_FLAGS);
if (
  typeof Impersonated !== "function" ||
  typeof StsCredentials !== "function" ||
  typeof common.InstancePrincipalsAuthenticationDetailsProviderBuilder !== "function"
) {
  throw new Error("a library did not load");
}
const headers = JSON.parse(process.env.BENCH_HEADERS!) as [string, string][];
const body = Buffer.from(process.env.BENCH_BODY!, "base64");
const flat = headers.flat();
const registry = new client.Registry();
client.collectDefaultMetrics({
  register: registry,
  prefix: "floor_",
  eventLoopMonitoringPrecision: Number(process.env.BENCH_EVENT_LOOP_SAMPLE_MS),
});
const app = Fastify({
  loggerInstance: pino(),
  serverFactory: (handler) => {
    const server = http.createServer((req, res) => {
      if (req.method !== "GET") return handler(req, res);
      res.writeHead(200, flat);
      res.end(body);
    });
    server.keepAliveTimeout = 72_000;
    return server;
  },
  keepAliveTimeout: 72_000,
});
// One route, so that Fastify builds its router and request pipeline as it does for the daemon.
app.post("/", async () => "");
const port = Number(process.argv[2]);
// The daemon's first token goes through fetch (undici) before it is ready: the same once here, to this process itself.
const server = http.createServer((_req, res) => res.end("{}"));
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const res = await fetch(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
await res.text();
server.close();
await app.listen({ port, host: "127.0.0.1" });
process.once("SIGTERM", () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
