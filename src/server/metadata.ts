import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { Chain } from "../chain.js";
import { METADATA_ROOT } from "../protocol.js";
import type { Admission } from "../token/cache.js";
import { BackoffError } from "../token/errors.js";
import { type Hop, HopError } from "../upstream/hop-error.js";
import type { AccessControl, Caller } from "./access.js";
import { accessTokenBody, describeFailure, failText, JSON_TYPE, json, metadataHeaders, notFound, redirect, text } from "./respond.js";

export interface MetadataOptions {
  chain: Chain;
  projectId?: string;
  projectNumber: string;
  universeDomain: string;
  /** Asked before a request may start new upstream calls; false means 429. */
  admit: (req: FastifyRequest) => Admission<Hop>;
  limits: { maxScopes: number; maxScopeLength: number; maxAudienceLength: number };
  /** Who may have which accounts (each request's caller is found by its hook). */
  access: AccessControl;
}

type Q = Record<string, string | string[] | undefined>;

function one(q: Q, k: string): string | undefined {
  const v = q[k];
  return Array.isArray(v) ? v[v.length - 1] : v;
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && /^(true|1)$/i.test(v);
}

/** Percent-decodes what is valid UTF-8 percent-encoding and keeps the rest (and `+`) as it is. */
function lenientDecode(v: string): string {
  return v.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run);
    } catch {
      return run;
    }
  });
}

const IDENTITY_PARAMS = new Set(["audience", "format", "licenses"]);

/**
 * The `audience` of an identity request, read from the raw query string.
 * Node's google-auth-library and gcloud put the audience into the URL without
 * encoding it (`?format=full&audience=https://host/p?x=1&y=2`), so `&k=v` parts
 * after it whose key is not an identity parameter belong to the audience, and a
 * `+` is a plus (an encoding client sends a plus as %2B; audiences have no spaces).
 */
export function rawAudience(url: string): string | undefined {
  const q = url.indexOf("?");
  if (q < 0) return undefined;
  const parts = url
    .slice(q + 1)
    .split("#", 1)[0]!
    .split("&");
  let found: string | undefined;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const eq = p.indexOf("=");
    const key = lenientDecode(eq < 0 ? p : p.slice(0, eq));
    if (key !== "audience") continue;
    let value = eq < 0 ? "" : p.slice(eq + 1);
    while (i + 1 < parts.length) {
      const next = parts[i + 1]!;
      if (next === "") break;
      const nextKey = lenientDecode(next.includes("=") ? next.slice(0, next.indexOf("=")) : next);
      if (IDENTITY_PARAMS.has(nextKey)) break;
      value += `&${next}`;
      i++;
    }
    found = lenientDecode(value);
  }
  return found;
}

/**
 * The name under which the federated token is listed when no service account is
 * configured. gcloud reads `default/email` and then only trusts an account that
 * the `service-accounts/` listing names besides `default`, so the federated
 * identity needs a name of its own there (it has no email).
 */
export const FEDERATED_ACCOUNT = "oci2gcp-federated";

/**
 * Whether Google refused the scopes a client asked for: a 400 naming an invalid
 * argument or scope from the hop that issues tokens for a scope set. That is the
 * client's mistake (400, not worth retrying), not an outage of the daemon (503).
 */
function refusedScopes(e: unknown, scopedHop: Hop): boolean {
  // During the backoff after such a refusal, the refusal is the cause of what the cache says.
  let u = e;
  while (u instanceof BackoffError) u = u.cause;
  return (
    u instanceof HopError &&
    u.hop === scopedHop &&
    u.status === 400 &&
    (u.upstreamError === "INVALID_ARGUMENT" || u.upstreamError === "invalid_scope")
  );
}

/** The content type of an ID-token answer. */
export const IDENTITY_TYPE = "text/html";

/** The token route's template, as metrics label it. */
export const TOKEN_ROUTE = `${METADATA_ROOT}/instance/service-accounts/:account/token`;

/**
 * Each account name the metadata API answers to (`default` and the listed
 * emails) with the account the chain knows it by: the federated identity is its `default`.
 */
export function accountNames(chain: Chain): Map<string, string> {
  const names = new Map([["default", "default"]]);
  for (const a of accountsView({ chain })) names.set(a.email, chain.accounts.length === 0 ? "default" : a.email);
  return names;
}

/**
 * `default` and every email the caller may have (every configured one without
 * a caller, or with no rules), each with what the metadata server says of it:
 * the caller's default first.
 */
function accountsView(o: { chain: Chain }, caller?: Caller): { email: string; aliases: string[] }[] {
  const accts = o.chain.accounts;
  if (accts.length === 0) return [{ email: FEDERATED_ACCOUNT, aliases: ["default"] }];
  const mine = caller?.grant ? caller.grant.accounts : accts;
  return mine.map((email, i) => ({ email, aliases: i === 0 ? ["default"] : [] }));
}

/**
 * The GCE metadata API, as much of it as Google's client libraries, gcloud and
 * Terraform use: project, universe, and service accounts with their tokens.
 */
export async function metadataPlugin(app: FastifyInstance, o: MetadataOptions): Promise<void> {
  const scopesText = (s: string[]) => s.map((x) => `${x}\n`).join("");
  const saJson = (a: { email: string; aliases: string[] }) => ({ aliases: a.aliases, email: a.email, scopes: o.chain.defaultScopes });

  /** The account name the chain knows: the federated identity is its `default`. */
  const names = accountNames(o.chain);
  /** The account the chain knows: the caller's default for `default` (the federated identity without accounts). */
  const chainAccount = (caller: Caller, name: string) =>
    name === "default" && o.chain.accounts.length > 0 ? (caller.grant?.defaultAccount ?? "default") : (names.get(name) ?? name);

  type P = { Params: { account: string } };
  type Account = { email: string; aliases: string[] };
  /**
   * The account a request names, as its caller sees it; "refused" (with the 403
   * sent) for a configured account outside the caller's rule, or for the
   * federated identity to a caller without the subject token; undefined when
   * there is no such account.
   */
  const lookup = (req: FastifyRequest, reply: FastifyReply, name: string): Account | "refused" | undefined => {
    const caller = req.caller;
    if (o.chain.accounts.length === 0 && (name === "default" || name === FEDERATED_ACCOUNT)) {
      const why = o.access.subjectRefusal(caller);
      if (why !== undefined) {
        o.access.refuse(reply, "subject-token", why);
        return "refused";
      }
    }
    const mine = accountsView(o, caller);
    if (name === "default") return mine[0];
    const found = mine.find((a) => a.email === name);
    if (found || !o.chain.accounts.includes(name)) return found;
    o.access.refuse(reply, "account", o.access.accountRefusal(caller, name) ?? `Request refused: ${caller.who} may not obtain ${name}`);
    return "refused";
  };
  /** `lookup` for routes that answer with the account: the 404 for an unknown one is sent here too. */
  const found = (req: FastifyRequest<P>, reply: FastifyReply): Account | undefined => {
    const a = lookup(req, reply, req.params.account);
    if (a === undefined) notFound(reply);
    return a === "refused" ? undefined : a;
  };

  app.get("/computeMetadata", (req, reply) => redirect(reply, req.url, "/computeMetadata/"));
  app.get("/computeMetadata/", (_req, reply) => text(reply, "v1/\n"));
  app.get(METADATA_ROOT, (req, reply) => redirect(reply, req.url, `${METADATA_ROOT}/`));
  app.get(`${METADATA_ROOT}/`, (req, reply) => {
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, recursiveRoot(req.caller));
    return text(reply, "instance/\noslogin/\nproject/\nuniverse/\n");
  });

  const recursiveInstance = (caller: Caller) => {
    const mine = accountsView(o, caller);
    return { serviceAccounts: Object.fromEntries([["default", saJson(mine[0]!)], ...mine.map((a) => [a.email, saJson(a)])]) };
  };
  const recursiveProject = () => ({ numericProjectId: Number(o.projectNumber), projectId: o.projectId ?? "" });
  const recursiveRoot = (caller: Caller) => ({
    instance: recursiveInstance(caller),
    oslogin: {},
    project: recursiveProject(),
    universe: { universeDomain: o.universeDomain },
  });

  const instance = (req: FastifyRequest, reply: FastifyReply) => {
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, recursiveInstance(req.caller));
    return text(reply, "service-accounts/\n");
  };
  app.get(`${METADATA_ROOT}/instance`, instance);
  app.get(`${METADATA_ROOT}/instance/`, instance);

  app.get(`${METADATA_ROOT}/oslogin/`, (_req, reply) => text(reply, ""));
  app.get(`${METADATA_ROOT}/oslogin`, (req, reply) => redirect(reply, req.url, `${METADATA_ROOT}/oslogin/`));

  app.get(`${METADATA_ROOT}/project`, (req, reply) => redirect(reply, req.url, `${METADATA_ROOT}/project/`));
  app.get(`${METADATA_ROOT}/project/`, (req, reply) => {
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, recursiveProject());
    return text(reply, o.projectId ? "numeric-project-id\nproject-id\n" : "numeric-project-id\n");
  });
  app.get(`${METADATA_ROOT}/project/project-id`, (_req, reply) =>
    o.projectId ? text(reply, o.projectId) : notFound(reply, "No project id is configured: set google.projectId or $GOOGLE_CLOUD_PROJECT."),
  );
  app.get(`${METADATA_ROOT}/project/numeric-project-id`, (_req, reply) => text(reply, o.projectNumber));

  app.get(`${METADATA_ROOT}/universe`, (req, reply) => redirect(reply, req.url, `${METADATA_ROOT}/universe/`));
  app.get(`${METADATA_ROOT}/universe/`, (req, reply) => {
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, { universeDomain: o.universeDomain });
    return text(reply, "universe-domain\n");
  });
  app.get(`${METADATA_ROOT}/universe/universe-domain`, (_req, reply) => text(reply, o.universeDomain));
  app.get(`${METADATA_ROOT}/universe/universe_domain`, (_req, reply) => text(reply, o.universeDomain));

  const base = `${METADATA_ROOT}/instance/service-accounts`;
  app.get(base, (req, reply) => redirect(reply, req.url, `${base}/`));
  app.get(`${base}/`, (req, reply) => {
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, recursiveInstance(req.caller).serviceAccounts);
    const names = ["default", ...accountsView(o, req.caller).map((a) => a.email)];
    return text(reply, names.map((n) => `${n}/\n`).join(""));
  });

  app.get<P>(`${base}/:account`, (req, reply) => {
    if (!found(req, reply)) return reply;
    return redirect(reply, req.url, `${base}/${encodeURIComponent(req.params.account).replace(/%40/g, "@")}/`);
  });
  app.get<P>(`${base}/:account/`, (req, reply) => {
    const a = found(req, reply);
    if (!a) return reply;
    if (isTrue(one(req.query as Q, "recursive"))) return json(reply, saJson(a));
    return text(reply, "aliases\nemail\nidentity\nscopes\ntoken\n");
  });
  app.get<P>(`${base}/:account/email`, (req, reply) => {
    const a = found(req, reply);
    return a ? text(reply, a.email) : reply;
  });
  app.get<P>(`${base}/:account/aliases`, (req, reply) => {
    const a = found(req, reply);
    // One alias a line with no final newline: `default`, as the real server answers.
    return a ? text(reply, a.aliases.join("\n")) : reply;
  });
  app.get<P>(`${base}/:account/scopes`, (req, reply) => {
    const a = found(req, reply);
    return a ? text(reply, scopesText(o.chain.defaultScopes)) : reply;
  });

  app.get<P>(`${base}/:account/token`, async (req, reply) => {
    const a = found(req, reply);
    if (!a) return reply;
    const raw = one(req.query as Q, "scopes");
    let scopes: string[] | undefined;
    if (raw !== undefined) {
      scopes = raw.split(/[,\s]+/).filter(Boolean);
      if (scopes.length > o.limits.maxScopes || scopes.some((s) => s.length > o.limits.maxScopeLength)) {
        return text(reply, `oci2gcp: at most ${o.limits.maxScopes} scopes of at most ${o.limits.maxScopeLength} characters each\n`, 400);
      }
    }
    try {
      const account = chainAccount(req.caller, req.params.account);
      const t = await o.chain.accessToken({ account, scopes, admit: o.admit(req) });
      o.access.obtained(req.caller, a.email, "access");
      return metadataHeaders(reply, JSON_TYPE).send(accessTokenBody(t));
    } catch (e) {
      if (scopes && refusedScopes(e, o.chain.accounts.length ? "impersonation" : "STS")) {
        return text(
          reply,
          `oci2gcp: Google refused the requested scopes: ${describeFailure(e).message.replace(/^oci2gcp: no valid token: /, "")}\n`,
          400,
        );
      }
      return failText(reply, e);
    }
  });

  app.get<P>(`${base}/:account/identity`, async (req, reply) => {
    const a = found(req, reply);
    if (!a) return reply;
    const q = req.query as Q;
    const audience = rawAudience(req.url);
    if (!audience) return text(reply, "non-empty audience parameter required\n", 400);
    if (audience.length > o.limits.maxAudienceLength) {
      return text(reply, `oci2gcp: the audience is longer than ${o.limits.maxAudienceLength} characters\n`, 400);
    }
    const format = one(q, "format") ?? "standard";
    if (format !== "standard" && format !== "full") return text(reply, "format must be standard or full\n", 400);
    const licenses = one(q, "licenses");
    if (licenses !== undefined && !/^(true|false)$/i.test(licenses)) return text(reply, "licenses must be TRUE or FALSE\n", 400);
    try {
      const t = await o.chain.idToken({ account: chainAccount(req.caller, req.params.account), audience, format, admit: o.admit(req) });
      o.access.obtained(req.caller, a.email, "id");
      // Exactly text/html, sent as a Buffer so that no charset is appended: Ruby googleauth 0.12 to 0.16.0
      // takes an ID token only from that type (later ones also from application/text); every other client
      // reads the body whatever its type.
      return metadataHeaders(reply, IDENTITY_TYPE).send(Buffer.from(t.value));
    } catch (e) {
      return failText(reply, e);
    }
  });
}
