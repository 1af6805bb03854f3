import { spawn, spawnSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import autocannon from "autocannon";
import { median } from "./proc.js";
import { type LoadResult, parseWrk } from "./runs.js";

export type CannonResult = LoadResult;

/** `connections` keep-alive connections sending GET `url` for `seconds`, as fast as answers come. */
export async function cannon(
  url: string,
  headers: Record<string, string>,
  connections: number,
  seconds: number,
  cpuMs?: () => number,
): Promise<CannonResult> {
  const cpu0 = cpuMs?.() ?? NaN;
  const r = await autocannon({ url, headers, connections, duration: seconds });
  const cpu = (cpuMs?.() ?? NaN) - cpu0;
  return {
    cpuPer1k: (cpu / r.requests.total) * 1000,
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    bad: r.errors + r.timeouts + r.non2xx,
  };
}

/** wrk's version, or undefined when it is not installed. */
export function wrkVersion(): string | undefined {
  const r = spawnSync("wrk", ["--version"], { encoding: "utf8" });
  if (r.error) return undefined;
  return /^wrk (\S+)/m.exec(`${r.stdout}${r.stderr}`)?.[1] ?? "unknown version";
}

/**
 * wrk, a load generator in C outside the bench's node process: one thread (the
 * machine has two cores, one of them for the server), `connections` keep-alive
 * connections, GET `url` for `seconds`. Its latencies have µs resolution.
 */
export async function wrk(
  url: string,
  headers: Record<string, string>,
  connections: number,
  seconds: number,
  cpuMs?: () => number,
): Promise<LoadResult> {
  const args = [
    "-t1",
    `-c${connections}`,
    `-d${seconds}s`,
    "--latency",
    ...Object.entries(headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
    url,
  ];
  const cpu0 = cpuMs?.() ?? NaN;
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    p.stdout.on("data", (c: Buffer) => (text += c.toString("utf8")));
    p.stderr.on("data", (c: Buffer) => (text += c.toString("utf8")));
    p.once("error", reject);
    p.once("close", (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited with code ${code}:\n${text}`))));
  });
  const cpu = (cpuMs?.() ?? NaN) - cpu0;
  const r = parseWrk(out);
  return { ...r, cpuPer1k: (cpu / r.requests) * 1000 };
}

export interface HerdResult {
  statuses: Record<number, number>;
  ok: number;
  p50Ms: number;
  maxMs: number;
}

/** `n` GETs at once, each on its own connection; resolves when every one is answered or failed. */
export async function herd(url: string, headers: Record<string, string>, n: number): Promise<HerdResult> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  const started = performance.now();
  const one = () =>
    new Promise<{ status: number; ms: number }>((resolve) => {
      const req = http.get(url, { headers, agent, timeout: 30_000 }, (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }));
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve({ status: 0, ms: performance.now() - started }));
    });
  const all = await Promise.all(Array.from({ length: n }, one));
  agent.destroy();
  const statuses: Record<number, number> = {};
  for (const a of all) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  const ms = all.map((a) => a.ms);
  return { statuses, ok: statuses[200] ?? 0, p50Ms: median(ms), maxMs: Math.max(...ms) };
}

/** The exact bytes of an HTTP/1.1 answer to one GET (connection closed by the server after it). */
export function rawGet(url: string, headers: Record<string, string>): Promise<Buffer> {
  const u = new URL(url);
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "Connection: close",
    "",
    "",
  ];
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect(Number(u.port), u.hostname, () => s.write(lines.join("\r\n")));
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("end", () => resolve(Buffer.concat(chunks)));
    s.on("error", reject);
  });
}

/** Header names and values of a raw answer, lower-cased names, without the ones that vary per answer. */
export function headerLines(raw: Buffer): { status: string; headers: [string, string][]; body: Buffer } {
  const end = raw.indexOf("\r\n\r\n");
  const [status, ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const headers = lines.map((l) => {
    const i = l.indexOf(":");
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string];
  });
  return { status: status!, headers, body: raw.subarray(end + 4) };
}
