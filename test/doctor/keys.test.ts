/**
 * doctor's key check against the shape Oracle publishes: one key whose kid is
 * always "SIGNING_KEY", its certificate chain in x5c and the certificate's
 * thumbprints. A provider holding an old JWKS has the same kid, so only the
 * keys themselves (or the thumbprints) tell it apart.
 */
import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { loadConfig } from "../../src/config/config.js";
import { type DoctorReport, renderReport, runDoctor } from "../../src/doctor/doctor.js";
import { type Jwks, jwksFrom } from "../../src/doctor/keys.js";
import { daemonSettingsFor, type Emulators, type EmulatorsOptions, startEmulators } from "../../src/emulator/index.js";
import { withOtherGoogle } from "../helpers/stack.js";

async function emulators(t: Tap.Test, o: EmulatorsOptions = {}): Promise<Emulators> {
  const emu = await startEmulators(o);
  t.teardown(() => emu.close());
  return emu;
}

// Two sets of emulators with the default options for the file (each set costs a dozen RSA keys
// and certificates; doctor changes nothing in them): the domain under test, and another whose
// keys stand for the old ones, with the same kid.
const started: Promise<Emulators>[] = [];
t.teardown(async () => {
  for (const e of started) await (await e).close();
});
let sharedEmu: Promise<Emulators> | undefined;
let otherEmu: Promise<Emulators> | undefined;
const shared = () => (sharedEmu ??= started[started.push(startEmulators()) - 1]!);
const otherDomain = () => (otherEmu ??= started[started.push(startEmulators()) - 1]!);

declare namespace Tap {
  type Test = import("tap").Test;
}

function configFor(emu: Emulators) {
  return loadConfig({ env: {}, overrides: { ...daemonSettingsFor(emu), "upstream.timeoutMs": 5000 } });
}

async function jwksOf(emu: Emulators): Promise<Jwks> {
  return (await (await fetch(emu.oci.domainJwksUrl)).json()) as Jwks;
}

const b64url = (b: Buffer) => b.toString("base64url");
const keys = (r: DoctorReport) => r.checks.find((c) => c.name === "identity domain keys")!;

/** The thumbprints alone, as a provider's keys would be compared where they hold no key material. */
function thumbprintsOnly(j: Jwks): Jwks {
  return { keys: j.keys.map((k) => ({ kid: k.kid, x5t: k.x5t, "x5t#S256": k["x5t#S256"] })) };
}

t.test("the emulated identity domain publishes its keys and signs its JWTs as Oracle's does", async (t) => {
  const emu = await shared();
  const jwks = await jwksOf(emu);
  t.equal(jwks.keys.length, 1);
  const k = jwks.keys[0]! as Record<string, unknown>;
  t.same(Object.keys(k), ["kty", "x5t#S256", "e", "x5t", "kid", "x5c", "key_ops", "alg", "n"], "Oracle's fields, in Oracle's order");
  t.equal(k.kid, "SIGNING_KEY");
  t.equal(k.alg, "RS256");
  const [leafB64, caB64] = k.x5c as string[];
  const leaf = new crypto.X509Certificate(Buffer.from(leafB64!, "base64"));
  const ca = new crypto.X509Certificate(Buffer.from(caB64!, "base64"));
  t.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), "x5c: the signing certificate, then its CA");
  t.equal(k.x5t, b64url(crypto.createHash("sha1").update(leaf.raw).digest()), "x5t is the SHA-1 thumbprint of x5c[0]");
  t.equal(k["x5t#S256"], b64url(crypto.createHash("sha256").update(leaf.raw).digest()), "x5t#S256 its SHA-256 thumbprint");
  const jwkKey = crypto.createPublicKey({ key: { kty: "RSA", n: k.n as string, e: k.e as string }, format: "jwk" });
  t.ok(jwkKey.equals(leaf.publicKey), "n and e are the certificate's key");
  t.equal(emu.oci.domainSigningCertPem, leaf.toString(), "domainSigningCertPem is x5c[0]");

  // A domain JWT, through the daemon's own hops.
  const r = await runDoctor(configFor(emu), { providerJwks: jwks });
  t.equal(keys(r).status, "ok");
  t.ok(r.ok);
  t.notMatch(renderReport(r), /eyJ[A-Za-z0-9_-]+\.eyJ/, "no JWT in the report");
});

t.test("the domain JWT's header names the signing certificate by its thumbprints", async (t) => {
  const emu = await shared();
  const { Hops, ONE_ATTEMPT } = await import("../../src/hops.js");
  const hops = new Hops(configFor(emu), ONE_ATTEMPT);
  const token = await hops.identityDomain(hops.principal()).token();
  const header = JSON.parse(Buffer.from(token.value.split(".")[0]!, "base64url").toString("utf8"));
  const k = (await jwksOf(emu)).keys[0]! as Record<string, unknown>;
  t.same(header, { "x5t#S256": k["x5t#S256"], x5t: k.x5t, kid: "SIGNING_KEY", alg: "RS256" });
});

t.test("a provider with the domain's current keys passes, and the certificate's expiry is printed", async (t) => {
  const emu = await shared();
  const current = await jwksOf(emu);
  const config = configFor(emu);

  const r = await runDoctor(config, { providerJwks: current });
  const c = keys(r);
  t.equal(c.status, "ok");
  t.ok(c.details.some((d) => /the provider's keys verify the domain's token/.test(d)));
  const validTo = new Date(new crypto.X509Certificate(emu.oci.domainSigningCertPem).validTo).toISOString();
  const text = renderReport(r);
  t.match(text, `the domain's signing certificate "idcs-emulator"`);
  t.match(text, `valid until ${validTo}`, "the signing certificate's expiry");

  const byThumbprint = keys(await runDoctor(config, { providerJwks: thumbprintsOnly(current) }));
  t.equal(byThumbprint.status, "ok", "thumbprints alone: compared with the certificate the token names");
  t.ok(byThumbprint.details.some((d) => /holds the thumbprint of the domain's signing certificate/.test(d)));

  const without = keys(await runDoctor(config));
  t.equal(without.status, "ok", "without the provider's keys: the domain's own keys verify its token");
  t.ok(
    without.details.some((d) => /--provider-jwks/.test(d)),
    "says how to give doctor the provider's keys",
  );
  t.ok(without.details.some((d) => d.includes(`valid until ${validTo}`)));
});

t.test("a provider still holding an old JWKS (same kid) fails", async (t) => {
  // The keys of another domain stand for the old ones: the kid is SIGNING_KEY in both.
  const before = await otherDomain();
  const old = await jwksOf(before);
  const emu = await withOtherGoogle(await shared(), { jwksUrl: before.oci.domainJwksUrl });
  t.teardown(() => emu.close());
  t.equal((await jwksOf(emu)).keys[0]!.kid, old.keys[0]!.kid, "the key ids are the same");
  const config = configFor(emu);

  const r = await runDoctor(config, { providerJwks: old });
  const c = keys(r);
  t.equal(c.status, "fail");
  t.match(c.cause, /old JWKS/);
  t.match(c.fix, /SigningCert\/jwk.*--jwk-json-path=jwks\.json/);
  t.ok(c.details.some((d) => /none of the provider's 1 key\(s\) verifies the domain's token/.test(d)));
  t.ok(
    c.details.some((d) => /^the provider's signing certificate .* valid until \d{4}-/.test(d)),
    "the expiry of the provider's certificate too",
  );
  t.equal(r.checks.find((x) => x.name === "STS")?.status, "fail", "STS agrees");
  t.notOk(r.ok);

  const byThumbprint = keys(await runDoctor(config, { providerJwks: thumbprintsOnly(old) }));
  t.equal(byThumbprint.status, "fail", "thumbprints alone tell the old certificate apart");
  t.match(byThumbprint.cause, /old JWKS/);
});

t.test("a signing certificate near its end is a warning, naming the day", async (t) => {
  const emu = await emulators(t, { oci: { domainSigningCertSeconds: 10 * 86400 } });
  const r = await runDoctor(configFor(emu));
  const c = keys(r);
  t.equal(c.status, "warn");
  t.match(c.cause, /expires within 30 days/);
  t.ok(c.details.some((d) => /valid until .* \(in (9|10) days\)/.test(d)));
  t.ok(r.ok, "a warning does not fail the chain");
});

t.test("jwksFrom: a JWKS, or a provider as gcloud describes it", async (t) => {
  const jwks = { keys: [{ kty: "RSA", kid: "SIGNING_KEY", n: "x", e: "AQAB" }] };
  t.same(jwksFrom(jwks), jwks);
  t.same(
    jwksFrom({ name: "projects/1/locations/global/workloadIdentityPools/p/providers/q", oidc: { jwksJson: JSON.stringify(jwks) } }),
    jwks,
  );
  t.throws(() => jwksFrom({ oidc: { issuerUri: "https://identity.oraclecloud.com/" } }), /no oidc\.jwksJson/);
  t.throws(() => jwksFrom({ oidc: { jwksJson: "{" } }), /not JSON/);
  t.throws(() => jwksFrom({ keys: "none" }), /not a JWKS/);
});

t.test("oci2gcp doctor --provider-jwks FILE", async (t) => {
  const before = await otherDomain();
  const old = await jwksOf(before);
  const emu = await shared();
  const current = await jwksOf(emu);
  const config = configFor(emu);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "doctor-keys-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const cfg = path.join(dir, "c.json");
  fs.writeFileSync(
    cfg,
    JSON.stringify({
      oci: { metadataUrl: config.oci.metadataUrl, federationUrl: config.oci.federationUrl },
      identityDomain: { url: config.identityDomain.url },
      google: { audience: config.google.audience, stsUrl: config.google.stsUrl, iamCredentialsUrl: config.google.iamCredentialsUrl },
    }),
  );
  const write = (name: string, v: unknown) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, typeof v === "string" ? v : JSON.stringify(v));
    return f;
  };
  // The emulators run in this process: run the command asynchronously (the three runs side by side).
  const run = (args: string[]) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        process.execPath,
        [path.resolve("bin/oci2gcp.js"), "doctor", "--config", cfg, ...args],
        { env: { PATH: process.env.PATH } },
        (e, out, err) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
      );
    });

  const described = write("provider.json", { name: "projects/1/providers/q", oidc: { jwksJson: JSON.stringify(current) } });
  const [good, stale, bad] = await Promise.all([
    run(["--provider-jwks", described]),
    run(["--provider-jwks", write("old.json", old)]),
    run(["--provider-jwks", write("bad.json", "not json")]),
  ]);
  t.equal(good.code, 0, good.err);
  t.match(good.out, /\[OK {2}\] identity domain keys[\s\S]*the provider's keys verify the domain's token/);
  t.match(good.out, /valid until \d{4}-\d\d-\d\dT/);

  t.equal(stale.code, 1, "exit 1: the provider's keys are old");
  t.match(stale.out, /\[FAIL\] identity domain keys[\s\S]*old JWKS/);

  t.equal(bad.code, 2, "exit 2 on a file that is not a JWKS");
  t.match(bad.err, /--provider-jwks .*bad\.json/);
});
