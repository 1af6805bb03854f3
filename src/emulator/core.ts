import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * The small HTTP framework the cloud emulators run on: routing by endpoint name,
 * per-endpoint call counters, fault injection and an HTTP control surface
 * (`/_emulator/...`) so that tests and scripts outside the process can steer it.
 */

export interface EmulatorRequest {
  method: string;
  /** Path without the query string, exactly as sent (not decoded). */
  path: string;
  /** Path and query, exactly as sent: what `(request-target)` signs. */
  target: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Named groups of the route's pattern. */
  params: Record<string, string>;
}

export interface EmulatorResponse {
  status: number;
  headers?: Record<string, string>;
  /** A string or Buffer is sent as is; anything else as JSON. */
  body?: unknown;
}

export type Handler = (req: EmulatorRequest) => EmulatorResponse | Promise<EmulatorResponse>;

export interface Route {
  /** Counter and fault key, e.g. "identityDomain.token". */
  endpoint: string;
  method: string;
  pattern: RegExp;
  handler: Handler;
}

export interface Fault {
  endpoint: string;
  status?: number;
  latencyMs?: number;
  drop?: boolean;
  /** Answer 200 (or `status`) with this body instead of the real answer. */
  body?: string;
  /** Extra response headers, e.g. Retry-After with a 429. */
  headers?: Record<string, string>;
  /** How many calls the fault applies to; unset means until cleared. */
  count?: number;
}

/** Settings that a module exposes through `/_emulator/settings`. */
export type Settings = Record<string, number | string | boolean>;

const MAX_BODY = 1 << 20;

export class EmulatorServer {
  readonly calls: Record<string, number> = {};
  private readonly routes: Route[] = [];
  private faults: Fault[] = [];
  private readonly settingsGroups = new Map<string, Settings>();
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private baseUrl = "";

  constructor() {
    this.server = http.createServer((req, res) => {
      void this.dispatch(req, res);
    });
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
  }

  /** Registers a route; its endpoint appears in `/_emulator/calls` from now on. */
  route(endpoint: string, method: string, pattern: RegExp, handler: Handler): void {
    this.routes.push({ endpoint, method, pattern, handler });
    this.calls[endpoint] ??= 0;
  }

  /** Exposes a mutable settings object under a group name (e.g. "oci", "google"). */
  settings(group: string, values: Settings): void {
    this.settingsGroups.set(group, values);
  }

  addFault(fault: Fault): void {
    if (!(fault.endpoint in this.calls)) {
      throw new Error(`unknown endpoint ${JSON.stringify(fault.endpoint)}; known: ${Object.keys(this.calls).join(", ")}`);
    }
    this.faults.push({ ...fault });
  }

  clearFaults(): void {
    this.faults = [];
  }

  resetCalls(): void {
    for (const k of Object.keys(this.calls)) this.calls[k] = 0;
  }

  get url(): string {
    return this.baseUrl;
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const addr = this.server.address() as AddressInfo;
    this.baseUrl = `http://${host}:${addr.port}`;
    return this.baseUrl;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private takeFault(endpoint: string): Fault | undefined {
    const i = this.faults.findIndex((f) => f.endpoint === endpoint);
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    if (f.count !== undefined) {
      f.count -= 1;
      if (f.count <= 0) this.faults.splice(i, 1);
    }
    return f;
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const parsed = await parseRequest(req, res);
    if (!parsed) return;
    const { method, path, target, query, body } = parsed;

    if (path.startsWith("/_emulator/")) {
      send(res, this.control(method, path, body));
      return;
    }

    for (const r of this.routes) {
      if (r.method !== method) continue;
      const m = r.pattern.exec(path);
      if (!m) continue;
      await this.serve(r.endpoint, r.handler, req, res, {
        method,
        path,
        target,
        query,
        headers: req.headers,
        body,
        params: m.groups ?? {},
      });
      return;
    }
    send(res, { status: 404, body: { error: "not_found", error_description: `no emulated endpoint for ${method} ${path}` } });
  }

  /**
   * Makes an endpoint known (in `/_emulator/calls`, and as a fault target) without an HTTP
   * route on this server: for endpoints served by another listener through `handleExternal`.
   */
  declareEndpoint(endpoint: string): void {
    this.calls[endpoint] ??= 0;
  }

  /**
   * Serves a request that arrived on another listener (e.g. an HTTPS server) with the same
   * counting, fault injection and error handling as this server's own routes.
   */
  async handleExternal(endpoint: string, req: http.IncomingMessage, res: http.ServerResponse, handler: Handler): Promise<void> {
    this.declareEndpoint(endpoint);
    const parsed = await parseRequest(req, res);
    if (!parsed) return;
    await this.serve(endpoint, handler, req, res, { ...parsed, headers: req.headers, params: {} });
  }

  private async serve(
    endpoint: string,
    handler: Handler,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    er: EmulatorRequest,
  ): Promise<void> {
    this.calls[endpoint] = (this.calls[endpoint] ?? 0) + 1;
    const fault = this.takeFault(endpoint);
    if (fault?.latencyMs) await sleep(fault.latencyMs);
    if (fault?.drop) {
      req.socket.destroy();
      return;
    }
    if (fault && (fault.status !== undefined || fault.body !== undefined)) {
      send(res, {
        status: fault.status ?? 200,
        headers: { "content-type": fault.body !== undefined ? "text/plain" : "application/json", ...fault.headers },
        body: fault.body ?? { error: "injected_fault", error_description: `fault injected with status ${fault.status}` },
      });
      return;
    }
    let out: EmulatorResponse;
    try {
      out = await handler(er);
    } catch (e) {
      out = { status: 500, body: { error: "server_error", error_description: String((e as Error).message ?? e) } };
    }
    send(res, out);
  }

  private control(method: string, path: string, body: Buffer): EmulatorResponse {
    if (path === "/_emulator/calls" && method === "GET") return { status: 200, body: this.calls };
    if (path === "/_emulator/calls" && method === "DELETE") {
      this.resetCalls();
      return { status: 204 };
    }
    if (path === "/_emulator/faults" && method === "DELETE") {
      this.clearFaults();
      return { status: 204 };
    }
    if (path === "/_emulator/faults" && method === "GET") return { status: 200, body: this.faults };
    if (path === "/_emulator/faults" && method === "POST") {
      const parsed = parseJson(body);
      const list = Array.isArray(parsed) ? parsed : [parsed];
      for (const f of list) {
        const err = validateFault(f);
        if (err) return { status: 400, body: { error: err } };
        if (!((f as Fault).endpoint in this.calls)) {
          return { status: 400, body: { error: `unknown endpoint; known: ${Object.keys(this.calls).join(", ")}` } };
        }
      }
      for (const f of list) this.addFault(f as Fault);
      return { status: 201, body: this.faults };
    }
    if (path === "/_emulator/settings" && method === "GET") {
      return { status: 200, body: Object.fromEntries(this.settingsGroups) };
    }
    if (path === "/_emulator/settings" && method === "POST") {
      const parsed = parseJson(body);
      if (!parsed || typeof parsed !== "object") return { status: 400, body: { error: "expected a JSON object {group: {key: value}}" } };
      for (const [group, values] of Object.entries(parsed as Record<string, unknown>)) {
        const target = this.settingsGroups.get(group);
        if (!target || !values || typeof values !== "object") return { status: 400, body: { error: `unknown settings group ${group}` } };
        for (const [k, v] of Object.entries(values as Record<string, unknown>)) {
          if (!(k in target) || typeof v !== typeof target[k]) return { status: 400, body: { error: `bad setting ${group}.${k}` } };
          target[k] = v as number | string | boolean;
        }
      }
      return { status: 200, body: Object.fromEntries(this.settingsGroups) };
    }
    return { status: 404, body: { error: "unknown control route" } };
  }
}

/** Method, path, query and body of a request; undefined (after answering 413) when the body is too large. */
async function parseRequest(
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<{ method: string; path: string; target: string; query: URLSearchParams; body: Buffer } | undefined> {
  let body: Buffer;
  try {
    body = await readBody(req);
  } catch {
    send(res, { status: 413, body: { error: "request body too large" } });
    return undefined;
  }
  const target = req.url ?? "/";
  const q = target.indexOf("?");
  return {
    method: (req.method ?? "GET").toUpperCase(),
    path: q < 0 ? target : target.slice(0, q),
    target,
    query: new URLSearchParams(q < 0 ? "" : target.slice(q + 1)),
    body,
  };
}

function validateFault(f: unknown): string | undefined {
  if (!f || typeof f !== "object") return "a fault is a JSON object";
  const o = f as Record<string, unknown>;
  if (typeof o.endpoint !== "string") return "endpoint (string) is required";
  for (const k of ["status", "latencyMs", "count"]) {
    if (o[k] !== undefined && (!Number.isInteger(o[k]) || (o[k] as number) < 0)) return `${k} must be a non-negative integer`;
  }
  if (o.drop !== undefined && typeof o.drop !== "boolean") return "drop must be a boolean";
  if (o.body !== undefined && typeof o.body !== "string") return "body must be a string";
  return undefined;
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString("utf8"));
  } catch {
    return undefined;
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error("too large"));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res: http.ServerResponse, out: EmulatorResponse): void {
  if (res.destroyed) return;
  const headers: Record<string, string> = { ...out.headers };
  let payload: Buffer | string | undefined;
  if (out.body === undefined) payload = undefined;
  else if (typeof out.body === "string" || Buffer.isBuffer(out.body)) payload = out.body;
  else {
    payload = JSON.stringify(out.body);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === "content-type")) headers["content-type"] = "application/json";
  }
  res.writeHead(out.status, headers);
  res.end(payload);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
