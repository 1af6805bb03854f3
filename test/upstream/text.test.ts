/**
 * The words of a hop's failure: upstream text bounded where it enters a HopError,
 * network codes in words with the code kept, the attempt count where the retry
 * loop gives up, and bodies that are not error messages described, not quoted.
 */
import t from "tap";
import { bounded, HopError, MAX_DETAIL_CHARS } from "../../src/upstream/hop-error.js";
import { isNetworkCode, networkCode, networkWords, noAnswerWithin } from "../../src/upstream/network.js";
import { errorBodyText, notJsonBody, withRetry } from "../../src/upstream/retry.js";

t.test("bounded keeps short text, and cuts the middle of long text, counted", async (t) => {
  t.equal(bounded("short"), "short");
  const long = `HEAD${"x".repeat(10_000)}TAIL`;
  const b = bounded(long, 300);
  t.ok(b.length <= 300, `${b.length} characters`);
  t.match(b, /^HEADx+ … \[\d+ characters left out\] … x+TAIL$/);
  const left = Number(/\[(\d+) characters/.exec(b)![1]);
  t.equal(b.length - ` … [${left} characters left out] … `.length + left, long.length, "the count is what was left out");
  const emoji = "😀".repeat(1000);
  const cut = bounded(emoji, 101, 20);
  t.notMatch(cut, /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/, "no half of a surrogate pair");
});

t.test("a HopError bounds its detail, message and upstream error code", async (t) => {
  const e = new HopError("STS", `token exchange: HTTP 400: invalid_request: ${"Z".repeat(900_000)}`, {
    code: "refused",
    status: 400,
    upstreamError: "E".repeat(10_000),
  });
  t.ok(e.detail.length <= MAX_DETAIL_CHARS, `detail of ${e.detail.length}`);
  t.equal(e.message, `STS: ${e.detail}`);
  t.match(e.detail, /^token exchange: HTTP 400: invalid_request: Z+ … \[\d+ characters left out\] … Z+$/);
  t.ok(e.upstreamError!.length <= 100);
  t.equal(e.code, "refused");
  t.equal(e.status, 400);
});

t.test("network codes in words, naming the server, the code in brackets", async (t) => {
  const cases: [string, RegExp][] = [
    ["ECONNREFUSED", /^STS refused the connection: nothing listens at that address and port \(ECONNREFUSED\)$/],
    ["ECONNRESET", /^the connection was reset before STS answered \(ECONNRESET\)$/],
    ["UND_ERR_SOCKET", /^the connection was closed before STS answered \(UND_ERR_SOCKET\)$/],
    ["ENOTFOUND", /^the host name of STS does not resolve \(DNS\) \(ENOTFOUND\)$/],
    ["EAI_AGAIN", /DNS did not answer.*\(EAI_AGAIN\)$/],
    ["ETIMEDOUT", /^the connection to STS timed out \(ETIMEDOUT\)$/],
    ["UND_ERR_CONNECT_TIMEOUT", /could not be opened in time \(UND_ERR_CONNECT_TIMEOUT\)$/],
    ["CERT_HAS_EXPIRED", /TLS certificate of STS has expired \(CERT_HAS_EXPIRED\)$/],
    ["SELF_SIGNED_CERT_IN_CHAIN", /self-signed .*\(SELF_SIGNED_CERT_IN_CHAIN\)$/],
    ["UNABLE_TO_GET_ISSUER_CERT_LOCALLY", /not trusted here .*\(UNABLE_TO_GET_ISSUER_CERT_LOCALLY\)$/],
    ["ERR_TLS_CERT_ALTNAME_INVALID", /not for that host name \(ERR_TLS_CERT_ALTNAME_INVALID\)$/],
    ["ERR_SSL_WRONG_VERSION_NUMBER", /TLS connection to STS failed.*\(ERR_SSL_WRONG_VERSION_NUMBER\)$/],
    ["EWHATEVER", /^the connection to STS failed \(EWHATEVER\)$/],
  ];
  for (const [code, words] of cases) t.match(networkWords(code, "STS"), words, code);
  t.ok(isNetworkCode("ECONNRESET"));
  t.notOk(isNetworkCode("NotAuthenticated"), "a service's own code is not a network failure");
  t.equal(networkCode(Object.assign(new Error("fetch failed"), { cause: { cause: { code: "UND_ERR_SOCKET" } } })), "UND_ERR_SOCKET");
  t.equal(noAnswerWithin(10_000), "no answer within 10000 ms (upstream.timeoutMs)");
});

t.test("the retry loop says how many attempts it made when it gives up", async (t) => {
  const policy = { attempts: 3, baseDelayMs: 1, maxDelayMs: 10 };
  const timeout = () => new HopError("STS", noAnswerWithin(10_000), { code: "timeout", retryable: true, status: undefined });
  const e = (await withRetry(policy, async () => Promise.reject(timeout()), { sleep: async () => {} }).catch(
    (x: unknown) => x,
  )) as HopError;
  t.equal(e.message, "STS: no answer within 10000 ms (upstream.timeoutMs), 3 attempts");
  t.equal(e.code, "timeout", "the code is kept");
  t.equal(e.retryable, true);
  const big = () =>
    new HopError("STS", `HTTP 503: ${"Z".repeat(900_000)}`, {
      code: "refused",
      status: 503,
      upstreamError: "UNAVAILABLE",
      retryable: true,
    });
  const b = (await withRetry(policy, async () => Promise.reject(big()), { sleep: async () => {} }).catch((x: unknown) => x)) as HopError;
  t.match(b.detail, /, 3 attempts$/, "the count survives a detail that was cut");
  t.ok(b.detail.length <= MAX_DETAIL_CHARS);
  t.equal(b.status, 503);
  t.equal(b.upstreamError, "UNAVAILABLE");
  const once = (await withRetry({ ...policy, attempts: 1 }, async () => Promise.reject(timeout())).catch((x: unknown) => x)) as HopError;
  t.equal(once.detail, "no answer within 10000 ms (upstream.timeoutMs)", "one attempt is not counted");
  const denied = new HopError("STS", "HTTP 400: invalid_grant", { code: "refused", status: 400 });
  t.equal(await withRetry(policy, async () => Promise.reject(denied)).catch((x: unknown) => x), denied, "a refusal is passed on as it is");
});

t.test("bodies that are not error messages are described, not quoted", async (t) => {
  t.equal(notJsonBody("<html>secret page</html>"), "a body that is not JSON (24 bytes)");
  t.equal(notJsonBody("é"), "a body that is not JSON (2 bytes)", "bytes, not characters");
  t.equal(errorBodyText("<!DOCTYPE html><html><title>502</title></html>"), "an HTML page (46 bytes)");
  t.equal(errorBodyText("  <html><body>x</body></html>"), "an HTML page (29 bytes)");
  t.equal(
    errorBodyText("upstream connect error or disconnect/reset before headers"),
    "upstream connect error or disconnect/reset before headers",
  );
  t.ok(errorBodyText("x".repeat(5000)).length <= 201, "a line of text is quoted bounded");
});
