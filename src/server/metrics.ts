import fp from "fastify-plugin";
import client from "prom-client";
import type { Chain } from "../chain.js";
import type { CacheEvents } from "../token/cache.js";
import { HOP_IDS, type Hop } from "../upstream/hop-error.js";
import { AmendedHistogram, type ExportedValue } from "./prom-internals.js";
import { metadataHeaderSet } from "./respond.js";

const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/**
 * How often the event-loop delay behind prom-client's `nodejs_eventloop_lag_*`
 * histograms is sampled (ms). Each sample is a timer that wakes the process:
 * at prom-client's default of 10 ms an idle daemon woke 100 times a second and
 * spent about 9 ms of CPU a second doing so, where a bare node:http server
 * spends nothing. Once a second still shows a loop that stalls, without keeping
 * the machine's CPU out of its idle states for nothing.
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

/**
 * Answers of one route, method and status counted in plain numbers: recording
 * one costs a few additions, where prom-client's label handling costs more than
 * the rest of a cached answer. The metrics add them in whenever they are read.
 */
class Tally {
  /** Answers, and their total time in seconds. */
  n = 0;
  sum = 0;
  /** Answers per bucket of HTTP_BUCKETS (not cumulative), the last one past every bound. */
  readonly perBucket = new Array<number>(HTTP_BUCKETS.length + 1).fill(0);
  /** Answers already added to the request counter. */
  counted = 0;

  constructor(readonly labels: { route: string; method: string; status: string }) {}

  add(seconds: number): void {
    this.n++;
    this.sum += seconds;
    let i = 0;
    while (i < HTTP_BUCKETS.length && seconds > HTTP_BUCKETS[i]!) i++;
    this.perBucket[i]!++;
  }
}

/**
 * Prometheus metrics, with labels that stay bounded whatever clients ask: HTTP
 * by route template (never the raw path), tokens by kind and configured account
 * (never by audience or scope set). No label names a service account: scrapers
 * send no Metadata-Flavor, so whoever can forge a request reads them too.
 */
export class Metrics {
  readonly registry = new client.Registry();
  private readonly requests: client.Counter<"route" | "method" | "status">;
  private readonly duration: client.Histogram<"route">;
  private readonly refreshes: client.Counter<"hop" | "outcome">;
  private readonly refreshDuration: client.Histogram<"hop">;
  private readonly lastSuccess: client.Gauge<"hop">;
  private readonly refusals: client.Counter<"reason">;
  private chain?: Chain;
  private readonly tallies: Tally[] = [];

  constructor() {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry, prefix: "oci2gcp_", eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    const tallies = this.tallies;
    this.requests = new client.Counter({
      name: "oci2gcp_http_requests_total",
      help: "HTTP requests answered, by route template, method and status code.",
      labelNames: ["route", "method", "status"],
      registers,
      collect() {
        for (const t of tallies) {
          if (t.n > t.counted) this.inc(t.labels, t.n - t.counted);
          t.counted = t.n;
        }
      },
    });
    const durationName = "oci2gcp_http_request_duration_seconds";
    this.duration = new AmendedHistogram(
      {
        name: durationName,
        help: "Time to answer HTTP requests, by route template.",
        labelNames: ["route"],
        buckets: HTTP_BUCKETS,
        registers,
      },
      (values) => addTallies(durationName, tallies, values),
    );
    this.refreshes = new client.Counter({
      name: "oci2gcp_upstream_requests_total",
      help: "Token requests to each upstream hop (each counts once, its retries included), by outcome.",
      labelNames: ["hop", "outcome"],
      registers,
    });
    this.refreshDuration = new client.Histogram({
      name: "oci2gcp_upstream_request_duration_seconds",
      help: "Time each upstream hop took to answer a token request, retries included.",
      labelNames: ["hop"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.lastSuccess = new client.Gauge({
      name: "oci2gcp_token_last_refresh_timestamp_seconds",
      help: "Unix time of the last successful token refresh, by hop.",
      labelNames: ["hop"],
      registers,
    });
    this.refusals = new client.Counter({
      name: "oci2gcp_access_refusals_total",
      help: "Requests refused by the access rules, by reason: unidentified, no-rule, account, subject-token.",
      labelNames: ["reason"],
      registers,
    });
    const self = this;
    new client.Gauge({
      name: "oci2gcp_token_expiry_seconds",
      help:
        "Seconds until the cached token expires: the soonest of its kind and account " +
        "(the account's place in google.serviceAccounts, 0 being default; empty for tokens of no account).",
      labelNames: ["kind", "account"],
      registers,
      collect() {
        this.reset();
        for (const [labels, v] of self.expiries()) this.set(labels, v);
      },
    });
    new client.Gauge({
      name: "oci2gcp_cached_tokens",
      help: "Tokens held in the cache, by kind.",
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const { kind, state } of self.chain?.states() ?? []) if (state.token) counts.set(kind, (counts.get(kind) ?? 0) + 1);
        for (const [kind, n] of counts) this.set({ kind }, n);
      },
    });
    new client.Counter({
      name: "oci2gcp_cache_lookups_total",
      help: "Token lookups, by kind and result: hit (answered from cache) or miss (waited for an upstream call).",
      labelNames: ["kind", "result"],
      registers,
      collect() {
        this.reset();
        for (const { kind, state } of self.chain?.states() ?? []) {
          this.inc({ kind, result: "hit" }, state.hits);
          this.inc({ kind, result: "miss" }, state.misses);
        }
      },
    });
  }

  attach(chain: Chain): void {
    this.chain = chain;
  }

  private expiries(): [Record<string, string>, number][] {
    const now = Date.now();
    const soonest = new Map<string, { kind: string; account: string; v: number }>();
    for (const { kind, state } of this.chain?.states() ?? []) {
      if (!state.token) continue;
      // /metrics answers without Metadata-Flavor, so a forged request can read it: its
      // labels name no service account, only its place in the configured list.
      const index = this.chain!.accounts.indexOf(state.key.split(" ", 1)[0]!);
      const account = index < 0 ? "" : String(index);
      const k = `${kind} ${account}`;
      const v = (state.token.expiresAt - now) / 1000;
      const cur = soonest.get(k);
      if (!cur || v < cur.v) soonest.set(k, { kind, account, v });
    }
    return [...soonest.values()].map((x) => [{ kind: x.kind, account: x.account }, x.v]);
  }

  readonly events: CacheEvents<Hop> = {
    onRefresh: (e) => {
      const hop = HOP_IDS[e.label];
      this.refreshes.inc({ hop, outcome: e.ok ? "success" : "error" });
      this.refreshDuration.observe({ hop }, e.durationMs / 1000);
      if (e.ok) this.lastSuccess.set({ hop }, Date.now() / 1000);
    },
  };

  /** Counts a request the access rules refused. */
  refused(reason: string): void {
    this.refusals.inc({ reason });
  }

  /** Counts an answered request: `route` is its route template (or "unmatched"). */
  observeRequest(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.duration.observe({ route }, seconds);
  }

  /**
   * `observeRequest` for one kind of answer that is given very often (the cached
   * token), at the cost of a few additions: the counts reach the request counter
   * and the duration histogram whenever the metrics are read.
   */
  observer(route: string, method: string, status: number): (seconds: number) => void {
    const t = new Tally({ route, method, status: String(status) });
    this.tallies.push(t);
    return (seconds) => t.add(seconds);
  }
}

export interface MetricsPluginOptions {
  metrics: Metrics;
}

/**
 * Counts every answer by route template and serves the metrics at /metrics.
 * Not encapsulated (fastify-plugin): its onResponse hook must see the answers of
 * every route of the app, the other plugins' and the not-found handler's included.
 */
export const metricsPlugin = fp<MetricsPluginOptions>(
  async (app, { metrics }) => {
    app.addHook("onResponse", async (req, reply) => {
      metrics.observeRequest(req.routeOptions.url ?? "unmatched", req.method, reply.statusCode, reply.elapsedTime / 1000);
    });
    app.get("/metrics", async (_req, reply) => {
      const body = await metrics.registry.metrics();
      return reply.headers(metadataHeaderSet(metrics.registry.contentType)).send(body);
    });
  },
  { name: "oci2gcp-metrics", fastify: "5.x" },
);

/**
 * Adds the tallied answers to the HTTP duration histogram's exported lines: the
 * bucket, sum and count lines of each tally's route get its counts (and are made
 * when only the tally has answers).
 */
function addTallies(name: string, tallies: readonly Tally[], values: ExportedValue[]): void {
  const bucket = `${name}_bucket`;
  for (const t of tallies) {
    if (t.n === 0) continue;
    const route = t.labels.route;
    const line = (metricName: string, le?: string | number): ExportedValue => {
      let v = values.find(
        (x) => x.metricName === metricName && x.sharedLabels?.route === route && (le === undefined || x.labels.le === le),
      );
      if (!v) {
        v = { labels: le === undefined ? {} : { le }, sharedLabels: { route }, value: 0, metricName };
        values.push(v);
      }
      return v;
    };
    let cumulative = 0;
    HTTP_BUCKETS.forEach((bound, i) => {
      cumulative += t.perBucket[i]!;
      line(bucket, bound).value += cumulative;
    });
    line(bucket, "+Inf").value += t.n;
    line(`${name}_sum`).value += t.sum;
    line(`${name}_count`).value += t.n;
  }
}
