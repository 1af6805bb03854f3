/**
 * Google's refusals are classified once, where they become HopErrors: callers
 * (doctor, the HTTP answers) match the code, never Google's words.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import t from "tap";
import { googleError } from "../../src/google/errors.js";
import { stsCredentials } from "../../src/google/gal-internals.js";
import { transport } from "../../src/google/transport.js";
import { ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT } from "../../src/protocol.js";

/** What google-auth-library throws for an answer with this status and body. */
function answered(status: number, data: unknown) {
  return Object.assign(new Error("request failed"), { response: { status, data, headers: new Headers() } });
}

const oauth = (error: string, error_description: string) => ({ error, error_description });
const api = (code: number, status: string, message: string) => ({ error: { code, status, message } });

t.test("STS: each refusal STS gives has its code", async (t) => {
  const cases: [string, unknown, string][] = [
    [
      "unknown pool or provider",
      oauth(
        "invalid_target",
        'The target service indicated by the "audience" parameters is invalid. This might either be because the pool or provider ' +
          "is disabled or deleted or because it doesn't exist.",
      ),
      "audience_rejected",
    ],
    [
      "malformed audience parameter",
      oauth("invalid_request", 'Invalid value for "audience". This value should be the full resource name of the Identity Provider.'),
      "audience_rejected",
    ],
    [
      "issuer",
      oauth("invalid_grant", "The issuer in ID Token https://x/ does not match the expected one in config: https://y/"),
      "issuer_rejected",
    ],
    [
      "token's aud",
      oauth("invalid_grant", "The audience in ID Token [https://a] does not match the expected audience."),
      "audience_rejected",
    ],
    ["signature", oauth("invalid_grant", "Unable to verify the ID Token signature."), "signature_rejected"],
    ["unknown kid", oauth("invalid_grant", "Error connecting to the given credential's issuer."), "signature_rejected"],
    ["stale", oauth("invalid_grant", "ID Token issued at 1700000000 is stale to sign-in."), "expired"],
    ["condition", oauth("unauthorized_client", "The given credential is rejected by the attribute condition."), "condition_rejected"],
    ["anything else", oauth("invalid_request", "The mapped attribute google.subject must not be empty."), "refused"],
  ];
  for (const [name, body, code] of cases) {
    const e = googleError("STS", "token exchange", answered(400, body));
    t.equal(e.code, code, name);
    t.equal(e.status, 400);
    t.equal(e.upstreamError, (body as { error: string }).error);
    t.notOk(e.retryable);
  }
});

t.test("IAM Credentials: status and Google's status name decide", async (t) => {
  const what = "generateAccessToken for sa@p.iam.gserviceaccount.com";
  const cases: [number, unknown, string][] = [
    [
      403,
      api(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."),
      "permission_denied",
    ],
    [403, api(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes."), "permission_denied"],
    [404, api(404, "NOT_FOUND", "Not found; Gaia id not found for email sa@p.iam.gserviceaccount.com"), "not_found"],
    [400, api(400, "NOT_FOUND", "unknown service account"), "not_found"],
    [401, api(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), "unauthenticated"],
    [400, api(400, "INVALID_ARGUMENT", "Request contains an invalid argument."), "refused"],
  ];
  for (const [status, body, code] of cases) {
    t.equal(googleError("impersonation", what, answered(status, body)).code, code, `${status} ${JSON.stringify(body)}`);
  }
  t.equal(googleError("impersonation", what, answered(403, "<html>denied</html>")).code, "permission_denied", "a bare 403 is a denial");
});

t.test("answers that may change on a retry, and bodies without error fields, are plain refusals", async (t) => {
  const sig = oauth("invalid_grant", "Unable to verify the ID Token signature.");
  for (const status of [429, 500, 503]) {
    const e = googleError("STS", "token exchange", answered(status, sig));
    t.equal(e.code, "refused", `HTTP ${status}`);
    t.ok(e.retryable);
  }
  const html = googleError("STS", "token exchange", answered(400, "<html>key signature issuer audience</html>"));
  t.equal(html.code, "refused", "a page that is not Google's error says nothing of the token");
  t.match(html.detail, /non-JSON body/);
});

t.test("no answer, no answer in time, and a 200 that is not JSON", async (t) => {
  const refused = Object.assign(new Error("fetch failed"), { cause: { code: "ECONNREFUSED" } });
  t.equal(googleError("STS", "token exchange", refused).code, "unreachable");
  t.equal(googleError("STS", "token exchange", Object.assign(new Error("aborted"), { name: "AbortError" })).code, "timeout");

  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.setHeader("content-type", "text/html");
      res.end("<html>captive portal</html>");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/token`;
  const sts = stsCredentials({ tokenExchangeEndpoint: url, transporter: transport(2000) });
  const thrown = await sts
    .exchangeToken({
      grantType: TOKEN_EXCHANGE_GRANT,
      audience: "//iam.googleapis.com/x",
      requestedTokenType: ACCESS_TOKEN_TYPE,
      subjectToken: "s",
      subjectTokenType: JWT_TOKEN_TYPE,
    })
    .catch((e: unknown) => e);
  const e = googleError("STS", "token exchange", thrown);
  t.equal(e.code, "bad_answer", "a 200 with a page is a bad answer, not an unreachable server");
  t.match(e.detail, /HTTP 200 with a body that is not JSON \(27 bytes\)$/);
  t.notMatch(e.detail, /captive portal/, "the body is described, not quoted");
  t.ok(e.retryable);
});
