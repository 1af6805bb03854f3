import type { Test } from "tap";
import t from "tap";
import { FEDERATED_ACCOUNT } from "../../src/server/metadata.js";
import { CLOUD_PLATFORM, verifyGoogleJwt } from "../helpers/clients.js";
import {
  calls,
  claimsOf,
  DEMO_PROJECT_ID,
  DEMO_SERVICE_ACCOUNT,
  SECOND_SERVICE_ACCOUNT,
  type Stack,
  startStack,
} from "../helpers/stack.js";

const V1 = "/computeMetadata/v1";
const SA = `${V1}/instance/service-accounts`;
const EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

/** app.inject with Metadata-Flavor: Google (unless headers say otherwise); checks the headers every answer must carry. */
async function inject(
  t: Test | undefined,
  s: Stack,
  url: string,
  headers: Record<string, string | undefined> = { "metadata-flavor": "Google" },
): Promise<Answer> {
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) h[k] = v;
  const r = await s.daemon.app.inject({ method: "GET", url, headers: h });
  if (!t) return { status: r.statusCode, headers: r.headers, body: r.body };
  t.equal(r.headers["metadata-flavor"], "Google", `${url} → ${r.statusCode} carries Metadata-Flavor: Google`);
  t.ok(typeof r.headers["content-type"] === "string", `${url} → ${r.statusCode} has a Content-Type`);
  if (r.statusCode === 200) {
    // ID tokens go out as text/html (what Ruby googleauth needs); everything else as application/text or JSON.
    const types = /\/identity(\?|$)/.test(url) ? ["text/html"] : ["application/text", "application/json"];
    t.ok(
      types.includes(String(r.headers["content-type"])),
      `${url}: content type ${r.headers["content-type"]} is exactly ${types.join(" or ")}`,
    );
    t.equal(r.headers.server, "Metadata Server for VM", `${url}: Server header`);
  }
  if (r.statusCode >= 500) t.not(r.statusCode, 500, `${url}: never 500`);
  return { status: r.statusCode, headers: r.headers, body: r.body };
}

function textOk(t: Test, a: Answer, body: string, what: string) {
  t.equal(a.status, 200, `${what}: 200`);
  t.equal(a.headers["content-type"], "application/text", `${what}: application/text`);
  t.equal(a.body, body, `${what}: body`);
}

function jsonOk(t: Test, a: Answer, body: unknown, what: string) {
  t.equal(a.status, 200, `${what}: 200`);
  t.equal(a.headers["content-type"], "application/json", `${what}: application/json`);
  t.same(JSON.parse(a.body), body, `${what}: body`);
  t.strictSame(JSON.parse(a.body), body, `${what}: body, exactly`);
}

/** Every key of a JSON tree, recursively, except the keys of service-accounts maps (emails). */
function keysOf(v: unknown, out: string[] = []): string[] {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === "serviceAccounts") {
        for (const acct of Object.values(x as object)) keysOf(acct, out);
        out.push(k);
        continue;
      }
      out.push(k);
      keysOf(x, out);
    }
  }
  return out;
}

// Emulators take seconds to start (RSA keys): the subtests share one stack with two
// service accounts (and one without any), in order, each resetting the call counters.
let s: Stack;
t.before(async () => {
  s = await startStack({
    serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT],
    overrides: { "upstream.attempts": 1 },
    logLevel: "error",
  });
});
t.teardown(() => s?.close());
t.beforeEach(() => {
  s.emu.server.resetCalls();
  s.emu.server.clearFaults();
});

t.test("the section 4 table: paths, statuses, exact bodies, content types and redirects", async (t) => {
  const demoJson = { aliases: ["default"], email: DEMO_SERVICE_ACCOUNT, scopes: [CLOUD_PLATFORM] };
  const secondJson = { aliases: [], email: SECOND_SERVICE_ACCOUNT, scopes: [CLOUD_PLATFORM] };

  textOk(t, await inject(t, s, "/", {}), "computeMetadata/\n", "/ without the header");
  textOk(t, await inject(t, s, "/"), "computeMetadata/\n", "/ with the header");
  textOk(t, await inject(t, s, `${V1}/`), "instance/\noslogin/\nproject/\nuniverse/\n", "v1/");
  textOk(t, await inject(t, s, `${V1}/instance`), "service-accounts/\n", "instance without slash (Node's probe)");
  textOk(t, await inject(t, s, `${V1}/instance/`), "service-accounts/\n", "instance/");
  textOk(t, await inject(t, s, `${SA}/`), `default/\n${DEMO_SERVICE_ACCOUNT}/\n${SECOND_SERVICE_ACCOUNT}/\n`, "service-accounts/");
  jsonOk(
    t,
    await inject(t, s, `${SA}/?recursive=true`),
    { default: demoJson, [DEMO_SERVICE_ACCOUNT]: demoJson, [SECOND_SERVICE_ACCOUNT]: secondJson },
    "service-accounts/?recursive=true",
  );
  for (const name of ["default", DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT]) {
    textOk(t, await inject(t, s, `${SA}/${name}/`), "aliases\nemail\nidentity\nscopes\ntoken\n", `${name}/`);
    const j = await inject(t, s, `${SA}/${name}/?recursive=true`);
    jsonOk(t, j, name === SECOND_SERVICE_ACCOUNT ? secondJson : demoJson, `${name}/?recursive=true`);
    t.notOk("token" in JSON.parse(j.body) || "identity" in JSON.parse(j.body), "no token or identity keys in the recursive answer");
    textOk(t, await inject(t, s, `${SA}/${name}/scopes`), `${CLOUD_PLATFORM}\n`, `${name}/scopes`);
  }
  textOk(t, await inject(t, s, `${SA}/default/email`), DEMO_SERVICE_ACCOUNT, "default/email, no newline");
  textOk(t, await inject(t, s, `${SA}/${DEMO_SERVICE_ACCOUNT}/email`), DEMO_SERVICE_ACCOUNT, "email/email");
  textOk(t, await inject(t, s, `${SA}/${SECOND_SERVICE_ACCOUNT}/email`), SECOND_SERVICE_ACCOUNT, "second/email");
  textOk(t, await inject(t, s, `${SA}/default/aliases`), "default", "default/aliases: no final newline");
  textOk(t, await inject(t, s, `${SA}/${SECOND_SERVICE_ACCOUNT}/aliases`), "", "second/aliases: no alias");
  textOk(t, await inject(t, s, `${V1}/project/project-id`), DEMO_PROJECT_ID, "project-id, no newline");
  const num = await inject(t, s, `${V1}/project/numeric-project-id`);
  textOk(t, num, s.emu.google.projectNumber, "numeric-project-id");
  t.match(num.body, /^\d+$/, "numeric-project-id is digits only (gcloud's GCE check)");
  jsonOk(
    t,
    await inject(t, s, `${V1}/project/?recursive=true`),
    { numericProjectId: Number(s.emu.google.projectNumber), projectId: DEMO_PROJECT_ID },
    "project/?recursive=true",
  );
  textOk(t, await inject(t, s, `${V1}/universe/universe-domain`), "googleapis.com", "universe-domain");
  textOk(t, await inject(t, s, `${V1}/universe/universe_domain`), "googleapis.com", "universe_domain (Go)");

  const root = await inject(t, s, `${V1}/?recursive=true`);
  t.equal(root.headers["content-type"], "application/json");
  const rootJson = JSON.parse(root.body);
  t.strictSame(rootJson.instance.serviceAccounts.default, demoJson, "recursive root: instance.serviceAccounts.default");
  t.equal(rootJson.project.projectId, DEMO_PROJECT_ID);
  t.equal(rootJson.universe.universeDomain, "googleapis.com");
  for (const k of keysOf(rootJson)) t.match(k, /^[a-z][A-Za-z]*$/, `recursive key ${k} is camelCase`);

  // Missing trailing slashes: 301 to the slash form, query kept, metadata headers on the redirect too.
  const redirects: [string, string][] = [
    [V1, `${V1}/`],
    [`${V1}/project`, `${V1}/project/`],
    [`${V1}/universe`, `${V1}/universe/`],
    [SA, `${SA}/`],
    [`${SA}/default`, `${SA}/default/`],
    [`${SA}/${DEMO_SERVICE_ACCOUNT}`, `${SA}/${DEMO_SERVICE_ACCOUNT}/`],
    [`${SA}/default?recursive=true`, `${SA}/default/?recursive=true`],
  ];
  for (const [from, to] of redirects) {
    const r = await inject(t, s, from);
    t.equal(r.status, 301, `${from}: 301`);
    t.equal(r.headers.location, to, `${from}: Location ${to}`);
  }

  // Unknown things: 404, with the headers.
  for (const p of [
    `${V1}/instance/nothing-here`,
    `${SA}/nobody@example.iam.gserviceaccount.com/email`,
    `${SA}/nobody@example.iam.gserviceaccount.com/token`,
    `${SA}/nobody@example.iam.gserviceaccount.com`,
    `${SA}/default/nothing`,
    "/computeMetadata/v2/",
  ]) {
    t.equal((await inject(t, s, p)).status, 404, `${p}: 404`);
  }
  // A malformed URL is answered by the framework, still with the metadata headers.
  const bad = await inject(t, s, `${SA}/%E0/email`);
  t.equal(bad.status, 400, "malformed percent-encoding: 400");
});

t.test("the request header is required except on /, and X-Forwarded-For is refused", async (t) => {
  const paths = [
    `${V1}/`,
    `${V1}/instance`,
    `${V1}/project/project-id`,
    `${V1}/project/numeric-project-id`,
    `${SA}/default/token`,
    `${SA}/default/identity?audience=x`,
    `${SA}/`,
    `${V1}`,
    `${V1}/nothing`,
  ];
  for (const p of paths) {
    const r = await inject(t, s, p, {});
    t.equal(r.status, 403, `${p} without Metadata-Flavor: 403`);
    t.match(r.body, /Missing Metadata-Flavor:Google header/, `${p}: says why`);
    const wrong = await inject(t, s, p, { "metadata-flavor": "Googl" });
    t.equal(wrong.status, 403, `${p} with a wrong Metadata-Flavor: 403`);
  }
  for (const p of ["/", ...paths]) {
    const r = await inject(t, s, p, { "metadata-flavor": "Google", "x-forwarded-for": "10.0.0.1" });
    t.equal(r.status, 403, `${p} with X-Forwarded-For: 403`);
  }
  t.same(
    await calls(s.emu).then((c) => [c["google.sts.token"] ?? 0, c["oci.federation"] ?? 0]),
    [0, 0],
    "refused requests reach no upstream",
  );
});

t.test("tokens: shape, one cache for default and the email, 100 requests → one call per hop, ?scopes", async (t) => {
  const first = await inject(t, s, `${SA}/default/token`);
  t.equal(first.status, 200);
  t.equal(first.headers["content-type"], "application/json");
  t.match(first.body, /^\{"access_token":"[^"]+","expires_in":\d+,"token_type":"Bearer"\}$/, "exact JSON shape, integer expires_in");
  const tok = JSON.parse(first.body) as { access_token: string; expires_in: number };
  t.ok(tok.expires_in > 3000 && tok.expires_in <= 3600, `expires_in ${tok.expires_in}: a fresh hour, far above clients' 5 minute margin`);
  const info = s.emu.google.tokenInfo(tok.access_token)!;
  t.equal(info.kind, "service_account");
  t.equal(info.email, DEMO_SERVICE_ACCOUNT, "default is the first service account");
  t.same(info.scopes, [CLOUD_PLATFORM], "default scopes");
  t.match(
    info.delegator,
    /^principal:\/\/iam\.googleapis\.com\/projects\/\d+\/locations\/global\/workloadIdentityPools\//,
    "minted for the federated principal",
  );

  const byEmail = JSON.parse((await inject(t, s, `${SA}/${DEMO_SERVICE_ACCOUNT}/token`)).body) as { access_token: string };
  t.equal(byEmail.access_token, tok.access_token, "default and the email share one cache");
  let c = await calls(s.emu);
  t.equal(c["google.sts.token"], 1, "one STS call");
  t.equal(c["google.iam.generateAccessToken"], 1, "one generateAccessToken for default and the email");

  for (let i = 0; i < 100; i++) {
    const r = await inject(undefined, s, `${SA}/${i % 2 ? "default" : DEMO_SERVICE_ACCOUNT}/token`);
    if (r.status !== 200 || r.headers["metadata-flavor"] !== "Google" || JSON.parse(r.body).access_token !== tok.access_token)
      t.fail(`request ${i}: ${r.status} ${r.body.slice(0, 80)}`);
  }
  c = await calls(s.emu);
  t.equal(c["google.sts.token"], 1, "after 100 more requests: still one STS call");
  t.equal(c["google.iam.generateAccessToken"], 1, "after 100 more requests: still one generateAccessToken call");
  t.equal(c["oci.federation"], 1, "one OCI federation");

  // ?scopes=a,b: the scopes go upstream; order and encoding do not matter.
  const scoped = await inject(t, s, `${SA}/default/token?scopes=${CLOUD_PLATFORM},${EMAIL_SCOPE}`);
  t.equal(scoped.status, 200);
  const st = JSON.parse(scoped.body) as { access_token: string };
  t.not(st.access_token, tok.access_token, "another scope set, another token");
  t.same(
    s.emu.google.tokenInfo(st.access_token)!.scopes,
    [CLOUD_PLATFORM, EMAIL_SCOPE].sort(),
    "generateAccessToken was asked for those scopes",
  );
  const again = JSON.parse(
    (await inject(t, s, `${SA}/${DEMO_SERVICE_ACCOUNT}/token?scopes=${encodeURIComponent(`${EMAIL_SCOPE},${CLOUD_PLATFORM}`)}`)).body,
  ) as { access_token: string };
  t.equal(again.access_token, st.access_token, "same set in another order, percent-encoded (Python): same cached token");
  const one = JSON.parse((await inject(t, s, `${SA}/default/token?scopes=${EMAIL_SCOPE}`)).body) as { access_token: string };
  t.same(s.emu.google.tokenInfo(one.access_token)!.scopes, [EMAIL_SCOPE], "a single scope");
  c = await calls(s.emu);
  t.equal(c["google.iam.generateAccessToken"], 3, "one generateAccessToken per scope set");
  t.equal(c["google.sts.token"], 1, "the federated token is reused for every scope set");

  const tooMany = await inject(
    t,
    s,
    `${SA}/default/token?scopes=${Array.from({ length: 40 }, (_, i) => `https://www.googleapis.com/auth/s${i}`).join(",")}`,
  );
  t.equal(tooMany.status, 400, "too many scopes: 400");

  // The second service account: its own path, its own impersonation.
  const second = await inject(t, s, `${SA}/${SECOND_SERVICE_ACCOUNT}/token`);
  t.equal(second.status, 200);
  const sec = JSON.parse(second.body) as { access_token: string };
  t.not(sec.access_token, tok.access_token);
  const secInfo = s.emu.google.tokenInfo(sec.access_token)!;
  t.equal(secInfo.email, SECOND_SERVICE_ACCOUNT, "the emulator impersonated the second account");
  t.equal(secInfo.delegator, info.delegator, "by the same federated principal");
  c = await calls(s.emu);
  t.equal(c["google.iam.generateAccessToken"], 4, "one more generateAccessToken");
  t.same(s.leaks(), [], "no token in the logs");
});

t.test("identity: audience required, format and licenses, claims, signature", async (t) => {
  for (const q of ["", "?audience=", "?format=full", "?audience=&format=full", "?licenses=TRUE"]) {
    const r = await inject(t, s, `${SA}/default/identity${q}`);
    t.equal(r.status, 400, `identity${q}: 400`);
    t.match(r.body, /audience/, "the message names the audience");
  }
  t.equal((await inject(t, s, `${SA}/default/identity?audience=x&format=compact`)).status, 400, "unknown format: 400");
  t.equal((await inject(t, s, `${SA}/default/identity?audience=x&licenses=maybe`)).status, 400, "licenses neither TRUE nor FALSE: 400");
  t.equal((await inject(t, s, `${SA}/nobody@x.iam.gserviceaccount.com/identity?audience=x`)).status, 404, "unknown account: 404");
  t.equal((await calls(s.emu))["google.iam.generateIdToken"] ?? 0, 0, "refused requests make no upstream call");

  const aud = "https://example.com/x";
  const std = await inject(t, s, `${SA}/default/identity?audience=${encodeURIComponent(aud)}`);
  t.equal(std.status, 200);
  t.equal(std.headers["content-type"], "text/html", "the bare JWT as exactly text/html (no charset), as Ruby googleauth needs");
  t.equal(std.headers["metadata-flavor"], "Google", "with the flavor header");
  t.match(std.body, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a bare JWT, no newline");
  const v = await verifyGoogleJwt(std.body, s.emu.google.jwksUrl);
  t.equal(v.claims.aud, aud);
  t.equal(v.claims.iss, "https://accounts.google.com");
  t.equal(v.claims.sub, s.emu.google.uniqueId(DEMO_SERVICE_ACCOUNT), "minted for the first account");
  t.notOk("email" in v.claims, "format=standard: no email claim");

  // gcloud's form (unencoded, with format=standard and licenses=FALSE): the cached token.
  const gcloudForm = await inject(t, s, `${SA}/default/identity?audience=${aud}&format=standard&licenses=FALSE`);
  t.equal(gcloudForm.body, std.body, "gcloud's query form: same audience, same cached token");
  // Node's form: format first, the audience unencoded at the end.
  const full = await inject(t, s, `${SA}/${DEMO_SERVICE_ACCOUNT}/identity?format=full&audience=${aud}`);
  t.equal(full.status, 200);
  const fc = claimsOf(full.body);
  t.equal(fc.aud, aud);
  t.equal(fc.email, DEMO_SERVICE_ACCOUNT, "format=full: email claim");
  t.equal(fc.email_verified, true);
  t.equal((await inject(t, s, `${SA}/default/identity?audience=${aud}&format=full&licenses=TRUE`)).status, 200, "licenses=TRUE accepted");

  // Audiences sent without encoding, as Node and gcloud send them.
  const tricky = "https://example.com/p?x=1&y=2+3";
  const nodeStyle = await inject(t, s, `${SA}/default/identity?format=full&audience=${tricky}`);
  t.equal(claimsOf(nodeStyle.body).aud, tricky, "Node's unencoded audience with & and + reaches Google whole");
  const gcloudStyle = await inject(t, s, `${SA}/default/identity?audience=${tricky}&format=standard&licenses=FALSE`);
  t.equal(claimsOf(gcloudStyle.body).aud, tricky, "gcloud's unencoded audience with & and +, followed by format and licenses");
  const encoded = await inject(t, s, `${SA}/default/identity?audience=${encodeURIComponent(tricky)}&format=full`);
  t.equal(claimsOf(encoded.body).aud, tricky, "Python's encoded audience");

  const second = await inject(t, s, `${SA}/${SECOND_SERVICE_ACCOUNT}/identity?audience=${aud}&format=full`);
  t.equal(second.status, 200);
  t.equal(claimsOf(second.body).sub, s.emu.google.uniqueId(SECOND_SERVICE_ACCOUNT), "the second account's ID token");
  t.equal(claimsOf(second.body).email, SECOND_SERVICE_ACCOUNT);

  const c = await calls(s.emu);
  t.equal(c["google.sts.token"] ?? 0, 0, "the cached federated token serves every ID token");
  t.equal(
    c["google.iam.generateIdToken"],
    5,
    "one generateIdToken per account, format and audience (gcloud, Node and Python forms of one audience share it)",
  );
});

t.test("upstream failures: 503 with Retry-After, never 500, and cached tokens keep being served", async (t) => {
  const cached = JSON.parse((await inject(t, s, `${SA}/default/token`)).body) as { access_token: string };
  const forbidden = JSON.stringify({
    error: {
      code: 403,
      message: "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
      status: "PERMISSION_DENIED",
    },
  });
  s.emu.server.addFault({
    endpoint: "google.iam.generateAccessToken",
    status: 403,
    body: forbidden,
    headers: { "content-type": "application/json; charset=UTF-8" },
  });
  s.emu.server.addFault({ endpoint: "google.iam.generateIdToken", status: 500 });
  const denied = await inject(t, s, `${SA}/default/token?scopes=https://www.googleapis.com/auth/devstorage.read_only`);
  t.equal(denied.status, 503, "generateAccessToken PERMISSION_DENIED → 503");
  t.match(String(denied.headers["retry-after"]), /^[1-9]\d*$/, "Retry-After in whole seconds");
  t.equal(denied.headers["content-type"], "application/text");
  t.match(denied.body, /impersonation.*PERMISSION_DENIED/s, "the message names the hop and repeats what Google said");
  const idFail = await inject(t, s, `${SA}/default/identity?audience=https://example.com/fails`);
  t.equal(idFail.status, 503, "generateIdToken 500 → 503");
  t.ok(Number(idFail.headers["retry-after"]) >= 1, "with Retry-After");
  const still = await inject(t, s, `${SA}/${DEMO_SERVICE_ACCOUNT}/token`);
  t.equal(still.status, 200, "the cached token is still served while IAM Credentials fails");
  t.equal(JSON.parse(still.body).access_token, cached.access_token);
  s.emu.server.clearFaults();
  s.emu.server.addFault({ endpoint: "google.iam.generateAccessToken", drop: true });
  const dropped = await inject(
    t,
    s,
    `${SA}/${SECOND_SERVICE_ACCOUNT}/token?scopes=https://www.googleapis.com/auth/devstorage.full_control`,
  );
  t.equal(dropped.status, 503, "connection dropped by IAM Credentials → 503");
  t.ok(Number(dropped.headers["retry-after"]) >= 1, "with Retry-After");
  s.emu.server.clearFaults();

  // A scope Google does not know is the client's mistake: 400, not an outage.
  for (let i = 0; i < 2; i++) {
    const bad = await inject(t, s, `${SA}/default/token?scopes=not-a-scope`);
    t.equal(bad.status, 400, `an invalid scope: 400 (${i ? "again, from the cache's backoff" : "from Google"})`);
    t.match(bad.body, /refused the requested scopes.*impersonation.*INVALID_ARGUMENT/s, "saying so, with the hop and what Google said");
    t.notOk(bad.headers["retry-after"], "nothing to wait for");
  }
  t.equal((await inject(t, s, `${SA}/default/token`)).status, 200, "the default scopes are still served");
});

t.test("without a service account: the federated token is served, identity says why it cannot", async (t) => {
  const n = await startStack({
    serviceAccounts: [],
    overrides: { "upstream.attempts": 1, "server.upstreamBudgetPerMinute": 3 },
    logLevel: "fatal",
  });
  t.teardown(() => n.close());
  n.emu.google.settings.tokeninfoFederated = true;

  // The federated identity is listed under a name of its own besides default: gcloud only
  // uses the account that default/email names if the listing has it.
  textOk(t, await inject(t, n, `${SA}/`), `default/\n${FEDERATED_ACCOUNT}/\n`, "default and the federated identity are listed");
  textOk(t, await inject(t, n, `${SA}/default/email`), FEDERATED_ACCOUNT, "default/email names it");
  const fedJson = { aliases: ["default"], email: FEDERATED_ACCOUNT, scopes: [CLOUD_PLATFORM] };
  jsonOk(t, await inject(t, n, `${SA}/?recursive=true`), { default: fedJson, [FEDERATED_ACCOUNT]: fedJson }, "recursive listing");
  jsonOk(t, await inject(t, n, `${SA}/${FEDERATED_ACCOUNT}/?recursive=true`), fedJson, "by its name, recursive");
  const r = await inject(t, n, `${SA}/default/token`);
  t.equal(r.status, 200);
  const tok = JSON.parse(r.body) as { access_token: string; expires_in: number; token_type: string };
  t.equal(tok.token_type, "Bearer");
  t.ok(tok.expires_in > 3000, "a fresh federated token");
  const info = n.emu.google.tokenInfo(tok.access_token)!;
  t.equal(info.kind, "federated", "the access token is the federated STS token");
  t.same(info.scopes, [CLOUD_PLATFORM]);
  let c = await calls(n.emu);
  t.equal(c["google.sts.token"], 1);
  t.equal(c["google.iam.generateAccessToken"] ?? 0, 0, "no impersonation");
  const byName = JSON.parse((await inject(t, n, `${SA}/${FEDERATED_ACCOUNT}/token`)).body) as { access_token: string };
  t.equal(byName.access_token, tok.access_token, "the same cached token by its name");
  const scoped = JSON.parse((await inject(t, n, `${SA}/default/token?scopes=${EMAIL_SCOPE}`)).body) as { access_token: string };
  t.same(n.emu.google.tokenInfo(scoped.access_token)!.scopes, [EMAIL_SCOPE], "?scopes= goes to STS");

  const id = await inject(t, n, `${SA}/default/identity?audience=https://example.com`);
  t.equal(id.status, 404, "identity: 404");
  t.equal((await inject(t, n, `${SA}/${FEDERATED_ACCOUNT}/identity?audience=https://example.com`)).status, 404, "by its name too");
  t.match(id.body, /service account/i, "the message says a service account is needed");
  t.match(id.body, /serviceAccounts|OCI2GCP_SERVICE_ACCOUNTS/, "and how to configure one");
  c = await calls(n.emu);
  t.equal(c["google.iam.generateIdToken"] ?? 0, 0);
  t.equal(c["google.sts.token"], 2);
  t.equal((await inject(t, n, `${SA}/${DEMO_SERVICE_ACCOUNT}/token`)).status, 404, "no such account: 404");

  // STS failing: 503 for what needs a new exchange, the cached token still served.
  n.emu.server.addFault({ endpoint: "google.sts.token", status: 500 });
  const failed = await inject(t, n, `${SA}/default/token?scopes=https://www.googleapis.com/auth/devstorage.read_only`);
  t.equal(failed.status, 503, "STS 500 → 503");
  t.ok(Number(failed.headers["retry-after"]) >= 1, "with Retry-After");
  t.match(failed.body, /STS/, "naming the hop");
  t.equal(JSON.parse((await inject(t, n, `${SA}/default/token`)).body).access_token, tok.access_token, "the cached token is still served");
  n.emu.server.clearFaults();

  // The per-client upstream budget (3 a minute here): new upstream work beyond it → 429; cached answers go on.
  const statuses: number[] = [];
  let limited: Answer | undefined;
  for (let i = 0; i < 5; i++) {
    const a = await n.daemon.app.inject({
      url: `${SA}/default/token?scopes=https://www.googleapis.com/auth/s${i}`,
      headers: { "metadata-flavor": "Google" },
      // Not loopback: every loopback address is one client, whose budget the requests above used.
      remoteAddress: "10.0.0.9",
    });
    statuses.push(a.statusCode);
    if (a.statusCode === 429) limited = { status: a.statusCode, headers: a.headers, body: a.body };
  }
  t.same(statuses, [200, 200, 200, 429, 429], "beyond the budget: 429");
  t.equal(limited?.headers["metadata-flavor"], "Google");
  t.ok(limited && Number(limited.headers["retry-after"]) >= 1, "429 with Retry-After");
  const hit = await n.daemon.app.inject({
    url: `${SA}/default/token`,
    headers: { "metadata-flavor": "Google" },
    remoteAddress: "10.0.0.9",
  });
  t.equal(hit.statusCode, 200, "a cached token is still served beyond the budget");
});
