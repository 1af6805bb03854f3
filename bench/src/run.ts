// Measures the daemon against baselines taken in the same run, on loopback
// only: emulated clouds in this process, the daemon and the baseline servers
// each in a child process. Writes the results into BENCHMARKS.md (between its
// bench markers), or prints them when --only picks some of the scenarios.
import path from "node:path";
import { parseArgs } from "node:util";
import { DAEMON_NODE_OPTIONS } from "oci2gcp/daemon";
import { access } from "./access.js";
import { Bench, HOPS_ORDER } from "./bench.js";
import { library } from "./library.js";
import { ROOT } from "./proc.js";
import { f, machine, table, wrapMarkdown, writeReport } from "./report.js";
import { cold, herds, type Part, processes, profiles, startup } from "./scenarios.js";
import { throughput } from "./throughput.js";

const USAGE = `npm run bench [-- OPTIONS]   (builds the package and the bench, then runs bench/dist/run.js)

  --duration S          seconds per load run (default 6)
  --connections N       connections of the load generator (default 50)
  --processes N         short-lived client processes in section 4 (default 50)
  --concurrency N[,N]   section 4 runs at each (default 10,1)
  --only a,b            some of throughput, cold, herd, processes, startup, access, library; prints instead of writing the report
  --profile             also profile the daemon under load and during renewals
  --node-args=FLAGS     node flags of every daemon (default ${DAEMON_NODE_OPTIONS})
  --out FILE            the report to write between its bench markers (default BENCHMARKS.md)
`;

const { values: opt } = parseArgs({
  options: {
    help: { type: "boolean", short: "h", default: false },
    duration: { type: "string", default: "6" },
    connections: { type: "string", default: "50" },
    processes: { type: "string", default: "50" },
    /** Comma-separated: section 4 runs at each. */
    concurrency: { type: "string", default: "10,1" },
    /** Comma-separated: throughput, cold, herd, processes, startup, access, library. */
    only: { type: "string" },
    /** Also profile the daemon under load and during renewals. */
    profile: { type: "boolean", default: false },
    /** Node flags for every daemon process; by default those of the shipped deployments. */
    "node-args": { type: "string", default: DAEMON_NODE_OPTIONS },
    out: { type: "string", default: path.join(ROOT, "BENCHMARKS.md") },
  },
});
if (opt.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const o = {
  duration: Number(opt.duration),
  connections: Number(opt.connections),
  processes: Number(opt.processes),
  concurrency: opt.concurrency!.split(",").map(Number),
};
const only = opt.only?.split(",");
const wanted = (s: string) => !only || only.includes(s);

const began = Date.now();
const bench = await Bench.start(opt["node-args"]!.split(" ").filter(Boolean));
const parts: Part[] = [];
let ok = false;
try {
  if (wanted("throughput")) parts.push(await throughput(bench, o));
  if (wanted("cold")) parts.push(await cold(bench, o));
  if (wanted("herd")) parts.push(await herds(bench, o));
  if (wanted("processes")) parts.push(await processes(bench, o));
  if (wanted("startup")) parts.push(await startup(bench));
  if (wanted("access")) parts.push(await access(bench, o));
  if (wanted("library")) parts.push(await library(bench));
  if (opt.profile) parts.push(await profiles(bench, o));
  ok = true;
} finally {
  await bench.close(!ok);
}

const args = process.argv.slice(2).map((a) => (a.includes(" ") ? JSON.stringify(a) : a));
const command = `npm run bench${args.length ? ` -- ${args.join(" ")}` : ""}`;
const lines = [
  `Run of ${new Date(began).toISOString().slice(0, 16).replace("T", " ")} UTC, \`${command}\`, ${f((Date.now() - began) / 1000, 0)} s in all.`,
  "",
  ...machine(),
  "- Daemons run with the node flags of every shipped deployment (systemd unit, container image, Kubernetes manifests): " +
    `\`${opt["node-args"]}\`${opt["node-args"] === DAEMON_NODE_OPTIONS ? "" : " (given with --node-args)"}. ` +
    "The throughput baseline runs with the same flags (and once more on node's defaults, section 1); " +
    "the start-up baseline and the clients of section 4 on node's defaults.",
  "- Everything on loopback: the emulated OCI and Google services in the bench process, each server under test in its own child process. " +
    "The machine is shared: figures move by several percent between runs.",
  `- Calls per hop, in every table: ${HOPS_ORDER}, as the emulators counted them.`,
  "",
  "## Summary",
  "",
  ...table(
    ["#", "target", "figure", "baseline (same run)", "ratio", "result"],
    parts.flatMap((p) => p.summary).sort((a, b) => Number(a[0]) - Number(b[0])),
  ),
  "",
  ...parts.flatMap((p) => p.lines),
];
if (only) {
  process.stdout.write(`${wrapMarkdown(lines).join("\n")}\n`);
} else {
  writeReport(opt.out!, lines);
  process.stderr.write(`written to ${opt.out}\n`);
}
