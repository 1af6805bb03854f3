/** The token layer's own errors, and the retry hint it reads from any error. */
import t from "tap";
import { BackoffError, BelowFloorError, retryHintOf } from "../../src/token/errors.js";

t.test("retryHintOf reads the two fields structurally, from any error or object", async (t) => {
  class Upstream extends Error {
    retryable = true;
    retryAfterSeconds = 12;
  }
  t.same(retryHintOf(new Upstream("x")), { retryable: true, retryAfterSeconds: 12 });
  t.same(retryHintOf({ retryable: false }), { retryable: false });
  t.same(retryHintOf(new Error("plain")), {});
  t.same(retryHintOf("a string"), {});
  t.same(retryHintOf(null), {});
  t.same(retryHintOf(undefined), {});
  t.same(retryHintOf({ retryable: "yes", retryAfterSeconds: "30" }), {}, "fields of the wrong type are left out");
  t.same(retryHintOf({ retryAfterSeconds: Number.NaN }), {});
  t.same(retryHintOf({ retryAfterSeconds: Number.POSITIVE_INFINITY }), {});
  t.same(retryHintOf({ retryAfterSeconds: 0 }), {}, "no wait is no hint");
  t.same(retryHintOf({ retryAfterSeconds: -5 }), {});
});

t.test("BackoffError: the last failure as its cause and its message, the time left as its hint", async (t) => {
  const cause = new Error("HTTP 503: unavailable");
  const e = new BackoffError("STS", 7, cause);
  t.equal(e.cause, cause);
  t.equal(e.message, "HTTP 503: unavailable");
  t.equal(e.label, "STS");
  t.equal(e.code, "TOKEN_BACKOFF");
  t.same(retryHintOf(e), { retryable: true, retryAfterSeconds: 7 });
  t.equal(new BackoffError("x", 1, "a string").message, "a string", "a cause that is not an Error");
});

t.test("BelowFloorError: what the token had left, with the label", async (t) => {
  const e = new BelowFloorError("identity domain", 2_400);
  t.equal(e.detail, "upstream issued a token that expires in 2 s, below the minimum remaining lifetime");
  t.equal(e.message, `identity domain: ${e.detail}`);
  t.equal(e.code, "TOKEN_BELOW_FLOOR");
  t.same(retryHintOf(e), { retryable: true });
});
