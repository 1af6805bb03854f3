import fs from "node:fs";
import { JWT_TOKEN_TYPE, METADATA_FLAVOR, METADATA_FLAVOR_HEADER, SUBJECT_TOKEN_PATH } from "../protocol.js";
import { parse } from "./args.js";

export const DEFAULT_DAEMON_URL = "http://127.0.0.1:8181";

export interface ExecutableResponse {
  version: 1;
  success: boolean;
  token_type?: string;
  id_token?: string;
  expiration_time?: number;
  code?: string;
  message?: string;
}

function failure(code: string, message: string): ExecutableResponse {
  return { version: 1, success: false, code, message };
}

/** A still-valid response the client left in the output file, if any. */
function cached(file: string | undefined): ExecutableResponse | undefined {
  if (!file) return undefined;
  try {
    const r = JSON.parse(fs.readFileSync(file, "utf8")) as ExecutableResponse;
    if (
      r.version === 1 &&
      r.success &&
      typeof r.id_token === "string" &&
      typeof r.expiration_time === "number" &&
      r.expiration_time - 60 > Date.now() / 1000
    ) {
      return r;
    }
  } catch {
    // Absent or unreadable: ask the daemon.
  }
  return undefined;
}

async function ask(url: string, timeoutMs: number): Promise<ExecutableResponse> {
  let res: Response;
  try {
    res = await fetch(`${url.replace(/\/+$/, "")}${SUBJECT_TOKEN_PATH}?format=executable`, {
      headers: { [METADATA_FLAVOR_HEADER]: METADATA_FLAVOR },
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    const why = err.name === "TimeoutError" ? "timeout" : (err.cause?.code ?? err.message);
    return failure(
      "DAEMON_UNREACHABLE",
      `oci2gcp daemon at ${url} did not answer (${why}); is 'oci2gcp serve' running? Set --url or $OCI2GCP_URL`,
    );
  }
  const text = await res.text();
  let body: ExecutableResponse | undefined;
  try {
    body = JSON.parse(text) as ExecutableResponse;
  } catch {
    body = undefined;
  }
  if (body && body.version === 1 && typeof body.success === "boolean") {
    if (body.success && (typeof body.id_token !== "string" || body.token_type !== JWT_TOKEN_TYPE)) {
      return failure("BAD_DAEMON_RESPONSE", "the daemon's answer lacks the token");
    }
    return body;
  }
  // Whatever answered may have put a token in its body (an older daemon, a proxy): never repeat one.
  const { scrub } = await import("../log.js");
  return failure(
    "BAD_DAEMON_RESPONSE",
    `the daemon at ${url} answered HTTP ${res.status} without an executable response: ${scrub(text.slice(0, 200).replace(/\s+/g, " "))}`,
  );
}

/**
 * The command a Google executable-sourced credential runs: exactly one JSON
 * object on stdout, nothing on stderr (clients parse both), exit 0 on success.
 */
export async function subjectToken(argv: string[]): Promise<number> {
  let url = process.env.OCI2GCP_URL || DEFAULT_DAEMON_URL;
  let r: ExecutableResponse;
  try {
    const { values } = parse(argv, { url: { type: "string" }, "timeout-ms": { type: "string" } });
    if (values.help) {
      process.stdout.write("Usage: oci2gcp subject-token [--url http://127.0.0.1:8181] [--timeout-ms 20000]\n");
      return 0;
    }
    if (typeof values.url === "string") url = values.url;
    const timeoutMs = Number(values["timeout-ms"] ?? 20_000);
    const outputFile = process.env.GOOGLE_EXTERNAL_ACCOUNT_OUTPUT_FILE || undefined;
    r = cached(outputFile) ?? (await ask(url, Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 20_000));
    if (r.success && outputFile) {
      try {
        const tmp = `${outputFile}.${process.pid}.tmp`;
        fs.writeFileSync(tmp, JSON.stringify(r), { mode: 0o600 });
        fs.renameSync(tmp, outputFile);
      } catch {
        // The output file is a cache; the client still gets the answer on stdout.
      }
    }
  } catch (e) {
    r = failure("USAGE", (e as Error).message);
  }
  process.stdout.write(executableOutput(r, process.stdout.isTTY === true));
  return r.success ? 0 : r.code === "USAGE" ? 2 : 1;
}

/**
 * What goes to stdout: the JSON object alone for Google's clients, which parse
 * exactly that; a person at a terminal also gets a final newline, so that the
 * prompt does not follow the token on the same line.
 */
export function executableOutput(r: ExecutableResponse, terminal: boolean): string {
  return `${JSON.stringify(r)}${terminal ? "\n" : ""}`;
}
