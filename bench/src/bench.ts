import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { DAEMON_V8_FLAGS, EVENT_LOOP_SAMPLE_MS } from "oci2gcp/daemon";
import { type Calls, Emu, HOPS, type Recorded } from "./emu.js";
import { BENCH_DIR, type Child, cleanEnv, freePort, get, ROOT, sleep, spawnNode, until200 } from "./proc.js";
import { type ProfileSummary, summarise } from "./profile.js";

export const TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token";
export const FLAVOR = { "metadata-flavor": "Google" };
/** Emulated latency of each upstream call where a scenario has latency (ms). */
export const LATENCY = 50;
/** Lifetime of every token in the cold-path and herd scenarios (s), and the cache margins that go with it. */
export const SHORT_S = 4;
export const SHORT_ENV = {
  BENCH_TOKEN_LIFETIME_SECONDS: String(SHORT_S),
  OCI2GCP_RENEW_BEFORE_SECONDS: "2",
  OCI2GCP_MIN_REMAINING_SECONDS: "1",
  OCI2GCP_SUBJECT_RENEW_BEFORE_SECONDS: "2",
  OCI2GCP_SUBJECT_MIN_REMAINING_SECONDS: "1",
};
/** The column of the calls per hop, each a list in the order of HOPS_ORDER, which the report states once. */
export const HOPS_HEAD = "calls per hop";
export const HOPS_ORDER = "metadata / federation / identity domain / STS / generateAccessToken";

export const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
export const mean = (xs: number[]) => sum(xs) / xs.length;
export const hopCalls = (c: Calls) => sum(Object.values(c));
export const callsText = (c: Calls) => HOPS.map((h) => c[h]).join(" / ");
export const progress = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const hrUs = () => Number(process.hrtime.bigint() / 1000n);

export interface Timed {
  ms: number;
  status: number;
  calls: Calls;
  /** Sum of the same upstream requests' round trips, sent again straight to the emulators. */
  direct: number;
  directOk: boolean;
}

/** What the scenarios share: the emulators, the child processes and a scratch directory. */
export class Bench {
  readonly tmp = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-bench-"));
  private readonly children = new Set<Child>();
  private logs = 0;

  private constructor(
    readonly emu: Emu,
    /** Node flags for every daemon. */
    readonly nodeArgs: string[],
  ) {}

  static async start(nodeArgs: string[]): Promise<Bench> {
    return new Bench(await Emu.start(), nodeArgs);
  }

  /** `oci2gcp serve` as installed ("serve"), or the same without the start-up fetch ("cold"), against the emulators. */
  async daemon(kind: "serve" | "cold", env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Child> {
    const port = await freePort();
    const script = kind === "serve" ? path.join(ROOT, "bin/oci2gcp.js") : path.join(BENCH_DIR, "daemon-child.js");
    return this.keep(
      spawnNode(script, kind === "serve" ? ["serve"] : [], {
        env: cleanEnv({ ...this.emu.daemonEnv(), OCI2GCP_PORT: String(port), ...env }),
        port,
        nodeArgs: [...this.nodeArgs, ...nodeArgs],
        logFile: path.join(this.tmp, `daemon-${++this.logs}.log`),
      }),
    );
  }

  /** The bare node:http server answering every request with `headers` and `body`. */
  /** `nodeArgs`: "daemon" for the daemons' node flags, else node's defaults. */
  bare(headers: [string, string][], body: Buffer, nodeArgs: "daemon" | "defaults"): Promise<Child> {
    return this.answering("bare", headers, body, nodeArgs === "daemon" ? this.nodeArgs : [], {});
  }

  /**
   * The libraries alone (floor-child.ts): what the daemon loads, answering every
   * GET with `headers` and `body` in front of Fastify, on the daemons' node flags.
   */
  floor(headers: [string, string][], body: Buffer): Promise<Child> {
    return this.answering("floor", headers, body, this.nodeArgs, {
      BENCH_V8_FLAGS: DAEMON_V8_FLAGS,
      BENCH_EVENT_LOOP_SAMPLE_MS: String(EVENT_LOOP_SAMPLE_MS),
    });
  }

  /** `${name}-child.js` on a free port, answering every request with `headers` and `body` (given in its environment). */
  private async answering(
    name: "bare" | "floor",
    headers: [string, string][],
    body: Buffer,
    nodeArgs: string[],
    env: Record<string, string>,
  ): Promise<Child> {
    const port = await freePort();
    return this.keep(
      spawnNode(path.join(BENCH_DIR, `${name}-child.js`), [String(port)], {
        env: cleanEnv({ BENCH_HEADERS: JSON.stringify(headers), BENCH_BODY: body.toString("base64"), ...env }),
        port,
        nodeArgs,
        logFile: path.join(this.tmp, `${name}-${++this.logs}.log`),
      }),
    );
  }

  private keep(c: Child): Child {
    this.children.add(c);
    c.proc.once("exit", () => this.children.delete(c));
    return c;
  }

  /** Waits until every token the daemon holds has expired and no renewal is under way. */
  async untilExpired(d: Child, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const s = JSON.parse((await get(`${d.url}/oci2gcp/v1/status`, FLAVOR)).body) as {
        caches: { expiresInSeconds: number | null; refreshing: boolean }[];
      };
      if (s.caches.every((c) => !c.refreshing && (c.expiresInSeconds === null || c.expiresInSeconds < 0))) return;
      if (performance.now() > deadline) throw new Error("the daemon's tokens did not expire in time");
      await sleep(100);
    }
  }

  /** One token request, timed, with the upstream calls it caused; `replay` also times those calls sent directly. */
  async timedToken(d: Child, replay: boolean): Promise<Timed> {
    this.emu.resetCalls();
    const rec = this.emu.record();
    const started = performance.now();
    const a = await get(d.url + TOKEN_PATH, FLAVOR);
    const ms = performance.now() - started;
    const list = outermost(rec.stop());
    const calls = this.emu.calls();
    const rt = replay ? await this.emu.replay(list) : [];
    return { ms, status: a.status, calls, direct: sum(rt.map((r) => r.ms)), directOk: rt.every((r) => r.status === 200) };
  }

  /**
   * Runs `work` on a daemon started with --cpu-prof, keeps the profile in the
   * system's temporary directory and summarises the samples taken within the
   * windows (process.hrtime µs) that `work` returns.
   */
  async profiled(
    kind: "serve" | "cold",
    env: Record<string, string>,
    name: string,
    work: (d: Child, now: () => number) => Promise<[number, number][]>,
  ): Promise<ProfileSummary> {
    const dir = path.join(this.tmp, `prof-${name}`);
    const d = await this.daemon(kind, env, ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
    await until200(`${d.url}/healthz`, d, d.startedAt);
    const windows = await work(d, hrUs);
    await d.stop();
    const file = fs.readdirSync(dir).find((x) => x.endsWith(".cpuprofile"));
    if (!file) throw new Error("no .cpuprofile written");
    const kept = path.join(os.tmpdir(), `oci2gcp-bench-${name}.cpuprofile`);
    fs.copyFileSync(path.join(dir, file), kept);
    progress(`profile kept in ${kept}`);
    return summarise(kept, 15, windows);
  }

  /** Stops every process left; the scratch directory (daemon logs) stays when `keepLogs`. */
  async close(keepLogs = false): Promise<void> {
    await Promise.all([...this.children].map((c) => c.stop()));
    await this.emu.close();
    if (keepLogs) progress(`daemon logs kept in ${this.tmp}`);
    else fs.rmSync(this.tmp, { recursive: true, force: true });
  }
}

/** Requests the emulators made to themselves (Google STS fetching the domain's keys) happen inside another request. */
function outermost(list: Recorded[]): Recorded[] {
  return list.filter((r) => !list.some((o) => o !== r && o.start <= r.start && o.end >= r.end));
}
