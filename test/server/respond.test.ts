/**
 * How the chain's errors reach an HTTP client: the token caches' own errors
 * (backoff, a token below the floor) and the budget's refusal are worded as the
 * hop that failed, with the Retry-After the daemon means.
 */
import t from "tap";
import { NoSuchAccountError } from "../../src/chain.js";
import { BudgetExceededError } from "../../src/server/budget.js";
import { describeFailure } from "../../src/server/respond.js";
import { BackoffError, BelowFloorError } from "../../src/token/errors.js";
import { HopError } from "../../src/upstream/hop-error.js";

const refused = new HopError("STS", "HTTP 500: internal", { code: "refused", status: 500, retryable: true, retryAfterSeconds: 40 });

t.test("a hop's error: 503 naming the hop, with the upstream's Retry-After (1 to 300 s, 5 without one)", async (t) => {
  t.same(describeFailure(refused), {
    status: 503,
    retryAfter: 40,
    message: "oci2gcp: no valid token: the STS hop failed: HTTP 500: internal",
    hop: "STS",
  });
  const noHint = new HopError("impersonation", "HTTP 403: denied", { code: "permission_denied", status: 403 });
  t.equal(describeFailure(noHint).retryAfter, 5);
  const long = new HopError("STS", "HTTP 429: later", { code: "refused", status: 429, retryable: true, retryAfterSeconds: 86_400 });
  t.equal(describeFailure(long).retryAfter, 300);
});

t.test("during a backoff: the cause's words, and the time left of the backoff as Retry-After", async (t) => {
  t.same(describeFailure(new BackoffError("STS", 7, refused)), {
    status: 503,
    retryAfter: 7,
    message: "oci2gcp: no valid token: the STS hop failed: HTTP 500: internal",
    hop: "STS",
  });
  // A cause that names no hop is named by the cache's label.
  t.same(describeFailure(new BackoffError("OCI principal", 3, new Error("no session"))), {
    status: 503,
    retryAfter: 3,
    message: "oci2gcp: no valid token: the OCI principal hop failed: no session",
    hop: "OCI principal",
  });
  t.same(describeFailure(new BackoffError("STS", 2, new BelowFloorError("STS", 400))).message, BELOW_FLOOR_MESSAGE);
});

t.test("a backoff caused by another cache's backoff: the hop at the end of the causes, the outer wait", async (t) => {
  const inner = new BackoffError(
    "identity domain",
    20,
    new HopError("identity domain", "HTTP 503: down", { code: "refused", status: 503 }),
  );
  t.same(describeFailure(new BackoffError("impersonation", 4, new BackoffError("STS", 9, inner))), {
    status: 503,
    retryAfter: 4,
    message: "oci2gcp: no valid token: the identity domain hop failed: HTTP 503: down",
    hop: "identity domain",
  });
  t.same(describeFailure(new BackoffError("impersonation", 4, new BackoffError("OCI principal", 9, new Error("no session")))), {
    status: 503,
    retryAfter: 4,
    message: "oci2gcp: no valid token: the OCI principal hop failed: no session",
    hop: "OCI principal",
  });
});

const BELOW_FLOOR_MESSAGE =
  "oci2gcp: no valid token: the STS hop failed: upstream issued a token that expires in 0 s, below the minimum remaining lifetime";

t.test("a token below the floor: the hop of the cache's label failed", async (t) => {
  t.same(describeFailure(new BelowFloorError("STS", 400)), { status: 503, retryAfter: 5, message: BELOW_FLOOR_MESSAGE, hop: "STS" });
});

t.test("the budget's refusal: 429 for a minute, naming the hop", async (t) => {
  t.same(describeFailure(new BudgetExceededError("impersonation")), {
    status: 429,
    retryAfter: 60,
    message: "oci2gcp: too many requests that need new upstream calls (impersonation); the cached tokens are still served",
    hop: "impersonation",
  });
});

t.test("anything else: 503 with its message", async (t) => {
  t.same(describeFailure(new Error("odd")), { status: 503, retryAfter: 5, message: "oci2gcp: no valid token: odd" });
  t.same(describeFailure(new NoSuchAccountError("x@y")), { status: 404, message: "oci2gcp: no service account x@y is configured" });
});
