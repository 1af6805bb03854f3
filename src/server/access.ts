import type { Socket } from "node:net";
import type { FastifyReply, FastifyRequest } from "fastify";
import { PeerIdentifier, type PeerIdentity } from "../access/peer.js";
import { describeGrant, type Grant, type Policy } from "../access/policy.js";
import type { Logger } from "../log.js";
import { metadataHeaders } from "./respond.js";

/**
 * Who is asking, and what the policy gives it: the caller of each connection.
 *
 * With access rules, every TCP connection is identified once, when it is
 * accepted (a client that sends its request and half-closes would be gone from
 * the socket table by the time a request asked), and every request on it
 * shares that answer; the Unix socket, whose peer Node cannot name, serves the
 * rule of `access.socketRule`. Without rules nobody is identified and every
 * caller has everything, as before rules existed.
 */

/** Why a request was refused, as the refusal counter labels it (bounded: never a uid). */
export type RefusalReason = "unidentified" | "no-rule" | "account" | "subject-token";

export interface Caller {
  /** The caller's uid, when it was identified. */
  readonly uid?: number;
  /** What it may have; undefined: refused (see `refusal`). */
  readonly grant?: Grant;
  /** Why it is refused, for the 403 body; set exactly when `grant` is not. */
  readonly refusal?: { reason: RefusalReason; text: string };
  /** The flood guard's and the budget's key for it (per uid once identified); undefined: by address. */
  readonly key?: string;
  /** "uid N (name)", or what the caller is when it has no uid. */
  readonly who: string;
  /** An identified uid's tokens already noted in the audit log ("kind account"); absent: the caller is not audited. */
  readonly audited?: Set<string>;
}

export type TokenKind = "access" | "id" | "subject";

export interface AccessOptions {
  policy: Policy;
  logger: Logger;
  /** Counts refusals by reason (the metrics' refusal counter). */
  refused?: (reason: RefusalReason) => void;
  /** The uid lookup; by default the kernel's socket tables under /proc. */
  identifier?: PeerIdentifier;
}

const SETTING = "access.rules";

/** The 403 of the real metadata server's form, with a body saying why and what to change. */
export function forbidden(reply: FastifyReply, why: string): FastifyReply {
  return metadataHeaders(reply, "text/html; charset=UTF-8")
    .code(403)
    .send(
      Buffer.from(
        `<!DOCTYPE html>\n<html lang=en>\n<title>Error 403 (Forbidden)!!1</title>\n<p><b>403.</b> <ins>${escapeHtml(why)}</ins></p>\n`,
      ),
    );
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export class AccessControl {
  readonly policy: Policy;
  /** Callers by uid: one object per uid, so that a uid's first tokens are told apart from its later ones. */
  private readonly byUid = new Map<number, Caller>();
  /** The caller of each connection whose identity is settled. */
  private readonly settled = new WeakMap<Socket, Caller>();
  /** Connections accepted by the TCP listener (any other connection is the Unix socket's). */
  private readonly tcp = new WeakSet<Socket>();
  private readonly identifier: PeerIdentifier;
  private readonly open: Caller | undefined;
  private readonly unix: Caller;
  private readonly log: Logger;
  private readonly refusedCount: (reason: RefusalReason) => void;

  constructor(o: AccessOptions) {
    this.policy = o.policy;
    this.log = o.logger;
    this.refusedCount = o.refused ?? (() => {});
    this.identifier = o.identifier ?? new PeerIdentifier();
    const everything = o.policy.isOpen ? o.policy.forUid(0) : undefined;
    this.open = everything ? { grant: everything, who: "any local caller" } : undefined;
    const socketGrant = o.policy.forSocket();
    this.unix = socketGrant
      ? { grant: socketGrant, key: "unix-socket", who: "the Unix socket" }
      : {
          key: "unix-socket",
          who: "the Unix socket",
          refusal: {
            reason: "no-rule",
            text: "Request refused: the Unix socket serves no access rule; name the rule it serves in access.socketRule.",
          },
        };
  }

  /** True when there are no rules: nobody is identified, everybody has everything. */
  get isOpen(): boolean {
    return this.open !== undefined;
  }

  /** A TCP connection was accepted: its caller is looked up now, once. */
  connected(socket: Socket): void {
    if (this.open) return;
    this.tcp.add(socket);
    this.callerOf(socket).catch(() => {});
  }

  /** The caller of a connection, without waiting: undefined while it is being identified. */
  known(socket: Socket): Caller | undefined {
    if (this.open) return this.open;
    return this.settled.get(socket) ?? (this.tcp.has(socket) || socket.remoteAddress !== undefined ? undefined : this.unix);
  }

  /** The caller of a connection, identified on its first call and then remembered for the connection. */
  async callerOf(socket: Socket): Promise<Caller> {
    const known = this.known(socket);
    if (known) return known;
    const id = await this.identifier.identify(socket);
    const caller = this.callerFor(id);
    // A table that could not be read is tried again by the next request (PeerIdentifier forgets it too).
    if (!("code" in id && id.code === "unreadable")) this.settled.set(socket, caller);
    return caller;
  }

  private callerFor(id: PeerIdentity): Caller {
    if ("code" in id) {
      return {
        who: "an unidentified caller",
        refusal: {
          reason: "unidentified",
          text: `Request refused: oci2gcp cannot tell which local user is asking: ${id.reason}. With ${SETTING} set, only identified callers are served.`,
        },
      };
    }
    const uid = id.uid;
    const cached = this.byUid.get(uid);
    if (cached) return cached;
    const name = this.policy.userName(uid);
    const who = name === undefined ? `uid ${uid}` : `uid ${uid} (${name})`;
    const grant = this.policy.forUid(uid);
    const caller = grant
      ? { uid, grant, key: `uid:${uid}`, who, audited: new Set<string>() }
      : {
          uid,
          key: `uid:${uid}`,
          who,
          audited: new Set<string>(),
          refusal: {
            reason: "no-rule" as const,
            text: `Request refused: no rule of ${SETTING} names ${who} or one of its groups; add it to a rule in ${SETTING} to let it obtain tokens.`,
          },
        };
    this.byUid.set(uid, caller);
    return caller;
  }

  /** Counts a refusal and sends its 403. */
  refuse(reply: FastifyReply, reason: RefusalReason, text: string): FastifyReply {
    this.refusedCount(reason);
    return forbidden(reply, text);
  }

  /** Why `caller` may not have `account`'s tokens, or undefined when it may. */
  accountRefusal(caller: Caller, account: string): string | undefined {
    const g = caller.grant;
    if (!g || g.allows(account)) return undefined;
    return `Request refused: ${caller.who} may not obtain tokens of ${account}: its ${describeGrant(g)} of ${SETTING} does not list it.`;
  }

  /** Why `caller` may not have the subject token, or undefined when it may. */
  subjectRefusal(caller: Caller): string | undefined {
    const g = caller.grant;
    if (!g || g.subjectToken) return undefined;
    return (
      `Request refused: ${caller.who} may not obtain the subject token (nor the federated token): ` +
      `its ${describeGrant(g)} of ${SETTING} does not have "subjectToken": true.`
    );
  }

  /** Notes that `caller` obtained a token: at info level the first time for its uid, account and kind, then at debug. */
  obtained(caller: Caller, account: string, kind: TokenKind): void {
    const audited = caller.audited;
    if (!audited || caller.uid === undefined) return;
    const k = `${kind} ${account}`;
    const user = this.policy.userName(caller.uid);
    if (audited.has(k)) {
      this.log.debug({ uid: caller.uid, user, account, kind }, "token served");
      return;
    }
    audited.add(k);
    this.log.info({ uid: caller.uid, user, account, kind }, "first token of this account for this user");
  }

  /** Whether `caller`'s first token of this account and kind was already noted (the fast path serves only those). */
  audited(caller: Caller, account: string, kind: TokenKind): boolean {
    const audited = caller.audited;
    return !audited || audited.has(`${kind} ${account}`);
  }
}

declare module "fastify" {
  interface FastifyRequest {
    /** Who is asking and what it may have (set before any route runs). */
    caller: Caller;
  }
}

/** Paths that need no identity: the probes and the metrics. */
const NO_IDENTITY = new Set(["/healthz", "/readyz", "/metrics"]);

/**
 * The onRequest hook that finds each request's caller (before the flood
 * guard counts it, which keys by caller) and refuses, with rules, callers the
 * policy gives nothing, except on the probes.
 */
export function accessHook(access: AccessControl) {
  return async function identify(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const caller = await access.callerOf(req.raw.socket);
    req.caller = caller;
    if (caller.refusal) {
      const q = req.url.indexOf("?");
      if (NO_IDENTITY.has(q < 0 ? req.url : req.url.slice(0, q))) return;
      return access.refuse(reply, caller.refusal.reason, caller.refusal.text) as unknown as undefined;
    }
  };
}
