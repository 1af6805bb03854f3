/**
 * The `access` settings in the config file: read whole (a JSON list, not a
 * group of settings), checked against google.serviceAccounts with every
 * problem reported at once, and absent from the environment and the flags.
 */
import t from "tap";
import { ConfigError, resolveConfig } from "../../src/config/config.js";

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
const ETL = "etl@p.iam.gserviceaccount.com";
const WEB = "web@p.iam.gserviceaccount.com";

function file(content: Record<string, unknown>) {
  return {
    name: "/etc/oci2gcp.json",
    content: { identityDomain: { url: DOMAIN }, google: { audience: AUDIENCE, serviceAccounts: [ETL, WEB] }, ...content },
  };
}

function problemsOf(f: () => unknown): string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

t.test("rules and socketRule are read whole from the config file", async (t) => {
  const rules = [
    { users: ["alice", 1001], groups: ["etl"], serviceAccounts: [ETL], name: "etl" },
    { users: [1002], serviceAccounts: [WEB, ETL], subjectToken: true },
  ];
  const c = resolveConfig({ file: file({ access: { rules, socketRule: "etl" }, server: { socketGroup: "oci2gcp" } }), env: {} });
  t.same(c.access.rules, rules);
  t.equal(c.access.socketRule, "etl");
  t.equal(c.server.socketGroup, "oci2gcp");
});

t.test("without rules there is nothing to check", async (t) => {
  const c = resolveConfig({ file: file({}), env: {} });
  t.equal(c.access.rules, undefined);
  t.equal(c.access.socketRule, undefined);
});

t.test("an account a rule names must be configured; every problem is listed", async (t) => {
  const problems = problemsOf(() =>
    resolveConfig({
      file: file({
        access: {
          rules: [{ users: [1001], serviceAccounts: ["other@p.iam.gserviceaccount.com"] }, { serviceAccounts: [ETL] }],
          socketRule: 5,
        },
      }),
      env: {},
    }),
  );
  t.match(
    problems.join("\n"),
    /access\.rules\[0\]\.serviceAccounts: "other@p\.iam\.gserviceaccount\.com" is not in google\.serviceAccounts/,
  );
  t.match(problems.join("\n"), /access\.rules\[1\] names no user and no group/);
  t.match(problems.join("\n"), /access\.socketRule is 5/);
});

t.test("rules written as an object, not a list, are refused as such", async (t) => {
  const problems = problemsOf(() => resolveConfig({ file: file({ access: { rules: { users: [1], serviceAccounts: [ETL] } } }), env: {} }));
  t.same(problems.length, 1);
  t.match(problems[0], /access\.rules must be a list of rules/);
});

t.test("the environment cannot set rules: an OCI2GCP_ variable of that name means nothing", async (t) => {
  const c = resolveConfig({ file: file({}), env: { OCI2GCP_ACCESS_RULES: "[]" } });
  t.equal(c.access.rules, undefined);
});

t.test("a socket group must be a name or a gid", async (t) => {
  t.match(
    problemsOf(() => resolveConfig({ file: file({ server: { socketGroup: "a b" } }), env: {} })).join("\n"),
    /server\.socketGroup must be/,
  );
  t.equal(resolveConfig({ file: file({ server: { socketGroup: "1200" } }), env: {} }).server.socketGroup, "1200");
});
