import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Config, ConfigError, checkConfigFiles, readConfigFile, resolveConfig } from "../config/config.js";
import { type Daemon, startDaemon } from "../daemon.js";
import { DEMO_PROJECT_ID, daemonSettingsFor, type Emulators, startEmulators } from "../emulator/index.js";
import { createLogger, type Logger, routeConsoleToLogger } from "../log.js";
import { SUBJECT_TOKEN_PATH } from "../protocol.js";
import { parse } from "./args.js";
import { credentialFile, daemonUrl } from "./cred-config.js";
import { untilSignal } from "./serve.js";

const HELP = `Usage: oci2gcp demo [--port N] [--config FILE] [--write-env PATH] [--log-level LEVEL]

Starts emulated OCI (instance metadata, federation, identity domain) and Google
(STS, IAM Credentials) clouds on loopback, and the daemon against them with an
instance principal and one impersonated service account. Runs until Ctrl-C.

  --port N           the daemon's port (default 8181; 0 picks a free one)
  --config FILE      a JSON config file merged into the demo's settings; the principal,
                     the identity domain and Google's URLs and audience stay the emulators',
                     and the emulated Google lets the daemon impersonate every service
                     account the settings name
  --write-env PATH   also write the shell variables to PATH (removed when the demo stops)
  --log-level LEVEL  the daemon's log level (default warn), one line per message on stderr
`;

type Raw = Record<string, unknown>;

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

/** Nested objects merged key by key; anything else in `over` replaces what `base` has. */
function deepMerge(base: Raw, over: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    const isObj = (x: unknown): x is Raw => !!x && typeof x === "object" && !Array.isArray(x);
    out[k] = isObj(b) && isObj(v) ? deepMerge(b, v) : v;
  }
  return out;
}

/** Settings by dotted path as one nested object, as a config file has them. */
function nested(flat: Raw): Raw {
  const out: Raw = {};
  for (const [k, v] of Object.entries(flat)) {
    const ks = k.split(".");
    let cur = out;
    for (const part of ks.slice(0, -1)) cur = (cur[part] ??= {}) as Raw;
    cur[ks[ks.length - 1]!] = v;
  }
  return out;
}

const LEVEL_NAMES: Record<number, string> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };

/** The daemon's log lines (already scrubbed by the logger) as one readable line each, on stderr. */
const readableLines = {
  write(line: string): void {
    let o: Raw;
    try {
      o = JSON.parse(line) as Raw;
    } catch {
      process.stderr.write(line);
      return;
    }
    const err = o.err as { message?: string } | undefined;
    const level = LEVEL_NAMES[o.level as number] ?? String(o.level);
    process.stderr.write(`oci2gcp daemon ${level}: ${String(o.msg ?? "")}${err?.message ? ` (${err.message})` : ""}\n`);
  },
};

/** What a failed start means to a person running the demo. */
function startFailure(e: Error, port: number): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "EADDRINUSE" || /EADDRINUSE/.test(e.message)) {
    return (
      `oci2gcp: cannot start the demo daemon: port ${port} on 127.0.0.1 is already in use (another demo or daemon?)\n` +
      "oci2gcp: stop that one, or run this demo with --port 0 to take any free port\n"
    );
  }
  return `oci2gcp: cannot start the demo daemon: ${e.message}\n`;
}

/** The env lines, grouped, each group with a comment saying what it is for. */
function envText(groups: [string, [string, string][]][], header: string): string {
  const lines = [header];
  for (const [why, vars] of groups) {
    lines.push(`# ${why}`);
    for (const [k, v] of vars) lines.push(`export ${k}=${shellQuote(v)}`);
  }
  return `${lines.join("\n")}\n`;
}

export async function demo(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    port: { type: "string" },
    config: { type: "string" },
    "write-env": { type: "string" },
    "log-level": { type: "string" },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    process.stderr.write(`oci2gcp: --port must be a port number, got ${JSON.stringify(values.port)}\n`);
    return 2;
  }
  const writeEnv = typeof values["write-env"] === "string" ? path.resolve(values["write-env"]) : undefined;
  if (writeEnv) {
    const dir = path.dirname(writeEnv);
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
      process.stderr.write(
        `oci2gcp: --write-env ${values["write-env"]}: the directory ${dir} does not exist; create it or choose another path\n`,
      );
      return 2;
    }
  }
  let fileContent: Raw = {};
  const configName = typeof values.config === "string" ? values.config : undefined;
  try {
    if (configName) fileContent = readConfigFile(configName);
  } catch (e) {
    process.stderr.write(`oci2gcp: ${(e as Error).message}\n`);
    return 2;
  }

  const emu = await startEmulators();
  const { overrides, content } = demoSettings(emu, fileContent, port, values["log-level"]);
  let config: Config;
  try {
    // The environment may set the log level; every other setting is the demo's or the config file's.
    config = resolveConfig(
      {
        file: { name: configName ?? "the demo's settings", content },
        env: { OCI2GCP_LOG_LEVEL: process.env.OCI2GCP_LOG_LEVEL },
        overrides,
      },
      checkConfigFiles,
    );
  } catch (e) {
    process.stderr.write(`oci2gcp: ${(e as Error).message}\n`);
    await emu.close();
    if (e instanceof ConfigError) return 2;
    throw e;
  }
  for (const sa of config.google.serviceAccounts) emu.google.addServiceAccount(sa);
  const log = createLogger(config.log.level, readableLines);
  routeConsoleToLogger(log);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger: log });
  } catch (e) {
    // The daemon's first token fetch may still be under way: its failures against the closing
    // emulators would read as an OCI problem, not the failed start it is.
    log.level = "silent";
    process.stderr.write(startFailure(e as Error, config.server.port));
    await emu.close();
    return 1;
  }
  return runDemo(config, daemon, emu, log, content, overrides, writeEnv);
}

/** The demo's settings: its defaults under the config file, the emulators' wiring over it. */
function demoSettings(emu: Emulators, fileContent: Raw, port: number | undefined, logLevel: unknown): { overrides: Raw; content: Raw } {
  const wiring = daemonSettingsFor(emu);
  const fileGoogle = (fileContent.google ?? {}) as Raw;
  const defaults = nested({
    "google.serviceAccounts": wiring["google.serviceAccounts"],
    "google.projectId": wiring["google.projectId"],
    "server.port": 8181,
    "log.level": "warn",
  });
  const content = deepMerge(defaults, fileContent);
  // An impersonation URL names a real Google endpoint: its service account is kept, the URL is not.
  const impersonated =
    typeof fileGoogle.impersonationUrl === "string" ? /serviceAccounts\/([^/:]+):/.exec(fileGoogle.impersonationUrl)?.[1] : undefined;
  if (impersonated) {
    const g = content.google as Raw;
    const listed = Array.isArray(g.serviceAccounts) ? (g.serviceAccounts as unknown[]) : [];
    g.serviceAccounts = [impersonated, ...listed.filter((s) => s !== impersonated)];
  }
  const overrides: Raw = { "google.impersonationUrl": undefined, "server.host": "127.0.0.1" };
  for (const [k, v] of Object.entries(wiring)) if (k !== "google.serviceAccounts" && k !== "google.projectId") overrides[k] = v;
  if (port !== undefined) overrides["server.port"] = port;
  if (typeof logLevel === "string") overrides["log.level"] = logLevel;
  return { overrides, content };
}

async function runDemo(
  config: Config,
  daemon: Daemon,
  emu: Emulators,
  log: Logger,
  content: Raw,
  overrides: Raw,
  writeEnv?: string,
): Promise<number> {
  const actualPort = Number(new URL(daemon.url).port);
  const url = daemonUrl(config, actualPort);
  const hostPort = `127.0.0.1:${actualPort}`;
  const stopAll = async () => {
    await daemon.close();
    await emu.close();
  };

  // Created only now that everything runs, and removed on every way out that lets code run.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-demo-"));
  let envWritten = false;
  const removeFiles = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (writeEnv && envWritten) fs.rmSync(writeEnv, { force: true });
  };
  process.once("exit", removeFiles);

  const credUrl = path.join(dir, "credentials-url.json");
  const credExe = path.join(dir, "credentials-executable.json");
  const configFile = path.join(dir, "oci2gcp.json");
  const accounts = config.google.serviceAccounts;
  const text = envText(
    [
      [
        "Google's clients (gcloud, google-auth) ask this metadata server instead of 169.254.169.254:",
        [
          ["GCE_METADATA_HOST", hostPort],
          ["GCE_METADATA_IP", hostPort],
          ["GCE_METADATA_ROOT", hostPort],
        ],
      ],
      [
        "no proxy between the clients and the loopback daemon:",
        [
          ["NO_PROXY", "127.0.0.1,localhost"],
          ["no_proxy", "127.0.0.1,localhost"],
        ],
      ],
      [
        "the project the metadata server reports, and clients use by default:",
        [["GOOGLE_CLOUD_PROJECT", config.google.projectId ?? DEMO_PROJECT_ID]],
      ],
      [
        "the daemon, and its subject-token endpoint (the OCI identity-domain JWT that Google's STS exchanges):",
        [
          ["OCI2GCP_URL", url],
          ["OCI2GCP_SUBJECT_TOKEN_URL", `${url}${SUBJECT_TOKEN_PATH}`],
        ],
      ],
      [
        "the emulated OCI and Google clouds; $OCI2GCP_EMULATOR_URL/oauth2/v3/tokeninfo?access_token=... describes a token:",
        [["OCI2GCP_EMULATOR_URL", emu.url]],
      ],
      [
        "the keys (JWKS) the emulated Google signs ID tokens with, to verify print-identity-token's output:",
        [["OCI2GCP_GOOGLE_JWKS_URL", emu.google.jwksUrl]],
      ],
      [
        "credential files for GOOGLE_APPLICATION_CREDENTIALS (the executable one needs GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1):",
        [
          ["OCI2GCP_CRED_CONFIG_URL", credUrl],
          ["OCI2GCP_CRED_CONFIG_EXECUTABLE", credExe],
        ],
      ],
      ['the demo daemon\'s settings as a config file (e.g. oci2gcp doctor --config "$OCI2GCP_CONFIG"):', [["OCI2GCP_CONFIG", configFile]]],
    ],
    "# oci2gcp demo: source this file in a shell; it is removed when the demo stops",
  );
  try {
    fs.writeFileSync(credUrl, `${JSON.stringify(credentialFile(config, "url", url), null, 2)}\n`);
    fs.writeFileSync(credExe, `${JSON.stringify(credentialFile(config, "executable", url), null, 2)}\n`);
    const runCfg = deepMerge(content, nested({ ...overrides, "server.port": actualPort }));
    fs.writeFileSync(configFile, `${JSON.stringify(runCfg, null, 2)}\n`);
    if (writeEnv) {
      fs.writeFileSync(writeEnv, text);
      envWritten = true;
    }
  } catch (e) {
    process.stderr.write(`oci2gcp: cannot write the demo's files: ${(e as Error).message}\n`);
    log.level = "silent";
    await stopAll();
    removeFiles();
    process.removeListener("exit", removeFiles);
    return 1;
  }

  const access = daemon.app.access;
  const policyLine = access.isOpen ? "" : `Access: ${access.policy.describe({ unixSocket: !!config.server.socketPath })}.\n`;
  process.stderr.write(`
oci2gcp demo: the daemon serves ${url}, the emulated clouds ${emu.url}
(instance principal; service account${accounts.length === 1 ? "" : "s"} ${accounts.join(", ") || "none: the federated token itself"}).
${policyLine}Ctrl-C stops both. The daemon logs warnings and errors here (--log-level info for more).

Paste into another shell:
${text.split("\n").slice(1).join("\n")}
# try it (curl prints the token, echo ends the line):
  curl -s -H 'Metadata-Flavor: Google' "$OCI2GCP_SUBJECT_TOKEN_URL"; echo
  curl -s -H 'Metadata-Flavor: Google' "http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token"; echo
  CLOUDSDK_CONFIG=$(mktemp -d) gcloud auth print-access-token
  CLOUDSDK_CONFIG=$(mktemp -d) gcloud auth print-identity-token --audiences=https://example.com
${writeEnv ? `\n(also written to ${writeEnv}, removed when the demo stops)\n` : ""}
`);
  const code = await untilSignal(log, stopAll);
  removeFiles();
  process.removeListener("exit", removeFiles);
  return code;
}
