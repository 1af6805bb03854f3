/**
 * The redirection of locally generated TCP to 169.254.169.254:80 to the daemon's
 * port: an nftables table of our own (`ip oci2gcp`), or where `nft` is missing a
 * chain of our own in iptables' nat table (`OCI2GCP`, jumped to from OUTPUT).
 * Nothing else of the firewall is read or changed, so removing ours restores it.
 *
 * The daemon's own uid is exempt first (`return`): its connections must still
 * reach OCI's metadata service, or its pass-through would loop back to itself.
 */

import { METADATA_IP } from "../protocol.js";

export { METADATA_IP };
export const NFT_TABLE = "oci2gcp";
export const IPT_CHAIN = "OCI2GCP";

export interface Redirection {
  /** The daemon's TCP port on 127.0.0.1. */
  port: number;
  /** The daemon's uid: never redirected. */
  daemonUid: number;
  /** Only these uids (and the gids below) are redirected; both empty: every uid but the daemon's. */
  onlyUids: number[];
  onlyGids: number[];
}

/**
 * An nft script that replaces our table in one transaction: declaring it first
 * makes the delete valid when it does not exist yet (nft 1.0.6 has no `destroy`).
 */
export function nftInstallScript(r: Redirection): string {
  const match = `ip daddr ${METADATA_IP} tcp dport 80`;
  const redirect = `redirect to :${r.port}`;
  const rules = [`${match} meta skuid ${r.daemonUid} return`];
  if (r.onlyUids.length === 0 && r.onlyGids.length === 0) rules.push(`${match} ${redirect}`);
  if (r.onlyUids.length > 0) rules.push(`${match} meta skuid { ${r.onlyUids.join(", ")} } ${redirect}`);
  if (r.onlyGids.length > 0) rules.push(`${match} meta skgid { ${r.onlyGids.join(", ")} } ${redirect}`);
  return [
    `table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    "  chain output {",
    "    type nat hook output priority -100; policy accept;",
    ...rules.map((l) => `    ${l}`),
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Removes our table whether or not it exists. */
export function nftRemoveScript(): string {
  return `table ip ${NFT_TABLE}\ndelete table ip ${NFT_TABLE}\n`;
}

/** The jump from OUTPUT into our chain (as given to -I, -C and -D). */
export const IPT_JUMP = ["OUTPUT", "-d", `${METADATA_IP}/32`, "-p", "tcp", "--dport", "80", "-j", IPT_CHAIN];

/** The rules of our chain, each as iptables arguments after `-A OCI2GCP`. */
export function iptablesChainRules(r: Redirection): string[][] {
  const to = ["-j", "REDIRECT", "--to-ports", String(r.port)];
  const rules = [["-m", "owner", "--uid-owner", String(r.daemonUid), "-j", "RETURN"]];
  if (r.onlyUids.length === 0 && r.onlyGids.length === 0) rules.push(["-p", "tcp", ...to]);
  for (const uid of r.onlyUids) rules.push(["-p", "tcp", "-m", "owner", "--uid-owner", String(uid), ...to]);
  for (const gid of r.onlyGids) rules.push(["-p", "tcp", "-m", "owner", "--gid-owner", String(gid), ...to]);
  return rules;
}
