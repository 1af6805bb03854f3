/**
 * The checks that read the filesystem: key, token and certificate files that
 * must be readable, the OCI config file and its profile, the token file's
 * directory. They run on a resolved Config (paths already made absolute) and
 * return problems in the same form as validation.
 */
import fs from "node:fs";
import path from "node:path";
import type { Config } from "./config-type.js";
import { expandHome, readOciProfile } from "./oci-config-file.js";

/** What stands in the way of using the files the configuration names; empty when nothing does. */
export function checkConfigFiles(c: Config): string[] {
  const problems: string[] = [];
  if (c.oci.principal === "resource") {
    const rp = c.oci.resourcePrincipal;
    // Each of these is a value or an absolute path to a file holding it.
    for (const [k, v] of [
      ["rpst", rp.rpst],
      ["privateKey", rp.privateKey],
      ["passphrase", rp.passphrase],
    ] as const) {
      if (v && path.isAbsolute(v)) checkReadable(`oci.resourcePrincipal.${k}`, v, problems);
    }
  }
  if (c.oci.principal === "oke-workload") {
    checkReadable("oci.oke.caCertPath", c.oci.oke.caCertPath, problems);
    checkReadable("oci.oke.tokenPath", c.oci.oke.tokenPath, problems);
  }
  if (c.oci.principal === "config-file" || c.oci.principal === "session") {
    if (checkReadable("oci.configFile", c.oci.configFile, problems)) {
      const profile = readOciProfile(c.oci.configFile, c.oci.profile);
      if (!profile) {
        problems.push(
          `oci.profile: there is no [${c.oci.profile}] profile in ${c.oci.configFile}; ` +
            `set $OCI_CLI_PROFILE or "oci.profile" to one of its profiles`,
        );
      } else {
        for (const k of c.oci.principal === "session" ? ["key_file", "security_token_file"] : ["key_file"]) {
          const v = profile[k];
          if (!v) problems.push(`the [${c.oci.profile}] profile in ${c.oci.configFile} has no ${k}`);
          else checkReadable(`${k} of profile ${c.oci.profile}`, expandHome(v), problems);
        }
      }
    }
  }
  if (c.tokenFile.path) {
    const dir = path.dirname(c.tokenFile.path);
    try {
      fs.accessSync(dir, fs.constants.W_OK);
    } catch {
      problems.push(
        `tokenFile.path ($OCI2GCP_TOKEN_FILE): cannot write to the directory ${dir}; create it and give the daemon's user write access`,
      );
    }
  }
  return problems;
}

function checkReadable(name: string, file: string, problems: string[]): boolean {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    if (!fs.statSync(file).isFile()) throw Object.assign(new Error("not a file"), { code: "not a regular file" });
    return true;
  } catch (e) {
    problems.push(
      `${name}: cannot read ${file} (${(e as NodeJS.ErrnoException).code}); check the path and that the daemon's user may read it`,
    );
    return false;
  }
}
