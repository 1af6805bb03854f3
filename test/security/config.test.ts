/**
 * Security-relevant configuration: a non-loopback listen address must be
 * confirmed and is then warned about; upstream URLs must be https (plain http
 * only for loopback, and 169.254.169.254 for the instance metadata service); a
 * private key others can read is warned about by name with the chmod that fixes
 * it; and every configuration mistake is a ConfigError naming the setting and
 * the fix, which `oci2gcp serve` prints without a stack trace, exiting 2.
 */

import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { type Emulators, startEmulators } from "../../src/emulator/index.js";
import { distIsFresh, ROOT, run } from "../helpers/clients.js";
import { cleanEnv } from "../helpers/reliability.js";
import { startStack, tempDir } from "../helpers/stack.js";

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
/** The least a config needs; no upstream is contacted while these tests run. */
const BASE = { "identityDomain.url": DOMAIN, "google.audience": AUDIENCE, "server.port": 0 };

const dir = tempDir("oci2gcp-config-sec-");
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function configError(overrides: Record<string, unknown>, file?: string): string {
  try {
    loadConfig({ env: {}, overrides, file });
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  return "(no error)";
}

let emu: Emulators | undefined;
t.teardown(() => emu?.close());

t.test("a non-loopback listen address: refused unless confirmed, then warned about", async (t) => {
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && !i.internal && i.family === "IPv4")?.address;
  const host = external ?? "0.0.0.0";
  t.comment(external ? `binding to this machine's address ${external}` : "no non-loopback address here: binding to 0.0.0.0");
  t.match(
    configError({ ...BASE, "server.host": host }),
    new RegExp(
      `server\\.host is ${host.replace(/\./g, "\\.")}, which is not a loopback address.*--allow-non-loopback / \\$OCI2GCP_ALLOW_NON_LOOPBACK=true`,
      "s",
    ),
  );
  t.match(configError({ ...BASE, "server.host": "0.0.0.0" }), /server\.host is 0\.0\.0\.0, which is not a loopback address/);
  for (const ok of ["127.0.0.1", "127.1.2.3", "localhost", "::1"]) {
    t.doesNotThrow(() => loadConfig({ env: {}, overrides: { ...BASE, "server.host": ok } }), `${ok} is loopback`);
  }

  emu = await startEmulators();
  const d = await startStack({ emu, overrides: { "server.host": host, "server.allowNonLoopback": true } });
  t.teardown(() => d.close());
  const warn = d.logs().find((l) => l.level === 40 && /listening on a non-loopback address/.test(String(l.msg)));
  t.ok(warn, "a warning line");
  t.equal(warn?.host, host, "naming the address");
  t.match(String(warn?.msg), /every host that can reach it can obtain Google tokens/);
  // Traffic stays on this machine: to the address itself, or to loopback when bound to all.
  const port = new URL(d.url).port;
  const target = external ? `http://${external}:${port}` : `http://127.0.0.1:${port}`;
  const res = await fetch(`${target}/computeMetadata/v1/instance/service-accounts/default/token`, {
    headers: { "metadata-flavor": "Google" },
  });
  t.equal(res.status, 200, `served at ${target} (its own address is an allowed Host)`);
  d.secrets.add(((await res.json()) as { access_token: string }).access_token);
  t.same(d.leaks(), []);
});

/** Whether this machine can listen on the IPv6 loopback address. */
function ipv6Loopback(): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(0, "::1", () => server.close(() => resolve(true)));
  });
}

const noIpv6 = (await ipv6Loopback()) ? false : "this machine has no IPv6 loopback address (::1)";
t.test("an IPv6 listen address in URL brackets: the daemon listens on ::1 and answers there", { skip: noIpv6 }, async (t) => {
  emu ??= await startEmulators();
  const d = await startStack({ emu, overrides: { "server.host": "[::1]" } });
  t.teardown(() => d.close());
  t.equal(d.config.server.host, "::1", "the brackets are removed");
  t.match(d.url, /^http:\/\/\[::1\]:\d+$/, "listening on ::1");
  const r = await d.get("/computeMetadata/v1/instance/service-accounts/default/token");
  t.equal(r.status, 200, "a token, asked for at http://[::1]:PORT");
  t.same(d.leaks(), []);
});

t.test("upstream URLs must be https; plain http only for loopback and the metadata address", async (t) => {
  const refused: [string, string][] = [
    ["identityDomain.url", "http://idcs.example.com"],
    ["google.stsUrl", "http://example.com/v1/token"],
    ["google.iamCredentialsUrl", "http://example.com"],
    ["oci.federationUrl", "http://auth.example.com"],
    ["oci.metadataUrl", "http://example.com/opc/v2/"],
    ["google.stsUrl", "http://169.254.169.254/v1/token"],
    [
      "google.impersonationUrl",
      "http://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
    ],
    ["google.stsUrl", "ftp://example.com/token"],
  ];
  for (const [setting, url] of refused) {
    t.match(
      configError({ ...BASE, [setting]: url }),
      new RegExp(`${setting.replace(/\./g, "\\.")} \\(\\$[A-Z0-9_]+\\) must use https`),
      `${setting} = ${url}: refused`,
    );
  }
  t.match(
    configError({ ...BASE, "google.stsUrl": "https://user:secret@sts.example.com/v1/token" }),
    /google\.stsUrl .* must not carry credentials/,
  );
  const accepted: [string, string][] = [
    ["google.stsUrl", "http://127.0.0.1:8080/v1/token"],
    ["google.iamCredentialsUrl", "http://localhost:9000"],
    ["identityDomain.url", "http://127.0.0.1:7000"],
    ["oci.metadataUrl", "http://169.254.169.254/opc/v2/"],
    ["oci.metadataUrl", "http://127.0.0.1:9999/opc/v2/"],
    ["google.stsUrl", "https://sts.googleapis.com/v1/token"],
  ];
  for (const [setting, url] of accepted) {
    t.doesNotThrow(() => loadConfig({ env: {}, overrides: { ...BASE, [setting]: url } }), `${setting} = ${url}: accepted`);
  }
});

t.test("a private key file others can read is warned about, naming the file and the chmod", async (t) => {
  const pem = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
  const keyFile = path.join(dir, "api key.pem");
  fs.writeFileSync(keyFile, pem);
  const ociConfig = path.join(dir, "oci-config");
  fs.writeFileSync(
    ociConfig,
    `[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\nkey_file=${keyFile}\n`,
  );
  emu ??= await startEmulators();
  const daemonWith = (overrides: Record<string, unknown>) => startStack({ emu: emu!, overrides, warm: false });
  const keyWarnings = (d: Awaited<ReturnType<typeof daemonWith>>) =>
    d.logs().filter((l) => l.level === 40 && /private key file/.test(String(l.msg)));

  fs.chmodSync(keyFile, 0o644);
  const d1 = await daemonWith({ "oci.principal": "config-file", "oci.configFile": ociConfig });
  await d1.close();
  const w = keyWarnings(d1);
  t.equal(w.length, 1, "one warning");
  t.equal(w[0]?.file, keyFile, "naming the file");
  t.equal(w[0]?.msg, `private key file ${keyFile} can be read by users other than its owner; fix with: chmod 600 ${keyFile}`);
  t.notMatch(d1.logText(), /BEGIN [A-Z ]*PRIVATE KEY/, "never the key itself");

  fs.chmodSync(keyFile, 0o640);
  const d2 = await daemonWith({ "oci.principal": "config-file", "oci.configFile": ociConfig });
  await d2.close();
  t.equal(keyWarnings(d2).length, 1, "group-readable (0640) is warned about too");

  fs.chmodSync(keyFile, 0o600);
  const d3 = await daemonWith({ "oci.principal": "config-file", "oci.configFile": ociConfig });
  await d3.close();
  t.equal(keyWarnings(d3).length, 0, "0600: no warning");

  // The resource principal's key given as a path.
  const rpKey = path.join(dir, "rp.pem");
  fs.writeFileSync(rpKey, pem, { mode: 0o644 });
  fs.chmodSync(rpKey, 0o644);
  const d4 = await daemonWith({
    "oci.principal": "resource",
    "oci.resourcePrincipal.rpst": "ST$eyJhbGciOiJub25lIn0.eyJleHAiOjB9.x",
    "oci.resourcePrincipal.privateKey": rpKey,
    "oci.resourcePrincipal.region": "us-ashburn-1",
  });
  await d4.close();
  t.match(keyWarnings(d4)[0]?.msg, new RegExp(`chmod 600 ${rpKey}`), "resource principal key path");
});

t.test("a limit of 0 is no limit: with server.maxRequestsPerMinute 0 the daemon answers as usual", async (t) => {
  emu ??= await startEmulators();
  const d = await startStack({ emu, overrides: { "server.maxRequestsPerMinute": 0, "server.upstreamBudgetPerMinute": 0 } });
  t.teardown(() => d.close());
  const health = await fetch(`${d.url}/healthz`);
  t.equal(health.status, 200, "/healthz");
  t.equal(await health.text(), "ok\n");
  // The token twice over (the second and later from the fast path), and a route Fastify answers.
  for (const p of ["/computeMetadata/v1/instance/service-accounts/default/token", "/computeMetadata/v1/project/numeric-project-id"]) {
    const statuses = new Set<number>();
    const flavors = new Set<string | null>();
    for (let i = 0; i < 20; i++) {
      const r = await d.get(p);
      statuses.add(r.status);
      flavors.add(r.headers.get("metadata-flavor"));
    }
    t.same([...statuses], [200], `${p}: 20 answers, all 200`);
    t.same([...flavors], ["Google"], `${p}: the metadata server's headers`);
  }
  t.same(d.leaks(), []);
});

t.test("configuration mistakes: a ConfigError naming the setting and the fix; serve exits 2 without a stack", async (t) => {
  const fresh = distIsFresh();
  if (!fresh.ok) {
    t.fail(`bin/oci2gcp.js runs dist/: ${fresh.why}`);
    return;
  }
  const ociConfig = path.join(dir, "oci-config-missing-key");
  fs.writeFileSync(
    ociConfig,
    `[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\nkey_file=${path.join(dir, "no-such-key.pem")}\n`,
  );
  const ociConfigDirKey = path.join(dir, "oci-config-dir-key");
  fs.writeFileSync(
    ociConfigDirKey,
    `[DEFAULT]\nuser=ocid1.user.oc1..u\nfingerprint=aa:bb\ntenancy=ocid1.tenancy.oc1..t\nregion=us-ashburn-1\nkey_file=${dir}\n`,
  );
  const good = { identityDomain: { url: DOMAIN }, google: { audience: AUDIENCE } };
  const cases: [string, string | object, RegExp][] = [
    [
      "missing identity domain URL",
      { google: { audience: AUDIENCE } },
      /identityDomain\.url is not set: give the IAM identity domain URL with \$OCI_IAM_DOMAIN_URL, --domain-url or "identityDomain\.url"/,
    ],
    [
      "an audience that is not a pool provider",
      { ...good, google: { audience: "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool" } },
      new RegExp(
        /google\.audience \(\$GCP_AUDIENCE\) is not a workload identity pool provider: /.source +
          /expected \/\/iam\.googleapis\.com\/projects\/PROJECT_NUMBER\/locations\/global\/workloadIdentityPools\/POOL\/providers\/PROVIDER/
            .source,
      ),
    ],
    [
      "an audience with a project id instead of the number",
      {
        ...good,
        google: {
          audience: "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider",
        },
      },
      new RegExp(
        /google\.audience \(\$GCP_AUDIENCE\): the project segment "my-project" is not a number; Google wants the project NUMBER there/
          .source + /.*gcloud projects describe my-project --format='value\(projectNumber\)'/.source,
      ),
    ],
    [
      "an impersonation URL that does not parse",
      { ...good, google: { audience: AUDIENCE, impersonationUrl: "iamcredentials/serviceAccounts/sa" } },
      /google\.impersonationUrl \(\$GCP_IMPERSONATION_URL\) is not a URL: "iamcredentials\/serviceAccounts\/sa"; give a full https:\/\/ URL/,
    ],
    [
      "an impersonation URL that is not generateAccessToken",
      {
        ...good,
        google: {
          audience: AUDIENCE,
          impersonationUrl: "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com",
        },
      },
      /google\.impersonationUrl \(\$GCP_IMPERSONATION_URL\) does not look like https:\/\/iamcredentials\.googleapis\.com\/v1\/projects\/-\/serviceAccounts\/EMAIL:generateAccessToken/,
    ],
    [
      "an unknown principal kind",
      { ...good, oci: { principal: "laptop" } },
      /oci\.principal \(config file [^)]+\) is "laptop"; it must be one of: instance, resource, oke-workload, config-file, session/,
    ],
    [
      "a key file that does not exist",
      { ...good, oci: { principal: "config-file", configFile: ociConfig } },
      /key_file of profile DEFAULT: cannot read \S+no-such-key\.pem \(ENOENT\); check the path and that the daemon's user may read it/,
    ],
    [
      "a key file that is a directory",
      { ...good, oci: { principal: "config-file", configFile: ociConfigDirKey } },
      /key_file of profile DEFAULT: cannot read .* \(not a regular file\)/,
    ],
    [
      "an unknown setting in the file",
      { ...good, google: { audience: AUDIENCE, audiance: "x" } },
      /unknown setting "google\.audiance" in \S+; known settings are listed in the README's configuration reference/,
    ],
    [
      "a list given as a string in the file",
      { ...good, google: { audience: AUDIENCE, serviceAccounts: "sa@p.iam.gserviceaccount.com" } },
      /google\.serviceAccounts \(config file \S+\) must be a JSON array of strings, got "sa@p\.iam\S+"; write \["sa@p\.iam\S+"\]/,
    ],
    ["a file that is not JSON", '{ "identityDomain": { "url": "https://x" }, }', /config file \S+ is not valid JSON: /],
    ["a file that is a JSON array", "[1, 2]", /config file \S+ is not valid JSON: the top level must be a JSON object/],
    [
      "a config file that does not exist",
      "(missing)",
      /cannot read config file \S+: ENOENT; check the path given with --config or \$OCI2GCP_CONFIG/,
    ],
  ];
  const env = cleanEnv();
  // The CLI runs of every case at once (each is a node start-up, mostly waiting).
  const runs = cases.map(([, content], i) => {
    const file = path.join(dir, `config-${i + 1}.json`);
    if (content !== "(missing)") fs.writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content, null, 2));
    return { file, cli: run(process.execPath, [path.join(ROOT, "bin/oci2gcp.js"), "serve", "--config", file], { env, timeoutMs: 30_000 }) };
  });
  for (const [i, [what, , says]] of cases.entries()) {
    const { file, cli } = runs[i]!;
    t.test(what, async (t) => {
      const msg = configError({}, file);
      t.match(msg, /^invalid configuration:\n {2}- /, "a ConfigError listing problems");
      t.match(msg, says, "naming the setting and the fix");
      const r = await cli;
      t.equal(r.code, 2, "serve exits 2");
      t.match(r.stderr, says, "with the message on stderr");
      t.match(r.stderr, /^oci2gcp: invalid configuration:/, "and nothing before it");
      t.notMatch(r.stderr, /^\s+at /m, "no stack trace");
      t.notMatch(r.stderr, /ConfigError|Error:/, "no error class or 'Error:' prefix");
      t.equal(r.stdout, "", "nothing on stdout");
    });
  }
  // Problems are listed together, each naming its setting.
  const several = configError({ "google.audience": "nope", "server.port": 70000, "oci.principal": "instance" });
  t.match(several, /identityDomain\.url is not set/);
  t.match(several, /google\.audience .* is not a workload identity pool provider/);
  t.match(several, /server\.port must be at most 65535/);
});
