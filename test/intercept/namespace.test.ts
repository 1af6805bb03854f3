import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { clientEnv, distIsFresh, findGcloud, ROOT, run, TOKEN_PATH, unreachableByOthers, verifyGoogleJwt } from "../helpers/clients.js";
import { DEMO_PROJECT_ID, DEMO_SERVICE_ACCOUNT, tempDir } from "../helpers/stack.js";

// Interception end to end, in a network and mount namespace of the test's own
// (`unshare --net --mount`): OCI's emulated metadata service on 169.254.169.254:80,
// the daemon as uid 23001 on 127.0.0.1, the redirection installed by
// `oci2gcp intercept install` itself, a private copy of /etc/hosts bind-mounted
// over it, and real Google clients with no GCE_METADATA_* and no GOOGLE_CLOUD_PROJECT.
// The host's own rules and /etc/hosts are never touched: everything runs inside.

const has = (cmd: string) => (process.env.PATH ?? "").split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
const why =
  process.getuid?.() !== 0
    ? "not root: the namespaces, the firewall rules and the bind mount need root"
    : !has("unshare")
      ? "unshare (util-linux) is not installed"
      : !has("nft") && !has("iptables")
        ? "neither nft nor iptables is installed (apt-get install nftables)"
        : !distIsFresh().ok
          ? "dist/ is missing: run `npx tsc -p .` first"
          : (unreachableByOthers(process.execPath) ?? unreachableByOthers(path.join(ROOT, "bin/oci2gcp.js")) ?? false);

const DAEMON_UID = 23001;
const PORT = 18181;

// Debian's Google clients that hard-code the well-known address (Ruby googleauth before 0.14) or
// name (Java google-auth-library without GCE_METADATA_HOST): the namespace is the only place they
// can be pointed at the daemon. Each runs when its package is installed, and is skipped with a
// comment when not.
const RUBY = "/usr/bin/ruby";
const RUBY_GOOGLEAUTH = "/usr/lib/ruby/vendor_ruby/googleauth/compute_engine.rb";
// libgoogle-auth-java's runtime classpath, from its dependencies (google-http-client, Jackson,
// Guava, OpenCensus and the gRPC context OpenCensus needs).
const JAVA_CLASSPATH = [
  "google-auth-library-oauth2-http",
  "google-auth-library-credentials",
  "google-http-client",
  "google-http-client-jackson2",
  "jackson-core",
  "guava",
  "opencensus-api",
  "opencensus-contrib-http-util",
  "grpc-context",
].map((j) => `/usr/share/java/${j}.jar`);
const ID_AUDIENCE = "https://debian.example.com/x?k=1";
const onPath = (cmd: string) =>
  (process.env.PATH ?? "")
    .split(path.delimiter)
    .map((d) => path.join(d, cmd))
    .find((f) => path.isAbsolute(f) && fs.existsSync(f));
const rubyMissing =
  fs.existsSync(RUBY) && fs.existsSync(RUBY_GOOGLEAUTH)
    ? undefined
    : "ruby-googleauth is not installed (apt-get install -y ruby-googleauth)";
const java = onPath("java");
const javaMissing = !java
  ? "no java on PATH (apt-get install -y default-jre-headless)"
  : JAVA_CLASSPATH.find((j) => !fs.existsSync(j))
    ? "libgoogle-auth-java is not installed (apt-get install -y libgoogle-auth-java)"
    : undefined;

/** What runs inside the namespaces (after the shell part has set up lo and /etc/hosts); prints one JSON line. */
const INNER = String.raw`
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
const { ROOT, DIR, PORT, UID, PYTHON, THIRD_PARTY, GCLOUD, RUBY, JAVA, JAVA_CP, AUDIENCE, OUTER_NET, OUTER_MNT } = JSON.parse(process.env.INNER_ARGS);
const out = {};
const sh = (file, args, opts = {}) => new Promise((resolve) => execFile(file, args, { timeout: 60000, maxBuffer: 4 << 20, ...opts },
  (e, stdout, stderr) => resolve({ code: e ? (typeof e.code === "number" ? e.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) })));
const raw = (req) => new Promise((resolve, reject) => {
  const s = net.connect(80, "169.254.169.254");
  const chunks = [];
  s.on("data", (d) => chunks.push(d)); s.on("end", () => resolve(Buffer.concat(chunks).toString("latin1"))); s.on("error", reject);
  s.write(req);
});
const DROP = new RegExp("^(GOOGLE_|GCE_|CLOUDSDK_|GCLOUD_|METADATA_SERVER|GCP_|OCI2GCP_|INNER_|TAP|NODE_OPTIONS|.*_proxy$|.*_PROXY$|PYTHON" +
  "|RUBY|GEM_|BUNDLE_|JAVA_TOOL_OPTIONS$|_JAVA_OPTIONS$|JDK_JAVA_OPTIONS$|CLASSPATH$)");
const cleanEnv = (home, extra = {}) => {
  const env = {};
  for (const [k, v] of Object.entries(process.env))
    if (!DROP.test(k)) env[k] = v;
  return { ...env, HOME: home, CLOUDSDK_CONFIG: home, CLOUDSDK_CORE_DISABLE_PROMPTS: "1", CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: "1",
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK: "1", ...extra };
};
let daemon, emu, relay;
try {
  if (fs.readlinkSync("/proc/self/ns/net") === OUTER_NET || fs.readlinkSync("/proc/self/ns/mnt") === OUTER_MNT)
    throw new Error("not in a namespace of our own: refusing to touch the firewall and /etc/hosts");
  const { startEmulators, daemonSettingsFor, DEMO_SERVICE_ACCOUNT } = await import(path.join(ROOT, "dist/emulator/index.js"));
  emu = await startEmulators({ google: { serviceAccounts: [DEMO_SERVICE_ACCOUNT] } });
  // OCI's metadata service at the well-known address: the emulator behind a TCP relay (bytes unchanged);
  // the other emulated endpoints stay on loopback, where the daemon accepts plain http.
  const emuPort = Number(new URL(emu.url).port);
  relay = net.createServer((c) => { const u = net.connect(emuPort, "127.0.0.1"); c.pipe(u).pipe(c); u.on("error", () => c.destroy()); c.on("error", () => u.destroy()); });
  await new Promise((r) => relay.listen(80, "169.254.169.254", r));
  const settings = { ...daemonSettingsFor(emu), "oci.metadataUrl": "http://169.254.169.254/opc/v2/", "server.port": PORT,
    "server.intercept": true, "log.level": "warn",
    // Per-user rules on intercepted connections: the clients below run as root; uid 41001 has a rule, 41009 none.
    "access.rules": [{ users: [0, 41001], serviceAccounts: [DEMO_SERVICE_ACCOUNT] }] };
  const config = {};
  for (const [k, v] of Object.entries(settings)) {
    const parts = k.split("."); let o = config;
    for (const p of parts.slice(0, -1)) o = o[p] ??= {};
    o[parts.at(-1)] = v;
  }
  fs.writeFileSync(path.join(DIR, "daemon.json"), JSON.stringify(config), { mode: 0o644 });
  daemon = spawn(process.execPath, [path.join(ROOT, "bin/oci2gcp.js"), "serve", "--config", path.join(DIR, "daemon.json")],
    { uid: UID, gid: UID, env: { PATH: process.env.PATH, HOME: "/" }, stdio: ["ignore", "ignore", "pipe"] });
  let daemonErr = ""; daemon.stderr.on("data", (d) => { daemonErr += d; });
  const tokenUrl = "http://127.0.0.1:" + PORT + "${TOKEN_PATH}";
  for (let i = 0; ; i++) {
    const r = await fetch(tokenUrl, { headers: { "metadata-flavor": "Google" } }).catch(() => undefined);
    if (r?.status === 200) { out.daemonToken = (await r.json()).access_token; break; }
    if (i > 150) throw new Error("the daemon did not serve a token: " + daemonErr.slice(0, 500));
    await new Promise((r) => setTimeout(r, 200));
  }
  const ociReq = "GET /opc/v2/instance/ HTTP/1.1\r\nHost: 169.254.169.254\r\nAuthorization: Bearer Oracle\r\nConnection: close\r\n\r\n";
  out.hostsBefore = fs.readFileSync("/etc/hosts", "utf8");
  out.nftBefore = (await sh("nft", ["list", "ruleset"])).stdout;
  out.ociDirect = await raw(ociReq);
  out.install = await sh(process.execPath, [path.join(ROOT, "bin/oci2gcp.js"), "intercept", "install", "--port", String(PORT), "--daemon-user", String(UID)]);
  out.hostsInstalled = fs.readFileSync("/etc/hosts", "utf8");
  out.ociIntercepted = await raw(ociReq);
  out.googleAsRoot = await raw("GET /computeMetadata/v1/project/project-id HTTP/1.1\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n");
  out.googleAsDaemonUser = await sh(process.execPath, ["-e",
    "fetch('http://169.254.169.254/computeMetadata/v1/project/project-id',{headers:{'metadata-flavor':'Google'}}).then(async r=>console.log(r.status, await r.text()))"],
    { uid: UID, gid: UID });
  const asUid = (uid) => sh(process.execPath, ["-e",
    "fetch('http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/email',{headers:{'metadata-flavor':'Google'}})" +
    ".then(async r=>console.log(r.status, await r.text()))"], { uid, gid: uid });
  out.interceptedAllowed = await asUid(41001);
  out.interceptedRefused = await asUid(41009);
  const home = (n) => { const d = path.join(DIR, n); fs.mkdirSync(d); return d; };
  if (PYTHON) out.python = await sh(PYTHON, [path.join(ROOT, "test/fixtures/google_auth_client.py"), "adc"], { env: cleanEnv(home("py"), { PYTHONPATH: THIRD_PARTY }) });
  out.node = await sh(process.execPath, [path.join(ROOT, "test/fixtures/node-client.mjs"), "adc"], { env: cleanEnv(home("node")) });
  if (GCLOUD) {
    const g = home("gcloud");
    out.gcloudToken = await sh(GCLOUD, ["auth", "print-access-token", "--verbosity=error"], { env: cleanEnv(g) });
    out.gcloudProject = await sh(GCLOUD, ["config", "get-value", "project", "--verbosity=error"], { env: cleanEnv(g) });
  }
  if (RUBY) out.ruby = await sh(RUBY, [path.join(ROOT, "test/fixtures/debian_googleauth.rb"), AUDIENCE], { env: cleanEnv(home("ruby")) });
  if (JAVA) {
    out.java = await sh(JAVA, ["-cp", JAVA_CP, path.join(ROOT, "test/fixtures/debian-java/Client.java"), AUDIENCE],
      { env: cleanEnv(home("java")), timeout: 120000 });
  }
  // The emulated Google's public keys, for checking the clients' ID tokens once the namespace is gone.
  if (RUBY || JAVA) out.jwks = await (await fetch(emu.google.jwksUrl)).json();
  out.remove = await sh(process.execPath, [path.join(ROOT, "bin/oci2gcp.js"), "intercept", "remove"]);
  out.hostsAfter = fs.readFileSync("/etc/hosts", "utf8");
  out.nftAfter = (await sh("nft", ["list", "ruleset"])).stdout;
  out.ociAfter = await raw(ociReq);
} catch (e) {
  out.error = String(e?.stack ?? e);
} finally {
  daemon?.kill("SIGKILL");
  relay?.close();
  await emu?.close();
}
console.log(JSON.stringify(out));
process.exit(0);
`;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}
interface Inner {
  error?: string;
  daemonToken?: string;
  hostsBefore?: string;
  hostsInstalled?: string;
  hostsAfter?: string;
  nftBefore?: string;
  nftAfter?: string;
  ociDirect?: string;
  ociIntercepted?: string;
  ociAfter?: string;
  googleAsRoot?: string;
  googleAsDaemonUser?: Ran;
  interceptedAllowed?: Ran;
  interceptedRefused?: Ran;
  install?: Ran;
  remove?: Ran;
  python?: Ran;
  node?: Ran;
  gcloudToken?: Ran;
  gcloudProject?: Ran;
  ruby?: Ran;
  java?: Ran;
  jwks?: unknown;
}

const withoutDate = (s = "") => s.replace(/^Date: .*\r\n/im, "");
const lastJson = (r: Ran | undefined): Record<string, unknown> => {
  try {
    return JSON.parse(r?.stdout.trim().split("\n").pop() ?? "") as Record<string, unknown>;
  } catch {
    return { error: `exit ${r?.code}: ${r?.stdout.slice(0, 300)} ${r?.stderr.slice(0, 600)}` };
  }
};

t.test("interception in a private network namespace", { skip: why }, async (t) => {
  if (!has("nft")) t.comment("nft is missing: the redirection falls back to iptables; the rule-set comparison is skipped");
  const dir = tempDir("oci2gcp-intercept-");
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const gcloud = findGcloud();
  let python = "";
  let thirdParty = "";
  if (gcloud) {
    const info = await run(gcloud, ["info", "--format=value(basic.python_location,installation.sdk_root)"], {
      timeoutMs: 45_000,
      env: clientEnv("127.0.0.1:9", tempDir("oci2gcp-py-info-")),
    });
    const [py, sdk] = info.stdout.trim().split("\t");
    if (py && sdk) {
      python = py;
      thirdParty = path.join(sdk, "lib/third_party");
    }
  }
  fs.writeFileSync(path.join(dir, "inner.mjs"), INNER);
  fs.writeFileSync(
    path.join(dir, "setup.sh"),
    [
      "set -eu",
      "ip link set lo up",
      "ip addr add 169.254.169.254/32 dev lo",
      `cp /etc/hosts ${dir}/hosts`,
      `mount --bind ${dir}/hosts /etc/hosts`,
      `exec "${process.execPath}" ${dir}/inner.mjs`,
      "",
    ].join("\n"),
  );
  const args = {
    ROOT,
    DIR: dir,
    PORT,
    UID: DAEMON_UID,
    PYTHON: python,
    THIRD_PARTY: thirdParty,
    GCLOUD: gcloud ?? "",
    RUBY: rubyMissing ? "" : RUBY,
    JAVA: javaMissing ? "" : java,
    JAVA_CP: JAVA_CLASSPATH.join(path.delimiter),
    AUDIENCE: ID_AUDIENCE,
    OUTER_NET: fs.readlinkSync("/proc/self/ns/net"),
    OUTER_MNT: fs.readlinkSync("/proc/self/ns/mnt"),
  };
  const hostsOutside = fs.readFileSync("/etc/hosts", "utf8");
  const r = await run("unshare", ["--net", "--mount", "--propagation", "private", "--", "sh", path.join(dir, "setup.sh")], {
    env: { ...process.env, INNER_ARGS: JSON.stringify(args) },
    timeoutMs: 280_000,
  });
  t.equal(fs.readFileSync("/etc/hosts", "utf8"), hostsOutside, "the host's /etc/hosts is untouched");
  let o: Inner;
  try {
    o = JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Inner;
  } catch {
    t.fail(`the namespace run printed no result: exit ${r.code}; ${r.stderr.slice(0, 1500)}`);
    return;
  }
  t.notOk(o.error, `no error inside: ${o.error}`);
  t.equal(o.install?.code, 0, `intercept install: ${o.install?.stdout}${o.install?.stderr}`);
  t.match(o.hostsInstalled, /^169\.254\.169\.254 metadata\.google\.internal$/m, "the hosts file names metadata.google.internal");
  t.match(o.ociDirect, /^HTTP\/1\.1 200 /, "OCI's emulated service answers /opc/v2/instance/");
  t.equal(withoutDate(o.ociIntercepted), withoutDate(o.ociDirect), "through the daemon: the same bytes (but the Date line)");
  t.match(o.googleAsRoot, /Metadata-Flavor: Google[\s\S]*\r\n\r\ndemo-project$/i, "Google's paths at the well-known name: the daemon");
  t.match(o.googleAsDaemonUser?.stdout, /^404 /, "the daemon's own uid is not redirected: it reaches OCI's service");
  t.equal(
    o.interceptedAllowed?.stdout.trim(),
    `200 ${DEMO_SERVICE_ACCOUNT}`,
    "an intercepted caller is identified: uid 41001 gets its rule's account",
  );
  t.match(
    o.interceptedRefused?.stdout,
    /^403 [\s\S]*no rule of access\.rules names uid 41009/,
    "and uid 41009, which no rule names, is refused",
  );

  const daemonToken = o.daemonToken;
  t.ok(daemonToken, "the daemon serves a token (its uid reached the emulated OCI through 169.254.169.254)");
  if (python) {
    const py = lastJson(o.python);
    t.notOk(py.error, `Python: ${py.error}`);
    t.equal(py.class, "google.auth.compute_engine.credentials.Credentials", "Python google-auth finds the metadata server");
    t.equal(py.on_gce, true);
    t.equal(py.project, DEMO_PROJECT_ID);
    t.equal(py.token, daemonToken, "Python got the daemon's token");
  } else t.comment("gcloud (and its Python google-auth) is not installed: Python and gcloud skipped");
  const node = lastJson(o.node);
  t.notOk(node.error, `Node: ${node.error}`);
  t.equal(node.token, daemonToken, "google-auth-library got the daemon's token");
  t.equal(node.project, DEMO_PROJECT_ID);
  if (gcloud) {
    t.equal(o.gcloudToken?.code, 0, `gcloud: ${o.gcloudToken?.stderr.slice(0, 600)}`);
    t.equal(o.gcloudToken?.stdout.trim(), daemonToken, "gcloud got the daemon's token");
    t.equal(o.gcloudProject?.stdout.trim(), DEMO_PROJECT_ID);
  }
  const idToken = async (name: string, jwt: unknown) => {
    const jwks = `data:application/json,${encodeURIComponent(JSON.stringify(o.jwks))}`;
    const v = await verifyGoogleJwt(String(jwt ?? ""), jwks).catch((e: Error) => ({ claims: { error: e.message } }));
    t.has(v.claims, { aud: ID_AUDIENCE, email: DEMO_SERVICE_ACCOUNT }, `${name}: an ID token signed by the emulated Google, format=full`);
  };
  if (rubyMissing) t.comment(`${rubyMissing}: Ruby googleauth skipped`);
  else {
    const rb = lastJson(o.ruby);
    t.comment(`Ruby googleauth ${rb.version}`);
    t.notOk(rb.error, `Ruby: ${rb.error}`);
    t.equal(rb.file, RUBY_GOOGLEAUTH, "Debian's googleauth, from vendor_ruby");
    t.equal(rb.on_gce, true, "Ruby: GCECredentials.on_gce? (GET http://169.254.169.254/) finds the daemon");
    t.equal(rb.class, "Google::Auth::GCECredentials", "Ruby: the application default is GCECredentials");
    t.equal(rb.token, daemonToken, "Ruby got the daemon's token");
    t.ok(Number(rb.expires_in) > 0, `Ruby read expires_in (${rb.expires_in})`);
    await idToken("Ruby (target_audience)", rb.id_token);
  }
  if (javaMissing) t.comment(`${javaMissing}: Java google-auth-library skipped`);
  else {
    const jv = lastJson(o.java);
    t.notOk(jv.error, `Java: ${jv.error}`);
    t.equal(jv.jar, JAVA_CLASSPATH[0], "Debian's google-auth-library-oauth2-http");
    t.equal(jv.runningOnComputeEngine, true, "Java: runningOnComputeEngine (GET http://metadata.google.internal/) finds the daemon");
    t.equal(jv.class, "com.google.auth.oauth2.ComputeEngineCredentials", "Java: the application default is ComputeEngineCredentials");
    t.equal(jv.token, daemonToken, "Java got the daemon's token");
    t.ok(Number(jv.expiresInSeconds) > 0, `Java read expires_in (${jv.expiresInSeconds} s left)`);
    t.equal(jv.account, DEMO_SERVICE_ACCOUNT, "Java: getAccount() reads service-accounts/?recursive=true");
    await idToken("Java (idTokenWithAudience)", jv.idToken);
    await idToken("Java (FORMAT_FULL and LICENSES_TRUE: license=TRUE)", jv.idTokenLicenses);
  }
  t.equal(o.remove?.code, 0, `intercept remove: ${o.remove?.stderr}`);
  t.equal(o.hostsAfter, o.hostsBefore, "remove restores the hosts file");
  if (has("nft")) t.equal(o.nftAfter, o.nftBefore, "remove restores the rule set");
  t.equal(withoutDate(o.ociAfter), withoutDate(o.ociDirect), "after remove OCI's service is reached directly again");
});
