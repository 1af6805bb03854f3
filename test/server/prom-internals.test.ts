/**
 * What src/server/prom-internals.ts borrows from prom-client beyond its typed
 * API. If a prom-client release changes any of it, these tests fail and name what
 * changed, before the HTTP duration histogram silently loses the fast path's answers.
 */
import client from "prom-client";
import t from "tap";
import { AmendedHistogram, type ExportedValue, histogramGetForPromString } from "../../src/server/prom-internals.js";

const BUCKETS = [0.1, 1];

t.test("Histogram.prototype.getForPromString exists and is a function", async (t) => {
  t.type(
    (client.Histogram.prototype as unknown as Record<string, unknown>).getForPromString,
    "function",
    "prom-client still has getForPromString on Histogram's prototype",
  );
  t.type(histogramGetForPromString, "function");
});

t.test("getForPromString returns {values} with the fields read and written", async (t) => {
  const registry = new client.Registry();
  const h = new client.Histogram({ name: "shape_seconds", help: "h", labelNames: ["route"], buckets: BUCKETS, registers: [registry] });
  h.observe({ route: "/a" }, 0.05);
  h.observe({ route: "/a" }, 0.5);
  const result = histogramGetForPromString.call(h);
  t.ok(result instanceof Promise, "it returns a promise");
  const data = await result;
  t.ok(Array.isArray(data?.values), "of an object with a values array");
  const lines = data.values.map((v: ExportedValue) => ({
    metricName: v.metricName,
    labels: v.labels,
    sharedLabels: v.sharedLabels,
    value: v.value,
  }));
  t.same(
    lines,
    [
      { metricName: "shape_seconds_bucket", labels: { le: 0.1 }, sharedLabels: { route: "/a" }, value: 1 },
      { metricName: "shape_seconds_bucket", labels: { le: 1 }, sharedLabels: { route: "/a" }, value: 2 },
      { metricName: "shape_seconds_bucket", labels: { le: "+Inf" }, sharedLabels: { route: "/a" }, value: 2 },
      { metricName: "shape_seconds_sum", labels: {}, sharedLabels: { route: "/a" }, value: 0.55 },
      { metricName: "shape_seconds_count", labels: {}, sharedLabels: { route: "/a" }, value: 2 },
    ],
    "bucket lines (le: the bound as a number, then +Inf; values cumulative), then _sum and _count, the metric's labels in sharedLabels",
  );
});

t.test("the registry and get() read a histogram through an override of getForPromString", async (t) => {
  const registry = new client.Registry();
  const h = new AmendedHistogram(
    { name: "amended_seconds", help: "h", labelNames: ["route"], buckets: BUCKETS, registers: [registry] },
    (values) => {
      for (const v of values) if (v.metricName === "amended_seconds_count") v.value += 1000;
      values.push({ metricName: "amended_seconds_count", labels: {}, sharedLabels: { route: "/added" }, value: 7 });
    },
  );
  h.observe({ route: "/a" }, 0.05);
  const text = await registry.metrics();
  t.match(text, /^amended_seconds_count\{route="\/a"\} 1001$/m, "registry.metrics(): an amended value");
  t.match(text, /^amended_seconds_count\{route="\/added"\} 7$/m, "registry.metrics(): an added line");
  const json = (await registry.getMetricsAsJSON()).find((m) => m.name === "amended_seconds")!;
  const count = (route: string) =>
    json.values.find((v) => (v as { metricName?: string }).metricName === "amended_seconds_count" && v.labels.route === route)?.value;
  t.equal(count("/a"), 1001, "getMetricsAsJSON() (get()): the amended value");
  t.equal(count("/added"), 7, "getMetricsAsJSON() (get()): the added line");
  t.equal((await h.get()).values.find((v) => v.labels.route === "/added")?.value, 7, "get() itself");
});
