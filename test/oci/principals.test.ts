import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import t, { type Test } from "tap";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import type { Emulators } from "../../src/emulator/index.js";
import { configFilePrincipal } from "../../src/oci/principals/config-file.js";
import type { HopError } from "../../src/upstream/hop-error.js";
import {
  calls,
  claimsOf,
  resetEmulators,
  type Stack,
  type StackOptions,
  startStack,
  startTestEmulators,
  tempDir,
  verifyDomainJwt,
} from "../helpers/stack.js";

/**
 * Every principal kind, end to end over loopback HTTP: the daemon builds the
 * oci-common provider from its settings, signs the identity-domain exchange with
 * it, and serves a domain JWT that verifies against the emulated domain's JWKS.
 */

const SUBJECT = "/oci2gcp/v1/subject-token";

// One set of emulators for all the daemons of this file (each test has its own daemon).
let shared: Emulators | undefined;
t.teardown(() => shared?.close());

async function stack(t: Test, o: StackOptions): Promise<Stack> {
  shared ??= await startTestEmulators();
  resetEmulators(shared);
  const s = await startStack({ emu: shared, ...o });
  t.teardown(() => s.close());
  return s;
}

function dir(t: Test): string {
  const d = tempDir();
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function write(file: string, content: string): string {
  fs.writeFileSync(file, content, { mode: 0o600 });
  return file;
}

/** Fetches the subject token, verifies it against the JWKS, and returns its claims. */
async function subjectClaims(t: Test, s: Stack): Promise<Record<string, unknown>> {
  const r = await s.get(SUBJECT);
  t.equal(r.status, 200, `subject token served${r.status === 200 ? "" : `: ${r.text}`}`);
  const body = JSON.parse(r.text) as { access_token: string; expires_in: number };
  const claims = await verifyDomainJwt(s.emu, body.access_token);
  t.pass("the domain JWT verifies (RS256, kid) against /admin/v1/SigningCert/jwk");
  t.equal(claims.iss, "https://identity.oraclecloud.com/");
  t.same(claims.aud, [s.emu.oci.domainUrl, "https://identity.oraclecloud.com/"]);
  t.equal(claims.tenant, s.emu.oci.tenancy);
  t.ok(body.expires_in > 3000 && body.expires_in <= 3600, `expires_in ${body.expires_in}`);
  // The text form carries the same token, from the cache.
  const text = await s.get(`${SUBJECT}?format=text`);
  t.equal(text.text, body.access_token, "format=text serves the same cached token");
  t.same(s.leaks(), [], "no secret in the logs");
  return claims;
}

t.test("instance principal (metadataUrl and federationUrl overrides)", async (t) => {
  const s = await stack(t, {
    configure: (emu) => ({
      "oci.principal": "instance",
      "oci.metadataUrl": emu.oci.metadataBaseUrl,
      "oci.federationUrl": emu.oci.federationEndpoint,
    }),
  });
  const c = await subjectClaims(t, s);
  t.equal(c.sub_type, "instance");
  t.equal(c.sub, s.emu.oci.instanceId);
  t.equal(c.ipst_instance, s.emu.oci.instanceId);
  t.equal(c.ipst_compartment, s.emu.oci.compartmentId);
  const n = await calls(s.emu);
  t.equal(n["oci.federation"], 1, "one federation call");
  t.equal(n["oci.identityDomain.token"], 1, "one exchange");
  t.ok(n["oci.metadata"]! >= 4, "the certificates and region came from the metadata service");
});

for (const form of ["values", "files"] as const) {
  t.test(`resource principal v2.2, RPST and key as ${form}`, async (t) => {
    let minted: { rpst: string; region: string } | undefined;
    const d = dir(t);
    const s = await stack(t, {
      configure: (emu) => {
        const rp = emu.oci.mintResourcePrincipal();
        minted = rp;
        return {
          "oci.principal": "resource",
          // A file as OCI Functions writes it, with a trailing newline.
          "oci.resourcePrincipal.rpst": form === "values" ? rp.rpst : write(path.join(d, "rpst"), `${rp.rpst}\n`),
          "oci.resourcePrincipal.privateKey": form === "values" ? rp.privateKeyPem : write(path.join(d, "key.pem"), rp.privateKeyPem),
          "oci.resourcePrincipal.region": rp.region,
        };
      },
    });
    t.equal(s.config.oci.resourcePrincipal.region, "us-ashburn-1");
    const c = await subjectClaims(t, s);
    const rpst = claimsOf(minted!.rpst);
    t.equal(c.sub_type, "resource");
    t.equal(c.res_type, "fnfunc");
    t.equal(c.sub, rpst.res_id, "the subject is the resource of the RPST");
    t.equal(c.res_compartment, s.emu.oci.compartmentId);
    const n = await calls(s.emu);
    t.equal(n["oci.federation"], 0, "no federation call: the RPST is the session token");
    t.equal(n["oci.identityDomain.token"], 1);
  });
}

t.test("resource principal files are re-read at renewal (rotation)", async (t) => {
  const d = dir(t);
  const rpstFile = path.join(d, "rpst");
  const keyFile = path.join(d, "key.pem");
  let first: { rpst: string } | undefined;
  const s = await stack(t, {
    overrides: { "cache.subjectRenewBeforeSeconds": 2, "cache.subjectMinRemainingSeconds": 1 },
    configure: (emu) => {
      const saved = emu.oci.settings.domainTokenSeconds;
      emu.oci.settings.domainTokenSeconds = 4;
      t.teardown(() => {
        emu.oci.settings.domainTokenSeconds = saved;
      });
      const rp = emu.oci.mintResourcePrincipal({ lifetimeSeconds: 6 });
      first = rp;
      return {
        "oci.principal": "resource",
        "oci.resourcePrincipal.rpst": write(rpstFile, rp.rpst),
        "oci.resourcePrincipal.privateKey": write(keyFile, rp.privateKeyPem),
        "oci.resourcePrincipal.region": rp.region,
      };
    },
  });
  const r1 = await s.get(SUBJECT);
  t.equal(r1.status, 200);
  t.equal(claimsOf(JSON.parse(r1.text).access_token).sub, claimsOf(first!.rpst).res_id, "signed with the first RPST");
  // The platform rotates the token and its key, as OCI Functions does.
  const next = s.emu.oci.mintResourcePrincipal();
  write(`${rpstFile}.new`, next.rpst);
  write(`${keyFile}.new`, next.privateKeyPem);
  fs.renameSync(`${keyFile}.new`, keyFile);
  fs.renameSync(`${rpstFile}.new`, rpstFile);
  const failures: string[] = [];
  let sub: unknown;
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const r = await s.get(SUBJECT);
    if (r.status !== 200) failures.push(r.text);
    else sub = claimsOf(JSON.parse(r.text).access_token).sub;
    if (sub === claimsOf(next.rpst).res_id) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  t.equal(sub, claimsOf(next.rpst).res_id, "after renewal the exchange is signed with the rotated RPST and key");
  t.same(failures, [], "no request failed across the rotation");
});

t.test("resource principal: region as a short code", async (t) => {
  const s = await stack(t, {
    configure: (emu) => {
      const rp = emu.oci.mintResourcePrincipal();
      return {
        "oci.principal": "resource",
        "oci.resourcePrincipal.rpst": rp.rpst,
        "oci.resourcePrincipal.privateKey": rp.privateKeyPem,
        "oci.resourcePrincipal.region": "iad",
      };
    },
  });
  t.equal((await subjectClaims(t, s)).sub_type, "resource");
});

t.test("resource principal: encrypted key with a passphrase file", async (t) => {
  const d = dir(t);
  const s = await stack(t, {
    configure: (emu) => {
      const rp = emu.oci.mintResourcePrincipal();
      const enc = crypto
        .createPrivateKey(rp.privateKeyPem)
        .export({ format: "pem", type: "pkcs8", cipher: "aes-256-cbc", passphrase: "correct horse" })
        .toString();
      return {
        "oci.principal": "resource",
        "oci.resourcePrincipal.rpst": write(path.join(d, "rpst"), rp.rpst),
        "oci.resourcePrincipal.privateKey": write(path.join(d, "key.pem"), enc),
        "oci.resourcePrincipal.passphrase": write(path.join(d, "pass"), "correct horse"),
        "oci.resourcePrincipal.region": rp.region,
      };
    },
  });
  t.equal((await subjectClaims(t, s)).sub_type, "resource");
});

t.test("OKE workload identity through the proxymux", async (t) => {
  const d = dir(t);
  const s = await stack(t, {
    configure: async (emu) => {
      const p = await emu.oci.startOkeProxymux();
      return {
        "oci.principal": "oke-workload",
        "oci.oke.serviceHost": p.host,
        "oci.oke.proxymuxPort": p.port,
        "oci.oke.caCertPath": write(path.join(d, "ca.crt"), p.caCertPem),
        "oci.oke.tokenPath": write(path.join(d, "token"), p.serviceAccountToken),
      };
    },
  });
  const c = await subjectClaims(t, s);
  t.equal(c.sub_type, "resource");
  t.equal(c.res_type, "workload");
  t.equal(c.namespace, "default");
  t.equal(c.service_account, "oci2gcp");
  t.match(c.cluster_id, /^ocid1\.cluster\./);
  const n = await calls(s.emu);
  t.equal(n["oci.oke.proxymux"], 1, "one proxymux call");
  t.equal(n["oci.federation"], 0);
  t.equal(n["oci.identityDomain.token"], 1);
  t.equal(process.env.KUBERNETES_SERVICE_HOST, undefined, "the daemon did not leave its settings in process.env");
});

t.test("config-file principal (API key user)", async (t) => {
  const d = dir(t);
  let user = "";
  const s = await stack(t, {
    configure: (emu) => {
      const u = emu.oci.createApiKeyUser();
      user = u.user;
      const key = write(path.join(d, "key.pem"), u.privateKeyPem);
      const cfg = write(
        path.join(d, "config"),
        `[DEFAULT]\nregion=eu-frankfurt-1\n\n[work]\nuser=${u.user}\nfingerprint=${u.fingerprint}\ntenancy=${u.tenancy}\nregion=us-ashburn-1\nkey_file=${key}\n`,
      );
      return { "oci.principal": "config-file", "oci.configFile": cfg, "oci.profile": "work" };
    },
  });
  const c = await subjectClaims(t, s);
  t.equal(c.sub_type, "user");
  t.equal(c.sub, user);
  t.equal(c.auth_via, "api_key");
  t.equal((await calls(s.emu))["oci.federation"], 0);
});

t.test("session token profile (security_token_file with a trailing newline)", async (t) => {
  const d = dir(t);
  let token = "";
  const s = await stack(t, {
    configure: (emu) => {
      const st = emu.oci.mintSessionToken();
      token = st.token;
      const key = write(path.join(d, "key.pem"), st.privateKeyPem);
      const tok = write(path.join(d, "token"), `${st.token}\n`);
      const cfg = write(
        path.join(d, "config"),
        `[DEFAULT]\nfingerprint=00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\ntenancy=${emu.oci.tenancy}\nregion=us-ashburn-1\nkey_file=${key}\nsecurity_token_file=${tok}\n`,
      );
      return { "oci.principal": "session", "oci.configFile": cfg, "oci.profile": "DEFAULT" };
    },
  });
  const c = await subjectClaims(t, s);
  t.equal(c.sub_type, "user");
  t.equal(c.sub, claimsOf(token).sub);
  t.equal(c.auth_via, "session_token");
  const state = s.daemon.chain.principal.state();
  t.equal(state.token?.expiresAt, (claimsOf(token).exp as number) * 1000, "the OCI session is cached until the security token's exp");
});

for (const flaw of ["no security_token_file", "security_token_file missing"] as const) {
  t.test(
    `session profile that loses its ${flaw === "no security_token_file" ? "security_token_file line" : "token file"} after start: the 503 names the hop and what is wrong`,
    async (t) => {
      const d = dir(t);
      let cfg = "";
      let key = "";
      let tok = "";
      let tenancy = "";
      const s = await stack(t, {
        configure: (emu) => {
          const st = emu.oci.mintSessionToken();
          tenancy = emu.oci.tenancy;
          key = write(path.join(d, "key.pem"), st.privateKeyPem);
          tok = write(path.join(d, "token"), st.token);
          cfg = write(
            path.join(d, "config"),
            `[DEFAULT]\nfingerprint=00:11\ntenancy=${tenancy}\nregion=us-ashburn-1\nkey_file=${key}\nsecurity_token_file=${tok}\n`,
          );
          return { "oci.principal": "session", "oci.configFile": cfg };
        },
      });
      // Valid at start (config validation passed); then the profile changes under the daemon.
      if (flaw === "no security_token_file") {
        // A user line too: oci-common would then sign with the key id "ST$undefined".
        write(
          cfg,
          `[DEFAULT]\nuser=ocid1.user.oc1..someone\nfingerprint=00:11\ntenancy=${tenancy}\nregion=us-ashburn-1\nkey_file=${key}\n`,
        );
      } else {
        fs.rmSync(tok);
      }
      const r = await s.get(SUBJECT);
      t.equal(r.status, 503);
      t.ok(r.headers.get("retry-after"), "Retry-After");
      const body = JSON.parse(r.text) as { error: string; error_description: string; hop: string };
      t.equal(body.hop, "OCI principal");
      t.match(body.error_description, /the OCI principal hop failed/);
      if (flaw === "no security_token_file") t.match(body.error_description, /profile DEFAULT in .* has no security_token_file/);
      else t.match(body.error_description, /security_token_file .*token.* cannot be read \(ENOENT\)/);
      t.match(body.error_description, /oci session authenticate/);
      t.equal((await calls(s.emu))["oci.identityDomain.token"], 0, "nothing reached the identity domain");
    },
  );
}

t.test(
  "session profile checked with oci2gcp's own config parser: ~ expanded, DEFAULT inherited, oci-common's words otherwise",
  async (t) => {
    shared ??= await startTestEmulators();
    const d = dir(t);
    const st = shared.oci.mintSessionToken();
    const key = write(path.join(d, "key.pem"), st.privateKeyPem);
    const tok = write(path.join(d, "token"), st.token);
    const cfg = write(
      path.join(d, "config"),
      `[DEFAULT]\nfingerprint=00:11\ntenancy=${shared.oci.tenancy}\nregion=us-ashburn-1\nkey_file=${key}\n` +
        "# the token file, relative to the home directory\n[work]\nsecurity_token_file = ~/token\n",
    );
    // Both oci2gcp's parser and oci-common's expand ~ from $HOME.
    const home = process.env.HOME;
    process.env.HOME = d;
    t.teardown(() => {
      process.env.HOME = home;
    });
    const failure = (file: string, profile: string) =>
      configFilePrincipal("session", file, profile, 5000)
        .token()
        .then(
          () => undefined,
          (e: unknown) => e as HopError,
        );

    const id = await configFilePrincipal("session", cfg, "work", 5000).token();
    t.equal(id.keyId, `ST$${st.token}`, "the token file named with ~ in a profile that inherits its key from DEFAULT");

    const noProfile = await failure(cfg, "nope");
    t.equal(noProfile?.code, "failed");
    t.match(
      noProfile?.message,
      /^OCI principal: session token profile nope in .*: No profile named nope exists/,
      "a missing profile: oci-common's words",
    );
    const noFile = await failure(path.join(d, "absent"), "work");
    t.match(
      noFile?.message,
      /^OCI principal: session token profile work in .*absent: File does not exists at .*absent/,
      "a missing file: likewise",
    );

    fs.rmSync(tok);
    const gone = await failure(cfg, "work");
    t.equal(gone?.code, "credential_unusable");
    t.match(gone?.message, `the security_token_file ${tok} of profile work in ${cfg} cannot be read (ENOENT)`, "names the expanded path");
  },
);

t.test("config errors name the setting when material is missing", async (t) => {
  const d = dir(t);
  const base = {
    "identityDomain.url": "https://idcs-0123.identity.oraclecloud.com",
    "google.audience": "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/p/providers/q",
  };
  const problems = (overrides: Record<string, unknown>): string[] => {
    try {
      loadConfig({ env: {}, overrides: { ...base, ...overrides } });
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };
  const expectProblem = (name: string, overrides: Record<string, unknown>, re: RegExp) => {
    const p = problems(overrides);
    t.ok(
      p.some((x) => re.test(x)),
      `${name}: ${re} in ${JSON.stringify(p)}`,
    );
  };
  const missing = path.join(d, "missing");
  const present = write(path.join(d, "present"), "x");

  t.same(problems({ "oci.principal": "instance" }), [], "instance with defaults is valid");
  expectProblem("instance: no metadata URL", { "oci.principal": "instance", "oci.metadataUrl": "" }, /^oci\.metadataUrl .*not a URL/);
  expectProblem(
    "instance: plain http federation",
    { "oci.principal": "instance", "oci.federationUrl": "http://auth.example.com" },
    /^oci\.federationUrl .*https/,
  );

  const rp = {
    "oci.principal": "resource",
    "oci.resourcePrincipal.rpst": "x.y.z",
    "oci.resourcePrincipal.privateKey": "PEM",
    "oci.resourcePrincipal.region": "iad",
  };
  t.same(problems(rp), [], "complete resource principal is valid");
  expectProblem(
    "resource: no RPST",
    { ...rp, "oci.resourcePrincipal.rpst": undefined },
    /OCI_RESOURCE_PRINCIPAL_RPST.*oci\.resourcePrincipal\.rpst/,
  );
  expectProblem(
    "resource: no key",
    { ...rp, "oci.resourcePrincipal.privateKey": undefined },
    /OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM.*oci\.resourcePrincipal\.privateKey/,
  );
  expectProblem(
    "resource: no region",
    { ...rp, "oci.resourcePrincipal.region": undefined },
    /OCI_RESOURCE_PRINCIPAL_REGION.*oci\.resourcePrincipal\.region/,
  );
  expectProblem(
    "resource: RPST file missing",
    { ...rp, "oci.resourcePrincipal.rpst": missing },
    /^oci\.resourcePrincipal\.rpst: cannot read .*ENOENT/,
  );
  expectProblem(
    "resource: key file missing",
    { ...rp, "oci.resourcePrincipal.privateKey": missing },
    /^oci\.resourcePrincipal\.privateKey: cannot read/,
  );
  t.equal(problems({ "oci.principal": "resource" }).length, 3, "all three missing are reported at once");

  const oke = {
    "oci.principal": "oke-workload",
    "oci.oke.serviceHost": "10.0.0.1",
    "oci.oke.caCertPath": present,
    "oci.oke.tokenPath": present,
  };
  t.same(problems(oke), [], "complete OKE settings are valid");
  expectProblem("oke: no host", { ...oke, "oci.oke.serviceHost": undefined }, /KUBERNETES_SERVICE_HOST.*oci\.oke\.serviceHost/);
  expectProblem("oke: no CA", { ...oke, "oci.oke.caCertPath": missing }, /^oci\.oke\.caCertPath: cannot read/);
  expectProblem("oke: no token", { ...oke, "oci.oke.tokenPath": missing }, /^oci\.oke\.tokenPath: cannot read/);

  const profileFile = (body: string) => write(path.join(d, `config-${crypto.randomUUID()}`), body);
  const apiKeyProfile = profileFile(`[DEFAULT]\nuser=u\nfingerprint=f\ntenancy=t\nregion=us-ashburn-1\nkey_file=${present}\n`);
  const sessionProfile = profileFile(
    `[DEFAULT]\nfingerprint=f\ntenancy=t\nregion=us-ashburn-1\nkey_file=${present}\nsecurity_token_file=${present}\n`,
  );
  t.same(problems({ "oci.principal": "config-file", "oci.configFile": apiKeyProfile }), [], "config-file with a complete profile is valid");
  t.same(problems({ "oci.principal": "session", "oci.configFile": sessionProfile }), [], "session with a complete profile is valid");
  for (const kind of ["config-file", "session"]) {
    expectProblem(
      `${kind}: no config file`,
      { "oci.principal": kind, "oci.configFile": missing },
      /^oci\.configFile: cannot read .*ENOENT/,
    );
    expectProblem(
      `${kind}: no such profile`,
      { "oci.principal": kind, "oci.configFile": sessionProfile, "oci.profile": "work" },
      /^oci\.profile: there is no \[work\] profile/,
    );
    expectProblem(
      `${kind}: key file missing`,
      { "oci.principal": kind, "oci.configFile": profileFile(`[DEFAULT]\nsecurity_token_file=${present}\nkey_file=${missing}\n`) },
      /key_file of profile DEFAULT: cannot read .*ENOENT/,
    );
  }
  expectProblem(
    "session: no security_token_file",
    { "oci.principal": "session", "oci.configFile": apiKeyProfile },
    /profile in .* has no security_token_file/,
  );
  t.throws(() => loadConfig({ env: {}, overrides: { ...base, "oci.principal": "session", "oci.configFile": missing } }), ConfigError);
  const envProblems = (env: Record<string, string>): string[] => {
    try {
      loadConfig({ env: { OCI_IAM_DOMAIN_URL: base["identityDomain.url"], GCP_AUDIENCE: base["google.audience"], ...env } });
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
    return [];
  };
  t.match(envProblems({ OCI2GCP_PRINCIPAL: "laptop" }), [
    /^oci\.principal \(\$OCI2GCP_PRINCIPAL\) is "laptop"; it must be one of: instance, resource/,
  ]);
  // Nothing of the resource principal in the environment at all (not just one value).
  t.equal(
    envProblems({ OCI2GCP_PRINCIPAL: "resource" }).length,
    3,
    "resource principal from an empty environment: three problems, no crash",
  );
  t.same(
    envProblems({
      OCI2GCP_PRINCIPAL: "resource",
      OCI_RESOURCE_PRINCIPAL_RPST: "a.b.c",
      OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM: "PEM",
      OCI_RESOURCE_PRINCIPAL_REGION: "iad",
    }),
    [],
  );
  t.match(envProblems({ OCI2GCP_PRINCIPAL: "oke-workload", OCI2GCP_OKE_CA_CERT: present, OCI2GCP_OKE_SA_TOKEN: present }), [
    /KUBERNETES_SERVICE_HOST/,
  ]);
});
