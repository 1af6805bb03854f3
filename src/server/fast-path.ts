import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import type { Chain } from "../chain.js";
import { METADATA_ROOT } from "../protocol.js";
import type { Token } from "../token/token-source.js";
import type { AccessControl } from "./access.js";
import { clientKeyOf, type FloodCounter } from "./flood.js";
import { accountNames, TOKEN_ROUTE } from "./metadata.js";
import type { Metrics } from "./metrics.js";
import { accessTokenBody, JSON_TYPE, metadataHeaderSet } from "./respond.js";

export interface FastPathOptions {
  chain: Chain;
  /** The guard's decision (see makeRefusal): why a request is refused, or undefined. */
  refusal: (h: IncomingHttpHeaders, url: string) => string | undefined;
  flood: FloodCounter;
  metrics?: Metrics;
  /** The access rules: the caller of the connection must be known and allowed the account, else Fastify answers. */
  access: AccessControl;
}

export interface FastPath {
  /** Answers the request and returns true, or returns false (having written nothing) for Fastify to answer it. */
  handle(req: IncomingMessage, res: ServerResponse): boolean;
  /** From now on every request goes to Fastify (shutdown, or per-request logging). */
  disable(): void;
}

const BASE = `${METADATA_ROOT}/instance/service-accounts/`;

/**
 * Answers the one request clients repeat, a GET of an account's access token
 * for the default scopes while it is cached, without Fastify's routing and hook
 * pipeline: with the same guard decision, the same flood-guard count, the same
 * bytes and the same metrics as the route in metadata.ts. Anything else (another
 * path, a query string, a body, a refused or flooding client, a token not in the
 * cache or not answerable at once) is handed to Fastify untouched, which answers
 * it the usual way, errors and refusals included.
 */
export function makeFastPath(o: FastPathOptions): FastPath {
  const accountOf = new Map<string, string>();
  for (const [name, account] of accountNames(o.chain)) accountOf.set(`${BASE}${name}/token`, account);
  const defaultUrl = `${BASE}default/token`;
  const hasAccounts = o.chain.accounts.length > 0;
  const access = o.access;
  let enabled = true;
  // The answer changes only with the token and, once a second, expires_in: its body
  // and header lines (flat name, value pairs, as writeHead takes them) are built then.
  let last: { token?: Token; expiresIn: number; body: Buffer; head: string[] } = { expiresIn: -1, body: Buffer.alloc(0), head: [] };
  const answer = (token: Token, expiresIn: number) => {
    const body = accessTokenBody(token, expiresIn);
    const head = Object.entries({ ...metadataHeaderSet(JSON_TYPE), "content-length": String(body.length) }).flat();
    return { token, expiresIn, body, head };
  };
  const observe = o.metrics?.observer(TOKEN_ROUTE, "GET", 200);
  let key = "";
  const admit = () => o.flood.admit(key);
  // Every request of a client comes from the same address: its key is worked out once per address in a row.
  let keyedAddress: string | undefined | null = null;
  let addressKey = "";
  return {
    disable() {
      enabled = false;
    },
    handle(req, res) {
      if (!enabled || req.method !== "GET") return false;
      const url = req.url!;
      let account = accountOf.get(url);
      if (account === undefined) return false;
      // The same decision as the routes: with rules, only a known caller, for an account of its
      // rule, whose first token of it was noted; everything else is Fastify's to answer or refuse.
      const caller = access.known(req.socket);
      const grant = caller?.grant;
      if (!grant) return false;
      if (hasAccounts) {
        if (url === defaultUrl) account = grant.defaultAccount ?? account;
        if (!grant.allows(account) || !access.audited(caller!, account, "access")) return false;
      } else if (!grant.subjectToken) return false;
      const h = req.headers;
      if (h["content-length"] !== undefined || h["transfer-encoding"] !== undefined) return false;
      if (o.refusal(h, url) !== undefined) return false;
      const started = performance.now();
      if (caller!.key !== undefined) key = caller!.key;
      else {
        const address = req.socket.remoteAddress;
        if (address !== keyedAddress) {
          addressKey = clientKeyOf(address);
          keyedAddress = address;
        }
        key = addressKey;
      }
      const token = o.chain.cachedAccessToken(account, admit);
      if (!token) return false;
      const expiresIn = Math.floor((token.expiresAt - Date.now()) / 1000);
      if (token !== last.token || expiresIn !== last.expiresIn) last = answer(token, expiresIn);
      res.writeHead(200, last.head);
      res.end(last.body);
      observe?.((performance.now() - started) / 1000);
      return true;
    },
  };
}
