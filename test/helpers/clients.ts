import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { credentialFile } from "../../src/cli/cred-config.js";
import type { Stack } from "./stack.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const FIXTURES = path.join(ROOT, "test/fixtures");
export const CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";
export const TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a program to completion (never through a shell), killing it after timeoutMs. */
export function run(
  file: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000, cwd: opts.cwd ?? ROOT, maxBuffer: 4 << 20, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
        resolve({
          code: e ? (typeof e.code === "number" ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr),
          ms: Date.now() - started,
        });
      },
    );
  });
}

/** Where gcloud is, or undefined. */
export function findGcloud(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, "gcloud");
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Variables that would point a Google client somewhere else than the daemon under test. */
const FOREIGN_ENV = new RegExp(
  "^(GOOGLE_|GCE_|CLOUDSDK_|GCLOUD_|METADATA_SERVER_DETECTION$|GCP_|OCI2GCP_|" +
    "https?_proxy$|HTTPS?_PROXY$|all_proxy$|ALL_PROXY$|no_proxy$|NO_PROXY$|PYTHONPATH$|PYTHONHOME$|BOTO_)",
);

/** A clean environment for a Google client that can only find the daemon at hostPort, with its own gcloud config dir. */
export function clientEnv(hostPort: string, configDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!FOREIGN_ENV.test(k) && !k.startsWith("TAP")) env[k] = v;
  return {
    ...env,
    GCE_METADATA_HOST: hostPort,
    GCE_METADATA_IP: hostPort,
    GCE_METADATA_ROOT: hostPort,
    NO_PROXY: "127.0.0.1,localhost",
    no_proxy: "127.0.0.1,localhost",
    CLOUDSDK_CONFIG: configDir,
    // Node's google-auth-library looks for ADC under $HOME/.config/gcloud, not $CLOUDSDK_CONFIG.
    HOME: configDir,
    CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK: "1",
    CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: "1",
    ...extra,
  };
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function hostPortOf(url: string): string {
  return new URL(url).host;
}

/** The two external-account credential files oci2gcp writes for this stack's daemon, in dir. */
export function writeCredentialFiles(s: Stack, dir: string): { url: string; executable: string } {
  const url = path.join(dir, "credentials-url.json");
  const executable = path.join(dir, "credentials-executable.json");
  fs.writeFileSync(url, JSON.stringify(credentialFile(s.config, "url", s.url), null, 2));
  fs.writeFileSync(executable, JSON.stringify(credentialFile(s.config, "executable", s.url), null, 2));
  return { url, executable };
}

/**
 * Whether dist/ is there (the executable launcher runs dist/): `ok` false when it is
 * missing; `why` also says when it is older than src/ (then the run tests the last build).
 */
export function distIsFresh(): { ok: boolean; why?: string } {
  const main = path.join(ROOT, "dist/cli/main.js");
  if (!fs.existsSync(main)) return { ok: false, why: "dist/ is missing: run `npx tsc -p .` first" };
  const newest = (dir: string): number => {
    let m = 0;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      m = Math.max(m, e.isDirectory() ? newest(p) : e.name.endsWith(".ts") || e.name.endsWith(".js") ? fs.statSync(p).mtimeMs : 0);
    }
    return m;
  };
  if (newest(path.join(ROOT, "src")) > newest(path.join(ROOT, "dist")) + 1000)
    return { ok: true, why: "dist/ is older than src/: the launcher runs the last build (`npm test` builds first)" };
  return { ok: true };
}

export interface VerifiedJwt {
  header: Record<string, unknown>;
  claims: Record<string, unknown>;
}

/**
 * Verifies a Google-signed JWT (RS256, `kid` in the header) against the JWKS at
 * jwksUrl, as a relying party does; throws on anything wrong.
 */
export async function verifyGoogleJwt(jwt: string, jwksUrl: string): Promise<VerifiedJwt> {
  const parts = jwt.trim().split(".");
  if (parts.length !== 3) throw new Error(`not a JWT: ${parts.length} parts`);
  const [h, p, sig] = parts as [string, string, string];
  const header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as Record<string, unknown>;
  const claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Record<string, unknown>;
  if (header.alg !== "RS256") throw new Error(`alg is ${String(header.alg)}, not RS256`);
  if (typeof header.kid !== "string") throw new Error("no kid in the header");
  const res = await fetch(jwksUrl);
  if (res.status !== 200) throw new Error(`JWKS answered ${res.status}`);
  const jwks = (await res.json()) as { keys: (crypto.JsonWebKey & { kid?: string })[] };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Error(`kid ${header.kid} is not in the JWKS`);
  const key = crypto.createPublicKey({ key: jwk, format: "jwk" });
  if (!crypto.verify("sha256", Buffer.from(`${h}.${p}`), key, Buffer.from(sig, "base64url"))) throw new Error("signature does not verify");
  const now = Date.now() / 1000;
  if (typeof claims.exp !== "number" || claims.exp <= now) throw new Error("expired or no exp");
  if (typeof claims.iat !== "number" || claims.iat > now + 60) throw new Error("bad iat");
  return { header, claims };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  status?: number;
}

/**
 * A transparent HTTP relay in front of the daemon that records what a client asks
 * (method, path and query, headers) and the status it got: to assert what real
 * clients request, which the daemon's own log does not show in full.
 */
export async function recordingRelay(target: string): Promise<{ hostPort: string; requests: RecordedRequest[]; close(): Promise<void> }> {
  const http = await import("node:http");
  const requests: RecordedRequest[] = [];
  const server = http.createServer((req, res) => {
    const rec: RecordedRequest = { method: req.method ?? "", url: req.url ?? "", headers: { ...req.headers } };
    requests.push(rec);
    const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
      rec.status = r.statusCode;
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as { port: number }).port;
  return {
    hostPort: `127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Why a process started as another uid could not run `file` (a directory on its
 * path that others may not search, as `mktemp -d` makes them), or undefined.
 */
export function unreachableByOthers(file: string): string | undefined {
  let p = path.resolve(file);
  const real = fs.realpathSync(p);
  for (p = real; ; p = path.dirname(p)) {
    const mode = fs.statSync(p).mode;
    const need = p === real ? 0o005 : 0o001;
    if ((mode & need) === 0) return `${p} is mode ${(mode & 0o777).toString(8)}: other uids cannot reach ${file}`;
    if (p === path.dirname(p)) return undefined;
  }
}

/** Polls `what` every 100 ms until it gives a value, or gives up after `ms` (undefined). */
export async function waitFor<T>(what: () => T | undefined, ms: number): Promise<T | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = what();
    if (v !== undefined) return v;
    if (Date.now() > end) return undefined;
    await new Promise((r) => setTimeout(r, 100));
  }
}
