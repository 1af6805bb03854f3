import { Writable } from "node:stream";
import { loadConfig, type Config } from "../../src/config/config.js";
import { startDaemon, type Daemon } from "../../src/daemon.js";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, startEmulators, type Emulators, type EmulatorsOptions } from "../../src/emulator/index.js";
import { createLogger } from "../../src/log.js";
import type { SigningIdentity } from "../../src/oci/principal.js";
import type { TokenSource } from "../../src/token/token-source.js";

export { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT };
export const SECOND_SERVICE_ACCOUNT = "second@demo-project.iam.gserviceaccount.com";

/** Patterns that must never appear in a log line. */
export const SECRET_PATTERNS: RegExp[] = [
  /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}/,
  /ya29\.[A-Za-z0-9_-]{8,}/,
  /BEGIN [A-Z ]*PRIVATE KEY/,
  /signature="[A-Za-z0-9+/=]{16,}/,
  /ST\$[A-Za-z0-9]/,
];

export interface Stack {
  emu: Emulators;
  daemon: Daemon;
  config: Config;
  /** http://127.0.0.1:PORT of the daemon. */
  url: string;
  /** Every log line the daemon wrote, parsed. */
  logs: Record<string, unknown>[];
  /** Raw log text. */
  logText(): string;
  /** Secrets seen by the test (tokens it received); checked against the logs on close. */
  secrets: Set<string>;
  /** GET on the daemon with Metadata-Flavor: Google. */
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string }>;
  /** Log lines that contain a secret (known tokens, or token-shaped text). */
  leaks(): string[];
  close(): Promise<void>;
}

export interface StackOptions {
  /** Setting paths → values (see src/config/settings.ts), on top of the emulator wiring. */
  overrides?: Record<string, unknown>;
  emulators?: EmulatorsOptions;
  /** Service accounts the daemon impersonates; default the demo account. */
  serviceAccounts?: string[];
  logLevel?: string;
  warm?: boolean;
  principal?: TokenSource<SigningIdentity>;
}

/** Emulated clouds and a daemon wired to them, in this process, on loopback. */
export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const serviceAccounts = o.serviceAccounts ?? [DEMO_SERVICE_ACCOUNT];
  const emu = await startEmulators({
    ...o.emulators,
    google: { serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT], ...o.emulators?.google },
  });
  const config = loadConfig({
    env: {},
    overrides: {
      "oci.principal": "instance",
      "oci.metadataUrl": emu.oci.metadataBaseUrl,
      "oci.federationUrl": emu.oci.federationEndpoint,
      "identityDomain.url": emu.oci.domainUrl,
      "google.audience": emu.google.audience,
      "google.stsUrl": emu.google.stsUrl,
      "google.iamCredentialsUrl": emu.google.iamCredentialsUrl,
      "google.serviceAccounts": serviceAccounts,
      "google.projectId": DEMO_PROJECT_ID,
      "server.port": 0,
      "log.level": o.logLevel ?? "trace",
      ...o.overrides,
    },
  });
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger(config.log.level, sink);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger, warm: o.warm ?? false, principal: o.principal });
  } catch (e) {
    await emu.close();
    throw e;
  }
  const secrets = new Set<string>();
  const logText = () => chunks.join("");
  const stack: Stack = {
    emu,
    daemon,
    config,
    url: daemon.url,
    get logs() {
      return logText()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    logText,
    secrets,
    async get(path, headers = {}) {
      const res = await fetch(`${daemon.url}${path}`, { headers: { "metadata-flavor": "Google", ...headers } });
      const text = await res.text();
      if (res.status === 200) {
        const m = /"access_token":"([^"]+)"/.exec(text);
        if (m) secrets.add(m[1]!);
        else if (/^eyJ/.test(text)) secrets.add(text);
        const idt = /"id_token":"([^"]+)"/.exec(text);
        if (idt) secrets.add(idt[1]!);
      }
      return { status: res.status, headers: res.headers, text };
    },
    leaks() {
      return logText()
        .split("\n")
        .filter((l) => SECRET_PATTERNS.some((p) => p.test(l)) || [...secrets].some((s) => s.length >= 16 && l.includes(s.slice(0, 40))));
    },
    async close() {
      await daemon.close();
      await emu.close();
    },
  };
  return stack;
}

/** Counters of the emulators, by endpoint key. */
export async function calls(emu: Emulators): Promise<Record<string, number>> {
  const res = await fetch(`${emu.url}/_emulator/calls`);
  return (await res.json()) as Record<string, number>;
}

/** Decodes a JWT's payload without verifying it. */
export function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
}
