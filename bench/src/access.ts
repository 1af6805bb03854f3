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

interface ConnResult {
  /** Answered requests (one connection each) per second. */
  perSecond: number;
  ok: number;
  bad: number;
  p50: number;
  p99: number;
}

/**
 * `clients` loops, each sending one GET per new connection (Connection: close)
 * until `seconds` have passed: what a fleet of short-lived processes costs, each
 * of which the daemon must identify anew.
 */
async function newConnections(url: string, clients: number, seconds: number): Promise<ConnResult> {
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
      while (performance.now() < end) await one();
    }),
  );
  const took = (performance.now() - started) / 1000;
  agent.destroy();
  ms.sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN;
  return { perSecond: ms.length / took, ok: ms.length, bad, p50: at(0.5), p99: at(0.99) };
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
  for (const who of order) {
    const d = await start(who === "rules on");
    await newConnections(d.url + TOKEN_PATH, NEW_CONN_CLIENTS, 1);
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
  const bad = sum(conns.map((x) => x.r.bad)) + sum(kept.map((x) => x.r.bad));
  const [cOff, cOn, kOff, kOn] = [connOf("rules off"), connOf("rules on"), keptOf("rules off"), keptOf("rules on")];
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
    `New connections: ${NEW_CONN_CLIENTS} clients in the bench process, each sending \`GET ${TOKEN_PATH}\` with \`Connection: close\` on a new ` +
      `connection, one after another, for ${o.duration} s (after 1 s of warm-up). The socket table grows with the connections in TIME_WAIT ` +
      "that such a load leaves behind, and each identification reads it whole, so this is the rules' worst case.",
    "",
    ...table(
      ["run", "daemon", "new connections (requests) /s", "p50 ms", "p99 ms", "answered", "failed"],
      conns.map((x, i) => [i + 1, x.who, f(x.r.perSecond, 0), f(x.r.p50, 2), f(x.r.p99, 2), x.r.ok, x.r.bad]),
    ),
    "",
    `Kept-alive: autocannon, ${o.connections} connections, ${o.duration} s per run, as in section 1.`,
    "",
    ...table(
      ["run", "daemon", "req/s", "p50 ms", "p99 ms", "requests", "errors + non-2xx", "daemon CPU ms per 1,000 answers"],
      kept.map((x, i) => [i + 1, x.who, f(x.r.rps, 0), x.r.p50, x.r.p99, x.r.requests, x.r.bad, f(x.r.cpuPer1k, 0)]),
    ),
    "",
    `Mean: new connections ${f(cOn, 0)} /s with rules against ${f(cOff, 0)} /s without (**${ratio(cOn, cOff)}**); ` +
      `kept-alive ${f(kOn, 0)} req/s with rules against ${f(kOff, 0)} req/s without (**${ratio(kOn, kOff)}**), ` +
      `CPU per answer ${f(cpuOf("rules on") / 1000, 3)} ms against ${f(cpuOf("rules off") / 1000, 3)} ms.`,
    "",
  ];
  return { summary, lines };
}
