/**
 * What an upstream says reaches the HTTP answer, the status page and the logs
 * bounded, at every hop: a 900 KB error message comes back as a few hundred
 * characters, and a 200 whose body is not JSON is described by its size, never
 * quoted.
 */
import t, { type Test } from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { STATUS_PATH } from "../../src/protocol.js";
import { clearFaults, type Endpoint, fault, waitFor } from "../helpers/reliability.js";
import { type Stack, startStack } from "../helpers/stack.js";

const TOKEN = "/computeMetadata/v1/instance/service-accounts/default/token";
const IDENTITY = "/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://text.example";
const overrides = { "upstream.timeoutMs": 5000, "upstream.attempts": 2 };
/** 900 KB of what an upstream said. */
const BIG = `upstream says: ${"Z".repeat(900_000)} END-OF-MESSAGE`;
/** 900 KB of a page that is not the JSON asked for. */
const PAGE = `<html><body>${"PAGE-CONTENT ".repeat(70_000)}</body></html>`;

let emu: Emulators;
let base: Stack;
const daemons: Stack[] = [];

t.before(async () => {
  emu = await startEmulators();
  base = await startStack({ emu });
  daemons.push(base);
  let last = { status: 0, text: "" };
  if (!(await waitFor(async () => (last = await base.get(TOKEN)).status === 200, 30_000, 500)))
    throw new Error(`warm-up failed: ${last.status} ${last.text}`);
});
t.teardown(async () => {
  for (const d of daemons) await d.close();
  await emu?.close();
});

interface Case {
  endpoint: Endpoint;
  hop: RegExp;
  /** The error answer this endpoint's server gives, with `message` as its words. */
  error(message: string): string;
  path: string;
}

const cases: Case[] = [
  {
    endpoint: "oci.federation",
    hop: /the OCI principal hop failed/,
    error: (m) => JSON.stringify({ code: "InvalidParameter", message: m }),
    path: TOKEN,
  },
  {
    endpoint: "oci.identityDomain.token",
    hop: /the identity domain hop failed/,
    error: (m) => JSON.stringify({ error: "invalid_request", error_description: m }),
    path: TOKEN,
  },
  {
    endpoint: "google.sts.token",
    hop: /the STS hop failed/,
    error: (m) => JSON.stringify({ error: "invalid_request", error_description: m }),
    path: TOKEN,
  },
  {
    endpoint: "google.iam.generateAccessToken",
    hop: /the impersonation hop failed/,
    error: (m) => JSON.stringify({ error: { code: 400, message: m, status: "INVALID_ARGUMENT" } }),
    path: TOKEN,
  },
  {
    endpoint: "google.iam.generateIdToken",
    hop: /the impersonation hop failed/,
    error: (m) => JSON.stringify({ error: { code: 400, message: m, status: "INVALID_ARGUMENT" } }),
    path: IDENTITY,
  },
];

/** A daemon with nothing cached; the OCI principal is the base daemon's unless the federation is under test. */
async function daemon(c: Case): Promise<Stack> {
  const principal = c.endpoint === "oci.federation" ? undefined : { token: () => base.daemon.chain.principal.token() };
  const d = await startStack({ emu, overrides, principal });
  daemons.push(d);
  return d;
}

/** The answer, the status page and every log line, each bounded. */
async function checkBounded(t: Test, d: Stack, c: Case): Promise<{ answer: string; status: string; logs: string }> {
  const r = await d.get(c.path);
  t.equal(r.status, 503, r.text.slice(0, 300));
  t.match(r.text, c.hop);
  t.ok(r.text.length < 1500, `answer of ${r.text.length} characters`);
  const status = (await d.get(STATUS_PATH)).text;
  t.ok(status.length < 12_000, `status page of ${status.length} characters`);
  const lines = d.logText().split("\n");
  const longest = Math.max(...lines.map((l) => l.length));
  t.ok(longest < 4000, `longest log line of ${longest} characters`);
  return { answer: r.text, status, logs: d.logText() };
}

for (const c of cases) {
  t.test(c.endpoint, async (t) => {
    t.afterEach(() => clearFaults(emu));

    t.test("a 900 KB error message is bounded everywhere, its start and end kept", async (t) => {
      const d = await daemon(c);
      await fault(emu, { endpoint: c.endpoint, status: 400, body: c.error(BIG), headers: { "content-type": "application/json" } });
      const { answer, status } = await checkBounded(t, d, c);
      t.match(answer, /upstream says: Z+/, "the start of what the upstream said");
      t.match(status, /upstream says: Z+/);
      // oci-common hands on only the start of what the auth service said; elsewhere the middle is cut, counted.
      if (c.endpoint !== "oci.federation") t.match(answer, /upstream says: Z+ … \[\d+ characters left out\] … Z+/, "cut in the middle");
    });

    t.test("a 200 with 900 KB that is not JSON is described, not quoted", async (t) => {
      const d = await daemon(c);
      await fault(emu, { endpoint: c.endpoint, status: 200, body: PAGE, headers: { "content-type": "text/html" } });
      const { answer, status, logs } = await checkBounded(t, d, c);
      t.match(answer, /not JSON/);
      if (c.endpoint !== "oci.federation") t.match(answer, new RegExp(`not JSON \\(${Buffer.byteLength(PAGE)} bytes\\)`));
      for (const [what, s] of [
        ["answer", answer],
        ["status page", status],
        ["logs", logs],
      ] as const)
        t.notMatch(s, /PAGE-CONTENT/, `the ${what} quotes nothing of the page`);
    });
  });
}
