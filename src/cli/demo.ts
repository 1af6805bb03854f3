import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type Config, loadConfig } from "../config/config.js";
import { type Daemon, startDaemon } from "../daemon.js";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, daemonSettingsFor, startEmulators } from "../emulator/index.js";
import { createLogger, routeConsoleToLogger } from "../log.js";
import { SUBJECT_TOKEN_PATH } from "../protocol.js";
import { parse } from "./args.js";
import { credentialFile, daemonUrl } from "./cred-config.js";
import { untilSignal } from "./serve.js";

const HELP = `Usage: oci2gcp demo [--port N] [--write-env PATH] [--log-level LEVEL]

Starts emulated OCI (instance metadata, federation, identity domain) and Google
(STS, IAM Credentials) clouds on loopback, and the daemon against them with an
instance principal and one impersonated service account. Runs until Ctrl-C.
`;

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

export async function demo(argv: string[]): Promise<number> {
  const { values } = parse(argv, { port: { type: "string" }, "write-env": { type: "string" }, "log-level": { type: "string" } });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const port = values.port === undefined ? 8181 : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`oci2gcp: --port must be a port number, got ${JSON.stringify(values.port)}\n`);
    return 2;
  }
  const emu = await startEmulators();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "oci2gcp-demo-"));
  const overrides: Record<string, unknown> = {
    ...daemonSettingsFor(emu),
    "server.host": "127.0.0.1",
    "server.port": port,
  };
  if (typeof values["log-level"] === "string") overrides["log.level"] = values["log-level"];
  let config: Config;
  try {
    // The demo's own settings win; the environment may still set the log level.
    config = loadConfig({ env: { OCI2GCP_LOG_LEVEL: process.env.OCI2GCP_LOG_LEVEL }, overrides });
  } catch (e) {
    process.stderr.write(`oci2gcp: ${(e as Error).message}\n`);
    await emu.close();
    return 2;
  }
  const log = createLogger(config.log.level);
  routeConsoleToLogger(log);
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger: log });
  } catch (e) {
    process.stderr.write(`oci2gcp: cannot start the demo daemon: ${(e as Error).message}\n`);
    await emu.close();
    return 1;
  }
  const actualPort = Number(new URL(daemon.url).port);
  const url = daemonUrl(config, actualPort);
  const hostPort = `127.0.0.1:${actualPort}`;

  const credUrl = path.join(dir, "credentials-url.json");
  const credExe = path.join(dir, "credentials-executable.json");
  const configFile = path.join(dir, "oci2gcp.json");
  fs.writeFileSync(credUrl, `${JSON.stringify(credentialFile(config, "url", url), null, 2)}\n`);
  fs.writeFileSync(credExe, `${JSON.stringify(credentialFile(config, "executable", url), null, 2)}\n`);
  const runCfg: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(overrides)) {
    const ks = k.split(".");
    let cur = runCfg;
    for (const part of ks.slice(0, -1)) cur = (cur[part] ??= {}) as Record<string, unknown>;
    cur[ks[ks.length - 1]!] = k === "server.port" ? actualPort : v;
  }
  fs.writeFileSync(configFile, `${JSON.stringify(runCfg, null, 2)}\n`);

  const env: [string, string][] = [
    ["GCE_METADATA_HOST", hostPort],
    ["GCE_METADATA_IP", hostPort],
    ["GCE_METADATA_ROOT", hostPort],
    ["NO_PROXY", "127.0.0.1,localhost"],
    ["no_proxy", "127.0.0.1,localhost"],
    ["GOOGLE_CLOUD_PROJECT", DEMO_PROJECT_ID],
    ["OCI2GCP_URL", url],
    ["OCI2GCP_SUBJECT_TOKEN_URL", `${url}${SUBJECT_TOKEN_PATH}`],
    ["OCI2GCP_EMULATOR_URL", emu.url],
    ["OCI2GCP_GOOGLE_JWKS_URL", emu.google.jwksUrl],
    ["OCI2GCP_CRED_CONFIG_URL", credUrl],
    ["OCI2GCP_CRED_CONFIG_EXECUTABLE", credExe],
    ["OCI2GCP_CONFIG", configFile],
  ];
  const envText = `# oci2gcp demo: source this file in a shell\n${env.map(([k, v]) => `export ${k}=${shellQuote(v)}`).join("\n")}\n`;
  if (typeof values["write-env"] === "string") fs.writeFileSync(values["write-env"], envText);

  process.stderr.write(`
oci2gcp demo: the daemon serves ${url}, the emulated clouds ${emu.url}
(instance principal, service account ${DEMO_SERVICE_ACCOUNT}). Ctrl-C stops both.

Paste into another shell:
${envText.split("\n").slice(1).join("\n")}
  curl -s -H 'Metadata-Flavor: Google' "$OCI2GCP_SUBJECT_TOKEN_URL"
  curl -s -H 'Metadata-Flavor: Google' "http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/token"
  CLOUDSDK_CONFIG=$(mktemp -d) gcloud auth print-access-token
  CLOUDSDK_CONFIG=$(mktemp -d) gcloud auth print-identity-token --audiences=https://example.com
${typeof values["write-env"] === "string" ? `\n(also written to ${values["write-env"]})\n` : ""}
`);
  const code = await untilSignal(log, async () => {
    await daemon.close();
    await emu.close();
  });
  fs.rmSync(dir, { recursive: true, force: true });
  return code;
}
