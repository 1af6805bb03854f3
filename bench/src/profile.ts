import fs from "node:fs";
import { ROOT } from "./proc.js";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
}

export interface ProfileSummary {
  /** CPU time outside idle within the windows (ms). */
  busyMs: number;
  /** Functions by their own (self) time. */
  self: { ms: number; share: number; fn: string }[];
  /** The same time by the innermost package on the stack (the library running, or calling into node), or our own file. */
  packages: { ms: number; share: number; name: string }[];
}

/** Our files by their path in the repository (dist/..., bench/dist/...). */
const OURS = `file://${ROOT}/`;
const where = (url: string) => url.replace(/^.*node_modules\//, "").replace(OURS, "");

function packageOf(url: string): string | undefined {
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  return url.startsWith(OURS) ? url.slice(OURS.length) : undefined;
}

/**
 * Summarises a V8 .cpuprofile: self time by function and time by package,
 * idle left out, counting only samples within `windows` (monotonic clock in
 * µs, as process.hrtime) when given.
 */
export function summarise(file: string, n = 15, windows?: [number, number][]): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const self = new Map<string, number>();
  const pkgs = new Map<string, number>();
  let busy = 0;
  let at = p.startTime;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    at += us;
    if (windows && !windows.some(([a, b]) => at >= a && at <= b)) return;
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)") return;
    busy += us;
    const fn = `${cf.functionName || "(anonymous)"} ${where(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ""}`.trim();
    self.set(fn, (self.get(fn) ?? 0) + us);
    let name = "node (no package on the stack)";
    for (let up: number | undefined = id; up !== undefined; up = parent.get(up)) {
      const pk = packageOf(byId.get(up)!.callFrame.url);
      if (pk) {
        name = pk;
        break;
      }
    }
    pkgs.set(name, (pkgs.get(name) ?? 0) + us);
  });
  const top = <K extends string>(m: Map<string, number>, key: K) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, us]) => ({ ms: us / 1000, share: us / busy, [key]: k }) as { ms: number; share: number } & Record<K, string>);
  return { busyMs: busy / 1000, self: top(self, "fn"), packages: top(pkgs, "name") };
}

// `node bench/dist/profile.js FILE.cpuprofile [N]` prints the summary of a whole profile.
if (import.meta.url === `file://${process.argv[1]}`) {
  const s = summarise(process.argv[2]!, Number(process.argv[3] ?? 25));
  console.log(`busy ${s.busyMs.toFixed(0)} ms`);
  for (const r of s.self) console.log(`${r.ms.toFixed(1).padStart(9)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.fn}`);
  console.log("by package:");
  for (const r of s.packages) console.log(`${r.ms.toFixed(1).padStart(9)} ms ${(r.share * 100).toFixed(1).padStart(5)}%  ${r.name}`);
}
