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

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
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
      c.kind,
      c.hop,
      c.key || "-",
      human(c.expiresInSeconds),
      c.lastSuccessAt ?? "-",
      c.refreshing ? "refreshing" : c.lastError ? `error: ${c.lastError.slice(0, 80)}` : "ok",
    ]);
  }
  process.stdout.write(
    `daemon ${url}, up since ${body.startedAt}; accounts: ${body.accounts.join(", ") || "(none: federated token)"}\n\n${table(rows)}\n`,
  );
  return 0;
}
