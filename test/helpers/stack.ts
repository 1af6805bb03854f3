import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { type Config, loadConfig } from "../../src/config/config.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";
import { EmulatorServer } from "../../src/emulator/core.js";
import { type GoogleEmulatorOptions, registerGoogle } from "../../src/emulator/google/index.js";
import {
  DEMO_PROJECT_ID,
  DEMO_SERVICE_ACCOUNT,
  daemonSettingsFor,
  type Emulators,
  type EmulatorsOptions,
  startEmulators,
} from "../../src/emulator/index.js";
import { createLogger, routeConsoleToLogger } from "../../src/log.js";
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
  logs(): Record<string, unknown>[];
  /** Raw log text. */
  logText(): string;
  /** Secrets seen by the test (tokens it received); checked against the logs on close. */
  secrets: Set<string>;
  /** GET on the daemon with Metadata-Flavor: Google; `ms` is the time until the whole answer was read. */
  get(path: string, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; text: string; ms: number }>;
  /** Log lines that contain a secret (known tokens, or token-shaped text). */
  leaks(): string[];
  /** Closes the daemon, and the emulators when it started them (not those given as `emu`). */
  close(): Promise<void>;
}

export interface StackOptions {
  /** Setting paths → values (see src/config/settings.ts), on top of the emulator wiring. */
  overrides?: Record<string, unknown>;
  emulators?: EmulatorsOptions;
  /**
   * Running emulators to wire the daemon to (from startTestEmulators), shared by
   * several stacks to save their key generation; close() leaves them running.
   * Their call counters and faults are shared too.
   */
  emu?: Emulators;
  /** Service accounts the daemon impersonates; default the demo account. */
  serviceAccounts?: string[];
  logLevel?: string;
  warm?: boolean;
  /** A principal in place of the configured one; a function gets the started emulators. */
  principal?: TokenSource<SigningIdentity> | ((emu: Emulators) => TokenSource<SigningIdentity>);
  /**
   * More overrides computed once the emulators run (material they mint, files
   * written from it, a proxy in front of them); applied after `overrides`.
   */
  configure?: (emu: Emulators) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Where the daemon reads the user and group databases for access.rules. */
  accountFiles?: { passwd?: string; group?: string };
  /** Route console.log/info/warn (oci-common's status lines) to the daemon's logger, as `serve` does; restored on close. */
  routeConsole?: boolean;
}

/** The emulators as startStack starts them (both demo service accounts known to Google). */
export function startTestEmulators(o: EmulatorsOptions = {}): Promise<Emulators> {
  return startEmulators({
    ...o,
    google: { serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT], ...o.google },
  });
}

/**
 * Running emulators' OCI with another Google provider in front of it: a second
 * Google emulator on its own port, trusting that OCI's identity domain as
 * startEmulators wires it, with `google` on top (another issuer, audiences,
 * keys or condition). It saves the OCI keys and certificates a new set would
 * generate. Google's call counters and faults are on the new server; close()
 * closes only that server.
 */
export async function withOtherGoogle(emu: Emulators, google: Partial<GoogleEmulatorOptions>): Promise<Emulators> {
  const server = new EmulatorServer();
  const url = await server.listen(0, "127.0.0.1");
  try {
    const g = await registerGoogle(server, {
      issuer: emu.oci.domainIssuer,
      allowedAudiences: [emu.oci.domainUrl],
      jwksUrl: emu.oci.domainJwksUrl,
      serviceAccounts: [DEMO_SERVICE_ACCOUNT],
      ...google,
    });
    return { server, url, oci: emu.oci, google: g, close: () => server.close() };
  } catch (e) {
    await server.close();
    throw e;
  }
}

/** Clears the faults and call counters of shared emulators. */
export function resetEmulators(emu: Emulators): void {
  emu.server.clearFaults();
  emu.server.resetCalls();
}

/** The settings that point a daemon at the emulators, on a free port. */
export function emulatorOverrides(emu: Emulators, serviceAccounts: string[] = [DEMO_SERVICE_ACCOUNT]): Record<string, unknown> {
  return { ...daemonSettingsFor(emu, serviceAccounts), "server.port": 0 };
}

/** Lines of `text` that hold a secret: token-shaped text, or (a prefix of) a token the test received. */
export function leakedLines(text: string, secrets: Iterable<string>): string[] {
  const known = [...secrets].filter((s) => s.length >= 16).map((s) => s.slice(0, 40));
  return text.split("\n").filter((l) => SECRET_PATTERNS.some((p) => p.test(l)) || known.some((s) => l.includes(s)));
}

/**
 * A daemon in this process, on loopback, logging into memory (at trace unless
 * told otherwise), wired to emulated clouds: its own, or running ones given as
 * `emu` (several daemons can share them, which saves their key generation).
 */
export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const ownEmu = !o.emu;
  const emu = o.emu ?? (await startTestEmulators(o.emulators));
  const closeEmu = async () => {
    if (ownEmu) await emu.close();
  };
  let config: Config;
  let principal: TokenSource<SigningIdentity> | undefined;
  try {
    const late = o.configure ? await o.configure(emu) : {};
    principal = typeof o.principal === "function" ? o.principal(emu) : o.principal;
    config = loadConfig({
      env: {},
      overrides: {
        ...emulatorOverrides(emu, o.serviceAccounts),
        "log.level": o.logLevel ?? "trace",
        ...o.overrides,
        ...late,
      },
    });
  } catch (e) {
    await closeEmu();
    throw e;
  }
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  const logger = createLogger(config.log.level, sink);
  const savedConsole = { log: console.log, info: console.info, warn: console.warn };
  const restoreConsole = () => {
    if (o.routeConsole) Object.assign(console, savedConsole);
  };
  if (o.routeConsole) routeConsoleToLogger(logger);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger, warm: o.warm ?? false, principal, accountFiles: o.accountFiles });
  } catch (e) {
    restoreConsole();
    await closeEmu();
    throw e;
  }
  const secrets = new Set<string>();
  const logText = () => chunks.join("");
  const stack: Stack = {
    emu,
    daemon,
    config,
    url: daemon.url,
    logs: () =>
      logText()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    logText,
    secrets,
    async get(path, headers = {}) {
      const t0 = Date.now();
      const res = await fetch(`${daemon.url}${path}`, { headers: { "metadata-flavor": "Google", ...headers } });
      const text = await res.text();
      if (res.status === 200) recordSecrets(text, secrets);
      return { status: res.status, headers: res.headers, text, ms: Date.now() - t0 };
    },
    leaks: () => leakedLines(logText(), secrets),
    async close() {
      await daemon.close();
      await closeEmu();
      restoreConsole();
    },
  };
  return stack;
}

/** Remembers the tokens in a daemon's 200 answer, so that a test can look for them in the logs. */
export function recordSecrets(text: string, secrets: Set<string>): void {
  const m = /"access_token":"([^"]+)"/.exec(text);
  if (m) secrets.add(m[1]!);
  else if (/^eyJ/.test(text)) secrets.add(text);
  const idt = /"id_token":"([^"]+)"/.exec(text);
  if (idt) secrets.add(idt[1]!);
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

/**
 * Checks a domain JWT against the emulated identity domain's JWKS, fetched over
 * HTTP: RS256 signature with the key named by `kid`. Returns the claims, or
 * throws saying what failed.
 */
export async function verifyDomainJwt(emu: Emulators, jwt: string): Promise<Record<string, unknown>> {
  const parts = jwt.split(".");
  if (parts.length !== 3) throw new Error("not a compact JWT");
  const [h, p, sig] = parts as [string, string, string];
  const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as { alg?: string; kid?: string };
  if (header.alg !== "RS256") throw new Error(`alg is ${header.alg}, not RS256`);
  if (!header.kid) throw new Error("no kid in the JWT header");
  const res = await fetch(emu.oci.domainJwksUrl);
  if (res.status !== 200) throw new Error(`JWKS answered HTTP ${res.status}`);
  const jwks = (await res.json()) as { keys: (crypto.JsonWebKey & { kid?: string })[] };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`kid ${header.kid} is not in the JWKS`);
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  if (!crypto.verify("sha256", Buffer.from(`${h}.${p}`), key, Buffer.from(sig, "base64url"))) {
    throw new Error("the signature does not verify with the JWKS key");
  }
  return claimsOf(jwt);
}

/** A fresh private (0700) temporary directory; the caller removes it. */
export function tempDir(prefix = "oci2gcp-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
