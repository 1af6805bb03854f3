// The throughput baseline: node:http answering every request with the bytes the
// daemon answers a token request with (status, headers and body from the environment).
import http from "node:http";

const headers = JSON.parse(process.env.BENCH_HEADERS!) as [string, string][];
const body = Buffer.from(process.env.BENCH_BODY!, "base64");
const server = http.createServer((_req, res) => {
  res.writeHead(200, headers.flat());
  res.end(body);
});
// Fastify's default, so that the Keep-Alive header is the same.
server.keepAliveTimeout = 72_000;
server.listen(Number(process.argv[2]), "127.0.0.1");
process.once("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
