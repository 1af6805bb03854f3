import http from "node:http";
import type { Socket } from "node:net";
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";

/**
 * With the well-known address intercepted (`oci2gcp intercept`), clients that
 * believe they talk to 169.254.169.254 talk to the daemon. Google's part of that
 * address (`/computeMetadata/...` and `/`) is the daemon's to answer; everything
 * else there belongs to OCI's instance metadata service (`/opc/v2/...`,
 * `/opc/v1/...`, `/openstack/...`, used by OCI's agents and SDKs), and is relayed
 * to it untouched: method, target, header lines as sent (names' case and order),
 * body, and the answer's status, header lines and body, streamed both ways.
 * Nothing is added: OCI's IMDSv2 refuses requests carrying Forwarded or
 * X-Forwarded-*, and a relay that announced itself would break it.
 *
 * The decision runs in an onRequest hook registered before every other one, and
 * a relayed request leaves Fastify there (hijacked): the guard, the flood guard
 * and the metadata routes never see it. That is right because the guard's rules
 * (Metadata-Flavor, Host, browser headers) are Google's metadata server's rules;
 * OCI's service applies its own, to the same requests it would have had without
 * interception. Requests addressed to the daemon itself (its listen address as
 * Host) are never relayed: its own routes (/healthz, /oci2gcp/v1/...) stay its own.
 */

/** Host names (port 80 or none) under which clients reach the well-known address. */
const WELL_KNOWN_HOSTS = new Set(["169.254.169.254", "169.254.169.254:80", "metadata.google.internal", "metadata.google.internal:80"]);

export interface PassthroughOptions {
  /** Origin of OCI's metadata service, e.g. http://169.254.169.254 (from oci.metadataUrl). */
  origin: string;
  /** How long to wait for OCI's service to answer (headers) before a 502. */
  timeoutMs: number;
}

/** Whether the request is Google's part of the well-known address, answered by the daemon. */
export function isGooglePath(url: string): boolean {
  const q = url.indexOf("?");
  const path = q < 0 ? url : url.slice(0, q);
  // `/` is Google's with or without Metadata-Flavor: Go's compute/metadata probe sends
  // none and needs Google's answer, and OCI's clients never ask for `/` (they use /opc/...).
  return path === "/" || path === "/computeMetadata" || path.startsWith("/computeMetadata/");
}

/** Whether a request is relayed to OCI: addressed to the well-known address (or to no host), and not Google's. */
export function isPassthrough(req: Pick<http.IncomingMessage, "url" | "headers">): boolean {
  const host = req.headers.host?.toLowerCase();
  if (host !== undefined && !WELL_KNOWN_HOSTS.has(host)) return false;
  return !isGooglePath(req.url ?? "/");
}

function plainAnswer(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const b = Buffer.from(body);
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": String(b.length), connection: "close" });
  res.end(b);
}

function endpointKey(address: string | undefined, port: number | undefined): string {
  return `${(address ?? "").replace(/^::ffff:/, "")}:${port}`;
}

/** Relays requests that are not Google's to OCI's metadata service (see above). */
export const passthroughPlugin = fp(
  async (app: FastifyInstance, o: PassthroughOptions) => {
    const origin = new URL(o.origin);
    // One connection per relayed request: a kept-alive connection that OCI's service closes
    // while idle would fail the next request, which cannot be retried (it may not be idempotent).
    const agent = new http.Agent({ keepAlive: false });
    // Local ends of our own connections to OCI: one arriving back at the daemon means the
    // redirection also caught the daemon's own traffic, which would loop until descriptors ran out.
    const ownEnds = new Set<string>();
    app.addHook("onClose", async () => agent.destroy());

    app.addHook("onRequest", async (req: FastifyRequest, reply) => {
      if (!isPassthrough(req.raw)) return;
      reply.hijack();
      const { raw, log } = req;
      const res = reply.raw;
      if (ownEnds.has(endpointKey(raw.socket.remoteAddress, raw.socket.remotePort))) {
        log.error("the interception redirects the daemon's own connections to OCI's metadata service back to it");
        plainAnswer(
          res,
          508,
          "oci2gcp: this request came back from the daemon's own connection to OCI's instance metadata service: " +
            "the redirection must exempt the daemon's user (oci2gcp intercept install --daemon-user USER)\n",
        );
        return;
      }
      relay(raw, res, log);
    });

    function relay(raw: http.IncomingMessage, res: http.ServerResponse, log: FastifyRequest["log"]): void {
      let answered = false;
      const up = http.request({
        protocol: origin.protocol,
        hostname: origin.hostname,
        port: origin.port || 80,
        method: raw.method,
        path: raw.url,
        // The header lines exactly as received, so that nothing is renamed, merged or added.
        headers: raw.rawHeaders,
        agent,
        setHost: false,
      });
      up.setTimeout(o.timeoutMs, () => up.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
      up.on("socket", (s: Socket) => {
        const remember = () => {
          const key = endpointKey(s.localAddress, s.localPort);
          ownEnds.add(key);
          s.once("close", () => ownEnds.delete(key));
        };
        if (s.connecting) s.once("connect", remember);
        else remember();
      });
      up.on("response", (answer) => {
        answered = true;
        up.setTimeout(0);
        // The answer's own header lines only: no Date or Keep-Alive of ours.
        res.sendDate = false;
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, answer.rawHeaders);
        answer.pipe(res);
        answer.on("error", () => res.destroy());
        res.on("close", () => {
          if (!res.writableFinished) answer.destroy();
        });
      });
      up.on("error", (e) => {
        if (answered) {
          res.destroy();
          return;
        }
        log.warn({ err: e, origin: origin.origin }, "OCI's instance metadata service could not be reached for a passed-through request");
        plainAnswer(res, 502, `oci2gcp: OCI's instance metadata service at ${origin.origin} could not be reached: ${e.message}\n`);
      });
      raw.on("error", () => up.destroy());
      res.on("close", () => {
        if (!answered) up.destroy();
      });
      raw.pipe(up);
    }
  },
  { name: "oci2gcp-passthrough" },
);
