import t from "tap";
import { cleanMeans, cleanRun, type LoadResult, parseWrk } from "../../bench/src/runs.js";

// wrk 4.1's report with --latency, as it prints it.
const WRK = `Running 6s test @ http://127.0.0.1:40123/computeMetadata/v1/instance/service-accounts/default/token
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    1.02ms  31.20ms   92.01%
    Req/Sec    19.31k     1.20k   21.02k    80.00%
  Latency Distribution
     50%  428.00us
     75%    2.80ms
     90%    3.10ms
     99%    1.02s
  115268 requests in 6.00s, 36.72MB read
`;

t.test("wrk's report: requests, rate, p50 and p99 in ms whatever the unit, and failures", async (t) => {
  const clean = parseWrk(`${WRK}Requests/sec:  19211.33\nTransfer/sec:      6.12MB\n`);
  t.same(clean, { rps: 19211.33, p50: 0.428, p99: 1020, requests: 115268, bad: 0 });
  const failing = parseWrk(
    `${WRK}  Socket errors: connect 1, read 2, write 3, timeout 4\n  Non-2xx or 3xx responses: 10\n` +
      "Requests/sec:  19211.33\nTransfer/sec:      6.12MB\n",
  );
  t.equal(failing.bad, 20, "socket errors of every kind and answers other than 2xx or 3xx are failures");
  const noLatency = parseWrk(`${WRK.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, "")}Requests/sec:  19211.33\n`);
  t.ok(Number.isNaN(noLatency.p99), "no latency distribution (wrk without --latency): no p99 rather than a wrong one");
  t.throws(() => parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"), /not as expected/);
});

t.test("a run with a failed answer, in it or in its warm-up, is left out of the means", async (t) => {
  const r = (rps: number, bad = 0): LoadResult => ({ rps, p50: 1, p99: rps / 1000, requests: rps * 6, bad, cpuPer1k: rps / 100 });
  const runs = [
    { r: r(10_000), warmBad: 0 },
    { r: r(30_000), warmBad: 0 },
    { r: r(90_000, 5), warmBad: 0 },
    { r: r(90_000), warmBad: 1 },
  ];
  t.same(runs.map(cleanRun), [true, true, false, false]);
  t.same(cleanMeans(runs), { rps: 20_000, p99: 20, cpu: 200, n: 2 });
  const none = cleanMeans(runs.slice(2));
  t.equal(none.n, 0);
  t.ok(Number.isNaN(none.rps), "no clean run: no figure, rather than one made of failures");
});
