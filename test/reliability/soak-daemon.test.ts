/**
 * End to end through the daemon for ~30 s with every upstream token living 4-8 s
 * (OCI session 5 s, domain JWT 8 s, federated and ID tokens 4 s), under constant
 * client load: the daemon renews the whole chain again and again, and no client
 * ever sees an error or a token that is expired (checked against the emulator's
 * records, or the JWT's exp), nor an expires_in of 0 or one that overstates
 * what is left.
 *
 * Why these lifetimes: the cache's floor for short tokens is a quarter of their
 * lifetime, so a token served to clients must live at least 4 s for the floor to
 * keep expires_in at 1 or more; and STS caps a federated token at what its subject
 * token has left, so the domain JWT must have 4 s left when it is renewed, at half
 * its lifetime.
 */
import t from "tap";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { emuSettings, jwtClaims, sleep } from "../helpers/reliability.js";
import { calls, type Stack, startStack } from "../helpers/stack.js";

const DURATION_MS = 30_000;
const SA = "/computeMetadata/v1/instance/service-accounts/default";

let emu: Emulators;
let imp: Stack;
let fed: Stack;

t.before(async () => {
  emu = await startEmulators();
});
t.teardown(async () => {
  await imp?.close();
  await fed?.close();
  await emu?.close();
});

// The two tests run side by side, on emulators of their own (each sets its lifetimes):
// the first mostly sleeps, and would otherwise add its wait to the soak's.
t.jobs = 2;

t.test("a federated token gets its full lifetime even when the domain JWT is due for renewal", async (t) => {
  const emu = await startEmulators();
  t.teardown(() => emu.close());
  // STS caps a federated token at what its subject token has left. Domain JWTs of 8 s
  // (renewal due 4 s before expiry), federated tokens of up to 20 s.
  await emuSettings(emu, { oci: { domainTokenSeconds: 8 }, google: { federatedTokenSeconds: 20 } });
  const d = await startStack({ emu, serviceAccounts: [] });
  t.teardown(() => d.close());
  // A client of the subject-token endpoint fetches the domain JWT once, and nothing
  // uses it again until it is due for renewal (so no background renewal is made).
  const a = await d.get("/oci2gcp/v1/subject-token");
  t.equal(a.status, 200);
  const jwtAt = Date.now();
  t.ok(JSON.parse(a.text).expires_in <= 8, "a fresh 8 s domain JWT");
  // 5 s later the JWT has 3 s left: due for renewal, still above its floor (2 s).
  await sleep(5000 - (Date.now() - jwtAt));
  const b = await d.get(`${SA}/token?scopes=https://www.googleapis.com/auth/b`);
  t.equal(b.status, 200);
  const info = emu.google.tokenInfo(JSON.parse(b.text).access_token)!;
  const left = info.expiresAt - Date.now() / 1000;
  t.ok(left > 6, `the new federated token has ${left.toFixed(1)} s (a JWT near its end would give it at most 3 s)`);
  t.same(d.leaks(), []);
});

interface Problem {
  what: string;
  status: number;
  detail: string;
}

t.test(`${DURATION_MS / 1000} s of constant load on a chain whose tokens live 4-8 s`, async (t) => {
  await emuSettings(emu, {
    oci: { federationTokenSeconds: 5, domainTokenSeconds: 8 },
    google: { federatedTokenSeconds: 4, idTokenSeconds: 4 },
  });
  imp = await startStack({ emu, logLevel: "debug" });
  fed = await startStack({ emu, serviceAccounts: [], logLevel: "debug" });
  const before = await calls(emu);
  const problems: Problem[] = [];
  let answered = 0;
  const distinct = new Map<string, Set<string>>();
  const note = (kind: string, v: string) => {
    if (!distinct.has(kind)) distinct.set(kind, new Set());
    distinct.get(kind)!.add(v);
  };

  type Check = (text: string, at: number) => string | undefined;
  const googleToken: Check = (text, at) => {
    const b = JSON.parse(text) as { access_token: string; expires_in: number };
    const info = emu.google.tokenInfo(b.access_token);
    if (!info) return `unknown or expired token (expires_in ${b.expires_in})`;
    if (b.expires_in < 1) return `expires_in ${b.expires_in}`;
    if (b.expires_in > info.expiresAt - at / 1000 + 1) return `expires_in ${b.expires_in} but ${info.expiresAt - at / 1000} s left`;
    return undefined;
  };
  const jwt =
    (field?: string): Check =>
    (text, at) => {
      const token = field ? (JSON.parse(text) as Record<string, string>)[field]! : text;
      const exp = jwtClaims(token)?.exp;
      if (typeof exp !== "number") return "not a JWT with exp";
      if (exp * 1000 <= at) return `expired ${at - exp * 1000} ms ago`;
      return undefined;
    };
  const clients: [string, Stack, string, Check][] = [
    ["impersonated access token", imp, `${SA}/token`, googleToken],
    ["ID token", imp, `${SA}/identity?audience=https://soak.example.com`, jwt()],
    ["ID token, full format", imp, `${SA}/identity?audience=https://soak.example.com&format=full`, jwt()],
    ["subject token", imp, "/oci2gcp/v1/subject-token", jwt("access_token")],
    ["federated token", fed, `${SA}/token`, googleToken],
    ["federated token, other scopes", fed, `${SA}/token?scopes=https://www.googleapis.com/auth/devstorage.read_only`, googleToken],
  ];

  const end = Date.now() + DURATION_MS;
  // Two loops per kind of client, each asking every 50-100 ms.
  await Promise.all(
    [...clients, ...clients].map(async ([what, d, path, check], i) => {
      await sleep(i * 7);
      while (Date.now() < end) {
        const r = await d.get(path);
        const at = Date.now();
        answered++;
        if (r.status !== 200) problems.push({ what, status: r.status, detail: r.text.slice(0, 300) });
        else {
          const bad = check(r.text, at);
          if (bad) problems.push({ what, status: 200, detail: bad });
          note(what, r.text);
        }
        await sleep(50 + ((i * 13) % 50));
      }
    }),
  );
  const after = await calls(emu);
  const delta = (e: string) => after[e]! - before[e]!;
  t.comment(
    `${answered} answers; upstream calls: ${JSON.stringify(
      Object.fromEntries(
        Object.keys(after)
          .map((k) => [k, delta(k)])
          .filter(([, v]) => v),
      ),
    )}`,
  );
  t.same(problems, [], "no client-visible error and no expired token");
  t.ok(answered > 1000, `${answered} answers`);
  // The chain was renewed over and over (the clients kept every level in use).
  t.ok(delta("oci.federation") >= 5, `OCI session renewed ${delta("oci.federation")} times`);
  t.ok(delta("oci.identityDomain.token") >= 5, `domain JWT renewed ${delta("oci.identityDomain.token")} times`);
  t.ok(delta("google.sts.token") >= 10, `federated tokens renewed ${delta("google.sts.token")} times`);
  t.ok(delta("google.iam.generateIdToken") >= 10, `ID tokens renewed ${delta("google.iam.generateIdToken")} times`);
  t.ok((distinct.get("ID token")?.size ?? 0) >= 5, "clients saw the ID tokens change");
  t.same(imp.leaks(), [], "no secret in the log");
  t.same(fed.leaks(), [], "no secret in the log");
  const failures = [...imp.logs(), ...fed.logs()].filter((l) => l.msg === "token renewal failed");
  t.same(failures, [], "no renewal failed");
});
