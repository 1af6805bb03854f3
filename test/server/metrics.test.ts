import t from "tap";
import { DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, startStack } from "../helpers/stack.js";

const NAMES = [
  "oci2gcp_http_requests_total",
  "oci2gcp_http_request_duration_seconds",
  "oci2gcp_upstream_requests_total",
  "oci2gcp_upstream_request_duration_seconds",
  "oci2gcp_token_last_refresh_timestamp_seconds",
  "oci2gcp_token_expiry_seconds",
  "oci2gcp_cached_tokens",
  "oci2gcp_cache_lookups_total",
  "oci2gcp_process_resident_memory_bytes",
];

/** Distinct label sets per metric name in a Prometheus text exposition. */
function series(text: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s/.exec(line);
    if (!m) continue;
    const set = out.get(m[1]!) ?? new Set<string>();
    set.add(m[2] ?? "");
    out.set(m[1]!, set);
  }
  return out;
}

t.test("metric names, and labels stay bounded after 1,000 distinct audiences", async (t) => {
  const s = await startStack({ logLevel: "info", overrides: { "server.upstreamBudgetPerMinute": 0, "server.maxCachedVariants": 64 } });
  t.teardown(() => s.close());
  t.equal((await s.get("/computeMetadata/v1/instance/service-accounts/default/token")).status, 200);
  for (let i = 0; i < 1000; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: 50 }, (_, j) =>
        s.get(`/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://aud-${i + j}.example.com/x`),
      ),
    );
    t.ok(
      batch.every((r) => r.status === 200),
      `batch ${i} answered`,
    );
  }
  const res = await fetch(`${s.url}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get("content-type"), /^text\/plain/);
  const text = await res.text();
  for (const n of NAMES) t.match(text, new RegExp(`^${n}`, "m"), `has ${n}`);
  t.notMatch(text, /aud-\d+\.example\.com/, "no audience in any label");
  t.notMatch(text, /eyJ|ya29/, "no token in the metrics");
  const ser = series(text);
  const http = ser.get("oci2gcp_http_requests_total")!;
  t.ok(http.size <= 5, `HTTP series by route template: ${[...http].join(" ")}`);
  t.ok(
    [...http].some((l) => l.includes('route="/computeMetadata/v1/instance/service-accounts/:account/identity"')),
    "labelled by route template",
  );
  t.ok(ser.get("oci2gcp_token_expiry_seconds")!.size <= 5, "expiry series per kind and account, not per audience");
  t.match(text, /oci2gcp_cached_tokens\{kind="id-token"\} 64\b/, "the ID-token cache is bounded by server.maxCachedVariants");
  t.match(text, /oci2gcp_upstream_requests_total\{hop="impersonation",outcome="success"\} 10\d\d/, "upstream calls counted per hop");
  t.match(text, /oci2gcp_cache_lookups_total\{kind="access-token",result="miss"\} 1\b/);
});

t.test("readiness flips with an outage and back", async (t) => {
  const s = await startStack({
    serviceAccounts: [],
    overrides: { "cache.renewBeforeSeconds": 3, "cache.minRemainingSeconds": 1 },
  });
  t.teardown(() => s.close());
  await fetch(`${s.emu.url}/_emulator/settings`, { method: "POST", body: JSON.stringify({ google: { federatedTokenSeconds: 4 } }) });
  const ready = await fetch(`${s.url}/readyz`);
  t.equal(ready.status, 200, "ready with a token");
  await fetch(`${s.emu.url}/_emulator/faults`, { method: "POST", body: JSON.stringify({ endpoint: "google.sts.token", status: 503 }) });
  let down: Response | undefined;
  for (let i = 0; i < 40; i++) {
    const r = await fetch(`${s.url}/readyz`);
    if (r.status === 503) {
      down = r;
      break;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  t.ok(down, "not ready once no valid token is left");
  t.ok(down?.headers.get("retry-after"), "with Retry-After");
  t.equal(await down!.text(), "not ready: hop sts, code refused\n", "naming the hop and a stable code, nothing the upstream said");
  await fetch(`${s.emu.url}/_emulator/faults`, { method: "DELETE" });
  let back = false;
  for (let i = 0; i < 60 && !back; i++) {
    back = (await fetch(`${s.url}/readyz`)).status === 200;
    if (!back) await new Promise((res) => setTimeout(res, 250));
  }
  t.ok(back, "ready again after the outage, without restart");
  const m = await (await fetch(`${s.url}/metrics`)).text();
  t.match(m, /oci2gcp_upstream_requests_total\{hop="sts",outcome="error"\} [1-9]/, "the failures are counted");
});

t.test("answers tallied outside prom-client reach the request counter and the duration histogram", async (t) => {
  const { Metrics } = await import("../../src/server/metrics.js");
  const m = new Metrics();
  const route = "/computeMetadata/v1/instance/service-accounts/:account/token";
  const tally = m.observer(route, "GET", 200);
  for (let i = 0; i < 5; i++) tally(0.0001);
  tally(0.003);
  const line = (text: string, name: string, labels: string) =>
    Number(new RegExp(`^${name}\\{${labels}\\} ([\\d.e-]+)$`, "m").exec(text)?.[1] ?? NaN);
  const r = `route="${route.replace(/[/:]/g, (c) => `\\${c}`)}"`;
  let text = await m.registry.metrics();
  t.equal(line(text, "oci2gcp_http_requests_total", `${r},method="GET",status="200"`), 6, "counted");
  t.equal(
    line(text, "oci2gcp_http_request_duration_seconds_bucket", `le="0.0005",${r}`),
    5,
    "the series exists though only tallies answered",
  );
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_bucket", `le="0.005",${r}`), 6, "buckets are cumulative");
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_count", r), 6);
  t.ok(Math.abs(line(text, "oci2gcp_http_request_duration_seconds_sum", r) - 0.0035) < 1e-9, "sum");

  // Answers through the full pipeline add to the same series, and reading twice adds nothing.
  m.observeRequest(route, "GET", 200, 0.02);
  await m.registry.metrics();
  text = await m.registry.metrics();
  t.equal(line(text, "oci2gcp_http_requests_total", `${r},method="GET",status="200"`), 7, "both kinds counted once");
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_bucket", `le="0.0025",${r}`), 5);
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_bucket", `le="0.05",${r}`), 7);
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_bucket", `le="\\+Inf",${r}`), 7);
  t.equal(line(text, "oci2gcp_http_request_duration_seconds_count", r), 7);
  const json = (await m.registry.getMetricsAsJSON()).find((x) => x.name === "oci2gcp_http_request_duration_seconds")!;
  const count = json.values.find(
    (v) => (v as { metricName?: string }).metricName === "oci2gcp_http_request_duration_seconds_count" && v.labels.route === route,
  );
  t.equal(count?.value, 7, "the JSON view agrees");
});

t.test("the metrics plugin counts the answers of every plugin's routes and of the not-found handler", async (t) => {
  const { default: Fastify } = await import("fastify");
  const { Metrics, metricsPlugin } = await import("../../src/server/metrics.js");
  const metrics = new Metrics();
  const app = Fastify();
  t.teardown(() => app.close());
  await app.register(metricsPlugin, { metrics });
  // A sibling plugin, registered after: an encapsulated metrics hook would never see its routes.
  await app.register(async (child) => {
    child.get("/sibling/:id", async () => "ok");
  });
  t.equal((await app.inject("/sibling/1")).statusCode, 200);
  t.equal((await app.inject("/sibling/2")).statusCode, 200);
  t.equal((await app.inject("/nowhere")).statusCode, 404);
  const res = await app.inject("/metrics");
  t.equal(res.statusCode, 200);
  t.equal(res.headers["content-type"], metrics.registry.contentType, "Prometheus's content type");
  t.match(res.body, /^oci2gcp_http_requests_total\{route="\/sibling\/:id",method="GET",status="200"\} 2$/m, "by route template");
  t.match(res.body, /^oci2gcp_http_requests_total\{route="unmatched",method="GET",status="404"\} 1$/m, "unmatched requests too");
});

t.test("the probes answer without Metadata-Flavor but name no account and repeat no upstream text", async (t) => {
  const s = await startStack({ serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT] });
  t.teardown(() => s.close());
  const SA = "/computeMetadata/v1/instance/service-accounts";
  t.equal((await s.get(`${SA}/default/token`)).status, 200);
  t.equal((await s.get(`${SA}/${SECOND_SERVICE_ACCOUNT}/token`)).status, 200);
  const metrics = await fetch(`${s.url}/metrics`);
  t.equal(metrics.headers.get("metadata-flavor"), "Google", "/metrics in the metadata server's form");
  t.equal(metrics.headers.get("x-content-type-options"), "nosniff");
  const m = await metrics.text();
  t.notMatch(m, /@|gserviceaccount/, "no service account email in any label");
  t.match(m, /oci2gcp_token_expiry_seconds\{kind="access-token",account="0"\}/, "the default account by its place in the list");
  t.match(m, /oci2gcp_token_expiry_seconds\{kind="access-token",account="1"\}/, "the second account by its place");
  // An upstream that says something a token thief could use: none of it reaches /readyz.
  const f = await startStack({ serviceAccounts: [], overrides: { "cache.renewBeforeSeconds": 3, "cache.minRemainingSeconds": 1 } });
  t.teardown(() => f.close());
  await fetch(`${f.emu.url}/_emulator/settings`, { method: "POST", body: JSON.stringify({ google: { federatedTokenSeconds: 4 } }) });
  await fetch(`${f.emu.url}/_emulator/faults`, {
    method: "POST",
    body: JSON.stringify({
      endpoint: "google.sts.token",
      status: 400,
      body: JSON.stringify({ error: "invalid_target", error_description: `pool of ${DEMO_SERVICE_ACCOUNT} at projects/123 is zzsecretzz` }),
    }),
  });
  let down: Response | undefined;
  for (let i = 0; i < 40 && !down; i++) {
    const r = await fetch(`${f.url}/readyz`);
    if (r.status === 503) down = r;
    else await new Promise((res) => setTimeout(res, 250));
  }
  t.ok(down, "not ready");
  const body = await down!.text();
  t.match(body, /^not ready: hop sts, code [a-z_]+\n$/, `hop and code only: ${body.trim()}`);
  t.notMatch(body, /zzsecretzz|@|invalid_target|projects/, "nothing the upstream said");
  t.equal(down!.headers.get("metadata-flavor"), "Google");
});
