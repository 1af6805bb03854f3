import fs from "node:fs";
import path from "node:path";
import { type Bench, progress } from "./bench.js";
import { BENCH_DIR, cleanEnv, median, runNode } from "./proc.js";
import { f, ratio, table } from "./report.js";
import type { Part } from "./scenarios.js";

/** Timed processes of each kind, after one untimed of each. */
const RUNS = 7;
const KINDS = ["google-auth-library", "oci2gcp", "oci2gcp/daemon"] as const;
type Kind = (typeof KINDS)[number];
const MB = (mib: number) => (mib * 1024 * 1024) / 1e6;

interface Sample {
  startedMs: number;
  rssStart: number;
  importMs: number;
  rssImport: number;
  tokenMs?: number;
  rssToken?: number;
  sinceStartMs?: number;
  cpuMs: number;
}

/**
 * What the library costs a program that loads it, an OCI Function's cold start
 * above all: in fresh node processes, the import of "oci2gcp" and its first
 * token in-process against the emulators, against importing google-auth-library
 * alone (which any Google client library loads anyway) and the daemon's entry.
 */
export async function library(b: Bench): Promise<Part> {
  progress(`library: ${RUNS} fresh node processes of each kind, import and first token`);
  b.emu.setLatency(0);
  b.emu.setTokens();
  const home = fs.mkdtempSync(path.join(b.tmp, "library-home-"));
  const env = cleanEnv({ ...b.emu.daemonEnv(), HOME: home });
  const samples = Object.fromEntries(KINDS.map((k) => [k, [] as Sample[]])) as Record<Kind, Sample[]>;
  // One of each first, untimed, so that the files are in the page cache; then the kinds take turns.
  for (let i = 0; i <= RUNS; i++) {
    for (const k of i % 2 ? [...KINDS].reverse() : KINDS) {
      const out = await runNode(path.join(BENCH_DIR, "library-child.js"), env, 60_000, [k]);
      const m = /bench-result (\{.*\})/.exec(out.output);
      if (out.code !== 0 || !m) throw new Error(`library-child ${k}: exit ${out.code}: ${out.output.slice(-1500)}`);
      if (i > 0) samples[k].push(JSON.parse(m[1]!) as Sample);
    }
  }
  const med = (k: Kind, field: keyof Sample) => median(samples[k].map((s) => s[field] ?? NaN));
  const gal = { ms: med("google-auth-library", "importMs"), rss: med("google-auth-library", "rssImport") };
  const lib = {
    ms: med("oci2gcp", "importMs"),
    rss: med("oci2gcp", "rssImport"),
    token: med("oci2gcp", "tokenMs"),
    rssToken: med("oci2gcp", "rssToken"),
    sinceStart: med("oci2gcp", "sinceStartMs"),
  };
  const importAndToken = median(samples.oci2gcp.map((s) => s.importMs + (s.tokenMs ?? NaN)));
  const summary = [
    [
      "7",
      'library: `import("oci2gcp")` in a fresh process',
      `${f(lib.ms, 0)} ms, RSS ${f(MB(lib.rss))} MB`,
      `google-auth-library alone: ${f(gal.ms, 0)} ms, RSS ${f(MB(gal.rss))} MB`,
      ratio(lib.ms, gal.ms),
      "—",
    ],
    [
      "7",
      "library: import and first token in-process (emulators, no latency)",
      `${f(importAndToken, 0)} ms, RSS ${f(MB(lib.rssToken))} MB`,
      `google-auth-library alone: ${f(gal.ms, 0)} ms`,
      ratio(importAndToken, gal.ms),
      "—",
    ],
  ];
  const runs = (k: Kind, field: keyof Sample) =>
    samples[k]
      .map((s) => s[field])
      .map((x) => f(x ?? NaN, 0))
      .join(", ");
  const dash = "–";
  const lines = [
    "## 7. Library entry",
    "",
    `Fresh \`node\` processes on node's defaults (as an OCI Function's Node FDK runs), ${RUNS} of each kind after one untimed of each ` +
      "(warm disk), the kinds taking turns. Each process times, from inside, a dynamic `import()` of its entry: " +
      '`"oci2gcp"`, the package\'s main entry and the in-process library (`OciGoogleCredentials`); `"oci2gcp/daemon"`, the daemon\'s entry, for ' +
      "comparison; and google-auth-library alone, which every Google client library loads anyway. " +
      'The `"oci2gcp"` processes then get a first access token in-process: `OciGoogleCredentials.fromEnvironment()` with the settings of the ' +
      "daemons of this bench in the environment (instance principal, emulators without latency), then `getAccessToken()`: all five hops, " +
      "the instance principal's first RSA-2048 session key included. RSS is the process's resident set (process.memoryUsage.rss()) at its start, " +
      "after the import and after the first token; node's start-up is the time from the process's start to the first line of the script, " +
      'and "process start to token" includes it. Medians.',
    "",
    ...table(
      [
        "entry",
        "node start ms",
        "import ms",
        "token ms",
        "start to token ms",
        "RSS start MB",
        "RSS import MB",
        "RSS token MB",
        "CPU ms",
        "import runs ms",
      ],
      KINDS.map((k) => [
        `\`${k}\``,
        f(med(k, "startedMs"), 0),
        f(med(k, "importMs"), 0),
        k === "oci2gcp" ? f(lib.token, 0) : dash,
        k === "oci2gcp" ? f(lib.sinceStart, 0) : dash,
        f(MB(med(k, "rssStart"))),
        f(MB(med(k, "rssImport"))),
        k === "oci2gcp" ? f(MB(lib.rssToken)) : dash,
        f(med(k, "cpuMs"), 0),
        runs(k, "importMs"),
      ]),
    ),
    "",
    `Median: \`import("oci2gcp")\` takes **${f(lib.ms, 0)} ms** (${ratio(lib.ms, gal.ms)} google-auth-library alone, ${f(gal.ms, 0)} ms; ` +
      `the daemon's entry ${f(med("oci2gcp/daemon", "importMs"), 0)} ms) and leaves the process at ${f(MB(lib.rss))} MB ` +
      `(google-auth-library alone ${f(MB(gal.rss))} MB); the first token takes **${f(lib.token, 0)} ms** more (first token runs: ` +
      `${runs("oci2gcp", "tokenMs")} ms), ${f(lib.sinceStart, 0)} ms from the process's start, and leaves it at ${f(MB(lib.rssToken))} MB.`,
    "",
  ];
  return { summary, lines };
}
