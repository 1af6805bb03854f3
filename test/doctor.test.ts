import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { type Config, loadConfig } from "../src/config/config.js";
import { type DoctorReport, renderReport, runDoctor } from "../src/doctor/doctor.js";
import { DEMO_SERVICE_ACCOUNT, daemonSettingsFor, type Emulators, type EmulatorsOptions, startEmulators } from "../src/emulator/index.js";
import type { SigningIdentity } from "../src/oci/principal.js";
import { withOtherGoogle } from "./helpers/stack.js";

// One set of emulators for the file: doctor changes nothing in them, and each set costs
// a dozen RSA keys and certificates. A provider configured otherwise is a second Google
// emulator in front of the same OCI.
let sharedEmu: Promise<Emulators> | undefined;
t.teardown(async () => (await sharedEmu)?.close());
const shared = () => (sharedEmu ??= startEmulators());

async function setup(
  t: Tap.Test,
  emuOpts: Pick<EmulatorsOptions, "google"> = {},
  overrides: (e: Emulators) => Record<string, unknown> = () => ({}),
): Promise<{ emu: Emulators; config: Config }> {
  let emu = await shared();
  if (emuOpts.google) {
    const other = await withOtherGoogle(emu, emuOpts.google);
    t.teardown(() => other.close());
    emu = other;
  }
  const config = loadConfig({
    env: {},
    overrides: {
      ...daemonSettingsFor(emu),
      "upstream.timeoutMs": 2000,
      ...overrides(emu),
    },
  });
  return { emu, config };
}

function check(r: DoctorReport, name: string) {
  return r.checks.find((c) => c.name === name || c.name.startsWith(`${name} `));
}

declare namespace Tap {
  type Test = import("tap").Test;
}

t.test("a healthy chain: every hop OK, claims shown, never the token", async (t) => {
  const { config } = await setup(t);
  const r = await runDoctor(config);
  t.ok(r.ok);
  t.same(
    r.checks.map((c) => c.status),
    ["ok", "ok", "ok", "ok", "ok", "ok", "ok"],
  );
  t.equal(r.claims?.sub_type, "instance");
  const text = renderReport(r);
  t.match(text, /google\.subject=assertion\.sub/);
  t.notMatch(text, /eyJ[A-Za-z0-9_-]+\.eyJ/, "no JWT in the report");
  t.notMatch(text, /ya29\./, "no access token in the report");
});

t.test("the instance metadata service cannot be reached", async (t) => {
  const { config } = await setup(t, {}, () => ({ "oci.metadataUrl": "http://127.0.0.1:9/opc/v2/" }));
  const r = await runDoctor(config);
  t.notOk(r.ok);
  t.equal(check(r, "OCI principal")?.status, "fail");
  t.match(check(r, "OCI principal")?.cause, /metadata service is not reachable/);
  t.equal(check(r, "STS")?.status, "skipped");
});

t.test("the identity domain cannot be reached", async (t) => {
  const { config } = await setup(t, {}, () => ({ "identityDomain.url": "http://127.0.0.1:9" }));
  const r = await runDoctor(config);
  t.match(check(r, "identity domain")?.cause, /cannot be reached/);
  t.match(check(r, "identity domain")?.fix, /OCI_IAM_DOMAIN_URL/);
});

t.test("the identity domain refuses the signature", async (t) => {
  const { emu, config } = await setup(t);
  const st = emu.oci.mintSessionToken();
  const wrongKey = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
  const principal = {
    token: async (): Promise<SigningIdentity> => ({
      value: `ST$${st.token}`,
      keyId: `ST$${st.token}`,
      privateKey: wrongKey,
      expiresAt: Date.now() + 600_000,
      obtainedAt: Date.now(),
    }),
  };
  const r = await runDoctor(config, { principal });
  const c = check(r, "identity domain")!;
  t.equal(c.status, "fail");
  t.match(c.said, /HTTP 401/);
  t.match(c.cause, /refused the request signature/);
});

t.test("STS refuses the audience", async (t) => {
  const { config } = await setup(t, {}, () => ({
    "google.audience": "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/other-pool/providers/other",
  }));
  const r = await runDoctor(config);
  const c = check(r, "STS")!;
  t.equal(c.status, "fail");
  t.match(c.said, /invalid_target/);
  t.match(c.cause, /refused the audience/);
});

t.test("the provider does not accept the token's issuer", async (t) => {
  const { config } = await setup(t, { google: { issuer: "https://idcs-other.identity.oraclecloud.com/" } });
  const r = await runDoctor(config);
  const c = check(r, "STS")!;
  t.match(c.cause, /does not accept the token's issuer/);
  t.match(c.fix, /--issuer-uri=https:\/\/identity\.oraclecloud\.com\//);
});

t.test("the provider's allowed audiences miss the domain", async (t) => {
  const { config } = await setup(t, { google: { allowedAudiences: ["https://idcs-other.identity.oraclecloud.com"] } });
  const r = await runDoctor(config);
  const c = check(r, "STS")!;
  t.match(c.cause, /allowed audiences/);
  t.match(c.fix, /--allowed-audiences=/);
});

t.test("the provider has other keys than the domain signs with", async (t) => {
  const emu0 = await startEmulators();
  t.teardown(() => emu0.close());
  // Another cloud's JWKS: the provider cannot verify the domain's signature with it.
  const { config } = await setup(t, { google: { jwksUrl: emu0.oci.domainJwksUrl } });
  const r = await runDoctor(config);
  const c = check(r, "STS")!;
  t.equal(c.status, "fail");
  t.match(c.cause, /cannot verify the token's signature/);
  t.match(c.fix, /--jwk-json-path/);
});

t.test("the attribute condition rejects the token", async (t) => {
  const { config } = await setup(t, { google: { attributeCondition: (c) => c.sub_type === "resource" } });
  const r = await runDoctor(config);
  t.match(check(r, "STS")?.cause, /attribute condition/);
});

t.test("impersonation denied", async (t) => {
  const { config } = await setup(t, {}, () => ({ "google.serviceAccounts": ["not-granted@demo-project.iam.gserviceaccount.com"] }));
  const r = await runDoctor(config);
  const c = check(r, "impersonation")!;
  t.equal(c.status, "fail");
  t.match(c.said, /PERMISSION_DENIED/);
  t.match(
    c.fix,
    new RegExp(
      /add-iam-policy-binding not-granted@demo-project\.iam\.gserviceaccount\.com --role=roles\/iam\.workloadIdentityUser /.source +
        /--member=principal:\/\/iam\.googleapis\.com\/projects\/123456789012\/locations\/global\//.source +
        /workloadIdentityPools\/oci-pool\/subject\/ocid1\.instance/.source,
    ),
  );
  t.notOk(r.ok);
});

t.test("the doctor command: exit codes and output", async (t) => {
  const { emu, config } = await setup(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "doctor-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "c.json");
  const cfg = {
    oci: { metadataUrl: config.oci.metadataUrl, federationUrl: config.oci.federationUrl },
    identityDomain: { url: config.identityDomain.url },
    google: {
      audience: config.google.audience,
      stsUrl: config.google.stsUrl,
      iamCredentialsUrl: config.google.iamCredentialsUrl,
      serviceAccounts: [DEMO_SERVICE_ACCOUNT],
    },
  };
  fs.writeFileSync(file, JSON.stringify(cfg));
  const badFile = path.join(dir, "bad.json");
  fs.writeFileSync(
    badFile,
    JSON.stringify({ ...cfg, google: { ...cfg.google, serviceAccounts: ["nope@demo-project.iam.gserviceaccount.com"] } }),
  );
  const bin = path.resolve("bin/oci2gcp.js");
  // The emulators run in this process: spawnSync would block them, so run the commands asynchronously
  // (and side by side: they are independent).
  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args], { env: { PATH: process.env.PATH } }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
      );
    });
  const [ok, bad, badCfg] = await Promise.all([run(["doctor", "--config", file]), run(["doctor", "--config", badFile]), run(["doctor"])]);
  t.equal(ok.code, 0, "exit 0 on a working chain");
  t.match(ok.out, /The chain works end to end/);
  t.equal(bad.code, 1, "exit 1 when a hop fails");
  t.match(bad.out, /\[FAIL\] impersonation/);
  t.equal(badCfg.code, 2, "exit 2 on bad configuration");
  t.match(badCfg.err, /identityDomain\.url is not set/);
  void emu;
});
