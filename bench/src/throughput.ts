import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SETTINGS } from "oci2gcp";
import { type Bench, FLAVOR, mean, progress, TOKEN_PATH } from "./bench.js";
import { cannon, headerLines, rawGet, wrk, wrkVersion } from "./load.js";
import { type Child, ROOT, sleep, until200 } from "./proc.js";
import { f, ratio, table, verdict } from "./report.js";
import { cleanRun as clean, cleanMeans, type MeasuredRun } from "./runs.js";
import type { Options, Part } from "./scenarios.js";

/** Targets of section 1, against node:http in the same run. */
const RPS_TARGET = 0.9;
const P99_TARGET = 1.2;
/** Target of section 5: resident memory, idle and under load, against node:http in the same run. */
const MEM_TARGET = 1.3;
/** Seconds of load before each measured run, on the same process. */
const WARMUP_S = 2;
const MB = (mib: number) => (mib * 1024 * 1024) / 1e6;

const FLOOD_SETTING = "server.maxRequestsPerMinute";
const FLOOD_ENV = "OCI2GCP_MAX_REQUESTS_PER_MINUTE";
/** The flood guard's allowance when nothing sets it: the settings table's default. */
const FLOOD_DEFAULT = Number(SETTINGS.find((s) => s.path === FLOOD_SETTING)?.default);

/** The shipped deployment files (Dockerfile, config/): production runs on the default unless one of them sets the flood guard. */
function floodSetIn(): { files: string[]; setting: string[] } {
  const list = (dir: string): string[] =>
    fs
      .readdirSync(dir, { withFileTypes: true })
      .flatMap((e) => (e.isDirectory() ? list(path.join(dir, e.name)) : [path.join(dir, e.name)]));
  const files = [path.join(ROOT, "Dockerfile"), ...list(path.join(ROOT, "config"))];
  const names = [FLOOD_ENV, FLOOD_SETTING.split(".").pop()!];
  return {
    files: files.map((x) => path.relative(ROOT, x)),
    setting: files.filter((x) => names.some((n) => fs.readFileSync(x, "utf8").includes(n))).map((x) => path.relative(ROOT, x)),
  };
}

const WRK_INSTALL =
  "install it (Debian and Ubuntu: `sudo apt-get install wrk`; Fedora: `sudo dnf install wrk`; macOS: `brew install wrk`) " +
  "and run `npm run bench -- --only throughput` again";

type Tool = "autocannon" | "wrk";
type Server = "daemon" | "daemon, flood guard off" | "node:http" | "node:http, node's defaults" | "libraries alone";
const isDaemon = (s: Server) => s.startsWith("daemon");

interface Mem {
  idle: number;
  idleAnon: number;
  load: number;
  loadAnon: number;
  file: number;
  peak: number;
}

interface Run extends MeasuredRun {
  tool: Tool;
  who: Server;
  /** Requests this process answered, warm-up included: what its flood guard counted. */
  counted: number;
  mem: Mem;
}

/**
 * Cached-token throughput of the daemon against node:http answering the same
 * bytes, with autocannon and with wrk; and the flood guard's price, on and off.
 * Every run has a process of its own: the flood guard counts per process, so
 * no run inherits the count of the runs before it.
 */
export async function throughput(b: Bench, o: Options): Promise<Part> {
  const summary: string[][] = [];
  const lines: string[] = [];
  const wrkV = wrkVersion();
  progress(
    `throughput: daemon vs node:http, ${o.connections} connections, ${o.duration} s per run, a new process per run; ` +
      "autocannon A B C C B A twice, flood guard on/off A B B A, " +
      (wrkV ? "wrk A B C C B A twice with the libraries alone" : `wrk is not installed, so its part is skipped: ${WRK_INSTALL}`),
  );
  b.emu.setLatency(0);
  b.emu.setTokens();
  const flood = floodSetIn();

  // The daemon's answer, which every node:http process sends back byte for byte.
  const first = await b.daemon("serve");
  await until200(`${first.url}/readyz`, first, first.startedAt);
  const answer = headerLines(await rawGet(first.url + TOKEN_PATH, FLAVOR));
  await first.stop();
  if (!answer.status.includes(" 200 ")) throw new Error(`the daemon answered ${answer.status}`);
  const perAnswer = new Set(["date", "connection", "keep-alive", "transfer-encoding"]);
  const sameHeaders = answer.headers.filter(([k]) => !perAnswer.has(k));
  let sameBytes: boolean | undefined;

  const start = async (who: Server): Promise<Child> => {
    if (isDaemon(who)) {
      const d = await b.daemon("serve", who === "daemon" ? {} : { [FLOOD_ENV]: "0" });
      await until200(`${d.url}/readyz`, d, d.startedAt);
      // The next session key is generated a second after the first federation: let it finish before the load.
      await sleep(1000);
      return d;
    }
    if (who === "libraries alone") {
      const c = await b.floor(sameHeaders, answer.body);
      await until200(`${c.url}/`, c, c.startedAt);
      await sleep(1000);
      return c;
    }
    // The baseline runs on the same node flags as the daemon; the same server on node's
    // defaults shows what the flags themselves cost.
    const c = await b.bare(sameHeaders, answer.body, who === "node:http" ? "daemon" : "defaults");
    await until200(`${c.url}/`, c, c.startedAt);
    if (sameBytes === undefined) {
      const check = headerLines(await rawGet(c.url + TOKEN_PATH, FLAVOR));
      const names = (h: [string, string][]) =>
        h
          .map(([k, v]) => (k === "date" ? k : `${k}: ${v}`))
          .sort()
          .join("\n");
      sameBytes = names(answer.headers) === names(check.headers) && answer.body.equals(check.body);
    }
    await sleep(1000);
    return c;
  };

  const runs: Run[] = [];
  const measure = async (tool: Tool, who: Server): Promise<void> => {
    const c = await start(who);
    const idle = c.memMiB();
    const idleAnon = c.memMiB("RssAnon");
    const load = tool === "wrk" ? wrk : cannon;
    const url = c.url + TOKEN_PATH;
    const warm = await load(url, FLAVOR, o.connections, WARMUP_S);
    const r = await load(url, FLAVOR, o.connections, o.duration, () => c.cpuMs());
    const mem = { idle, idleAnon, load: c.memMiB(), loadAnon: c.memMiB("RssAnon"), file: c.memMiB("RssFile"), peak: c.memMiB("VmHWM") };
    await c.stop();
    runs.push({ tool, who, r, counted: warm.requests + r.requests, warmBad: warm.bad, mem });
    if (!clean(runs.at(-1)!))
      progress(`${tool}, ${who}: ${r.bad} failed answers in the run, ${warm.bad} in its warm-up; left out of the means`);
  };

  // A B C C B A, twice: a drift in the load of the machine's other tenants weighs on all alike.
  const abccba = <T>(xs: T[]) => [...xs, ...[...xs].reverse(), ...xs, ...[...xs].reverse()];
  for (const who of abccba<Server>(["daemon", "node:http", "node:http, node's defaults"])) await measure("autocannon", who);
  const floodRuns = runs.length;
  for (const who of ["daemon", "daemon, flood guard off", "daemon, flood guard off", "daemon"] as const) await measure("autocannon", who);
  if (wrkV) for (const who of abccba<Server>(["daemon", "node:http", "libraries alone"])) await measure("wrk", who);

  const part = (tool: Tool, from = 0, to = runs.length) => runs.slice(from, to).filter((x) => x.tool === tool);
  const main = part("autocannon", 0, floodRuns);
  const floodPart = part("autocannon", floodRuns);
  const wrkPart = part("wrk");
  const stats = (rs: Run[], who: Server) => cleanMeans(rs.filter((x) => x.who === who));
  const [A, B, C] = [stats(main, "daemon"), stats(main, "node:http"), stats(main, "node:http, node's defaults")];
  const [On, Off] = [stats(floodPart, "daemon"), stats(floodPart, "daemon, flood guard off")];
  const [W, WB, WF] = [stats(wrkPart, "daemon"), stats(wrkPart, "node:http"), stats(wrkPart, "libraries alone")];
  const left = runs.filter((x) => !clean(x)).length;
  const maxCounted = Math.max(...runs.filter((x) => x.who === "daemon").map((x) => x.counted));

  const memOf = (who: Server, k: keyof Mem, pick: (xs: number[]) => number, tool: Tool = "autocannon") =>
    pick(runs.filter((x) => x.who === who && x.tool === tool).map((x) => x.mem[k]));
  // The libraries alone run only with wrk; without wrk their memory is not measured.
  const floorMem = (k: keyof Mem, pick: (xs: number[]) => number) => (wrkV ? memOf("libraries alone", k, pick, "wrk") : NaN);
  const max = (xs: number[]) => Math.max(...xs);
  const dm = (k: keyof Mem) => memOf("daemon", k, k.startsWith("idle") ? mean : max);
  const flags = b.nodeArgs.join(" ") || "none";
  const floodText = (who: Server) =>
    who === "daemon" ? `${FLOOD_DEFAULT.toLocaleString("en")} /min (default)` : who === "daemon, flood guard off" ? "off (0)" : "–";
  const note = (x: Run) => (clean(x) ? "yes" : `**no: ${x.r.bad} failed${x.warmBad ? `, ${x.warmBad} in warm-up` : ""}**`);
  const runTable = (rs: Run[], ms: (p: number) => string | number) =>
    table(
      [
        "run",
        "server",
        "flood guard",
        "req/s",
        "p50 ms",
        "p99 ms",
        "requests",
        "failed",
        "in the means",
        "server CPU ms per 1,000 answers",
      ],
      rs.map((x, i) => [
        i + 1,
        x.who,
        floodText(x.who),
        f(x.r.rps, 0),
        ms(x.r.p50),
        ms(x.r.p99),
        x.r.requests,
        x.r.bad,
        note(x),
        f(x.r.cpuPer1k, 0),
      ]),
    );
  const rpsRow = (tool: Tool, a: typeof A, base: typeof A) => [
    "1",
    `cached token throughput ≥ ${f(RPS_TARGET, 2)} × node:http (${tool})`,
    `${f(a.rps, 0)} req/s`,
    `${f(base.rps, 0)} req/s`,
    ratio(a.rps, base.rps),
    verdict(a.rps >= RPS_TARGET * base.rps),
  ];
  const p99Row = (tool: Tool, a: typeof A, base: typeof A, digits: number) => [
    "1",
    `p99 latency ≤ ${f(P99_TARGET, 1)} × node:http (${tool})`,
    `${f(a.p99, digits)} ms`,
    `${f(base.p99, digits)} ms`,
    ratio(a.p99, base.p99),
    verdict(a.p99 <= P99_TARGET * base.p99),
  ];
  summary.push(rpsRow("autocannon", A, B), p99Row("autocannon", A, B, 1));
  if (wrkV) summary.push(rpsRow("wrk", W, WB), p99Row("wrk", W, WB, 2));
  else {
    const skipped = ["", "", "", "skipped: wrk is not installed"];
    summary.push(["1", `cached token throughput ≥ ${f(RPS_TARGET, 2)} × node:http (wrk)`, ...skipped]);
    summary.push(["1", `p99 latency ≤ ${f(P99_TARGET, 1)} × node:http (wrk)`, ...skipped]);
  }
  summary.push(
    [
      "1",
      `flood guard's price: throughput with it (${FLOOD_DEFAULT.toLocaleString("en")} /min) against without`,
      `${f(On.rps, 0)} req/s`,
      `off: ${f(Off.rps, 0)} req/s`,
      ratio(On.rps, Off.rps),
      "—",
    ],
    [
      "5",
      "RSS under load < 100 MB",
      `${f(MB(dm("load")))} MB (idle ${f(MB(dm("idle")))} MB)`,
      `node:http: ${f(MB(memOf("node:http", "load", max)))} MB (idle ${f(MB(memOf("node:http", "idle", mean)))} MB)`,
      ratio(dm("load"), memOf("node:http", "load", max)),
      verdict(MB(dm("load")) < 100),
    ],
    ...(["idle", "load"] as const).map((k) => {
      const pick = k === "idle" ? mean : max;
      const [d, n, lib] = [dm(k), memOf("node:http", k, pick), floorMem(k, pick)];
      return [
        "5",
        `RSS ${k === "idle" ? "idle" : "under load"} ≤ ${f(MEM_TARGET, 1)} × node:http`,
        `${f(MB(d))} MB`,
        `node:http ${f(MB(n))} MB; libraries alone ${f(MB(lib))} MB, ${ratio(lib, n)}`,
        ratio(d, n),
        verdict(d <= MEM_TARGET * n),
      ];
    }),
  );

  const overridden = flood.setting.length
    ? `**${flood.setting.join(", ")} set${flood.setting.length === 1 ? "s" : ""} it**, so production may run with another allowance`
    : `none of the shipped deployment files sets it (the Dockerfile and the ${flood.files.length - 1} files under config/: systemd unit, ` +
      "Kubernetes manifests, example configuration), so every deployment runs with it";
  lines.push(
    "## 1. Cached token throughput",
    "",
    `GET ${TOKEN_PATH} with \`Metadata-Flavor: Google\` on a warm cache, ${o.connections} keep-alive connections, ${o.duration} s per run. ` +
      "The daemon is `oci2gcp serve` with its production defaults (guards, rate limit, metrics, `info` logging to a file), only the upstream URLs " +
      "pointed at the emulators. " +
      "The baseline is a bare `node:http` server in its own process answering every request with the daemon's answer " +
      `(same status, headers and body: ${sameBytes ? "checked byte for byte, Date aside" : "**the check found a difference**"}, ` +
      `${answer.body.length} bytes of body), ` +
      `on the same node flags as the daemon (\`${flags}\`); the same server on node's defaults is measured too, to show what the flags cost by themselves.`,
    "",
    `Every run has a process of its own, started for it (a daemon once it is ready and its next session key made) and warmed up for ${WARMUP_S} s ` +
      "with the same load generator. " +
      `The flood guard (\`${FLOOD_SETTING}\`) counts each client's requests per minute in the daemon's memory, and every loopback address is one ` +
      "client: on one daemon, runs a minute apart would add up and reach its allowance, and the 429s would be counted as answers. " +
      `Each daemon run uses the production setting, ${FLOOD_DEFAULT.toLocaleString("en")} a minute: the default of the settings table ` +
      `(src/config/settings.ts), and ${overridden}. ` +
      `That is ${(FLOOD_DEFAULT / 60).toLocaleString("en")} requests a second from one client for a whole minute, far above what clients of a ` +
      "metadata server ask (google-auth-library asks again only when its token nears its end): it stops a runaway local loop, not a client. " +
      "Each daemon starts its count at zero, so the guard counts every request as in production and a run's figure is what the daemon serves " +
      "under it. " +
      `A daemon counted at most ${maxCounted.toLocaleString("en")} requests in its run and warm-up, ` +
      `${maxCounted < FLOOD_DEFAULT ? "below" : "**not below**"} the allowance. ` +
      "A figure counts only runs in which every answer was a 2xx (no connection error, timeout or other status, in the run or its warm-up): " +
      'a run with a failure is shown, flagged in the column "in the means", and left out of the means. ' +
      (left ? `**${left} runs were left out.**` : "No run was left out."),
    "",
    "### With autocannon",
    "",
    "autocannon in the bench process; latencies with 1 ms resolution. Runs in the order A B C C B A, twice, so that a drift in the load of the " +
      "machine's other tenants weighs on all alike.",
    "",
    ...runTable(main, (p) => p),
    "",
    `Mean: daemon ${f(A.rps, 0)} req/s, p99 ${f(A.p99, 1)} ms; node:http ${f(B.rps, 0)} req/s, p99 ${f(B.p99, 1)} ms: ` +
      `**${ratio(A.rps, B.rps)} the throughput, ${ratio(A.p99, B.p99)} the p99**. ` +
      `CPU per answer, less sensitive to the other tenants of the machine than req/s: daemon ${f(A.cpu / 1000, 3)} ms, node:http ` +
      `${f(B.cpu / 1000, 3)} ms (${ratio(A.cpu, B.cpu)}). ` +
      `node:http on node's defaults: ${f(C.rps, 0)} req/s, p99 ${f(C.p99, 1)} ms, ${f(C.cpu / 1000, 3)} ms of CPU per answer; against it the ` +
      `daemon reaches ${ratio(A.rps, C.rps)} the throughput and ${ratio(A.p99, C.p99)} the p99, and the flags cost node:http ` +
      `${ratio(B.cpu, C.cpu)} the CPU per answer.`,
    "",
    "### The flood guard's price",
    "",
    `The same daemon with the flood guard at its default and with it off (\`${FLOOD_ENV}=0\`, no count at all), autocannon as above, ` +
      "in the order A B B A.",
    "",
    ...runTable(floodPart, (p) => p),
    "",
    `Mean: ${f(On.rps, 0)} req/s with the guard, ${f(Off.rps, 0)} req/s without: **${ratio(On.rps, Off.rps)}**; ` +
      `CPU per answer ${f(On.cpu / 1000, 3)} ms against ${f(Off.cpu / 1000, 3)} ms (${ratio(On.cpu, Off.cpu)}); ` +
      `p99 ${f(On.p99, 1)} ms against ${f(Off.p99, 1)} ms.`,
    "",
    "### With wrk",
    "",
  );
  if (wrkV) {
    lines.push(
      `wrk ${wrkV}, outside the bench's node process: one thread (the machine has ${os.availableParallelism()} cores, one of them for the server), ` +
        `${o.connections} connections, latencies from its \`--latency\` distribution (µs resolution); a failure is a socket error or an ` +
        "answer other than 2xx or 3xx, as wrk counts them. The daemon against node:http on the daemon's flags and against the libraries alone " +
        "(below), in the order A B C C B A, twice.",
      "",
      ...runTable(wrkPart, (p) => f(p, 2)),
      "",
      `Mean: daemon ${f(W.rps, 0)} req/s, p99 ${f(W.p99, 2)} ms; node:http ${f(WB.rps, 0)} req/s, p99 ${f(WB.p99, 2)} ms: ` +
        `**${ratio(W.rps, WB.rps)} the throughput, ${ratio(W.p99, WB.p99)} the p99**; CPU per answer ${f(W.cpu / 1000, 3)} ms against ` +
        `${f(WB.cpu / 1000, 3)} ms (${ratio(W.cpu, WB.cpu)}). ` +
        `The libraries alone: ${f(WF.rps, 0)} req/s, p99 ${f(WF.p99, 2)} ms, CPU per answer ${f(WF.cpu / 1000, 3)} ms ` +
        `(${ratio(WF.rps, WB.rps)} node:http's throughput, ${ratio(WF.cpu, WB.cpu)} its CPU per answer).`,
      "",
      "The libraries alone (bench/src/floor-child.ts) is a process that loads what the daemon loads to answer its first token, " +
        "Fastify, pino, prom-client with its default metrics, the modules of google-auth-library the hops use, oci-common and Node's fetch (undici, which " +
        "google-auth-library's transport uses), on the daemon's node and V8 flags, and does nothing else: it answers every GET with the same bytes " +
        "in front of Fastify, as the daemon's fast path does. It is the floor those libraries set: the daemon cannot use less memory than it, " +
        "and what the daemon spends beyond it is its own.",
      "",
    );
  } else {
    lines.push(`**Skipped: wrk is not installed.** ${WRK_INSTALL.replace(/^./, (c) => c.toUpperCase())}.`, "");
  }
  const bm = (k: keyof Mem, pick: (xs: number[]) => number) => MB(memOf("node:http", k, pick));
  lines.push(
    `Memory (target 5), VmRSS from /proc/PID/status of the processes of the autocannon runs: daemon idle after its first token ` +
      `${f(MB(dm("idle")))} MB (mean), at the end of its run ${f(MB(dm("load")))} MB (the most of its runs), peak (VmHWM) ${f(MB(dm("peak")))} MB; ` +
      `node:http idle ${f(bm("idle", mean))} MB, at the end of its run ${f(bm("load", max))} MB (on node's defaults: idle ` +
      `${f(MB(memOf("node:http, node's defaults", "idle", mean)))} MB, at the end of its run ` +
      `${f(MB(memOf("node:http, node's defaults", "load", max)))} MB). ` +
      `Of the daemon's VmRSS, ${f(MB(dm("file")))} MB are file pages (RssFile: mostly the node binary, shared with every node process; node:http has ` +
      `${f(bm("file", max))} MB) ` +
      `and ${f(MB(dm("idleAnon")))} MB idle, ${f(MB(dm("loadAnon")))} MB under load are its own memory (RssAnon: the V8 heap and native allocations). ` +
      `The libraries alone (wrk runs): idle ${f(MB(floorMem("idle", mean)))} MB (RssAnon ${f(MB(floorMem("idleAnon", mean)))} MB), ` +
      `at the end of a run ${f(MB(floorMem("load", max)))} MB: ${ratio(floorMem("idle", mean), memOf("node:http", "idle", mean))} and ` +
      `${ratio(floorMem("load", max), memOf("node:http", "load", max))} node:http's, before the daemon's own code and data.`,
    "",
  );
  return { summary, lines };
}
