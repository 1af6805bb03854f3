import net from "node:net";

/** Loopback and link-local metadata addresses: the only places plain http is allowed. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
/** A host name (letters, digits and hyphens in labels of 63 at most, 253 in all), as requests name the daemon: no trailing dot. */
export const HOST_NAME_RE = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*$`, "i");
/** The same, or with the trailing dot of a fully qualified name, which a listen address may have. */
const LISTEN_HOST_NAME_RE = new RegExp(`^(?=.{1,253}$)${LABEL}(?:\\.${LABEL})*\\.?$`, "i");

/**
 * A listen address as the socket layer takes it: an IP address or a host name,
 * with an IPv6 address's URL brackets removed (`[::1]` is `::1`, which is what
 * listen() resolves; with the brackets it looks the name up and fails).
 * Undefined for anything else, a port included.
 */
export function normaliseListenHost(host: string): string | undefined {
  const bracketed = /^\[(.*)\]$/.exec(host);
  if (bracketed) return net.isIPv6(bracketed[1]!) ? bracketed[1] : undefined;
  return net.isIP(host) || LISTEN_HOST_NAME_RE.test(host) ? host : undefined;
}
