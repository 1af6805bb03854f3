/**
 * The OCI config file (~/.oci/config): INI-style [profile] sections of
 * key = value lines. Everything of ours that reads it reads it here, with the
 * rules oci-common's ConfigFileReader applies, so that our checks and the SDK
 * agree on what a profile holds: lines are trimmed, `#` starts a comment, a
 * section named twice is one section, and a profile inherits the keys of
 * [DEFAULT] it does not set itself.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/** The sections of an OCI config file's text, by profile name, each with its own keys only. */
export function parseOciConfig(text: string): Map<string, Record<string, string>> {
  const sections = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      const name = sec[1]!.trim();
      cur = sections.get(name) ?? {};
      sections.set(name, cur);
      continue;
    }
    const eq = line.indexOf("=");
    if (cur && eq > 0) cur[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return sections;
}

/** One profile of parsed sections, with the [DEFAULT] keys it does not set; undefined when there is no such profile. */
export function ociProfile(sections: Map<string, Record<string, string>>, profile: string): Record<string, string> | undefined {
  const p = sections.get(profile);
  if (!p) return undefined;
  return { ...(profile === "DEFAULT" ? {} : sections.get("DEFAULT")), ...p };
}

/** The key = value pairs of one [profile] of an OCI config file (DEFAULT's values inherited). */
export function readOciProfile(file: string, profile: string): Record<string, string> | undefined {
  return ociProfile(parseOciConfig(fs.readFileSync(file, "utf8")), profile);
}

/** A path starting with `~/` made absolute in the home directory, as the OCI CLI and SDKs read them. */
export function expandHome(p: string): string {
  return p.startsWith("~/") ? path.join(os.homedir(), p.slice(2)) : p;
}
