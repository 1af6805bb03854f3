// The figures of load runs, and which runs count: pure functions, tested
// without running a load.

/** One load run's figures, from autocannon or wrk. */
export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  /** Connection errors, timeouts and answers other than 2xx. */
  bad: number;
  /** CPU time the server process used per 1,000 answers (ms), when its CPU clock is given. */
  cpuPer1k: number;
}

/** A load run and its warm-up's failures. */
export interface MeasuredRun {
  r: LoadResult;
  /** Failed answers during the warm-up on the same process. */
  warmBad: number;
}

/** A run counts only when every answer was a 2xx: no error, timeout or other status, in the run or in its warm-up. */
export const cleanRun = (x: MeasuredRun) => x.r.bad === 0 && x.warmBad === 0;

/** Means over the runs without a failed answer (NaN when there is none), and how many there were. */
export function cleanMeans(runs: MeasuredRun[]): { rps: number; p99: number; cpu: number; n: number } {
  const ok = runs.filter(cleanRun).map((x) => x.r);
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  return { rps: mean(ok.map((r) => r.rps)), p99: mean(ok.map((r) => r.p99)), cpu: mean(ok.map((r) => r.cpuPer1k)), n: ok.length };
}

/** wrk's durations: 412.00us, 1.30ms, 2.01s, 1.50m. */
function wrkMs(s: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s ?? "");
  if (!m) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000 }[m[2] as "us" | "ms" | "s" | "m"];
}

/** Reads wrk's report (with --latency); failures are its socket errors and its answers other than 2xx or 3xx. */
export function parseWrk(out: string): Omit<LoadResult, "cpuPer1k"> {
  const requests = /^\s*(\d+) requests in /m.exec(out);
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(out);
  if (!requests || !rps) throw new Error(`wrk's report is not as expected:\n${out}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  return {
    rps: Number(rps[1]),
    p50: wrkMs(/^\s+50%\s+(\S+)$/m.exec(out)?.[1]),
    p99: wrkMs(/^\s+99%\s+(\S+)$/m.exec(out)?.[1]),
    requests: Number(requests[1]),
    bad: non2xx + (errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}
