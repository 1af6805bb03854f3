import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import t from "tap";
import { PeerIdentifier } from "../../src/access/peer.js";
import { Policy } from "../../src/access/policy.js";
import { createLogger } from "../../src/log.js";
import { AccessControl } from "../../src/server/access.js";
import { buildApp } from "../../src/server/app.js";
import { DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT, type Stack, startStack, startTestEmulators, tempDir } from "../helpers/stack.js";

// The access rules in a daemon, with this test's own process as the caller (any
// uid: no root needed): its uid named by a rule or not, the Unix socket's rule,
// a caller that cannot be identified, and the sentence the start-up log says.

const ME = process.getuid?.() ?? 0;
/** A group other than root's own when running as root (who may give the file any group); else this process's own. */
const GROUP = ME === 0 ? 41500 : (process.getgid?.() ?? 0);
const BASE = "/computeMetadata/v1/instance/service-accounts";

function overSocket(socketPath: string, url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path: url, headers: { "metadata-flavor": "Google" } }, (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on("error", reject);
  });
}

t.test("access rules in the daemon, for this process's own uid", async (t) => {
  const emu = await startTestEmulators();
  const dir = tempDir("oci2gcp-access-");
  const stacks: Stack[] = [];
  t.teardown(async () => {
    for (const s of stacks) await s.close();
    await emu.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const start = async (rules: unknown[], extra: Record<string, unknown> = {}) => {
    const s = await startStack({
      emu,
      serviceAccounts: [DEMO_SERVICE_ACCOUNT, SECOND_SERVICE_ACCOUNT],
      logLevel: "info",
      overrides: { "access.rules": rules, ...extra },
    });
    stacks.push(s);
    return s;
  };

  await t.test("a rule naming this uid: its accounts over TCP; the socket serves access.socketRule's rule", async (t) => {
    const socketPath = path.join(dir, "a.sock");
    const s = await start(
      [
        { name: "me", users: [ME], serviceAccounts: [SECOND_SERVICE_ACCOUNT] },
        { name: "sock", users: [4_000_000_000], serviceAccounts: [DEMO_SERVICE_ACCOUNT], subjectToken: true },
      ],
      { "server.socketPath": socketPath, "access.socketRule": "sock", "server.socketGroup": String(GROUP), "server.socketMode": "0660" },
    );
    const st = fs.statSync(socketPath);
    t.equal(st.gid, GROUP, "the socket file belongs to server.socketGroup");
    t.equal(st.mode & 0o777, 0o660);
    t.equal((await s.get(`${BASE}/default/email`)).text, SECOND_SERVICE_ACCOUNT);
    t.equal((await s.get(`${BASE}/${DEMO_SERVICE_ACCOUNT}/token`)).status, 403);
    t.equal((await s.get("/oci2gcp/v1/subject-token")).status, 403);
    const sock = await overSocket(socketPath, `${BASE}/default/email`);
    t.equal(sock.body, DEMO_SERVICE_ACCOUNT, "the socket's default is its rule's first account");
    t.equal((await overSocket(socketPath, `${BASE}/${SECOND_SERVICE_ACCOUNT}/email`)).status, 403);
    t.equal((await overSocket(socketPath, "/oci2gcp/v1/subject-token")).status, 200);
    t.match(s.logText(), 'the Unix socket serves rule 1 (\\"sock\\")');
  });

  await t.test(
    "the cached-token fast path with rules: the caller's default, after its first token was noted; refusals left to the routes",
    async (t) => {
      const s = await start([{ users: [ME], serviceAccounts: [SECOND_SERVICE_ACCOUNT] }]);
      const fp = s.daemon.app.fastPath;
      const handle = fp.handle.bind(fp);
      let fast = 0;
      fp.handle = (req, res) => {
        const answered = handle(req, res);
        if (answered) fast++;
        return answered;
      };
      // One kept-alive connection: its first request waits for the caller's identification, the later ones find it settled.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      t.teardown(() => agent.destroy());
      const token = (account: string) =>
        new Promise<{ status: number; token: string }>((resolve, reject) => {
          http
            .get(`${s.url}${BASE}/${account}/token`, { agent, headers: { "metadata-flavor": "Google" } }, (res) => {
              let body = "";
              res.on("data", (d) => {
                body += d;
              });
              res.on("end", () => {
                const ok = res.statusCode === 200;
                resolve({ status: res.statusCode ?? 0, token: ok ? (JSON.parse(body) as { access_token: string }).access_token : body });
              });
            })
            .on("error", reject);
        });
      const first = await token("default");
      t.equal(first.status, 200);
      t.equal(fast, 0, "the first token of the account is noted by the route, not the fast path");
      const again = await token("default");
      t.equal(fast, 1, "then the fast path answers");
      t.equal(again.token, first.token);
      const named = await token(SECOND_SERVICE_ACCOUNT);
      t.equal(named.token, first.token, "default is the rule's account, on the fast path too");
      t.equal(fast, 2);
      await token(DEMO_SERVICE_ACCOUNT);
      const other = await token(DEMO_SERVICE_ACCOUNT);
      t.equal(other.status, 403, "an account outside the rule is refused");
      t.equal(fast, 2, "by the route: the fast path leaves it alone");
    },
  );

  await t.test("a rule not naming this uid; a socket without access.socketRule serves nobody", async (t) => {
    const socketPath = path.join(dir, "b.sock");
    const s = await start([{ users: [4_000_000_000], serviceAccounts: [DEMO_SERVICE_ACCOUNT] }], { "server.socketPath": socketPath });
    const a = await s.get(`${BASE}/default/token`);
    t.equal(a.status, 403);
    t.match(a.text, `no rule of access.rules names uid ${ME}`);
    t.equal(a.headers.get("metadata-flavor"), "Google", "refused in the metadata server's form");
    t.equal((await s.get("/healthz")).status, 200);
    const sock = await overSocket(socketPath, `${BASE}/default/token`);
    t.equal(sock.status, 403);
    t.match(sock.body, "access.socketRule");
    t.match(s.logText(), "the Unix socket serves nobody (access.socketRule is not set)");
  });

  await t.test("without rules: every caller gets everything, said in one sentence", async (t) => {
    const s = await start([]);
    t.equal((await s.get(`${BASE}/${SECOND_SERVICE_ACCOUNT}/email`)).status, 200);
    t.equal((await s.get(`${BASE}/default/email`)).text, DEMO_SERVICE_ACCOUNT);
    t.match(s.logText(), "no access rules: every local user may obtain every configured account's tokens and the subject token");
  });
});

t.test("a caller that cannot be identified is refused, saying why", async (t) => {
  const emu = await startTestEmulators();
  t.teardown(() => emu.close());
  const s = await startStack({ emu, serviceAccounts: [DEMO_SERVICE_ACCOUNT] });
  t.teardown(() => s.close());
  const empty = tempDir("oci2gcp-noproc-");
  fs.mkdirSync(path.join(empty, "net"));
  fs.writeFileSync(path.join(empty, "net", "tcp"), "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n");
  t.teardown(() => fs.rmSync(empty, { recursive: true, force: true }));
  // The same chain behind a second app whose socket tables are an empty copy: no row for anyone.
  const logger = createLogger("silent");
  const access = new AccessControl({
    policy: await Policy.fromConfig({ rules: [{ users: [ME], serviceAccounts: [DEMO_SERVICE_ACCOUNT] }] }, [DEMO_SERVICE_ACCOUNT]),
    logger,
    identifier: new PeerIdentifier({ procRoot: empty }),
  });
  const app = await buildApp({ config: s.config, chain: s.daemon.chain, logger, access });
  t.teardown(() => app.close());
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  const res = await fetch(`${url}${BASE}/default/token`, { headers: { "metadata-flavor": "Google" } });
  t.equal(res.status, 403);
  t.match(await res.text(), /cannot tell which local user is asking: no established connection from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+/);
  t.equal((await fetch(`${url}/healthz`)).status, 200, "the probes need no identity");
});
