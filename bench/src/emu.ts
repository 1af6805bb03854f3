import http from "node:http";
// The emulators have no entry of the package's own: they are reached in its build by path.
import { daemonEnvFor, type Emulators, startEmulators } from "../../dist/emulator/index.js";

/** The emulator endpoints a token request may reach: the five upstream hops. */
export const HOPS = [
  "oci.metadata",
  "oci.federation",
  "oci.identityDomain.token",
  "google.sts.token",
  "google.iam.generateAccessToken",
] as const;
export type Calls = Record<(typeof HOPS)[number], number>;

export class Emu {
  private recording?: Recorded[];
  private readonly defaults: { oci: Record<string, unknown>; google: Record<string, unknown> };

  private constructor(readonly emu: Emulators) {
    this.defaults = { oci: { ...emu.oci.settings }, google: { ...emu.google.settings } };
    // The emulator's node:http server, to time and record what the daemon sends it.
    const server = (emu.server as unknown as { server: http.Server }).server;
    // Node's default 5 s would let the emulator close a keep-alive connection just as a
    // client that spent seconds generating RSA keys on a busy machine reuses it.
    server.keepAliveTimeout = 65_000;
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      const list = this.recording;
      if (!list || req.url?.startsWith("/_emulator/")) return;
      const r: Recorded = {
        method: req.method ?? "GET",
        url: req.url ?? "/",
        headers: { ...req.headers },
        body: [],
        start: performance.now(),
        end: 0,
      };
      req.on("data", (c: Buffer) => r.body.push(c));
      res.on("finish", () => {
        r.end = performance.now();
        list.push(r);
      });
    });
  }

  static async start(): Promise<Emu> {
    return new Emu(await startEmulators());
  }

  /** Settings that point `oci2gcp serve` at the emulators, as environment variables. */
  daemonEnv(): Record<string, string> {
    return daemonEnvFor(this.emu);
  }

  /** Every later call to each hop waits `ms` before it is answered. */
  setLatency(ms: number): void {
    this.emu.server.clearFaults();
    if (ms > 0) for (const endpoint of HOPS) this.emu.server.addFault({ endpoint, latencyMs: ms });
  }

  /**
   * Lifetime of the OCI security token, the domain JWT and the federated token;
   * with `jwksCacheSeconds` 0 Google STS fetches the domain's keys at every
   * exchange, as it does on the first one. No arguments: the emulators' defaults.
   */
  setTokens(o: { lifetimeSeconds?: number; jwksCacheSeconds?: number } = {}): void {
    Object.assign(this.emu.oci.settings, this.defaults.oci);
    Object.assign(this.emu.google.settings, this.defaults.google);
    const s = this.emu;
    if (o.lifetimeSeconds !== undefined) {
      s.oci.settings.federationTokenSeconds = o.lifetimeSeconds;
      s.oci.settings.domainTokenSeconds = o.lifetimeSeconds;
      s.google.settings.federatedTokenSeconds = o.lifetimeSeconds;
    }
    if (o.jwksCacheSeconds !== undefined) s.google.settings.jwksCacheSeconds = o.jwksCacheSeconds;
  }

  resetCalls(): void {
    this.emu.server.resetCalls();
  }

  calls(): Calls {
    const c = this.emu.server.calls;
    return Object.fromEntries(HOPS.map((h) => [h, c[h] ?? 0])) as Calls;
  }

  /** Records every request the emulators answer until `stop()` is called. */
  record(): { stop(): Recorded[] } {
    const list: Recorded[] = [];
    this.recording = list;
    return {
      stop: () => {
        if (this.recording === list) this.recording = undefined;
        return list.sort((a, b) => a.start - b.start);
      },
    };
  }

  /**
   * Sends recorded requests again, one after the other, straight to the
   * emulators; resolves with each round trip's ms and status.
   */
  async replay(list: Recorded[]): Promise<{ ms: number; status: number }[]> {
    const out: { ms: number; status: number }[] = [];
    for (const r of list) {
      const started = performance.now();
      const status = await send(this.emu.url, r);
      out.push({ ms: performance.now() - started, status });
    }
    return out;
  }

  close(): Promise<void> {
    return this.emu.close();
  }
}

export interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer[];
  /** performance.now() when the request arrived and when its answer was sent. */
  start: number;
  end: number;
}

function send(base: string, r: Recorded): Promise<number> {
  const headers = { ...r.headers, connection: "close" };
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${r.url}`, { method: r.method, headers, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(Buffer.concat(r.body));
  });
}
