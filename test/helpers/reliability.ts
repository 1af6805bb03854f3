/**
 * Helpers of the reliability and security tests: steering the emulators over
 * their HTTP control surface, timestamps of upstream calls, `oci2gcp` in a child
 * process, polling, and a seeded PRNG. Daemons in this process come from
 * startStack (stack.ts).
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Test } from "tap";
import type { Fault } from "../../src/emulator/core.js";
import type { Emulators } from "../../src/emulator/index.js";
import type { Stack } from "./stack.js";

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export type Endpoint =
  | "oci.metadata"
  | "oci.federation"
  | "oci.identityDomain.token"
  | "google.sts.token"
  | "google.iam.generateAccessToken"
  | "google.iam.generateIdToken";

/** A fault of the emulator's (see EmulatorServer's Fault), for one of the endpoints above. */
export type FaultSpec = Omit<Fault, "endpoint"> & { endpoint: Endpoint };

/** POST /_emulator/faults; throws unless the emulator accepted it. */
export async function fault(emu: Emulators, f: FaultSpec | FaultSpec[]): Promise<void> {
  const res = await fetch(`${emu.url}/_emulator/faults`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(f),
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`fault not accepted: HTTP ${res.status} ${text}`);
}

/** DELETE /_emulator/faults. */
export async function clearFaults(emu: Emulators): Promise<void> {
  const res = await fetch(`${emu.url}/_emulator/faults`, { method: "DELETE" });
  await res.arrayBuffer();
  if (res.status !== 204) throw new Error(`faults not cleared: HTTP ${res.status}`);
}

/** POST /_emulator/settings. */
export async function emuSettings(emu: Emulators, s: { oci?: Record<string, number>; google?: Record<string, number> }): Promise<void> {
  const res = await fetch(`${emu.url}/_emulator/settings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(s),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`settings not accepted: HTTP ${res.status} ${text}`);
}

/**
 * Records when each upstream call reached the emulator: the emulator counts a
 * call by assigning `calls[endpoint] = n + 1`, so a setter on each counter sees
 * every call at the moment it arrives. `/_emulator/calls` still works.
 */
export function recordCallTimes(emu: Emulators): Record<string, number[]> {
  const times: Record<string, number[]> = {};
  const counters = emu.server.calls;
  for (const k of Object.keys(counters)) {
    let v = counters[k]!;
    const list: number[] = [];
    times[k] = list;
    Object.defineProperty(counters, k, {
      enumerable: true,
      configurable: true,
      get: () => v,
      set: (n: number) => {
        if (n > v) list.push(Date.now());
        v = n;
      },
    });
  }
  return times;
}

/** Polls `pred` every `everyMs` until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Cases that take turns on one set of emulators (see `turns`). */
export interface Turns<C extends { emu: Emulators }> {
  /** A case callback for t.test: waits for the cases before it here, runs `fn`, then clears the faults. */
  on(fn: (t: Test, c: C) => Promise<void>): (t: Test) => Promise<void>;
  /** Closes the emulators, if a case started them. */
  close(): Promise<void>;
}

/**
 * Emulators (with whatever `start` sets up around them) that several cases use one
 * at a time, so that those cases can run side by side with cases on other emulators
 * (a parent with t.jobs > 1): faults and call counters are per emulator. They start
 * when the first case needs them.
 */
export function turns<C extends { emu: Emulators }>(start: () => Promise<C>): Turns<C> {
  let started: Promise<C> | undefined;
  let last: Promise<unknown> = Promise.resolve();
  return {
    on: (fn) => (t) => {
      const c = (started ??= start());
      const mine = last.then(async () => {
        const cloud = await c;
        try {
          await fn(t, cloud);
        } finally {
          await clearFaults(cloud.emu);
        }
      });
      last = mine.catch(() => {});
      return mine;
    },
    async close() {
      const c = await started?.catch(() => undefined);
      await c?.emu.close();
    },
  };
}

/** mulberry32: a small seeded PRNG, so that generated inputs reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Decodes a JWT payload without verifying; undefined when it is not one. */
export function jwtClaims(jwt: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** An unsigned JWT-shaped string with the given claims (enough for what the daemon decodes). */
export function fakeJwt(claims: Record<string, unknown>): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${enc({ alg: "RS256", typ: "JWT", kid: "SIGNING_KEY" })}.${enc(claims)}.${Buffer.from("not-a-signature").toString("base64url")}`;
}

/** The environment for a child `oci2gcp`, without settings of the developer's own. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(OCI2GCP_|OCI_|GCP_|GOOGLE_|KUBERNETES_|GCE_)/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

/** A JSON config file (nested) from setting paths and values. */
export function writeConfigFile(file: string, settings: Record<string, unknown>): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(settings)) {
    const ks = k.split(".");
    let cur = out;
    for (const part of ks.slice(0, -1)) cur = (cur[part] ??= {}) as Record<string, unknown>;
    cur[ks[ks.length - 1]!] = v;
  }
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  return file;
}

export interface Child {
  proc: ChildProcess;
  /** Every stdout line, parsed when it is JSON. */
  lines: (Record<string, unknown> | string)[];
  stdout(): string;
  stderr(): string;
  /** Resolves with the first line that matches, or undefined after timeoutMs. */
  line(pred: (l: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown> | undefined>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  kill(): void;
}

/** Runs `node bin/oci2gcp.js ...args` with stdout and stderr captured. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv): Child {
  const proc = spawn(process.execPath, [path.join(ROOT, "bin/oci2gcp.js"), ...args], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  const lines: (Record<string, unknown> | string)[] = [];
  let partial = "";
  proc.stdout!.on("data", (c: Buffer) => {
    out += c.toString("utf8");
    partial += c.toString("utf8");
    const parts = partial.split("\n");
    partial = parts.pop()!;
    for (const l of parts) {
      if (!l) continue;
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        lines.push(l);
      }
    }
  });
  proc.stderr!.on("data", (c: Buffer) => (err += c.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.on("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    proc,
    lines,
    stdout: () => out,
    stderr: () => err,
    async line(pred, timeoutMs) {
      let found: Record<string, unknown> | undefined;
      await waitFor(() => {
        found = lines.find((l): l is Record<string, unknown> => typeof l === "object" && pred(l));
        return found !== undefined || proc.exitCode !== null;
      }, timeoutMs);
      return found;
    },
    exited,
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    },
  };
}

/** What the subject-token endpoint's JSON error says, and which hop it blames. */
function saidBySubjectEndpoint(r: { text: string }): string {
  const b = JSON.parse(r.text) as { error_description: string; hop: string };
  return `${b.error_description} [hop: ${b.hop}]`;
}

/**
 * An OCI hop answering 200 with a body that is no usable answer: the subject-token
 * endpoint answers 503 naming the hop (in its text and in the JSON error's `hop`)
 * and saying what is wrong; once the fault is cleared the same daemon recovers.
 */
export async function checkGarbageAnswer(
  t: Test,
  d: Stack,
  o: { endpoint: Endpoint; body: string; hop: RegExp; hopField: RegExp; says: RegExp; recoverMs: number; everyMs: number },
): Promise<void> {
  const subject = "/oci2gcp/v1/subject-token";
  await fault(d.emu, {
    endpoint: o.endpoint,
    status: 200,
    body: o.body,
    headers: { "content-type": o.body.startsWith("{") ? "application/json" : "text/html" },
  });
  const r = await d.get(subject);
  t.equal(r.status, 503, r.text);
  t.match(r.text, o.hop);
  t.match(saidBySubjectEndpoint(r), o.says);
  t.match(saidBySubjectEndpoint(r), o.hopField, "the JSON error names the hop");
  await clearFaults(d.emu);
  t.ok(await waitFor(async () => (await d.get(subject)).status === 200, o.recoverMs, o.everyMs), "recovers after the fault");
}
