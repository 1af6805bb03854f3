import type { IncomingHttpHeaders, ServerOptions } from "node:http";
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { HOST_NAME_RE } from "../config/host.js";
import { METADATA_FLAVOR, METADATA_FLAVOR_HEADER } from "../protocol.js";
import { metadataHeaderSet } from "./respond.js";

/** Host names a request may be addressed to, besides the daemon's own address and server.allowedHosts. */
const ALWAYS_ALLOWED_HOSTS = ["localhost", "metadata.google.internal", "169.254.169.254", "127.0.0.1", "[::1]"];

/** Paths served without `Metadata-Flavor: Google`, as the real metadata server serves `/`. */
const NO_FLAVOR_PATHS = new Set(["/", "/healthz", "/readyz", "/metrics"]);

export interface GuardOptions {
  /** Addresses the daemon listens on (host names or IPs, without port). */
  ownHosts: string[];
  /** More host names or addresses requests may name (server.allowedHosts). */
  allowedHosts?: string[];
}

/** Host header values whose decision is kept (see makeRefusal), and the longest kept: no host name is longer. */
const DECIDED_HOSTS = 64;
const DECIDED_HOST_LENGTH = 270;

/**
 * The host of a Host header or of a request target's authority, lower-cased
 * (an IPv6 address in brackets), or undefined when it is not exactly a host
 * name or an IP address and an optional numeric port: no user info, no
 * spaces, no second value, no empty or named port.
 */
export function hostOfAuthority(authority: string): string | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return undefined;
  const name = m[1]!.toLowerCase();
  if (m[2] !== undefined && Number(m[2]) > 65535) return undefined;
  if (name.startsWith("[")) return net.isIPv6(name.slice(1, -1)) ? name : undefined;
  return net.isIPv4(name) || HOST_NAME_RE.test(name) ? name : undefined;
}

/** A configured host (no port; an IPv6 address with or without brackets) as hostOfAuthority spells it. */
function allowedForm(host: string): string {
  return (net.isIPv6(host) ? `[${host}]` : host).toLowerCase();
}

/**
 * The path a request target names: the target itself in origin form (`/a?b`),
 * or the path of an absolute-form target (`http://host/a?b`, as a proxy client
 * sends) with its authority; undefined for any other form.
 */
function targetOf(url: string): { path: string; authority?: string } | undefined {
  if (url.startsWith("/")) return { path: pathOf(url) };
  const m = /^http:\/\/([^/?#]*)([/?][^#]*)?$/i.exec(url);
  if (!m) return undefined;
  const rest = m[2] ?? "/";
  return { path: rest.startsWith("?") ? "/" : pathOf(rest), authority: m[1]! };
}

function pathOf(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : url.slice(0, q);
}

/**
 * Refuses what no legitimate local client sends, before any route runs:
 * proxied requests (X-Forwarded-For, as the real metadata server does), requests
 * addressed to a foreign host name (DNS rebinding from a browser), and requests
 * a browser makes on a web page's behalf (Origin, Sec-Fetch-Site cross-site).
 * Then requires `Metadata-Flavor: Google` everywhere but on `/` and the probes.
 */
export function makeGuard(refusal: Refusal) {
  return async function guard(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const why = refusal(req.headers, req.originalUrl);
    if (why !== undefined) return deny(reply, why);
  };
}

export type Refusal = (h: IncomingHttpHeaders, url: string) => string | undefined;

/**
 * The guard's decision alone: why a request with these headers and this raw
 * request target is refused, or undefined when it may go on. Shared by the
 * guard hook, the framework's own error answers and the cached-token fast path,
 * so all of them refuse exactly the same requests. The texts are fixed: nothing
 * of the request is repeated in them.
 */
export function makeRefusal(opts: GuardOptions): Refusal {
  const allowed = new Set([...ALWAYS_ALLOWED_HOSTS, ...opts.ownHosts.map(allowedForm), ...(opts.allowedHosts ?? []).map(allowedForm)]);
  // Clients send the same few Host values again and again; parsing one (two regular
  // expressions and an address check) costs more than the rest of the guard. The
  // decision depends on the value alone, so it is kept; a flood of distinct values
  // only empties the table.
  const decided = new Map<string, boolean>();
  const isAllowed = (authority: string | undefined) => {
    if (authority === undefined) return false;
    let ok = decided.get(authority);
    if (ok === undefined) {
      const host = hostOfAuthority(authority);
      ok = host !== undefined && allowed.has(host);
      if (authority.length <= DECIDED_HOST_LENGTH) {
        if (decided.size >= DECIDED_HOSTS) decided.clear();
        decided.set(authority, ok);
      }
    }
    return ok;
  };
  return (h, url) => {
    if (h["x-forwarded-for"] !== undefined || h.forwarded !== undefined) {
      return "Request refused: it carries X-Forwarded-For or Forwarded, so it came through a proxy.";
    }
    if (!isAllowed(h.host)) {
      return (
        "Request refused: its Host header does not name this daemon " +
        "(allowed: localhost, the listen address, metadata.google.internal, 169.254.169.254, server.allowedHosts)."
      );
    }
    // The origin form (`/a?b`), which local clients send, needs no parsing: its path is read only when the flavor is missing.
    let path: string | undefined;
    if (!url.startsWith("/")) {
      const target = targetOf(url);
      if (target === undefined) return "Request refused: its request target is neither a path nor an http:// URL.";
      if (target.authority !== undefined && !isAllowed(target.authority)) {
        return "Request refused: its request target names a host that is not this daemon.";
      }
      path = target.path;
    }
    if (h.origin !== undefined) {
      return "Request refused: it carries an Origin header, as a browser does for a web page.";
    }
    const site = h["sec-fetch-site"];
    if (site !== undefined && site !== "none" && site !== "same-origin") {
      return "Request refused: Sec-Fetch-Site says a web page sent it.";
    }
    if (h[METADATA_FLAVOR_HEADER] !== METADATA_FLAVOR && !NO_FLAVOR_PATHS.has(path ?? pathOf(url))) {
      return "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.";
    }
    return undefined;
  };
}

export const HTML = "text/html; charset=UTF-8";

/** The real metadata server's error page: status and fixed text only. */
export function errorPage(status: number, text: string): Buffer {
  const title = `Error ${status} (${http.STATUS_CODES[status] ?? "Error"})!!1`;
  return Buffer.from(`<!DOCTYPE html>\n<html lang=en>\n<title>${title}</title>\n<p><b>${status}.</b> <ins>${text}</ins></p>\n`);
}

export function deny(reply: FastifyReply, text: string): FastifyReply {
  return reply.code(403).headers(metadataHeaderSet(HTML)).send(errorPage(403, text));
}

/**
 * Options of every HTTP server of the daemon: Node would answer a request
 * without Host (HTTP/1.1) itself, bare; without this the guard answers it.
 */
export const SERVER_OPTIONS: ServerOptions = { requireHostHeader: false };

/**
 * What Node's HTTP parser refuses before any handler runs (bytes that are not
 * HTTP, headers too large, a bad header value): answered in the metadata
 * server's form, never with anything of the request. A server's 'clientError'
 * listener, and Fastify's clientErrorHandler.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  if (socket.writable) {
    const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
    const body = errorPage(status, "Your client has issued a malformed or illegal request.");
    const headers = { ...metadataHeaderSet(HTML), "content-length": String(body.length), connection: "close" };
    const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
    socket.write(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${head.join("")}\r\n`);
    socket.write(body);
  }
  socket.destroy();
}
