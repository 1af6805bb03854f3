import path from "node:path";
import t from "tap";
import { AccountsDatabase } from "../../src/access/accounts.js";
import { type AccessSettings, describeGrant, type Grant, Policy, validateAccess } from "../../src/access/policy.js";
import { ConfigError } from "../../src/config/config.js";

const ETL = "etl@p.iam.gserviceaccount.com";
const WEB = "web@p.iam.gserviceaccount.com";
const SHARED = "shared@p.iam.gserviceaccount.com";
const CONFIGURED = [WEB, ETL, SHARED];

const PASSWD = `root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:100::/home/bob:/bin/bash
carol:x:1003:1003::/home/carol:/bin/bash
dave:x:1004:1004::/home/dave:/bin/bash
`;
const GROUP = `root:x:0:
users:x:100:
alice:x:1001:
carol:x:1003:
dave:x:1004:
etl:x:2000:alice,carol
`;
const db = AccountsDatabase.parse(PASSWD, GROUP);

function compile(settings: AccessSettings): Policy {
  const { policy, problems } = Policy.compile(settings, CONFIGURED, db);
  if (!policy) throw new Error(problems.join("\n"));
  return policy;
}

/** A grant in plain data, for comparing. */
function plain(g: Grant | undefined) {
  if (!g) return undefined;
  const { allows: _allows, ...rest } = g;
  return rest;
}

t.test("the first rule naming the caller or one of its groups applies", async (t) => {
  const policy = compile({
    rules: [
      { users: ["alice", 23001], serviceAccounts: [ETL] },
      { groups: ["etl"], serviceAccounts: [SHARED, ETL] },
      { users: [1002], serviceAccounts: [WEB, SHARED], subjectToken: true, name: "web" },
      { users: ["carol"], serviceAccounts: [WEB] },
      { groups: [1004], serviceAccounts: [WEB] },
    ],
  });
  t.equal(policy.isOpen, false);
  t.same(plain(policy.forUid(1001)), { ruleIndex: 0, defaultAccount: ETL, accounts: [ETL], subjectToken: false }, "alice by name");
  t.same(plain(policy.forUid(23001)), { ruleIndex: 0, defaultAccount: ETL, accounts: [ETL], subjectToken: false }, "a uid with no user");
  t.same(
    plain(policy.forUid(1003)),
    { ruleIndex: 1, defaultAccount: SHARED, accounts: [SHARED, ETL], subjectToken: false },
    "carol through etl, before the rule that names her",
  );
  t.same(
    plain(policy.forUid(1002)),
    { ruleIndex: 2, ruleName: "web", defaultAccount: WEB, accounts: [WEB, SHARED], subjectToken: true },
    "1002: its default is the rule's first account",
  );
  t.equal(policy.forUid(1004)?.ruleIndex, 4, "dave through his primary group, given as a gid");
  t.equal(policy.forUid(0), undefined, "root is named by no rule");
  t.equal(policy.forUid(23002), undefined, "nor is an unknown uid");
  const web = policy.forUid(1002)!;
  t.ok(web.allows(WEB));
  t.ok(web.allows(SHARED));
  t.notOk(web.allows(ETL), "an account outside the rule");
  t.notOk(web.allows("default"), "names are resolved by the caller, not here");
  t.equal(policy.forUid(1002), web, "a rule's grant is one object");
  t.ok(Object.isFrozen(web) && Object.isFrozen(web.accounts));
});

t.test("groups: primary and supplementary, by name or gid", async (t) => {
  const policy = compile({
    rules: [
      { groups: ["users"], serviceAccounts: [WEB] },
      { groups: [2000], serviceAccounts: [ETL] },
    ],
  });
  t.equal(policy.forUid(1002)?.defaultAccount, WEB, "bob's primary group is users");
  t.equal(policy.forUid(1001)?.defaultAccount, ETL, "alice is listed in etl");
  t.equal(policy.forUid(1003)?.defaultAccount, ETL, "carol is listed in etl");
  t.equal(policy.forUid(1004), undefined, "dave is in neither");
  t.equal(policy.forUid(23001), undefined, "a uid with no passwd entry is in no group");
});

t.test("no rules: everything, for everyone, and said in one sentence", async (t) => {
  for (const policy of [Policy.open(CONFIGURED), compile({ rules: [] })]) {
    t.equal(policy.isOpen, true);
    const g = policy.forUid(23001)!;
    t.same(plain(g), { defaultAccount: WEB, accounts: CONFIGURED, subjectToken: true });
    t.equal(policy.forUid(0), g);
    t.ok(g.allows(SHARED));
    t.equal(policy.forSocket(), g, "the Unix socket too");
    t.equal(describeGrant(g), "no access rules");
    t.equal(policy.describe(), "no access rules: every local user may obtain every configured account's tokens and the subject token");
  }
  const federated = Policy.open([]).forUid(1)!;
  t.equal(federated.defaultAccount, undefined, "no accounts configured: default is the federated identity");
  t.same(federated.accounts, []);
  t.equal(federated.subjectToken, true);
});

t.test("the Unix socket's rule, by index or by name", async (t) => {
  const rules = [
    { users: [1001], serviceAccounts: [ETL] },
    { users: [1002], serviceAccounts: [WEB], name: "web" },
  ];
  t.equal(compile({ rules, socketRule: 0 }).forSocket()?.defaultAccount, ETL);
  t.equal(compile({ rules, socketRule: "web" }).forSocket()?.defaultAccount, WEB);
  const byIndex = compile({ rules, socketRule: 1 });
  t.equal(byIndex.forSocket(), byIndex.forUid(1002), "by index: the same grant as the rule's users get");
  const named = compile({ rules, socketRule: "web" });
  t.equal(named.forSocket(), named.forUid(1002), "the same grant as the rule's users get");
  t.equal(compile({ rules }).forSocket(), undefined, "rules and no socketRule: the socket serves nobody");
  t.equal(
    named.describe({ unixSocket: true }),
    "2 access rules: each local user may obtain only the accounts of the first rule naming it or one of its groups " +
      '(the subject token only where that rule has subjectToken), and every other caller is refused; the Unix socket serves rule 1 ("web")',
  );
  t.match(compile({ rules }).describe({ unixSocket: true }), /; the Unix socket serves nobody \(access\.socketRule is not set\)$/);
  t.notMatch(compile({ rules }).describe(), /socket/, "no word of a socket the daemon does not have");
  t.match(compile({ rules: [rules[0]!] }).describe(), /^1 access rule: /);
  t.equal(describeGrant(compile({ rules }).forUid(1001)!), "rule 0");
});

/** The problems of one `access` value, checked against CONFIGURED. */
function problemsOf(access: { rules?: unknown; socketRule?: unknown }, configured = CONFIGURED): string[] {
  return validateAccess(access, configured).problems;
}

t.test("validation: every problem names the setting and the fix", async (t) => {
  const cases: [string, { rules?: unknown; socketRule?: unknown }, RegExp[]][] = [
    ["rules not a list", { rules: { users: [1] } }, [/^access\.rules must be a list of rules like \{ "users"/]],
    ["a rule not an object", { rules: ["alice"] }, [/^access\.rules\[0\] must be an object like /]],
    [
      "a misspelt key",
      { rules: [{ users: [1], serviceAccount: [WEB], serviceAccounts: [WEB] }] },
      [/^access\.rules\[0\]: unknown setting "serviceAccount"; a rule has users, groups, serviceAccounts, subjectToken, name$/],
    ],
    ["nobody", { rules: [{ serviceAccounts: [WEB] }] }, [/^access\.rules\[0\] names no user and no group: add "users" .* or "groups"/]],
    ["empty lists", { rules: [{ users: [], groups: [], serviceAccounts: [WEB] }] }, [/^access\.rules\[0\] names no user and no group/]],
    [
      "users not a list",
      { rules: [{ users: "alice", serviceAccounts: [WEB] }] },
      [/^access\.rules\[0\]\.users must be a list of user names and numeric uids/],
    ],
    [
      "groups not a list",
      { rules: [{ groups: 2000, serviceAccounts: [WEB] }] },
      [/^access\.rules\[0\]\.groups must be a list of group names and numeric gids/],
    ],
    [
      "ids of the wrong kind",
      { rules: [{ users: [-1, 1.5, "", " bob", null, 4294967295], groups: [{}], serviceAccounts: [WEB] }] },
      [
        /^access\.rules\[0\]\.users\[0\] is -1: give a whole number from 0 to 4294967294$/,
        /^access\.rules\[0\]\.users\[1\] is 1\.5: give a whole number/,
        /^access\.rules\[0\]\.users\[2\] is "": give a name without spaces or a number/,
        /^access\.rules\[0\]\.users\[3\] is " bob": give a name without spaces/,
        /^access\.rules\[0\]\.users\[4\] is null: give a name/,
        /^access\.rules\[0\]\.users\[5\] is 4294967295: give a whole number/,
        /^access\.rules\[0\]\.groups\[0\] is \{\}: give a name without spaces or a number, e\.g\. \["etl", 2000\]$/,
      ],
    ],
    [
      "no accounts",
      { rules: [{ users: [1] }] },
      [/^access\.rules\[0\]\.serviceAccounts must list at least one service account \(the first is the caller's default\)/],
    ],
    ["empty accounts", { rules: [{ users: [1], serviceAccounts: [] }] }, [/^access\.rules\[0\]\.serviceAccounts must list at least one/]],
    [
      "an account not a string",
      { rules: [{ users: [1], serviceAccounts: [7] }] },
      [/^access\.rules\[0\]\.serviceAccounts\[0\] must be a service account email, got 7$/],
    ],
    [
      "an account not configured",
      { rules: [{ users: [1], serviceAccounts: ["other@p.iam.gserviceaccount.com"] }] },
      [
        /^access\.rules\[0\]\.serviceAccounts: "other@p\.iam\.gserviceaccount\.com" is not in google\.serviceAccounts; add it there or remove it/,
      ],
    ],
    [
      "an account twice",
      { rules: [{ users: [1], serviceAccounts: [WEB, WEB] }] },
      [/^access\.rules\[0\]\.serviceAccounts lists web@p\.iam\.gserviceaccount\.com twice/],
    ],
    [
      "subjectToken not a boolean",
      { rules: [{ users: [1], serviceAccounts: [WEB], subjectToken: "yes" }] },
      [/^access\.rules\[0\]\.subjectToken must be true or false, got "yes"$/],
    ],
    [
      "an empty name",
      { rules: [{ users: [1], serviceAccounts: [WEB], name: "" }] },
      [/^access\.rules\[0\]\.name must be a non-empty string/],
    ],
    [
      "a name twice",
      {
        rules: [
          { users: [1], serviceAccounts: [WEB], name: "a" },
          { users: [2], serviceAccounts: [WEB], name: "a" },
        ],
      },
      [/^access\.rules\[1\]\.name "a" is also the name of access\.rules\[0\]; give each rule its own name$/],
    ],
    ["socketRule without rules", { socketRule: 0 }, [/^access\.socketRule is set but access\.rules is empty; remove access\.socketRule/]],
    [
      "socketRule out of range",
      { rules: [{ users: [1], serviceAccounts: [WEB] }], socketRule: 1 },
      [/^access\.socketRule is 1, but access\.rules has rules 0 to 0; give one of those indexes or a rule's name$/],
    ],
    [
      "socketRule not a whole number",
      { rules: [{ users: [1], serviceAccounts: [WEB] }], socketRule: 0.5 },
      [/^access\.socketRule is 0\.5, but/],
    ],
    [
      "socketRule names no rule",
      { rules: [{ users: [1], serviceAccounts: [WEB], name: "web" }], socketRule: "wbe" },
      [/^access\.socketRule: no rule is named "wbe"; give a rule's "name" or its index$/],
    ],
    [
      "socketRule an index in quotes",
      { rules: [{ users: [1], serviceAccounts: [WEB] }], socketRule: "0" },
      [/^access\.socketRule: no rule is named "0"; .*; to give an index write 0 without quotes$/],
    ],
    [
      "socketRule of another type",
      { rules: [{ users: [1], serviceAccounts: [WEB] }], socketRule: true },
      [/^access\.socketRule must be a rule's index .* got true$/],
    ],
  ];
  for (const [what, access, expected] of cases) {
    const problems = problemsOf(access);
    t.equal(problems.length, expected.length, `${what}: ${JSON.stringify(problems)}`);
    expected.forEach((re, i) => {
      t.match(problems[i], re, what);
    });
  }
  t.match(
    problemsOf({ rules: [{ users: [1], serviceAccounts: [WEB] }] }, []),
    [/is not in google\.serviceAccounts; access rules need service accounts configured there$/],
    "with no accounts configured, says so",
  );
});

t.test("validation: good settings pass, normalised", async (t) => {
  const { settings, problems } = validateAccess(
    {
      rules: [
        { users: ["alice", 1001], groups: ["etl"], serviceAccounts: [ETL] },
        { users: [1002], serviceAccounts: [WEB, SHARED], subjectToken: true, name: "web" },
      ],
      socketRule: "web",
    },
    CONFIGURED,
  );
  t.same(problems, []);
  t.same(settings, {
    rules: [
      { users: ["alice", 1001], groups: ["etl"], serviceAccounts: [ETL], subjectToken: false },
      { users: [1002], groups: [], serviceAccounts: [WEB, SHARED], subjectToken: true, name: "web" },
    ],
    socketRule: "web",
  });
  t.same(validateAccess({}, CONFIGURED), { settings: { rules: [] }, problems: [] }, "no access settings: no rules");
});

t.test("names the databases do not know", async (t) => {
  const { policy, problems } = Policy.compile(
    {
      rules: [
        { users: ["alice", "mallory"], serviceAccounts: [ETL] },
        { groups: ["etl", "ops"], users: ["1001"], serviceAccounts: [WEB] },
      ],
    },
    CONFIGURED,
    AccountsDatabase.parse(PASSWD, GROUP, { passwd: "/etc/passwd", group: "/etc/group" }),
  );
  t.equal(policy, undefined);
  t.same(problems, [
    'access.rules[0].users: no user named "mallory" in /etc/passwd; fix the name, create the user, or give its uid as a number (no quotes)',
    'access.rules[1].users: no user named "1001" in /etc/passwd; fix the name, create the user, or give its uid as a number (no quotes)',
    'access.rules[1].groups: no group named "ops" in /etc/group; fix the name, create the group, or give its gid as a number (no quotes)',
  ]);
});

t.test("from the config file's settings", async (t) => {
  const dir = t.testdir({ passwd: PASSWD, group: GROUP, "not-a-file": {} });
  const files = { passwd: path.join(dir, "passwd"), group: path.join(dir, "group") };
  const policy = await Policy.fromConfig({ rules: [{ groups: ["etl"], serviceAccounts: [ETL] }] }, CONFIGURED, files);
  t.equal(policy.forUid(1003)?.defaultAccount, ETL, "names from the given files");
  const unreadable = { passwd: path.join(dir, "not-a-file"), group: path.join(dir, "not-a-file") };
  t.equal((await Policy.fromConfig(undefined, CONFIGURED, unreadable)).isOpen, true, "no rules: the files are not even read");
  t.equal((await Policy.fromConfig({ rules: [] }, CONFIGURED, unreadable)).isOpen, true);
  const invalid = await Policy.fromConfig({ rules: [{ users: ["nobody-at-all"] }], socketRule: 3 }, CONFIGURED, files).catch((e) => e);
  t.ok(invalid instanceof ConfigError, "a ConfigError");
  t.same(
    (invalid as ConfigError).problems.map((p) => p.split(" ")[0]),
    ["access.rules[0].serviceAccounts", "access.socketRule"],
    "every problem at once (names are looked up once the settings are valid)",
  );
  const unknown = await Policy.fromConfig({ rules: [{ users: ["nobody-at-all"], serviceAccounts: [ETL] }] }, CONFIGURED, files).catch(
    (e) => e,
  );
  t.match(unknown, { name: "ConfigError", problems: [/^access\.rules\[0\]\.users: no user named "nobody-at-all" in .*passwd/] });
});
