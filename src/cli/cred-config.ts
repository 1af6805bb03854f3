import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../config/config.js";
import { JWT_TOKEN_TYPE, METADATA_FLAVOR, SUBJECT_TOKEN_PATH } from "../protocol.js";
import { parse, settingFlagOptions } from "./args.js";
import { configFromArgs } from "./serve.js";

export type CredentialSource = "url" | "executable";

const CLIENT_DEFAULT_LIFETIME_SECONDS = 3600;

const USAGE = `Usage: oci2gcp cred-config --source url|executable [--out FILE] [--config FILE] [options]

Writes a Google external-account credential file aimed at this daemon (stdout, or --out FILE):
  --source url         the client reads the subject token from the daemon's URL
  --source executable  the client runs 'oci2gcp subject-token'; Google's clients run it only
                       with GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 in their environment
The daemon's address and the google.* settings come from the usual sources; see 'oci2gcp --help'.
`;

/**
 * Settings the credential file does not contain, pinned so that a machine
 * without the OCI side configured can still write one.
 */
const NOT_IN_THE_FILE: Record<string, unknown> = { "oci.principal": "instance", "identityDomain.url": "https://identity-domain.invalid" };

export const ALLOW_EXECUTABLES_NOTE =
  "note: Google's clients (gcloud, google-auth for Python, Go and Node) run an executable source only when " +
  "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1 is set in their environment\n";

/** The `oci2gcp` launcher of this installation, for executable-sourced credentials. */
export function launcherPath(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/oci2gcp.js");
}

/** The daemon's URL as local clients reach it. */
export function daemonUrl(config: Config, port = config.server.port): string {
  const h = config.server.host;
  const host = h === "0.0.0.0" || h === "::" ? "127.0.0.1" : h.includes(":") ? `[${h}]` : h;
  return `http://${host}:${port}`;
}

/**
 * A Google external-account credential file for this daemon: the pool provider
 * audience, STS, optional impersonation of the first service account, and the
 * daemon as the source of the subject token.
 */
export function credentialFile(config: Config, source: CredentialSource, url: string): Record<string, unknown> {
  const g = config.google;
  const cred: Record<string, unknown> = {
    universe_domain: g.universeDomain,
    type: "external_account",
    audience: g.audience,
    subject_token_type: JWT_TOKEN_TYPE,
    token_url: g.stsUrl,
  };
  if (g.serviceAccounts.length) {
    cred.service_account_impersonation_url = `${g.iamCredentialsUrl}/v1/projects/-/serviceAccounts/${g.serviceAccounts[0]}:generateAccessToken`;
    // Google's clients ask for 3600 s unless the file says otherwise: only another lifetime is written.
    if (g.tokenLifetimeSeconds !== CLIENT_DEFAULT_LIFETIME_SECONDS) {
      cred.service_account_impersonation = { token_lifetime_seconds: g.tokenLifetimeSeconds };
    }
  }
  cred.credential_source =
    source === "url"
      ? {
          url: `${url}${SUBJECT_TOKEN_PATH}`,
          headers: { "Metadata-Flavor": METADATA_FLAVOR },
          format: { type: "json", subject_token_field_name: "access_token" },
        }
      : {
          executable: {
            // Clients split the command on spaces: the launcher path must not contain any.
            command: `${launcherPath()} subject-token --url ${url}`,
            timeout_millis: 30000,
          },
        };
  return cred;
}

export async function credConfig(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...settingFlagOptions(), source: { type: "string" }, out: { type: "string" } });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const source = values.source;
  if (source === undefined) {
    process.stderr.write(`oci2gcp: cred-config needs --source url or --source executable\n\n${USAGE}`);
    return 2;
  }
  if (source !== "url" && source !== "executable") {
    process.stderr.write(`oci2gcp: --source must be url or executable, got ${JSON.stringify(source)}\n`);
    return 2;
  }
  const config = configFromArgs(values, NOT_IN_THE_FILE);
  if (!config) return 2;
  if (source === "executable" && /\s/.test(launcherPath())) {
    process.stderr.write(
      `oci2gcp: the launcher path ${launcherPath()} contains a space, and Google's clients split the executable command on spaces; ` +
        "install oci2gcp under a path without spaces\n",
    );
    return 2;
  }
  const text = `${JSON.stringify(credentialFile(config, source, daemonUrl(config)), null, 2)}\n`;
  if (typeof values.out === "string") {
    fs.writeFileSync(values.out, text, { mode: 0o644 });
    process.stderr.write(`wrote ${values.out}\n`);
  } else {
    process.stdout.write(text);
  }
  if (source === "executable") process.stderr.write(ALLOW_EXECUTABLES_NOTE);
  return 0;
}
