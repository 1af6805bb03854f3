/**
 * The OCI config file parser reads profiles as oci-common's ConfigFileReader
 * does (the SDK reads the same file to sign), so what our checks see is what
 * the SDK will use.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import common from "oci-common";
import t from "tap";
import { expandHome, readOciProfile } from "../../src/config/config.js";
import { ociProfile, parseOciConfig } from "../../src/config/oci-config-file.js";
import { tempDir } from "../helpers/stack.js";

const TEXT = [
  "# a comment",
  "[DEFAULT]",
  "region = us-ashburn-1",
  "tenancy=ocid1.tenancy.oc1..t",
  "key_file=~/.oci/default.pem",
  "",
  "[dev]",
  "  user = ocid1.user.oc1..dev  ",
  "key_file=/keys/dev.pem",
  "   # an indented comment",
  "fingerprint=aa:bb=cc",
  "[ spaced ]\r",
  "security_token_file=/tokens/spaced\r",
  "[dev]",
  "region=eu-frankfurt-1",
  "",
].join("\n");

t.test("profiles, [DEFAULT] inherited, a section named twice read as one, = inside values", async (t) => {
  const sections = parseOciConfig(TEXT);
  t.same([...sections.keys()], ["DEFAULT", "dev", "spaced"]);
  t.same(ociProfile(sections, "dev"), {
    region: "eu-frankfurt-1",
    tenancy: "ocid1.tenancy.oc1..t",
    key_file: "/keys/dev.pem",
    user: "ocid1.user.oc1..dev",
    fingerprint: "aa:bb=cc",
  });
  t.same(ociProfile(sections, "DEFAULT"), { region: "us-ashburn-1", tenancy: "ocid1.tenancy.oc1..t", key_file: "~/.oci/default.pem" });
  t.equal(ociProfile(sections, "spaced")?.security_token_file, "/tokens/spaced", "CRLF line ends and a spaced name");
  t.equal(ociProfile(sections, "prod"), undefined, "no such profile");
});

t.test("every key of every profile is what oci-common reads", async (t) => {
  const sections = parseOciConfig(TEXT);
  const keys = new Set([...sections.values()].flatMap((s) => Object.keys(s)));
  for (const profile of sections.keys()) {
    const sdk = common.ConfigFileReader.parse(TEXT, profile) as { get(k: string): string | null | undefined };
    const ours = ociProfile(sections, profile)!;
    for (const k of keys) t.equal(ours[k] ?? null, sdk.get(k) ?? null, `[${profile}] ${k}`);
  }
});

t.test("readOciProfile reads a file; expandHome resolves ~/ in the home directory", async (t) => {
  const dir = tempDir("oci2gcp-oci-config-");
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "config");
  fs.writeFileSync(file, TEXT);
  t.equal(readOciProfile(file, "dev")?.region, "eu-frankfurt-1");
  t.equal(readOciProfile(file, "nope"), undefined);
  t.equal(expandHome("~/.oci/config"), path.join(os.homedir(), ".oci/config"));
  t.equal(expandHome("/etc/oci/config"), "/etc/oci/config");
  t.equal(expandHome("~user/config"), "~user/config", "only the user's own home");
});
