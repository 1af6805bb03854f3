/**
 * What an idle daemon costs the machine: once it holds its first token and
 * nobody asks, its main thread sleeps, and the timers it keeps (token renewal,
 * the metrics' event-loop sampling, Node's request-timeout check) wake it a few
 * times a second at most. Counted by the kernel (the main thread's voluntary
 * context switches, one per wait that ended), not timed, so that a busy machine
 * does not change the figure.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { daemonEnvFor } from "../../src/emulator/index.js";
import { distIsFresh, ROOT, waitFor } from "../helpers/clients.js";
import { startTestEmulators } from "../helpers/stack.js";

const LAUNCHER = path.join(ROOT, "bin/oci2gcp.js");
/** Wake-ups a second allowed: prom-client's default event-loop sampling alone made 100. */
const MAX_WAKEUPS_PER_S = 10;
const WINDOW_MS = 4000;

/** The main thread's wake-ups so far, and its CPU time (ms, in clock ticks of 10 ms). */
function mainThread(pid: number): { wakeups: number; cpuMs: number } {
  const status = fs.readFileSync(`/proc/${pid}/task/${pid}/status`, "utf8");
  const stat = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { wakeups: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]), cpuMs: (Number(stat[11]) + Number(stat[12])) * 10 };
}

const noProc = fs.existsSync(`/proc/${process.pid}/task/${process.pid}/status`)
  ? false
  : "needs Linux's /proc: the kernel's count of a thread's context switches";

t.test("an idle daemon's main thread wakes a few times a second at most", { skip: noProc }, async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  const emu = await startTestEmulators();
  t.teardown(() => emu.close());
  const child = spawn(process.execPath, [LAUNCHER, "serve"], {
    env: { PATH: process.env.PATH, OCI2GCP_PORT: "0", ...daemonEnvFor(emu) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let out = "";
  child.stdout.on("data", (d) => (out += String(d)));
  child.stderr.on("data", (d) => (out += String(d)));
  const url = await waitFor(() => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1], 30_000);
  if (!url) {
    t.fail(`the daemon did not listen: ${out.slice(-2000)}`);
    return;
  }
  let ready = false;
  for (const end = Date.now() + 30_000; !ready && Date.now() < end; ) {
    ready = (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200;
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ready, "the daemon holds its first token");
  // The next session key is generated a second after the first federation, in the thread pool.
  await new Promise((r) => setTimeout(r, 2500));
  const a = mainThread(child.pid!);
  await new Promise((r) => setTimeout(r, WINDOW_MS));
  const z = mainThread(child.pid!);
  const perSecond = ((z.wakeups - a.wakeups) * 1000) / WINDOW_MS;
  const cpu = ((z.cpuMs - a.cpuMs) * 1000) / WINDOW_MS;
  t.ok(
    perSecond <= MAX_WAKEUPS_PER_S,
    `the idle main thread woke ${perSecond.toFixed(1)} times a second (at most ${MAX_WAKEUPS_PER_S}), using ${cpu.toFixed(1)} ms of CPU a second`,
  );
  child.kill("SIGTERM");
});
