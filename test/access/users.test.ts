import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, type Stack, startStack, startTestEmulators, tempDir } from "../helpers/stack.js";

// Per-user access rules against a daemon on the emulated clouds, with curl started as
// other uids (numeric; no system user is created): each uid gets the accounts of its
// rule and nothing else, `default` is its rule's first account, listings and status
// show it its own accounts, the subject token only where the rule says so, and the
// upstream budget is counted per uid. Spawning as another uid needs root.

const has = (cmd: string) => (process.env.PATH ?? "").split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
const why =
  process.getuid?.() !== 0 ? "not root: clients as other uids need root to start" : !has("curl") ? "curl is not installed" : false;

const THIRD = "third@demo-project.iam.gserviceaccount.com";
const ETL = 41001;
const WEB = 41002;
const MEMBER = 41003;
const NOBODY = 41009;
const ETL_GID = 41500;
const BASE = "/computeMetadata/v1/instance/service-accounts";

interface Answer {
  status: number;
  body: string;
  /** Connections curl opened for this URL: 0 when it reused the previous one. */
  connects: number;
}

/** GETs `urls` in order with one curl started as `uid` (keeping its connection alive between them). */
function asUser(
  uid: number,
  base: string,
  urls: string[],
  headers: Record<string, string> = { "Metadata-Flavor": "Google" },
): Promise<Answer[]> {
  const marker = "\n@@oci2gcp@@";
  const args = ["-sS", "--max-time", "30", "-w", `${marker}%{http_code} %{num_connects}\\n`];
  for (const [k, v] of Object.entries(headers)) args.push("-H", `${k}: ${v}`);
  for (const u of urls) args.push(`${base}${u}`);
  return new Promise((resolve, reject) => {
    execFile(
      "curl",
      args,
      { uid, gid: uid === MEMBER ? ETL_GID : uid, env: { PATH: process.env.PATH }, timeout: 60_000 },
      (e, stdout, stderr) => {
        if (e) return reject(new Error(`curl as uid ${uid}: ${e.message} ${stderr}`));
        const parts = stdout.split(marker);
        const out: Answer[] = [];
        let body = parts[0]!;
        for (const p of parts.slice(1)) {
          const nl = p.indexOf("\n");
          const [status, connects] = p.slice(0, nl).split(" ").map(Number) as [number, number];
          out.push({ status, body, connects });
          body = p.slice(nl + 1);
        }
        resolve(out);
      },
    );
  });
}

async function one(uid: number, base: string, url: string, headers?: Record<string, string>): Promise<Answer> {
  return (await asUser(uid, base, [url], headers))[0]!;
}

t.test("per-user access rules, with clients as other uids", { skip: why }, async (t) => {
  const dir = tempDir("oci2gcp-users-");
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // The databases the rules are resolved in: etl is a group whose member "carol" (uid 41003) is named only there.
  const passwd = path.join(dir, "passwd");
  const group = path.join(dir, "group");
  fs.writeFileSync(passwd, `alice:x:${ETL}:${ETL}::/:/bin/false\ncarol:x:${MEMBER}:${MEMBER}::/:/bin/false\n`);
  fs.writeFileSync(group, `etl:x:${ETL_GID}:carol\n`);
  const emu = await startTestEmulators({ google: { serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, THIRD] } });
  let stack: Stack | undefined;
  t.teardown(async () => {
    await stack?.close();
    await emu.close();
  });
  /** A daemon on the shared emulators, with the test's user databases and these settings. */
  const start = (logLevel: string, overrides: Record<string, unknown>) =>
    startStack({
      emu,
      serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, THIRD],
      accountFiles: { passwd, group },
      logLevel,
      overrides,
    });
  stack = await start("info", {
    "server.upstreamBudgetPerMinute": 6,
    "access.rules": [
      { name: "etl", users: ["alice"], groups: ["etl"], serviceAccounts: [DEMO_SERVICE_ACCOUNT] },
      { name: "web", users: [WEB], serviceAccounts: [SECOND_SERVICE_ACCOUNT, THIRD], subjectToken: true },
    ],
  });
  const url = stack.url;

  await t.test("a uid gets its rule's accounts, and its default is the rule's first", async (t) => {
    const [email, def, own] = await asUser(ETL, url, [
      `${BASE}/default/email`,
      `${BASE}/default/token`,
      `${BASE}/${DEMO_SERVICE_ACCOUNT}/token`,
    ]);
    t.equal(email!.status, 200);
    t.equal(email!.body, DEMO_SERVICE_ACCOUNT, "alice's default is etl's account");
    t.equal(def!.status, 200);
    t.equal(own!.status, 200);
    t.equal(
      JSON.parse(def!.body).access_token,
      JSON.parse(own!.body).access_token,
      "default/token is the token of the rule's first account",
    );
    t.equal(own!.connects, 0, "the three requests shared one connection");

    const web = await asUser(WEB, url, [
      `${BASE}/default/email`,
      `${BASE}/default/token`,
      `${BASE}/${SECOND_SERVICE_ACCOUNT}/token`,
      `${BASE}/${THIRD}/token`,
    ]);
    t.same(
      web.map((a) => a.status),
      [200, 200, 200, 200],
    );
    t.equal(web[0]!.body, SECOND_SERVICE_ACCOUNT, "uid 41002's default is web's first account");
    t.equal(JSON.parse(web[1]!.body).access_token, JSON.parse(web[2]!.body).access_token);
    t.not(JSON.parse(web[1]!.body).access_token, JSON.parse(def!.body).access_token, "two users, two defaults, two tokens");
  });

  await t.test("an account outside the caller's rule is 403, not the token and not 404", async (t) => {
    for (const u of [
      `${BASE}/${SECOND_SERVICE_ACCOUNT}/token`,
      `${BASE}/${THIRD}/email`,
      `${BASE}/${SECOND_SERVICE_ACCOUNT}/identity?audience=x`,
    ]) {
      const a = await one(ETL, url, u);
      t.equal(a.status, 403, u);
      t.match(a.body, `uid ${ETL} (alice) may not obtain tokens of`);
      t.match(a.body, "access.rules");
      t.notMatch(a.body, /ya29|eyJ/);
    }
    t.equal(
      (await one(ETL, url, `${BASE}/nobody@demo-project.iam.gserviceaccount.com/email`)).status,
      404,
      "an account nobody configured is still 404",
    );
  });

  await t.test("a member of a rule's group, named only in the group database", async (t) => {
    const a = await one(MEMBER, url, `${BASE}/default/email`);
    t.equal(a.status, 200);
    t.equal(a.body, DEMO_SERVICE_ACCOUNT);
  });

  await t.test("a uid no rule names is refused everything but the probes, with its uid and the setting in the body", async (t) => {
    const [tok, list, status, sub] = await asUser(NOBODY, url, [
      `${BASE}/default/token`,
      `${BASE}/`,
      "/oci2gcp/v1/status",
      "/oci2gcp/v1/subject-token",
    ]);
    for (const a of [tok!, list!, status!, sub!]) {
      t.equal(a.status, 403);
      t.match(a.body, `no rule of access.rules names uid ${NOBODY}`);
    }
    const probes = await asUser(NOBODY, url, ["/healthz", "/readyz", "/metrics"], {});
    t.same(
      probes.map((a) => a.status),
      [200, 200, 200],
      "the probes need no identity",
    );
  });

  await t.test("listings, the recursive directories and status show each caller only its own accounts", async (t) => {
    const [list, rec, root, status] = await asUser(ETL, url, [
      `${BASE}/`,
      `${BASE}/?recursive=true`,
      "/computeMetadata/v1/?recursive=true",
      "/oci2gcp/v1/status",
    ]);
    t.equal(list!.body, `default/\n${DEMO_SERVICE_ACCOUNT}/\n`);
    t.same(Object.keys(JSON.parse(rec!.body)), ["default", DEMO_SERVICE_ACCOUNT]);
    t.same(Object.keys(JSON.parse(root!.body).instance.serviceAccounts), ["default", DEMO_SERVICE_ACCOUNT]);
    const st = JSON.parse(status!.body) as { accounts: string[]; caches: { key: string }[] };
    t.same(st.accounts, [DEMO_SERVICE_ACCOUNT]);
    t.ok(st.caches.length > 0, "its own entries are there");
    t.ok(
      st.caches.every((c) => c.key.startsWith(DEMO_SERVICE_ACCOUNT)),
      "and only those: no other account's, no subject token's",
    );
    const web = await one(WEB, url, `${BASE}/`);
    t.equal(web.body, `default/\n${SECOND_SERVICE_ACCOUNT}/\n${THIRD}/\n`);
    const [aliases, dflt] = await asUser(WEB, url, [`${BASE}/${THIRD}/aliases`, `${BASE}/${SECOND_SERVICE_ACCOUNT}/aliases`]);
    t.equal(aliases!.body, "", "only the caller's default has the alias default");
    t.equal(dflt!.body, "default");
  });

  await t.test("the subject token only to a rule with subjectToken", async (t) => {
    const refused = await one(ETL, url, "/oci2gcp/v1/subject-token");
    t.equal(refused.status, 403);
    t.match(refused.body, "does not have &#34;subjectToken&#34;: true", "the body is HTML, with the rule's setting escaped");
    const given = await one(WEB, url, "/oci2gcp/v1/subject-token?format=text");
    t.equal(given.status, 200);
    t.match(given.body, /^eyJ/);
    stack!.secrets.add(given.body);
  });

  await t.test("the upstream budget is counted per uid", async (t) => {
    const scopes = (i: number) => `${BASE}/default/token?scopes=https://www.googleapis.com/auth/s${i}`;
    const etl = await asUser(ETL, url, [1, 2, 3, 4, 5, 6, 7, 8].map(scopes));
    t.ok(
      etl.some((a) => a.status === 429),
      `alice runs out of her budget: ${etl.map((a) => a.status).join(" ")}`,
    );
    const web = await one(WEB, url, `${BASE}/default/token?scopes=https://www.googleapis.com/auth/s1`);
    t.equal(web.status, 200, "while uid 41002 still has its own");
  });

  await t.test("the flood guard is counted per uid", async (t) => {
    const flood = await start("warn", {
      "server.maxRequestsPerMinute": 4,
      "access.rules": [
        { users: ["alice"], serviceAccounts: [DEMO_SERVICE_ACCOUNT] },
        { users: [WEB], serviceAccounts: [SECOND_SERVICE_ACCOUNT] },
      ],
    });
    t.teardown(() => flood.close());
    const alice = await asUser(
      ETL,
      flood.url,
      Array.from({ length: 6 }, () => `${BASE}/default/email`),
    );
    t.same(
      alice.map((a) => a.status),
      [200, 200, 200, 200, 429, 429],
      "alice is held back after her 4 requests",
    );
    t.equal((await one(WEB, flood.url, `${BASE}/default/email`)).status, 200, "while uid 41002 has its own allowance");
  });

  await t.test("refusals counted by reason, without uids; one audit line per uid, account and kind; no token logged", async (t) => {
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const reason of ["no-rule", "account", "subject-token"]) {
      t.match(metrics, new RegExp(`oci2gcp_access_refusals_total\\{reason="${reason}"\\} [1-9]`), reason);
    }
    t.notMatch(metrics, /oci2gcp_access_refusals_total\{[^}]*uid/);
    const audit = stack!.logs().filter((l) => l.msg === "first token of this account for this user");
    const seen = audit.map((l) => `${l.uid} ${l.user ?? ""} ${l.account} ${l.kind}`);
    t.ok(seen.includes(`${ETL} alice ${DEMO_SERVICE_ACCOUNT} access`), seen.join("; "));
    t.ok(seen.includes(`${WEB}  ${THIRD} access`));
    t.ok(seen.some((s) => s.startsWith(`${WEB}`) && s.endsWith("subject")));
    t.equal(new Set(seen).size, seen.length, "once each");
    t.same(stack!.leaks(), []);
    t.match(stack!.logText(), "2 access rules: each local user may obtain only the accounts of the first rule naming it");
  });
});
