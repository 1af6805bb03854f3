import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { AccountsDatabase, isId, socketGid, UnknownAccountError } from "../../src/access/accounts.js";
import { Policy } from "../../src/access/policy.js";

const PASSWD = `root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1001:1001:Alice:/home/alice:/bin/bash
bob:x:1002:100:Bob:/home/bob:/bin/bash
toor:x:0:0:another name for root:/root:/bin/sh
broken:x:notanumber:1::/:/bin/false
+nisuser::::::
carol:x:1003:1003::/home/carol:/bin/sh
`;

const GROUP = `root:x:0:
users:x:100:
alice:x:1001:
etl:x:2000:alice,carol
web:x:2001: bob , toor
carol:x:1003:
empty:x:2002:
bad:x:-5:alice
`;

t.test("names and ids", async (t) => {
  const db = AccountsDatabase.parse(PASSWD, GROUP);
  t.equal(db.uidOf("alice"), 1001);
  t.equal(db.uidOf("toor"), 0);
  t.equal(db.uidOf("broken"), undefined, "a malformed line is skipped");
  t.equal(db.uidOf("+nisuser"), undefined, "NIS lines are skipped");
  t.equal(db.uidOf("nobody-here"), undefined);
  t.equal(db.gidOf("etl"), 2000);
  t.equal(db.gidOf("bad"), undefined, "a negative gid is not a gid");
  t.equal(db.userName(0), "root", "the first entry of a shared uid, as getpwuid() answers");
  t.equal(db.userName(1002), "bob");
  t.equal(db.userName(23001), undefined);
});

t.test("a uid's groups: its primary group and the groups listing its name", async (t) => {
  const db = AccountsDatabase.parse(PASSWD, GROUP);
  t.same([...db.groupsOf(1001)].sort(), [1001, 2000], "alice: primary 1001, member of etl");
  t.same([...db.groupsOf(1002)].sort(), [100, 2001], "bob: primary users, member of web (spaces around names ignored)");
  t.same([...db.groupsOf(1003)].sort(), [1003, 2000]);
  t.same([...db.groupsOf(0)], [0], "root's groups are root's, not those listing its other name toor");
  t.same([...db.groupsOf(23001)], [], "a uid without a passwd entry has no groups");
});

t.test("a rule's users and groups resolved, unknown names named with the setting", async (t) => {
  const db = AccountsDatabase.parse(PASSWD, GROUP, { passwd: "/x/passwd", group: "/x/group" });
  t.equal(db.resolveUser("alice", "access.rules[0].users"), 1001);
  t.equal(db.resolveUser(23001, "access.rules[0].users"), 23001, "numbers need no lookup");
  t.equal(db.resolveGroup("etl", "access.rules[0].groups"), 2000);
  t.equal(db.resolveGroup(4242, "access.rules[0].groups"), 4242);
  const user = t.throws(() => db.resolveUser("mallory", "access.rules[2].users")) as UnknownAccountError;
  t.ok(user instanceof UnknownAccountError);
  t.match(user, { code: "UNKNOWN_USER", kind: "user", account: "mallory", setting: "access.rules[2].users" });
  t.equal(
    user.message,
    'access.rules[2].users: no user named "mallory" in /x/passwd; fix the name, create the user, or give its uid as a number (no quotes)',
  );
  const group = t.throws(() => db.resolveGroup("1001", "access.rules[1].groups")) as UnknownAccountError;
  t.match(group, {
    code: "UNKNOWN_GROUP",
    message: /^access\.rules\[1\]\.groups: no group named "1001" in \/x\/group; .* gid as a number/,
  });
});

t.test("read from files; missing files are empty databases", async (t) => {
  const dir = t.testdir({ passwd: PASSWD, group: GROUP });
  const db = await AccountsDatabase.read({ passwd: path.join(dir, "passwd"), group: path.join(dir, "group") });
  t.equal(db.uidOf("carol"), 1003);
  t.same([...db.groupsOf(1003)].sort(), [1003, 2000]);
  const none = await AccountsDatabase.read({ passwd: path.join(dir, "no-passwd"), group: path.join(dir, "no-group") });
  t.equal(none.uidOf("root"), undefined);
  t.throws(() => none.resolveUser("root", "access.rules[0].users"), { message: /no-passwd/ });
  fs.mkdirSync(path.join(dir, "dir"));
  await t.rejects(AccountsDatabase.read({ passwd: path.join(dir, "dir") }), { code: "EISDIR" }, "other errors are errors");
});

t.test("this system's own databases", async (t) => {
  const db = await AccountsDatabase.read();
  t.equal(db.uidOf("root"), 0);
  t.equal(db.userName(0), "root");
});

t.test("ids", async (t) => {
  t.ok(isId(0));
  t.ok(isId(4294967294));
  t.notOk(isId(4294967295), "(uid_t)-1");
  t.notOk(isId(-1));
  t.notOk(isId(1.5));
  t.notOk(isId("1001"));
});

t.test("the socket's group: digits as they are, a name from the databases already read, else from the files", async (t) => {
  const dir = t.testdir({ group: "sockets:x:3100:\n" });
  const files = { passwd: path.join(dir, "passwd"), group: path.join(dir, "group") };
  t.equal(await socketGid("3200", files), 3200, "digits need no lookup");
  t.equal(await socketGid("sockets", files), 3100, "a name is looked up in the group file");
  const read = AccountsDatabase.parse(PASSWD, GROUP, { passwd: "/x/passwd", group: "/x/group" });
  t.equal(await socketGid("etl", files, read), 2000, "with the databases read for the rules, their answer, not the file's");
  await t.rejects(socketGid("sockets", files, read), { message: /no group named "sockets" in \/x\/group/ }, "and only theirs");
  await t.rejects(socketGid("nosuch", files), { name: "ConfigError", message: /server\.socketGroup: no group named "nosuch"/ });
});

t.test("a policy with rules keeps the databases its names came from; the open policy has none", async (t) => {
  const read = AccountsDatabase.parse(PASSWD, GROUP);
  const sa = "a@p.iam.gserviceaccount.com";
  const { policy } = Policy.compile({ rules: [{ users: ["alice"], serviceAccounts: [sa] }] }, [sa], read);
  t.equal(policy?.accounts, read);
  t.equal(Policy.open([sa]).accounts, undefined);
});
