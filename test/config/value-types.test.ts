/**
 * Values have the documented types. The config file is JSON: a list is a JSON
 * array, a number a JSON number, a boolean true or false; a value of another
 * JSON type is refused with the fix, not converted. The environment and flags
 * are text, read as before ("a,b", "8181", "yes"). A listen address may be an
 * IPv6 address in URL brackets.
 */
import t from "tap";
import { ConfigError, isLoopbackHost, type RawConfigSources, resolveConfig } from "../../src/config/config.js";
import { normaliseListenHost } from "../../src/config/host.js";

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
const FILE = "/etc/oci2gcp/config.json";

/** A config file with the least a config needs, plus `extra` merged in per group. */
function fileWith(extra: Record<string, Record<string, unknown>>): RawConfigSources["file"] {
  const content: Record<string, Record<string, unknown>> = { identityDomain: { url: DOMAIN }, google: { audience: AUDIENCE } };
  for (const [group, settings] of Object.entries(extra)) content[group] = { ...content[group], ...settings };
  return { name: FILE, content };
}

function problems(src: RawConfigSources): string[] {
  try {
    resolveConfig(src);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

t.test("a list in the config file must be a JSON array of strings", async (t) => {
  t.same(problems({ file: fileWith({ google: { serviceAccounts: "a@b.iam.gserviceaccount.com" } }) }), [
    `google.serviceAccounts (config file ${FILE}) must be a JSON array of strings, got "a@b.iam.gserviceaccount.com"; ` +
      'write ["a@b.iam.gserviceaccount.com"] (comma-separated lists are for the environment)',
  ]);
  t.match(
    problems({ file: fileWith({ google: { scopes: "https://a, https://b" } }) }),
    [/google\.scopes .* write \["https:\/\/a","https:\/\/b"\]/],
    "the fix lists the items",
  );
  t.same(problems({ file: fileWith({ google: { scopes: ["https://a", 7] } }) }), [
    `google.scopes (config file ${FILE}) must be a JSON array of strings, got ["https://a",7]`,
  ]);
  const c = resolveConfig({
    file: fileWith({ google: { serviceAccounts: ["a@b.iam.gserviceaccount.com", "c@d.iam.gserviceaccount.com"] } }),
  });
  t.same(c.google.serviceAccounts, ["a@b.iam.gserviceaccount.com", "c@d.iam.gserviceaccount.com"], "an array is read");
});

t.test("numbers and booleans in the config file are JSON numbers and booleans", async (t) => {
  t.same(problems({ file: fileWith({ server: { port: "8181" } }) }), [
    `server.port (config file ${FILE}) must be a JSON number, got "8181"; write 8181 without quotes`,
  ]);
  t.same(problems({ file: fileWith({ server: { port: "eighty" } }) }), [
    `server.port (config file ${FILE}) must be a JSON number, got "eighty"; write a whole number >= 0 without quotes`,
  ]);
  t.same(problems({ file: fileWith({ server: { allowNonLoopback: "yes" } }) }), [
    `server.allowNonLoopback (config file ${FILE}) must be true or false (a JSON boolean), got "yes"; write true without quotes`,
  ]);
  t.same(problems({ file: fileWith({ server: { allowNonLoopback: 1 } }) }), [
    `server.allowNonLoopback (config file ${FILE}) must be true or false (a JSON boolean), got 1; write true or false without quotes`,
  ]);
  t.match(
    problems({ file: fileWith({ server: { port: -1 } }) }),
    [/server\.port .* must be a whole number >= 0, got -1/],
    "a number still in range",
  );
  const c = resolveConfig({ file: fileWith({ server: { port: 9000, allowNonLoopback: true, host: "0.0.0.0" } }) });
  t.equal(c.server.port, 9000);
  t.equal(c.server.allowNonLoopback, true);
});

t.test("a group given a value instead of an object of settings is refused", async (t) => {
  t.same(
    problems({ file: { name: FILE, content: { identityDomain: { url: DOMAIN }, google: { audience: AUDIENCE }, server: "127.0.0.1" } } }),
    [`"server" in ${FILE} must be a JSON object of settings, got "127.0.0.1"`],
  );
});

t.test("the environment and flags keep their text forms", async (t) => {
  const c = resolveConfig({
    env: {
      OCI_IAM_DOMAIN_URL: DOMAIN,
      GCP_AUDIENCE: AUDIENCE,
      OCI2GCP_SERVICE_ACCOUNTS: "a@b.iam.gserviceaccount.com, c@d.iam.gserviceaccount.com",
      OCI2GCP_PORT: "9000",
      OCI2GCP_ALLOW_NON_LOOPBACK: "yes",
    },
  });
  t.same(c.google.serviceAccounts, ["a@b.iam.gserviceaccount.com", "c@d.iam.gserviceaccount.com"], "comma separated");
  t.equal(c.server.port, 9000);
  t.equal(c.server.allowNonLoopback, true);
  const f = resolveConfig({
    file: fileWith({}),
    flags: { "--service-account": ["a@b.iam.gserviceaccount.com", "c@d.iam.gserviceaccount.com"], "--port": "9001" },
  });
  t.same(f.google.serviceAccounts, ["a@b.iam.gserviceaccount.com", "c@d.iam.gserviceaccount.com"], "repeated flags");
  t.equal(f.server.port, 9001);
});

t.test("listen addresses: IPv6 with or without brackets, no port, nothing a lookup would fail on", async (t) => {
  t.equal(normaliseListenHost("[::1]"), "::1");
  t.equal(normaliseListenHost("::1"), "::1");
  t.equal(normaliseListenHost("127.0.0.1"), "127.0.0.1");
  t.equal(normaliseListenHost("localhost"), "localhost");
  t.equal(normaliseListenHost("node-1.example.internal"), "node-1.example.internal");
  for (const bad of ["[127.0.0.1]", "[::1", "::1]", "127.0.0.1:8181", "localhost:8181", "[::1]:8181", "local host", "-x", ""]) {
    t.equal(normaliseListenHost(bad), undefined, `${JSON.stringify(bad)} refused`);
  }
  for (const h of ["[::1]", "::1"]) {
    const c = resolveConfig({ env: { OCI_IAM_DOMAIN_URL: DOMAIN, GCP_AUDIENCE: AUDIENCE, OCI2GCP_HOST: h } });
    t.equal(c.server.host, "::1", `$OCI2GCP_HOST=${h}: ::1`);
    t.ok(isLoopbackHost(c.server.host), "loopback: no confirmation needed");
  }
  t.equal(resolveConfig({ file: fileWith({ server: { host: "[::1]" } }) }).server.host, "::1", "from the file too");
  t.same(problems({ file: fileWith({ server: { host: "127.0.0.1:8181" } }) }), [
    'server.host ($OCI2GCP_HOST) must be an IP address or a host name without a port, got "127.0.0.1:8181"; ' +
      "e.g. 127.0.0.1, ::1 or [::1] (the port is server.port)",
  ]);
  t.match(
    problems({ file: fileWith({ server: { host: "[fe80::1]" } }) }),
    [/^server\.host is fe80::1, which is not a loopback address/],
    "a bracketed non-loopback address is named without its brackets",
  );
});
