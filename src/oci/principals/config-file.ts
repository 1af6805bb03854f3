import fs from "node:fs";
import common from "oci-common";
import { expandHome, readOciProfile } from "../../config/config.js";
import type { TokenSource } from "../../token/token-source.js";
import { HopError } from "../../upstream/hop-error.js";
import { HOP, type Provider, principalError, readProvider, type SigningIdentity } from "./shared.js";

/**
 * A profile of an OCI config file: an API key (`config-file`) or a session token
 * from `oci session authenticate` (`session`). Read again at each renewal, so a
 * rotated key or a refreshed session is picked up.
 */
export function configFilePrincipal(
  kind: "config-file" | "session",
  configFile: string,
  profile: string,
  timeoutMs: number,
): TokenSource<SigningIdentity> {
  const label = kind === "session" ? "session token" : "API key";
  return {
    async token() {
      try {
        if (kind === "session") checkSessionProfile(configFile, profile);
        const p = (kind === "session"
          ? new common.SessionAuthDetailProvider(configFile, profile)
          : new common.ConfigFileAuthenticationDetailsProvider(configFile, profile)) as unknown as Provider;
        return await readProvider(p, `${label} (profile ${profile} of ${configFile})`, timeoutMs);
      } catch (e) {
        const err = principalError(e, `${label} profile ${profile} in ${configFile}`);
        if (kind === "session" && /expired/.test(err.message)) {
          throw new HopError(HOP, `${err.detail}; run: oci session refresh --profile ${profile}`, {
            code: "credential_expired",
            cause: e,
          });
        }
        throw err;
      }
    },
  };
}

/**
 * oci-common reports a session profile without `security_token_file` as
 * "missing user in config" (or, when the profile has a user, signs with the key
 * id "ST$undefined"), and an unreadable token file as "Failed to read private
 * key". Check the profile first and say what is wrong.
 */
function checkSessionProfile(file: string, profile: string): void {
  let entries: Record<string, string> | undefined;
  try {
    entries = readOciProfile(file, profile);
  } catch {
    // An unreadable config file: oci-common's provider, built next, says so in its own words.
    return;
  }
  // No such profile: likewise.
  if (!entries) return;
  const entry = entries.security_token_file;
  if (!entry) {
    throw new HopError(
      HOP,
      `profile ${profile} in ${file} has no security_token_file, so it is not a session profile: ` +
        `create one with oci session authenticate --profile-name ${profile}, or choose oci.principal config-file for an API key`,
      { code: "credential_unusable" },
    );
  }
  const tokenFile = expandHome(entry);
  try {
    fs.accessSync(tokenFile, fs.constants.R_OK);
  } catch (e) {
    throw new HopError(
      HOP,
      `the security_token_file ${tokenFile} of profile ${profile} in ${file} cannot be read (${(e as NodeJS.ErrnoException).code}); ` +
        `run: oci session authenticate --profile-name ${profile}`,
      { code: "credential_unusable" },
    );
  }
}
