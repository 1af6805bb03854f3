import type { IncomingHttpHeaders } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { METADATA_FLAVOR, METADATA_FLAVOR_HEADER } from "../protocol.js";

/** Host names a request may be addressed to, besides the daemon's own address. */
const ALWAYS_ALLOWED_HOSTS = ["localhost", "metadata.google.internal", "169.254.169.254", "127.0.0.1", "[::1]"];

/** Paths served without `Metadata-Flavor: Google`, as the real metadata server serves `/`. */
const NO_FLAVOR_PATHS = new Set(["/", "/healthz", "/readyz", "/metrics"]);

export interface GuardOptions {
  /** Addresses the daemon listens on (host names or IPs, without port). */
  ownHosts: string[];
}

function hostWithoutPort(h: string): string {
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const i = h.lastIndexOf(":");
  return i < 0 ? h : h.slice(0, i);
}

/**
 * Refuses what no legitimate local client sends, before any route runs:
 * proxied requests (X-Forwarded-For, as the real metadata server does), requests
 * addressed to a foreign host name (DNS rebinding from a browser), and requests
 * a browser makes on a web page's behalf (Origin, Sec-Fetch-Site cross-site).
 * Then requires `Metadata-Flavor: Google` everywhere but on `/` and the probes.
 */
export function makeGuard(refusal: ReturnType<typeof makeRefusal>) {
  return async function guard(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const why = refusal(req.headers, req.url);
    if (why !== undefined) return deny(reply, 403, why);
  };
}

/**
 * The guard's decision alone: why a request with these headers and this URL is
 * refused, or undefined when it may go on. Shared by the guard hook and the
 * cached-token fast path, so both refuse exactly the same requests.
 */
export function makeRefusal(opts: GuardOptions): (h: IncomingHttpHeaders, url: string) => string | undefined {
  const allowed = new Set([
    ...ALWAYS_ALLOWED_HOSTS,
    ...opts.ownHosts.map((h) => (h.includes(":") && !h.startsWith("[") ? `[${h}]` : h).toLowerCase()),
  ]);
  return (h, url) => {
    if (h["x-forwarded-for"] !== undefined || h.forwarded !== undefined) {
      return "Request refused: it carries X-Forwarded-For or Forwarded, so it came through a proxy.";
    }
    const host = h.host;
    if (host === undefined || !allowed.has(hostWithoutPort(host).toLowerCase())) {
      return "Request refused: its Host header does not name this daemon (allowed: localhost, the listen address, metadata.google.internal, 169.254.169.254).";
    }
    if (h.origin !== undefined) {
      return "Request refused: it carries an Origin header, as a browser does for a web page.";
    }
    const site = h["sec-fetch-site"];
    if (site !== undefined && site !== "none" && site !== "same-origin") {
      return "Request refused: Sec-Fetch-Site says a web page sent it.";
    }
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (!NO_FLAVOR_PATHS.has(path) && h[METADATA_FLAVOR_HEADER] !== METADATA_FLAVOR) {
      return "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.";
    }
    return undefined;
  };
}

function deny(reply: FastifyReply, status: number, text: string): FastifyReply {
  return reply
    .code(status)
    .header(METADATA_FLAVOR_HEADER, METADATA_FLAVOR)
    .header("content-type", "text/html; charset=UTF-8")
    .send(
      Buffer.from(
        `<!DOCTYPE html>\n<html lang=en>\n<title>Error ${status} (Forbidden)!!1</title>\n<p><b>${status}.</b> <ins>${text}</ins></p>\n`,
      ),
    );
}
