/**
 * What doctor says of the access rules: the policy in one sentence, each rule's
 * accounts, names the databases do not know, and the token file that holds the
 * subject token whatever the rules say.
 */
import fs from "node:fs";
import path from "node:path";
import t from "tap";
import { resolveConfig } from "../../src/config/config.js";
import { accessCheck } from "../../src/doctor/doctor.js";
import { tempDir } from "../helpers/stack.js";

const AUDIENCE = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/oci-pool/providers/oci-provider";
const DOMAIN = "https://idcs-0123456789abcdef.identity.oraclecloud.com";
const ETL = "etl@p.iam.gserviceaccount.com";
const WEB = "web@p.iam.gserviceaccount.com";

const config = (content: Record<string, unknown>) =>
  resolveConfig({
    file: {
      name: "/etc/oci2gcp.json",
      content: { identityDomain: { url: DOMAIN }, google: { audience: AUDIENCE, serviceAccounts: [ETL, WEB] }, ...content },
    },
    env: {},
  });

t.test("doctor's access check", async (t) => {
  const dir = tempDir("oci2gcp-doctor-access-");
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const files = { passwd: path.join(dir, "passwd"), group: path.join(dir, "group") };
  fs.writeFileSync(files.passwd, "alice:x:1001:1001::/home/alice:/bin/sh\n");
  fs.writeFileSync(files.group, "etl:x:2000:alice\n");

  const open = await accessCheck(config({}), files);
  t.equal(open.status, "ok");
  t.same(open.details, ["no access rules: every local user may obtain every configured account's tokens and the subject token"]);

  const rules = [
    { name: "etl", users: ["alice"], groups: ["etl"], serviceAccounts: [ETL] },
    { users: [1002], serviceAccounts: [WEB, ETL], subjectToken: true },
  ];
  const two = await accessCheck(config({ access: { rules } }), files);
  t.equal(two.status, "ok");
  t.match(two.details[0], /^2 access rules: each local user may obtain only the accounts of the first rule naming it/);
  t.same(two.details.slice(1), [`rule 0 (etl): user alice, group etl: ${ETL}`, `rule 1: user 1002: ${WEB}, ${ETL}; and the subject token`]);

  const unknown = await accessCheck(config({ access: { rules: [{ users: ["mallory"], serviceAccounts: [ETL] }] } }), files);
  t.equal(unknown.status, "fail");
  t.match(unknown.details.join("\n"), /mallory/);
  t.match(unknown.details.join("\n"), files.passwd, "names the file it looked in");

  const withFile = await accessCheck(config({ access: { rules }, tokenFile: { path: "/run/oci2gcp/subject.jwt" } }), files);
  t.equal(withFile.status, "warn");
  t.match(withFile.cause, "/run/oci2gcp/subject.jwt");
});
