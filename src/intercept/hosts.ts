import fs from "node:fs";
import path from "node:path";

/**
 * Our lines in the hosts file, between markers, at its top: `remove` then takes
 * out exactly those lines and the file is byte for byte what it was (appending
 * would have to guess whether the last line had its newline). The top also wins:
 * the files backend uses the first line that names a host.
 */
export const BEGIN = "# BEGIN oci2gcp intercept: managed by `oci2gcp intercept`, removed by `oci2gcp intercept remove`";
export const END = "# END oci2gcp intercept";
export const HOSTS_LINE = "169.254.169.254 metadata.google.internal";
const BLOCK = `${BEGIN}\n${HOSTS_LINE}\n${END}\n`;

/** The text without our block (wherever it is), and whether it had one. */
export function withoutBlock(text: string): { text: string; had: boolean } {
  let start = 0;
  if (!text.startsWith(`${BEGIN}\n`)) {
    const i = text.indexOf(`\n${BEGIN}\n`);
    if (i < 0) return { text, had: false };
    start = i + 1;
  }
  const endAt = text.indexOf(`\n${END}`, start);
  if (endAt < 0) return { text, had: false };
  let stop = endAt + 1 + END.length;
  if (text[stop] === "\n") stop++;
  return { text: text.slice(0, start) + text.slice(stop), had: true };
}

export function withBlock(text: string): string {
  return BLOCK + withoutBlock(text).text;
}

export function hasBlock(text: string): boolean {
  return withoutBlock(text).had;
}

/**
 * Writes the hosts file keeping its mode and owner: through a temporary file and a
 * rename, or in place where it is a mount point (containers bind-mount /etc/hosts,
 * and a rename over a mount point fails with EBUSY).
 */
function writeHosts(file: string, text: string): void {
  const st = fs.statSync(file);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.oci2gcp-${process.pid}`);
  try {
    fs.writeFileSync(tmp, text, { mode: st.mode & 0o7777 });
    fs.chownSync(tmp, st.uid, st.gid);
    fs.renameSync(tmp, file);
  } catch {
    fs.rmSync(tmp, { force: true });
    fs.writeFileSync(file, text);
  }
}

/** Adds our block; false when it was already there (nothing written). */
export function installHosts(file: string): boolean {
  const text = fs.readFileSync(file, "utf8");
  if (text.startsWith(BLOCK)) return false;
  writeHosts(file, withBlock(text));
  return true;
}

/** Removes our block; false when there was none (nothing written). */
export function removeHosts(file: string): boolean {
  const text = fs.readFileSync(file, "utf8");
  const w = withoutBlock(text);
  if (!w.had) return false;
  writeHosts(file, w.text);
  return true;
}
