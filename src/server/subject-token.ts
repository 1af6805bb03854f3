import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Chain } from "../chain.js";
import { JWT_TOKEN_TYPE, SUBJECT_TOKEN_PATH } from "../protocol.js";
import type { Admission } from "../token/cache.js";
import type { Hop } from "../upstream/hop-error.js";
import type { AccessControl } from "./access.js";
import { describeFailure, json, text } from "./respond.js";

export interface SubjectTokenOptions {
  chain: Chain;
  admit: (req: FastifyRequest) => Admission<Hop>;
  /** Who may have the subject token: with rules, only callers whose rule has subjectToken. */
  access: AccessControl;
}

/**
 * The domain JWT, for Google external-account credentials: JSON for a
 * `credential_source.url` with format json, the bare token for format text,
 * and the executable-response object for `oci2gcp subject-token`.
 */
export async function subjectTokenPlugin(app: FastifyInstance, o: SubjectTokenOptions): Promise<void> {
  app.get<{ Querystring: { format?: string } }>(SUBJECT_TOKEN_PATH, async (req, reply) => {
    const format = req.query.format ?? "json";
    if (format !== "json" && format !== "text" && format !== "executable") {
      return text(reply, `oci2gcp: format must be json, text or executable, not ${JSON.stringify(format).slice(0, 40)}\n`, 400);
    }
    const why = o.access.subjectRefusal(req.caller);
    if (why !== undefined) return o.access.refuse(reply, "subject-token", why);
    try {
      const t = await o.chain.subjectToken(o.admit(req));
      o.access.obtained(req.caller, "subject", "subject");
      const now = Date.now();
      const expiresIn = Math.floor((t.expiresAt - now) / 1000);
      if (format === "text") return text(reply, t.value);
      if (format === "executable") {
        return json(reply, {
          version: 1,
          success: true,
          token_type: JWT_TOKEN_TYPE,
          id_token: t.value,
          expiration_time: Math.floor(t.expiresAt / 1000),
        });
      }
      return json(reply, { access_token: t.value, token_type: "Bearer", expires_in: expiresIn, issued_token_type: JWT_TOKEN_TYPE });
    } catch (e) {
      const f = describeFailure(e);
      if (f.retryAfter !== undefined) reply.header("retry-after", String(f.retryAfter));
      if (format === "executable") {
        return json(
          reply,
          { version: 1, success: false, code: f.status === 429 ? "RATE_LIMITED" : "UPSTREAM_UNAVAILABLE", message: f.message },
          f.status,
        );
      }
      if (format === "json")
        return json(
          reply,
          { error: f.status === 429 ? "rate_limited" : "unavailable", error_description: f.message, hop: f.hop },
          f.status,
        );
      return text(reply, `${f.message}\n`, f.status);
    }
  });
}
