import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { DEMO_SERVICE_ACCOUNT } from "../../dist/emulator/index.js";
import { type Bench, FLAVOR, mean, progress, sum, TOKEN_PATH } from "./bench.js";
import { type CannonResult, cannon } from "./load.js";
import { type Child, sleep, until200 } from "./proc.js";
import { f, ratio, table, verdict } from "./report.js";
import type { Options, Part } from "./scenarios.js";

/** Concurrent clients opening a new connection for every request. */
const NEW_CONN_CLIENTS = 8;
/** Requests of the single client, one new connection each. */
const SINGLE_REQUESTS = 300;

interface ConnResult {
  /** Answered requests (one connection each) per second. */
  perSecond: number;
  /** Rows of the kernel's socket tables at the end of the run (TIME_WAIT included). */
  rows: number;
  ok: number;
  bad: number;
  p50: number;
  p99: number;
}

function socketRows(): number {
  const rows = (f: string) => {
    try {
      return fs.readFileSync(f, "latin1").split("\n").length - 2;
    } catch {
      return 0;
    }
  };
  return rows("/proc/net/tcp") + rows("/proc/net/tcp6");
}

/** Waits until the TIME_WAIT rows of earlier runs have gone (60 s at most), so that each run starts from the same table. */
async function quietTable(max: number): Promise<number> {
  const end = performance.now() + 70_000;
  while (socketRows() > max && performance.now() < end) await sleep(1000);
  return socketRows();
}

/**
 * `clients` loops, each sending one GET per new connection (Connection: close)
 * until `seconds` have passed: what a fleet of short-lived processes costs, each
 * of which the daemon must identify anew.
 */
async function newConnections(url: string, clients: number, seconds: number, maxEach = Infinity): Promise<ConnResult> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const end = performance.now() + seconds * 1000;
  const ms: number[] = [];
  let bad = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = http.get(url, { headers: { ...FLAVOR, connection: "close" }, agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode === 200) ms.push(performance.now() - t0);
          else bad++;
          resolve();
        });
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => {
        bad++;
        resolve();
      });
    });
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < maxEach && performance.now() < end; i++) await one();
    }),
  );
  const took = (performance.now() - started) / 1000;
  agent.destroy();
  ms.sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN;
  return { perSecond: ms.length / took, rows: socketRows(), ok: ms.length, bad, p50: at(0.5), p99: at(0.99) };
}

/**
 * The cost of the access rules: new connections per second (each one looked up
 * in the kernel's socket table) and cached throughput on kept-alive connections
 * (identified once), with rules and without, on the same machine in one run.
 */
export async function access(b: Bench, o: Options): Promise<Part> {
  progress(`access rules: new connections per second and kept-alive throughput, rules off and on, A B B A, ${o.duration} s per run`);
  b.emu.setLatency(0);
  b.emu.setTokens();
  const uid = process.getuid?.() ?? 0;
  const rulesFile = path.join(b.tmp, "rules.json");
  fs.writeFileSync(rulesFile, JSON.stringify({ access: { rules: [{ users: [uid], serviceAccounts: [DEMO_SERVICE_ACCOUNT] }] } }));
  const start = async (rules: boolean): Promise<Child> => {
    const d = await b.daemon("serve", rules ? { OCI2GCP_CONFIG: rulesFile } : {});
    await until200(`${d.url}/readyz`, d, d.startedAt);
    await sleep(500);
    return d;
  };
  type Who = "rules off" | "rules on";
  const conns: { who: Who; r: ConnResult }[] = [];
  const kept: { who: Who; r: CannonResult }[] = [];
  const order: Who[] = ["rules off", "rules on", "rules on", "rules off"];
  // A fresh daemon per run: the flood guard counts per client a minute, and each run stays far below it.
  const idleRows = await quietTable(Number.POSITIVE_INFINITY);
  const single: { who: Who; r: ConnResult }[] = [];
  for (const who of order) {
    const d = await start(who === "rules on");
    // One process at a time opening one connection, as short-lived clients do, on a table of the machine's usual size.
    single.push({ who, r: await newConnections(d.url + TOKEN_PATH, 1, 60, SINGLE_REQUESTS) });
    await d.stop();
  }
  for (const who of order) {
    const d = await start(who === "rules on");
    await quietTable(idleRows + 2 * SINGLE_REQUESTS);
    conns.push({ who, r: await newConnections(d.url + TOKEN_PATH, NEW_CONN_CLIENTS, o.duration) });
    await d.stop();
  }
  for (const who of order) {
    const d = await start(who === "rules on");
    await cannon(d.url + TOKEN_PATH, FLAVOR, o.connections, 1);
    kept.push({ who, r: await cannon(d.url + TOKEN_PATH, FLAVOR, o.connections, o.duration, () => d.cpuMs()) });
    await d.stop();
  }
  const connOf = (w: Who) => mean(conns.filter((x) => x.who === w).map((x) => x.r.perSecond));
  const keptOf = (w: Who) => mean(kept.filter((x) => x.who === w).map((x) => x.r.rps));
  const cpuOf = (w: Who) => mean(kept.filter((x) => x.who === w).map((x) => x.r.cpuPer1k));
  const bad = sum(conns.map((x) => x.r.bad)) + sum(kept.map((x) => x.r.bad)) + sum(single.map((x) => x.r.bad));
  const [cOff, cOn, kOff, kOn] = [connOf("rules off"), connOf("rules on"), keptOf("rules off"), keptOf("rules on")];
  const p50Of = (w: Who) => mean(single.filter((x) => x.who === w).map((x) => x.r.p50));
  const [sOff, sOn] = [p50Of("rules off"), p50Of("rules on")];
  const summary = [
    [
      "6",
      "new connections per second with rules (each identified)",
      `${f(cOn, 0)} /s`,
      `rules off: ${f(cOff, 0)} /s`,
      ratio(cOn, cOff),
      "—",
    ],
    [
      "6",
      "kept-alive cached throughput with rules ≥ 0.95 × rules off",
      `${f(kOn, 0)} req/s`,
      `${f(kOff, 0)} req/s`,
      ratio(kOn, kOff),
      verdict(kOn >= 0.95 * kOff),
    ],
  ];
  const lines = [
    "## 6. Access rules",
    "",
    `The daemon of section 1, without rules and with one rule naming the bench's own uid (so every request is answered, as without rules). ` +
      "With rules the daemon identifies each TCP connection once, when it accepts it, by reading the kernel's socket table " +
      "(`/proc/net/tcp`, and `/proc/net/tcp6` when the row is not in the first); requests on a kept-alive connection reuse the answer. " +
      `A fresh daemon for each run, runs in the order A B B A; no run comes near the flood guard's allowance (\`server.maxRequestsPerMinute\`, ` +
      "600,000 a minute per client, its production default). " +
      `${bad === 0 ? "No request failed." : `**${bad} requests failed**.`}`,
    "",
    `One client: ${SINGLE_REQUESTS} requests one after another, each on a new connection, on a socket table of the machine's idle size ` +
      `(${idleRows} rows before the runs, each run adding its own ${SINGLE_REQUESTS} in TIME_WAIT).`,
    "",
    ...table(
      ["run", "daemon", "p50 ms", "p99 ms", "requests /s", "table rows after", "failed"],
      single.map((x, i) => [i + 1, x.who, f(x.r.p50, 2), f(x.r.p99, 2), f(x.r.perSecond, 0), x.r.rows, x.r.bad]),
    ),
    "",
    `New connections at full speed: ${NEW_CONN_CLIENTS} clients in the bench process, each sending \`GET ${TOKEN_PATH}\` with \`Connection: close\` on a new ` +
      `connection, one after another, for ${o.duration} s. Every connection the daemon closes stays in the socket table in TIME_WAIT ` +
      "for 60 s, and each identification reads the table whole (the kernel writes about 150 bytes a row, a few µs each; reads of lookups " +
      "that arrive together are shared), so this load makes its own worst case. Each run starts once the rows of the run before have gone; " +
      "the rows at its end are in the table.",
    "",
    ...table(
      ["run", "daemon", "new connections (requests) /s", "p50 ms", "p99 ms", "answered", "table rows after", "failed"],
      conns.map((x, i) => [i + 1, x.who, f(x.r.perSecond, 0), f(x.r.p50, 2), f(x.r.p99, 2), x.r.ok, x.r.rows, x.r.bad]),
    ),
    "",
    `Kept-alive: autocannon, ${o.connections} connections, ${o.duration} s per run, as in section 1.`,
    "",
    ...table(
      ["run", "daemon", "req/s", "p50 ms", "p99 ms", "requests", "errors + non-2xx", "daemon CPU ms per 1,000 answers"],
      kept.map((x, i) => [i + 1, x.who, f(x.r.rps, 0), x.r.p50, x.r.p99, x.r.requests, x.r.bad, f(x.r.cpuPer1k, 0)]),
    ),
    "",
    `Mean: one client's request on a new connection p50 ${f(sOn, 2)} ms with rules against ${f(sOff, 2)} ms without; ` +
      `new connections at full speed ${f(cOn, 0)} /s with rules against ${f(cOff, 0)} /s without (**${ratio(cOn, cOff)}**); ` +
      `kept-alive ${f(kOn, 0)} req/s with rules against ${f(kOff, 0)} req/s without (**${ratio(kOn, kOff)}**), ` +
      `CPU per answer ${f(cpuOf("rules on") / 1000, 3)} ms against ${f(cpuOf("rules off") / 1000, 3)} ms.`,
    "",
  ];
  return { summary, lines };
}
