import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../config/config.js";
import { JWT_TOKEN_TYPE, METADATA_FLAVOR, SUBJECT_TOKEN_PATH } from "../protocol.js";
import { parse, settingFlagOptions } from "./args.js";
import { configFromArgs } from "./serve.js";

export type CredentialSource = "url" | "executable";

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
    process.stdout.write("Usage: oci2gcp cred-config --source url|executable [--out FILE] [--config FILE] [options]\n");
    return 0;
  }
  const source = values.source;
  if (source !== "url" && source !== "executable") {
    process.stderr.write("oci2gcp: --source must be url or executable\n");
    return 2;
  }
  const config = configFromArgs(values);
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
  return 0;
}
