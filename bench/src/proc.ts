import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The compiled bench (bench/dist/), where the child processes' scripts are. */
export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
/** The package root (bench/dist/ → ../..). */
export const ROOT = path.resolve(BENCH_DIR, "../..");

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Variables that would steer a child somewhere else than the bench's own servers. */
const FOREIGN =
  /^(GOOGLE_|GCE_|CLOUDSDK_|GCLOUD_|GCP_|OCI_|OCI2GCP_|METADATA_SERVER_DETECTION$|https?_proxy$|HTTPS?_PROXY$|all_proxy$|ALL_PROXY$|NODE_OPTIONS$)/;

/** The parent's environment without any cloud or proxy settings, plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!FOREIGN.test(k)) env[k] = v;
  return { ...env, NO_PROXY: "127.0.0.1,localhost", no_proxy: "127.0.0.1,localhost", ...extra };
}

/** A node process of the bench: a daemon or a server under test. */
export interface Child {
  proc: ChildProcess;
  pid: number;
  /** http://127.0.0.1:PORT */
  url: string;
  startedAt: number;
  /** Resident set size (VmRSS), its peak (VmHWM) or its anonymous and file-backed parts, in MiB, from /proc. */
  memMiB(field?: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number;
  /** CPU time the process has used so far (user + system), ms. */
  cpuMs(): number;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  port: number;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Where stdout and stderr go (the daemon's JSON log). */
  logFile: string;
}

export function spawnNode(script: string, args: string[], o: SpawnOptions): Child {
  const out = fs.openSync(o.logFile, "a");
  const startedAt = performance.now();
  const proc = spawn(process.execPath, [...(o.nodeArgs ?? []), script, ...args], { env: o.env, stdio: ["ignore", out, out], cwd: ROOT });
  fs.closeSync(out);
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  return {
    proc,
    pid: proc.pid!,
    url: `http://127.0.0.1:${o.port}`,
    startedAt,
    memMiB(field = "VmRSS") {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${proc.pid}/status`, "utf8"));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    cpuMs() {
      // Fields 14 and 15 of /proc/PID/stat, after the parenthesised command name, in clock ticks (USER_HZ, 100 on Linux).
      const f = fs.readFileSync(`/proc/${proc.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 12_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One GET on a fresh connection. */
export function get(url: string, headers: Record<string, string> = {}, timeoutMs = 30_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
  });
}

/** Polls `url` until it answers 200; returns ms since `since` (performance.now()). */
export async function until200(
  url: string,
  child: Child | undefined,
  since: number,
  headers: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  for (;;) {
    if (child && child.proc.exitCode !== null) throw new Error(`${url}: the process exited with code ${child.proc.exitCode}`);
    try {
      const a = await get(url, headers, 5_000);
      if (a.status === 200) return performance.now() - since;
      last = `HTTP ${a.status}: ${a.body.slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (performance.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms (last: ${last})`);
    await sleep(5);
  }
}

/** Runs `task(i)` for i < n with at most `concurrency` at a time. */
export async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < n; i = next++) out[i] = await task(i);
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

/** Runs a node script to completion; resolves with its exit code, wall time and the end of its output. */
export function runNode(
  script: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
  args: string[] = [],
): Promise<{ code: number | null; ms: number; output: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"], cwd: ROOT });
    let output = "";
    const keep = (c: Buffer) => {
      output = (output + c.toString("utf8")).slice(-4000);
    };
    proc.stdout.on("data", keep);
    proc.stderr.on("data", keep);
    const t = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.once("close", (code) => {
      clearTimeout(t);
      resolve({ code, ms: performance.now() - started, output });
    });
  });
}
