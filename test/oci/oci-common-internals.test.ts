import fs from "node:fs";
import { createRequire } from "node:module";
import common from "oci-common";
import t, { type Test } from "tap";
import type { Emulators } from "../../src/emulator/index.js";
import {
  captureFederationAnswers,
  disableAuthCircuitBreaker,
  ociCommonVersion,
  timeEachFederationCall,
} from "../../src/oci/oci-common-internals.js";
import { PregeneratedSessionKeySupplier } from "../../src/oci/session-keys.js";
import { resetEmulators, startTestEmulators } from "../helpers/stack.js";

/**
 * The private shapes of oci-common that src/oci/oci-common-internals.ts relies
 * on, checked on the real objects of the installed oci-common (a builder, and an
 * instance-principal provider built against the emulated metadata service and
 * auth service). When an oci-common upgrade moves one of them, this fails here,
 * by name, rather than as a lost workaround in production.
 */

const FEDERATION = "oci.federation";

let shared: Emulators | undefined;
t.teardown(() => shared?.close());

// oci-common prints its federation attempts with console.log; keep the TAP output clean.
const savedLog = console.log;
console.log = () => {};
t.teardown(() => {
  console.log = savedLog;
});

type Internals = Record<string, unknown>;

/** The private fields of an oci-common object, for inspection. */
function internals(o: unknown): Internals {
  return o as Internals;
}

async function emulators(): Promise<Emulators> {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  return shared;
}

/** An instance-principal provider against the emulators, built as the daemon builds it (breaker disabled unless told). */
async function buildProvider(o: { keepBreaker?: boolean } = {}): Promise<{ provider: Internals & { refresh(): Promise<string> } }> {
  const emu = await emulators();
  const b = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
  b.metadataBaseUrl = emu.oci.metadataBaseUrl;
  b.federationEndpoint = emu.oci.federationEndpoint;
  b.sessionKeySupplier = (await PregeneratedSessionKeySupplier.create()) as never;
  if (!o.keepBreaker) disableAuthCircuitBreaker(b);
  const provider = (await b.build()) as unknown as Internals & { refresh(): Promise<string> };
  return { provider };
}

function federationClient(t: Test, provider: Internals): Internals {
  const fc = provider.federationClient;
  t.type(fc, "object", "the provider has a federationClient");
  return internals(fc);
}

t.test("the version in errors is the installed oci-common's", async (t) => {
  const pkg = createRequire(import.meta.url).resolve("oci-common/package.json");
  const installed = (JSON.parse(fs.readFileSync(pkg, "utf8")) as { version: string }).version;
  t.match(installed, /^\d+\.\d+\.\d+/);
  t.equal(ociCommonVersion(), installed);
});

t.test("the builder's auth circuit breaker is there, and is replaced by a disabled one", async (t) => {
  const b = new common.InstancePrincipalsAuthenticationDetailsProviderBuilder();
  const before = internals(b)._authCircuitBreaker;
  t.type(before, common.CircuitBreaker, "_authCircuitBreaker is an oci-common CircuitBreaker");
  t.ok(internals(before).circuit, "with a live circuit");
  t.equal(b.authCircuitBreaker, before, "the getter build() uses reads _authCircuitBreaker");

  disableAuthCircuitBreaker(b);
  const after = internals(b)._authCircuitBreaker;
  t.not(after, before, "replaced");
  t.type(after, common.CircuitBreaker);
  t.equal(internals(after).noCircuit, true, "disabled");
  t.equal(internals(after).circuit, null, "no circuit");
  t.equal(b.authCircuitBreaker, after, "the getter build() uses sees the replacement");
});

t.test("the built federation client sends without a breaker only when it was replaced", async (t) => {
  const kept = federationClient(t, (await buildProvider({ keepBreaker: true })).provider);
  const keptHttp = internals(kept.httpClient);
  t.ok(keptHttp.circuitBreaker, "left alone, oci-common's federation client sends through a breaker");
  (kept as { close(): void }).close();

  const fc = federationClient(t, (await buildProvider()).provider);
  t.type(fc.httpClient, common.FetchHttpClient, "the federation client's httpClient is a FetchHttpClient");
  t.equal(internals(fc.httpClient).circuitBreaker, null, "with the breaker replaced, it sends without one");
});

t.test("getTokenAsync is wrapped: a refused federation's answer is kept", async (t) => {
  const { provider } = await buildProvider();
  const fc = federationClient(t, provider);
  const orig = fc.getTokenAsync;
  t.type(orig, "function", "the federation client has getTokenAsync");
  const answer = captureFederationAnswers(provider);
  t.not(fc.getTokenAsync, orig, "wrapped");

  const token = await provider.refresh();
  t.match(token, /^eyJ/, "a successful federation passes through the wrapper");
  t.equal(answer.last, undefined, "nothing kept from a success");

  const emu = await emulators();
  emu.server.addFault({
    endpoint: FEDERATION,
    status: 429,
    body: JSON.stringify({ code: "TooManyRequests", message: "slow down" }),
    headers: { "retry-after": "7" },
    count: 1,
  });
  await t.rejects(provider.refresh(), "the refused federation fails");
  t.same(answer.last, { status: 429, code: "TooManyRequests", text: "HTTP 429: TooManyRequests: slow down", retryAfterSeconds: 7 });

  emu.server.addFault({ endpoint: FEDERATION, status: 401, body: "no entry", count: 1 });
  await t.rejects(provider.refresh());
  t.same(answer.last, { status: 401, code: undefined, text: "HTTP 401: no entry", retryAfterSeconds: undefined }, "a non-JSON answer");
});

t.test("httpOptions gives each federation call a fresh timeout signal", async (t) => {
  const { provider } = await buildProvider();
  const http = internals(federationClient(t, provider).httpClient);
  t.ok("httpOptions" in http, "the federation client's httpClient has httpOptions");
  timeEachFederationCall(provider, 300);
  const options = http.httpOptions as { signal: AbortSignal };
  const first = options.signal;
  const second = options.signal;
  t.type(first, AbortSignal);
  t.not(first, second, "a new signal at each read");
  t.equal(first.aborted, false);
  t.same(Object.keys(options), ["signal"], "merged into the request as its signal");

  const emu = await emulators();
  emu.server.addFault({ endpoint: FEDERATION, latencyMs: 2000, count: 1 });
  const started = Date.now();
  const getTokenAsync = internals(federationClient(t, provider)).getTokenAsync as () => Promise<Response>;
  await t.rejects(getTokenAsync.call(federationClient(t, provider)), { name: "TimeoutError" }, "a slow federation call is cut");
  t.ok(Date.now() - started < 1500, `cut after ${Date.now() - started} ms, not after the answer`);
});

t.test("a missing shape is an error that names oci-common's version, the shape and why", async (t) => {
  const version = ociCommonVersion().replace(/\./g, "\\.");
  t.throws(() => disableAuthCircuitBreaker({} as never), {
    message: new RegExp(
      `^oci-common ${version}: the instance-principal builder's _authCircuitBreaker not found; ` +
        "oci2gcp relies on it to turn off the auth circuit breaker",
    ),
  });
  t.throws(() => captureFederationAnswers({}), {
    message: /the instance-principal provider's federationClient not found; oci2gcp relies on it to report/,
  });
  t.throws(() => captureFederationAnswers({ federationClient: {} }), { message: /the federation client's getTokenAsync not found/ });
  t.throws(() => timeEachFederationCall({}, 1000), {
    message: /federationClient not found; oci2gcp relies on it to give each federation call a timeout/,
  });
  t.throws(() => timeEachFederationCall({ federationClient: {} }, 1000), { message: /the federation client's httpClient not found/ });
  t.throws(() => timeEachFederationCall({ federationClient: { httpClient: {} } }, 1000), {
    message: /the federation client's httpClient\.httpOptions not found/,
  });
});
