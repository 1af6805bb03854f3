import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT } from "../../dist/emulator/index.js";
import { type Bench, callsText, FLAVOR, HOPS_HEAD, hopCalls, LATENCY, progress, SHORT_ENV, SHORT_S, sum, TOKEN_PATH } from "./bench.js";
import { type Calls, HOPS } from "./emu.js";
import { type CannonResult, cannon, type HerdResult, herd } from "./load.js";
import { BENCH_DIR, type Child, cleanEnv, get, median, pool, runNode, sleep, until200 } from "./proc.js";
import type { ProfileSummary } from "./profile.js";
import { f, ratio, table, verdict } from "./report.js";

export interface Options {
  /** Seconds per load run, connections of the load generator. */
  duration: number;
  connections: number;
  /** Short-lived client processes, and how many at a time. */
  processes: number;
  /** Section 4 runs at each of these concurrencies. */
  concurrency: number[];
}

/** A scenario's rows of the summary table and its own section of the report. */
export interface Part {
  summary: string[][];
  lines: string[];
}

const COLD_REPS = 3;
const HERD_SIZE = 1000;
const STARTS = 5;
/** Target of section 5: start to ready against the time node:http takes to listen, in the same run. */
const READY_TARGET = 4;
/** Seconds over which an idle server's wake-ups and CPU are counted, and how long after it is ready the count starts. */
const IDLE_S = 10;
const IDLE_AFTER_S = 15;
const RENEWALS = 5;
/** Section 4 runs its processes in this many alternating batches of each kind. */
const ROUNDS = 5;

/**
 * Wake-ups of a process's main thread (voluntary context switches) and the CPU
 * time of all its threads (ms), from the scheduler's own count in nanoseconds
 * (the first field of /proc/PID/task/TID/schedstat), finer than the clock ticks of
 * /proc/PID/stat.
 */
function idleCounters(pid: number): { wakeups: number; cpuMs: number } {
  const status = fs.readFileSync(`/proc/${pid}/task/${pid}/status`, "utf8");
  let cpuMs = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    cpuMs += Number(fs.readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]) / 1e6;
  }
  return { wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]), cpuMs };
}

/** What a ready server costs while nobody asks: its main thread's wake-ups and its CPU time, per second. */
async function idleCost(c: Child): Promise<{ wakeups: number; cpuMs: number }> {
  await sleep(IDLE_AFTER_S * 1000);
  const a = idleCounters(c.pid);
  await sleep(IDLE_S * 1000);
  const z = idleCounters(c.pid);
  return { wakeups: (z.wakeups - a.wakeups) / IDLE_S, cpuMs: (z.cpuMs - a.cpuMs) / IDLE_S };
}

const profileTables = (s: ProfileSummary, per: number, unit: string) => [
  ...table(
    [`self ${unit}`, "share", "function"],
    s.self.map((x) => [f((x.ms * 1000) / per, 1), `${f(x.share * 100, 1)}%`, `\`${x.fn.replace(/\|/g, "\\|").slice(0, 140)}\``]),
  ),
  "",
  "By package: the innermost library or file of ours on the stack, the one running or calling into node:",
  "",
  ...table(
    [unit, "share", "package"],
    s.packages.map((x) => [f((x.ms * 1000) / per, 1), `${f(x.share * 100, 1)}%`, x.name]),
  ),
  "",
];

export async function profiles(b: Bench, o: Options): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  progress("profiles: the daemon under the throughput load, and during full renewals, with --cpu-prof");
  b.emu.setLatency(0);
  b.emu.setTokens();
  let load: CannonResult | undefined;
  const underLoad = await b.profiled("serve", {}, "load", async (d, now) => {
    await until200(`${d.url}/readyz`, d, d.startedAt);
    const from = now();
    load = await cannon(d.url + TOKEN_PATH, FLAVOR, o.connections, o.duration);
    return [[from, now()]];
  });
  b.emu.setTokens({ lifetimeSeconds: SHORT_S });
  const renewals = await b.profiled("cold", SHORT_ENV, "renewals", async (d, now) => {
    await get(d.url + TOKEN_PATH, FLAVOR);
    const windows: [number, number][] = [];
    for (let i = 0; i < RENEWALS; i++) {
      await b.untilExpired(d);
      const from = now();
      await get(d.url + TOKEN_PATH, FLAVOR);
      windows.push([from, now()]);
    }
    return windows;
  });
  b.emu.setTokens();
  lines.push(
    "## Profiles",
    "",
    `\`node --cpu-prof\` on the daemon; samples outside the measured requests are left out. Under the throughput load (${o.duration} s, ` +
      `${o.connections} connections, ${f(load!.rps, 0)} req/s while profiled): CPU per answer in µs.`,
    "",
    ...profileTables(underLoad, load!.requests, "µs per answer"),
    `During ${RENEWALS} full renewals (all five hops, emulators without latency) in a running daemon: CPU per renewal in ms ` +
      `(${f(renewals.busyMs / RENEWALS, 1)} ms busy per renewal).`,
    "",
    ...profileTables(renewals, RENEWALS * 1000, "ms per renewal"),
  );
  return { summary, lines };
}

export async function cold(b: Bench, _o: Options): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  progress(`cold path: ${COLD_REPS} fresh daemons per latency, first request and full renewal`);
  const keygen: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    await promisify(crypto.generateKeyPair)("rsa", { modulusLength: 2048, publicExponent: 65537 });
    keygen.push(performance.now() - t);
  }
  b.emu.setTokens({ lifetimeSeconds: SHORT_S, jwksCacheSeconds: 0 });
  const rows: (string | number)[][] = [];
  // Per kind of request: the daemon's own ms, the direct upstream ms, and total / direct.
  const own = { fresh: [] as number[], renewal: [] as number[] };
  const direct = { fresh: [] as number[], renewal: [] as number[] };
  const ratios = { fresh: [] as number[], renewal: [] as number[] };
  for (const latency of [0, LATENCY]) {
    b.emu.setLatency(latency);
    for (let k = 0; k < COLD_REPS; k++) {
      const d = await b.daemon("cold", SHORT_ENV);
      await until200(`${d.url}/healthz`, d, d.startedAt);
      const fresh = await b.timedToken(d, true);
      await b.untilExpired(d);
      const renewal = await b.timedToken(d, true);
      await d.stop();
      for (const [kind, what, t] of [
        ["fresh", "first request of a new daemon", fresh],
        ["renewal", "all five hops renewed in a running daemon", renewal],
      ] as const) {
        if (t.status !== 200 || !t.directOk) throw new Error(`cold path: status ${t.status}, replay ok ${t.directOk}`);
        own[kind].push(t.ms - t.direct);
        direct[kind].push(t.direct);
        ratios[kind].push(t.ms / t.direct);
        rows.push([
          what,
          latency,
          f(t.ms),
          f(t.direct),
          f(t.ms - t.direct),
          ratio(t.ms, t.direct),
          callsText(t.calls),
          hopCalls(t.calls) * latency,
        ]);
      }
    }
  }
  b.emu.setLatency(0);
  b.emu.setTokens();
  const renew = median(own.renewal);
  const fresh = median(own.fresh);
  // Medians over the latencies, as the figures beside them (section 2 has each run).
  const baseline = (k: "fresh" | "renewal") => `calls sent directly: ${f(median(direct[k]))} ms`;
  summary.push(
    [
      "2",
      "cold path, running daemon: own time < 20 ms (all hops)",
      `${f(renew)} ms`,
      baseline("renewal"),
      `${f(median(ratios.renewal), 2)}× total / direct`,
      verdict(renew < 20),
    ],
    [
      "2",
      `cold path, new process: first request (RSA-2048 keygen alone: ${f(median(keygen), 0)} ms)`,
      `${f(fresh)} ms`,
      baseline("fresh"),
      `${f(median(ratios.fresh), 2)}× total / direct`,
      verdict(fresh < 20),
    ],
  );
  lines.push(
    "## 2. Cold path",
    "",
    "One token request on an empty cache, timed by the client, against the same upstream requests (recorded at the emulators as the daemon sent them) " +
      "sent again one after the other straight to the emulators: the difference is the daemon's own time. " +
      "Every emulated hop waits the given latency before answering, and each call to a hop counts once (the number of latency-delayed calls is the " +
      `sum of the ${HOPS_HEAD}). ` +
      "Google STS fetches the identity domain's keys at every exchange here (inside the STS round trip, in both measurements). " +
      `"First request of a new daemon": the daemon process has just started (warm: false) and has never obtained anything, so the request also ` +
      "probes the metadata service, builds oci-common's provider, generates the instance principal's first RSA-2048 session key pair " +
      `(${f(median(keygen), 0)} ms median on this machine, measured alone) and loads code on first use. ` +
      `"All five hops renewed": the same daemon once every token it holds (${SHORT_S} s lifetimes) has expired; the session key was generated ahead of time.`,
    "",
    ...table(
      [
        "request",
        "latency per call ms",
        "total ms",
        "direct upstream ms (baseline)",
        "daemon's own ms",
        "total / baseline",
        HOPS_HEAD,
        "injected latency ms",
      ],
      rows,
    ),
    "",
    `Median daemon's own time: **${f(renew)} ms** for a full renewal in a running daemon, **${f(fresh)} ms** for the first request of a new process.`,
    "",
  );
  return { summary, lines };
}

export async function herds(b: Bench, _o: Options): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  progress(`herd: ${HERD_SIZE} concurrent requests on a cold daemon and at renewal, ${LATENCY} ms per upstream call`);
  b.emu.setLatency(LATENCY);
  b.emu.setTokens({ lifetimeSeconds: SHORT_S });
  // One request at a time: what a single client costs upstream, new and at renewal.
  const x = await b.daemon("cold", SHORT_ENV);
  await until200(`${x.url}/healthz`, x, x.startedAt);
  const single = [(await b.timedToken(x, false)).calls];
  await b.untilExpired(x);
  single.push((await b.timedToken(x, false)).calls);
  await x.stop();
  // The same with a herd.
  const y = await b.daemon("cold", SHORT_ENV);
  await until200(`${y.url}/healthz`, y, y.startedAt);
  const results: { h: HerdResult; calls: Calls }[] = [];
  for (let i = 0; i < 2; i++) {
    if (i === 1) await b.untilExpired(y);
    b.emu.resetCalls();
    const h = await herd(y.url + TOKEN_PATH, FLAVOR, HERD_SIZE);
    results.push({ h, calls: b.emu.calls() });
  }
  await y.stop();
  b.emu.setLatency(0);
  b.emu.setTokens();
  const names = ["cold daemon", "renewal (every token expired)"];
  const rows = results.map(({ h, calls }, i) => [
    names[i]!,
    `${h.ok} / ${HERD_SIZE}`,
    callsText(calls),
    callsText(single[i]!),
    ratio(hopCalls(calls), hopCalls(single[i]!)),
    f(h.p50Ms, 0),
    f(h.maxMs, 0),
  ]);
  const ok = results.every(({ h, calls }, i) => h.ok === HERD_SIZE && HOPS.every((k) => calls[k] === single[i]![k]));
  summary.push([
    "3",
    `herd of ${HERD_SIZE}: one upstream call per hop, every client 200`,
    results.map((r) => callsText(r.calls)).join("; "),
    results.map((_, i) => callsText(single[i]!)).join("; "),
    ratio(sum(results.map((r) => hopCalls(r.calls))), sum(single.map(hopCalls))),
    verdict(ok),
  ]);
  lines.push(
    "## 3. Herd",
    "",
    `${HERD_SIZE} GETs of the token, each on its own connection, sent at once: on a daemon that has just started (warm: false, nothing cached) and ` +
      `on the same daemon once every token it holds (${SHORT_S} s lifetimes) has expired, so that every hop is due for renewal and every client ` +
      "has to wait for it. " +
      `Each upstream call waits ${LATENCY} ms, so the herd arrives while the renewal is under way. The baseline is one request alone on another ` +
      "new daemon, then alone at renewal: the calls one client costs. " +
      "The metadata service is called several times per hop by design (instance/region once at start; cert.pem, key.pem and intermediate.pem at " +
      "each federation, twice on the first: oci-common fetches them when it builds its provider and again when it federates).",
    "",
    ...table(["herd", "answered 200", HOPS_HEAD, "one client alone", "herd / alone", "p50 ms", "max ms"], rows),
    "",
  );
  return { summary, lines };
}

export async function processes(b: Bench, o: Options): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  progress(
    `processes: ${o.processes} short-lived node processes of each kind, ${o.concurrency.join(" and then ")} at a time, ${LATENCY} ms per upstream call`,
  );
  b.emu.setLatency(LATENCY);
  b.emu.setTokens();
  const home = fs.mkdtempSync(path.join(b.tmp, "home-"));
  const e = b.emu.emu;
  const clientEnv = (extra: Record<string, string>) => cleanEnv({ HOME: home, CLOUDSDK_CONFIG: home, ...extra });
  // The daemon's calls count from its start, first token included.
  b.emu.resetCalls();
  const d = await b.daemon("serve");
  await until200(`${d.url}/readyz`, d, d.startedAt);
  const warmCalls = b.emu.calls();
  const host = new URL(d.url).host;
  const kinds = {
    direct: {
      script: "client-direct.js",
      env: clientEnv({
        BENCH_OCI_METADATA_URL: e.oci.metadataBaseUrl,
        BENCH_OCI_FEDERATION_URL: e.oci.federationEndpoint,
        BENCH_DOMAIN_URL: e.oci.domainUrl,
        BENCH_AUDIENCE: e.google.audience,
        BENCH_STS_URL: e.google.stsUrl,
        BENCH_IMPERSONATION_URL: `${e.google.iamCredentialsUrl}/v1/projects/-/serviceAccounts/${DEMO_SERVICE_ACCOUNT}:generateAccessToken`,
      }),
    },
    // GOOGLE_CLOUD_PROJECT as the demo sets it: without it google-auth-library looks for a
    // project id by running `gcloud config config-helper`, seconds of Python where gcloud is installed.
    via: {
      script: "client-daemon.js",
      env: clientEnv({ GCE_METADATA_HOST: host, GCE_METADATA_IP: host, GOOGLE_CLOUD_PROJECT: DEMO_PROJECT_ID }),
    },
    floor: { script: "client-load.js", env: clientEnv({}) },
  };
  type Kind = keyof typeof kinds;
  const zero = () => Object.fromEntries(HOPS.map((h) => [h, 0])) as Calls;
  const rows: string[][] = [];
  const notes: string[] = [];
  const viaCallsAll = zero();
  for (const concurrency of o.concurrency) {
    const acc = Object.fromEntries(
      Object.keys(kinds).map((k) => [k, { wall: 0, ms: [] as number[], cpu: [] as number[], failed: 0, calls: zero() }]),
    ) as Record<Kind, { wall: number; ms: number[]; cpu: number[]; failed: number; calls: Calls }>;
    // The three kinds take turns, a batch of each per round, so that the neighbours' load weighs on all alike.
    const perRound = Math.ceil(o.processes / ROUNDS);
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of Object.keys(kinds) as Kind[]) {
        b.emu.resetCalls();
        const started = performance.now();
        const out = await pool(perRound, concurrency, () => runNode(path.join(BENCH_DIR, kinds[k].script), kinds[k].env));
        const a = acc[k];
        a.wall += performance.now() - started;
        a.ms.push(...out.map((x) => x.ms));
        a.cpu.push(...out.map((x) => Number(/cpu-ms ([\d.]+)\s*$/.exec(x.output)?.[1] ?? NaN)));
        const failed = out.filter((x) => x.code !== 0);
        a.failed += failed.length;
        if (failed.length) progress(`${kinds[k].script}: ${failed.length} failed; first: ${failed[0]!.output.slice(0, 1500)}`);
        const c = b.emu.calls();
        for (const h of HOPS) a.calls[h] += c[h];
      }
    }
    const result = (k: Kind) => ({
      wall: acc[k].wall,
      each: median(acc[k].ms),
      cpu: median(acc[k].cpu),
      failed: acc[k].failed,
      calls: acc[k].calls,
    });
    const direct = result("direct");
    const via = result("via");
    const floor = result("floor");
    for (const h of HOPS) viaCallsAll[h] += via.calls[h];
    const at = concurrency === 1 ? "one at a time" : `${concurrency} at a time`;
    summary.push([
      "4",
      `${o.processes} processes via the daemon, ${at}: ≥ 5× faster than each doing the exchange`,
      `${f(via.wall / 1000, 2)} s`,
      `${f(direct.wall / 1000, 2)} s`,
      `${ratio(direct.wall, via.wall)} faster`,
      verdict(direct.wall >= 5 * via.wall && !via.failed && !direct.failed),
    ]);
    rows.push(
      [
        `(a) each process does the exchange, ${at}`,
        f(direct.wall / 1000, 2),
        f(direct.each, 0),
        f(direct.cpu, 0),
        String(direct.failed),
        callsText(direct.calls),
      ],
      [
        `(b) each process asks the daemon, ${at}`,
        f(via.wall / 1000, 2),
        f(via.each, 0),
        f(via.cpu, 0),
        String(via.failed),
        callsText(via.calls),
      ],
      [
        `(c) node + load google-auth-library only, ${at}`,
        f(floor.wall / 1000, 2),
        f(floor.each, 0),
        f(floor.cpu, 0),
        String(floor.failed),
        "–",
      ],
    );
    notes.push(
      `${at[0]!.toUpperCase()}${at.slice(1)}: (b) is **${ratio(direct.wall, via.wall)} faster** than (a) end to end; (b) takes ` +
        `${ratio(via.wall, floor.wall)} the time of (c). ` +
        `CPU per process (user + system, all threads; steadier than wall time on a shared machine): (a) ${ratio(direct.cpu, via.cpu)} that of (b), ` +
        `(b) ${ratio(via.cpu, floor.cpu)} that of (c).`,
    );
  }
  await d.stop();
  b.emu.setLatency(0);
  const viaCalls = Object.fromEntries(HOPS.map((h) => [h, warmCalls[h] + viaCallsAll[h]])) as Calls;
  // The clients cost nothing upstream, and the daemon's start one call per hop (the metadata service aside: see section 3).
  const atMostOne = HOPS.every((h) => viaCallsAll[h] === 0) && HOPS.slice(1).every((h) => warmCalls[h] <= 1);
  const directTotal = rows.filter((r) => r[0]!.startsWith("(a)")).map((r) => r[5]!);
  summary.push([
    "4",
    `${o.processes * o.concurrency.length} processes via the daemon: at most one upstream call per hop in total`,
    callsText(viaCalls),
    directTotal.join("; "),
    "",
    verdict(atMostOne),
  ]);
  lines.push(
    "## 4. Many short-lived processes",
    "",
    `${o.processes} separate \`node\` processes of each kind each getting one Google access token, every upstream call delayed ${LATENCY} ms, ` +
      `${o.concurrency.map((c) => (c === 1 ? "one at a time" : `${c} at a time`)).join(", then ")}. ` +
      `At each setting the kinds take turns in ${ROUNDS} rounds of ${Math.ceil(o.processes / ROUNDS)} processes each, so that the machine's other ` +
      "tenants weigh on all alike; a kind's wall time is the sum of its batches. " +
      "(a) Each process does the whole exchange itself: oci-common's instance principal against the emulated metadata service and auth service, " +
      "the identity-domain token exchange signed with oci-common's `DefaultRequestSigner`, " +
      "then google-auth-library's `IdentityPoolClient` with the domain JWT from a `subject_token_supplier` and `service_account_impersonation_url` " +
      "(STS, then generateAccessToken). " +
      "(b) Each process calls `new GoogleAuth().getAccessToken()` with `GCE_METADATA_HOST` pointing at a running `oci2gcp serve` (started before " +
      "the clock starts; its calls are counted from its start, its first token included) " +
      "and `GOOGLE_CLOUD_PROJECT` set, as the demo sets it (without it google-auth-library runs `gcloud config config-helper` to find a project " +
      "id, which costs seconds where gcloud is installed, as here). " +
      "(c) For scale: processes that only start node and load google-auth-library.",
    "",
    ...table(["", "wall time s", "median per process ms", "median CPU per process ms", "failed", HOPS_HEAD], rows),
    "",
    `The daemon's upstream calls, its start included, for all the (b) processes: ${callsText(viaCalls)}, against ${directTotal.join(" and ")} for (a).`,
    "",
    ...notes.flatMap((n) => [n, ""]),
  );
  return { summary, lines };
}

export async function startup(b: Bench): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  progress(`start-up: ${STARTS} starts of oci2gcp serve, of a bare node:http server and of the libraries alone`);
  b.emu.setLatency(0);
  b.emu.setTokens();
  const listen: number[] = [];
  const ready: number[] = [];
  const bareListen: number[] = [];
  const libListen: number[] = [];
  // One start of each first, untimed, so that the files are in the page cache.
  for (let i = 0; i <= STARTS; i++) {
    const base = await b.bare([], Buffer.alloc(0), "defaults");
    const bl = await until200(`${base.url}/`, base, base.startedAt);
    await base.stop();
    const lib = await b.floor([], Buffer.alloc(0));
    const ll = await until200(`${lib.url}/`, lib, lib.startedAt);
    await lib.stop();
    const d = await b.daemon("serve");
    const dl = await until200(`${d.url}/healthz`, d, d.startedAt);
    const dr = await until200(`${d.url}/readyz`, d, d.startedAt);
    await d.stop();
    if (i === 0) continue;
    bareListen.push(bl);
    libListen.push(ll);
    listen.push(dl);
    ready.push(dr);
  }
  // Idle: one more of each, ready and then left alone.
  const idle: [string, { wakeups: number; cpuMs: number }][] = [];
  for (const [who, start, ready] of [
    ["daemon, ready", () => b.daemon("serve"), "/readyz"],
    ["node:http, daemon's flags", () => b.bare([], Buffer.alloc(0), "daemon"), "/"],
    ["libraries alone", () => b.floor([], Buffer.alloc(0)), "/"],
  ] as const) {
    const c = await start();
    await until200(`${c.url}${ready}`, c, c.startedAt);
    idle.push([who, await idleCost(c)]);
    await c.stop();
  }
  const r = median(ready);
  summary.push([
    "5",
    "idle: the daemon's wake-ups and CPU while nobody asks",
    `${f(idle[0]![1].wakeups, 1)} /s, ${f(idle[0]![1].cpuMs, 2)} ms/s`,
    `node:http ${f(idle[1]![1].wakeups, 1)} /s, ${f(idle[1]![1].cpuMs, 2)} ms/s`,
    "—",
    "—",
  ]);
  summary.push([
    "5",
    "start to ready (first token) < 1 s",
    `${f(r, 0)} ms`,
    `node:http listening: ${f(median(bareListen), 0)} ms`,
    ratio(r, median(bareListen)),
    verdict(r < 1000),
  ]);
  summary.push([
    "5",
    `start to ready ≤ ${READY_TARGET} × node:http listening`,
    `${f(r, 0)} ms`,
    `node:http ${f(median(bareListen), 0)} ms; libraries alone ${f(median(libListen), 0)} ms, ${ratio(median(libListen), median(bareListen))}`,
    ratio(r, median(bareListen)),
    verdict(r <= READY_TARGET * median(bareListen)),
  ]);
  lines.push(
    "## 5. Footprint and start-up",
    "",
    `Time from spawning \`node bin/oci2gcp.js serve\` (production defaults, emulators without latency) to its first 200 on /healthz (listening) ` +
      `and on /readyz (a Google token obtained: the start-up fetch and its five hops), median of ${STARTS} starts after one untimed start (warm disk). ` +
      "Baseline: spawning the bare node:http server of section 1 until it answers. " +
      "The libraries alone (section 1) listen once they have loaded the daemon's libraries and used fetch once: the floor of the daemon's " +
      "start-up, before its own modules, its configuration and its first token's five hops. Memory: see section 1.",
    "",
    ...table(
      ["", "median ms", "runs ms"],
      [
        ["daemon listening", f(median(listen), 0), listen.map((x) => f(x, 0)).join(", ")],
        ["daemon ready (first token)", f(r, 0), ready.map((x) => f(x, 0)).join(", ")],
        ["node:http listening", f(median(bareListen), 0), bareListen.map((x) => f(x, 0)).join(", ")],
        ["libraries alone listening", f(median(libListen), 0), libListen.map((x) => f(x, 0)).join(", ")],
      ],
    ),
    "",
    `Idle: each server once more, left alone from ${IDLE_AFTER_S} s after it is ready (after its start-up: the next session key, ` +
      "made a second after the first federation, and the garbage collections that follow the loading) " +
      `for ${IDLE_S} s: the wake-ups of its main thread (voluntary context switches, counted by the kernel) ` +
      "and the CPU time of all its threads (the scheduler's count), per second. A per-VM daemon pays these on every machine all day.",
    "",
    ...table(
      ["", "main-thread wake-ups /s", "CPU ms /s"],
      idle.map(([who, x]) => [who, f(x.wakeups, 1), f(x.cpuMs, 2)]),
    ),
    "",
  );
  return { summary, lines };
}
