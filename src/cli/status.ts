import { METADATA_FLAVOR, METADATA_FLAVOR_HEADER, STATUS_PATH } from "../protocol.js";
import { parse } from "./args.js";
import { DEFAULT_DAEMON_URL } from "./subject-token.js";

interface CacheRow {
  kind: string;
  hop: string;
  key: string;
  expiresInSeconds: number | null;
  lastSuccessAt: string | null;
  refreshing: boolean;
  lastError: string | null;
}

/** Widest cell of the key column: a longer key would widen every row. */
export const MAX_KEY_CHARS = 120;
/** Widest cell of the state column (the last error). */
const MAX_STATE_CHARS = 100;

/**
 * A value the daemon reports (an audience a client chose, an upstream's error) made
 * safe for a terminal: control characters (C0, DEL, C1) and the bidirectional
 * overrides and isolates are shown as escapes, so that a value cannot clear the
 * screen, move the cursor, split a row or reorder what is printed around it.
 * A backslash is doubled so that an escape shown is never ambiguous.
 */
export function printable(s: string): string {
  let out = "";
  for (const c of s) {
    const n = c.codePointAt(0)!;
    if (c === "\\") out += "\\\\";
    else if (!unsafe(n)) out += c;
    else out += n <= 0xff ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`;
  }
  return out;
}

/** C0, DEL, C1, and the bidirectional marks, embeddings, overrides and isolates. */
function unsafe(n: number): boolean {
  return (
    n < 0x20 ||
    (n >= 0x7f && n <= 0x9f) ||
    n === 0x61c ||
    n === 0x200e ||
    n === 0x200f ||
    (n >= 0x202a && n <= 0x202e) ||
    (n >= 0x2066 && n <= 0x2069)
  );
}

/** `s`, printable and at most `max` characters (code points), cut with an ellipsis. */
export function cell(s: string, max: number): string {
  const chars = [...printable(s)];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : chars.join("");
}

function table(rows: string[][]): string {
  const width = (c: string) => [...c].length;
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => width(r[i]!))));
  return rows
    .map((r) =>
      r
        .map((c, i) => c + " ".repeat(widths[i]! - width(c)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function human(s: number | null): string {
  if (s === null) return "-";
  if (s < 0) return "expired";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** Asks the running daemon what it holds, as a table or JSON. */
export async function status(argv: string[]): Promise<number> {
  const { values } = parse(argv, { url: { type: "string" }, json: { type: "boolean" } });
  if (values.help) {
    process.stdout.write("Usage: oci2gcp status [--url http://127.0.0.1:8181] [--json]\n");
    return 0;
  }
  // `oci2gcp status | head -1`: a reader that stops early is not an error of ours.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
  });
  const url = (typeof values.url === "string" ? values.url : process.env.OCI2GCP_URL || DEFAULT_DAEMON_URL).replace(/\/+$/, "");
  let body: { startedAt: string; accounts: string[]; caches: CacheRow[] };
  try {
    const res = await fetch(`${url}${STATUS_PATH}`, {
      headers: { [METADATA_FLAVOR_HEADER]: METADATA_FLAVOR },
      signal: AbortSignal.timeout(5000),
    });
    if (res.status !== 200) {
      process.stderr.write(`oci2gcp: the daemon at ${url} answered HTTP ${res.status}\n`);
      return 1;
    }
    body = (await res.json()) as typeof body;
  } catch (e) {
    process.stderr.write(
      `oci2gcp: cannot reach the daemon at ${url} (${(e as Error).message}); is 'oci2gcp serve' running? Use --url or $OCI2GCP_URL\n`,
    );
    return 1;
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const rows = [["KIND", "HOP", "SCOPES / AUDIENCE", "TIME LEFT", "LAST REFRESH", "STATE"]];
  for (const c of body.caches) {
    rows.push([
      cell(c.kind, 40),
      cell(c.hop, 40),
      c.key ? cell(c.key, MAX_KEY_CHARS) : "-",
      human(c.expiresInSeconds),
      c.lastSuccessAt ? cell(c.lastSuccessAt, 40) : "-",
      c.refreshing ? "refreshing" : c.lastError ? cell(`error: ${c.lastError}`, MAX_STATE_CHARS) : "ok",
    ]);
  }
  process.stdout.write(
    `daemon ${printable(url)}, up since ${printable(String(body.startedAt))}; ` +
      `accounts: ${printable(body.accounts.join(", ")) || "(none: federated token)"}\n\n${table(rows)}\n`,
  );
  return 0;
}
