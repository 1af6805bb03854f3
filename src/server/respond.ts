import type { FastifyReply } from "fastify";
import { NoImpersonationError, NoSuchAccountError } from "../chain.js";
import { scrub } from "../log.js";
import { METADATA_FLAVOR, METADATA_FLAVOR_HEADER } from "../protocol.js";
import { BackoffError, BelowFloorError } from "../token/errors.js";
import type { Token } from "../token/token-source.js";
import { bounded, HopError } from "../upstream/hop-error.js";
import { BudgetExceededError } from "./budget.js";

export const TEXT = "application/text";
export const JSON_TYPE = "application/json";

/** The headers every answer of the real metadata server carries, in the order they are sent. */
export function metadataHeaderSet(contentType: string): Record<string, string> {
  return {
    [METADATA_FLAVOR_HEADER]: METADATA_FLAVOR,
    "content-type": contentType,
    server: "Metadata Server for VM",
    "x-xss-protection": "0",
    "x-frame-options": "SAMEORIGIN",
    // Every answer, errors included, is only what its Content-Type says.
    "x-content-type-options": "nosniff",
  };
}

export function metadataHeaders(reply: FastifyReply, contentType: string): FastifyReply {
  return reply.headers(metadataHeaderSet(contentType));
}

/** The body of an access-token answer, as the real metadata server words it. */
export function accessTokenBody(t: Token, expiresIn = Math.floor((t.expiresAt - Date.now()) / 1000)): Buffer {
  return Buffer.from(`{"access_token":${JSON.stringify(t.value)},"expires_in":${expiresIn},"token_type":"Bearer"}`);
}

// Bodies go out as Buffers: for strings Fastify would append "; charset=utf-8" to
// the content type, and older Python google-auth compares it with "application/json" whole.
export function text(reply: FastifyReply, body: string, status = 200): FastifyReply {
  return metadataHeaders(reply, TEXT).code(status).send(Buffer.from(body));
}

export function json(reply: FastifyReply, body: unknown, status = 200): FastifyReply {
  return metadataHeaders(reply, JSON_TYPE)
    .code(status)
    .send(Buffer.from(typeof body === "string" ? body : JSON.stringify(body)));
}

/**
 * A 301 to `path` (the same query string kept, as the real server keeps it), with
 * the metadata headers: clients check Metadata-Flavor on every answer they see.
 */
export function redirect(reply: FastifyReply, rawUrl: string, path: string): FastifyReply {
  const q = rawUrl.indexOf("?");
  return metadataHeaders(reply, "text/html; charset=UTF-8").redirect(q < 0 ? path : `${path}${rawUrl.slice(q)}`, 301);
}

export function notFound(reply: FastifyReply, what = "The requested URL was not found on this server."): FastifyReply {
  return metadataHeaders(reply, "text/html; charset=UTF-8")
    .code(404)
    .send(
      Buffer.from(
        `<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n<p><b>404.</b> <ins>${escapeHtml(what)}</ins></p>\n`,
      ),
    );
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export interface UpstreamFailure {
  status: number;
  retryAfter?: number;
  message: string;
  hop?: string;
}

/**
 * How an error of the chain reaches an HTTP client: status, Retry-After and a
 * message naming the hop. The message repeats what an upstream said, scrubbed of
 * anything token-shaped that it may have echoed.
 */
export function describeFailure(e: unknown): UpstreamFailure {
  const f = failureOf(e);
  return { ...f, message: scrub(f.message) };
}

function failureOf(e: unknown): UpstreamFailure {
  if (e instanceof BudgetExceededError) {
    return { status: 429, retryAfter: 60, message: `oci2gcp: ${e.message}`, hop: e.hop };
  }
  if (e instanceof NoSuchAccountError) return { status: 404, message: `oci2gcp: ${e.message}` };
  if (e instanceof NoImpersonationError) return { status: 404, message: `oci2gcp: ${e.message}` };
  if (e instanceof BackoffError) {
    // A cache whose source is another cache in backoff holds that one's BackoffError:
    // what failed is at the end of the chain of causes, named by the last cache's label.
    let last: BackoffError<unknown> = e;
    while (last.cause instanceof BackoffError) last = last.cause;
    const f = hopFailure(last.cause) ?? { hop: String(last.label), detail: errorText(last.cause) };
    // The cache tries again by itself when its backoff ends: that is the wait a client is told.
    return failed(f, e.retryAfterSeconds);
  }
  const f = hopFailure(e);
  if (f) return failed(f, e instanceof HopError ? e.retryAfterSeconds : undefined);
  return { status: 503, retryAfter: 5, message: `oci2gcp: no valid token: ${errorText(e)}` };
}

/** Which hop failed and what it said, for the failures that name a hop. */
function hopFailure(e: unknown): { hop: string; detail: string } | undefined {
  if (e instanceof HopError) return { hop: e.hop, detail: e.detail };
  if (e instanceof BelowFloorError) return { hop: String(e.label), detail: e.detail };
  return undefined;
}

function failed(f: { hop: string; detail: string }, retryAfterSeconds: number | undefined): UpstreamFailure {
  return {
    status: 503,
    retryAfter: Math.max(1, Math.min(300, retryAfterSeconds ?? 5)),
    message: `oci2gcp: no valid token: the ${f.hop} hop failed: ${f.detail}`,
    hop: f.hop,
  };
}

/** What an error that is not a hop's says, bounded as a hop's detail is (a library's message can carry a whole answer). */
function errorText(e: unknown): string {
  return bounded(e instanceof Error ? e.message : String(e));
}

export function failText(reply: FastifyReply, e: unknown): FastifyReply {
  const f = describeFailure(e);
  if (f.retryAfter !== undefined) reply.header("retry-after", String(f.retryAfter));
  return text(reply, `${f.message}\n`, f.status);
}
