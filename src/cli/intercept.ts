import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { AccountsDatabase, UnknownAccountError } from "../access/accounts.js";
import { hasBlock, installHosts, removeHosts } from "../intercept/hosts.js";
import {
  IPT_CHAIN,
  IPT_JUMP,
  iptablesChainRules,
  NFT_TABLE,
  nftInstallScript,
  nftRemoveScript,
  type Redirection,
} from "../intercept/rules.js";
import { parse } from "./args.js";

const HELP = `Usage: oci2gcp intercept install|remove|status [options]   (as root)

Makes this VM's processes find the daemon at the well-known metadata address:
redirects their TCP connections to 169.254.169.254:80 to the daemon's port on
127.0.0.1 (every uid but the daemon's own, whose connections still reach OCI's
metadata service), with an nftables table "ip ${NFT_TABLE}" (or, where nft is
missing, an iptables chain ${IPT_CHAIN} in the nat table), and adds
"169.254.169.254 metadata.google.internal" to the hosts file in a marked block.
The daemon needs server.intercept on. 'remove' takes out exactly those.

Options:
  --port N               the daemon's port on 127.0.0.1 (default 8181)
  --daemon-user USER     name or uid the daemon runs as (default oci2gcp)
  --hosts-file FILE      default /etc/hosts
  --only-users A,B       redirect only these users (names or uids)
  --only-groups G,H      redirect only processes running with these groups (names or gids) as their group
  --backend B            nft or iptables (default: nft, else iptables)
`;

class InterceptError extends Error {}

function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

function exec(cmd: string, args: string[], input?: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { input, encoding: "utf8" });
  return { ok: r.status === 0, out: r.stdout ?? "", err: (r.stderr ?? "") + (r.error ? String(r.error.message) : "") };
}

function must(cmd: string, args: string[], input?: string): string {
  const r = exec(cmd, args, input);
  if (!r.ok) throw new InterceptError(`${path.basename(cmd)} ${args.join(" ")} failed: ${r.err.trim()}`);
  return r.out;
}

function list(v: unknown): string[] {
  return (Array.isArray(v) ? v : v === undefined ? [] : [v])
    .flatMap((x) => String(x).split(","))
    .map((x) => x.trim())
    .filter(Boolean);
}

const asId = (s: string): string | number => (/^\d+$/.test(s) ? Number(s) : s);

interface Backend {
  name: "nft" | "iptables";
  bin: string;
}

function backends(wanted: string | undefined): { nft?: Backend; iptables?: Backend } {
  const nft = which("nft");
  const ipt = which("iptables");
  if (wanted !== undefined && wanted !== "nft" && wanted !== "iptables") throw new InterceptError("--backend is nft or iptables");
  return {
    nft: nft && wanted !== "iptables" ? { name: "nft", bin: nft } : undefined,
    iptables: ipt && wanted !== "nft" ? { name: "iptables", bin: ipt } : undefined,
  };
}

function iptablesInstall(bin: string, r: Redirection): void {
  iptablesRemove(bin);
  must(bin, ["-t", "nat", "-N", IPT_CHAIN]);
  for (const rule of iptablesChainRules(r)) must(bin, ["-t", "nat", "-A", IPT_CHAIN, ...rule]);
  must(bin, ["-t", "nat", "-I", ...IPT_JUMP]);
}

function iptablesInstalled(bin: string): boolean {
  return exec(bin, ["-t", "nat", "-S", IPT_CHAIN]).ok;
}

function iptablesRemove(bin: string): boolean {
  let had = false;
  while (exec(bin, ["-t", "nat", "-C", ...IPT_JUMP]).ok) {
    must(bin, ["-t", "nat", "-D", ...IPT_JUMP]);
    had = true;
  }
  if (iptablesInstalled(bin)) {
    must(bin, ["-t", "nat", "-F", IPT_CHAIN]);
    must(bin, ["-t", "nat", "-X", IPT_CHAIN]);
    had = true;
  }
  return had;
}

function nftInstalled(bin: string): string | undefined {
  const r = exec(bin, ["list", "table", "ip", NFT_TABLE]);
  return r.ok ? r.out : undefined;
}

export async function intercept(argv: string[]): Promise<number> {
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv, {
      port: { type: "string" },
      "daemon-user": { type: "string" },
      "hosts-file": { type: "string" },
      "only-users": { type: "string", multiple: true },
      "only-groups": { type: "string", multiple: true },
      backend: { type: "string" },
    }));
  } catch (e) {
    process.stderr.write(`oci2gcp intercept: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const action = positionals[0];
  if (values.help || !action) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  if (!["install", "remove", "status"].includes(action) || positionals.length > 1) {
    process.stderr.write(`oci2gcp intercept: unknown action ${JSON.stringify(positionals.join(" "))}\n\n${HELP}`);
    return 2;
  }
  try {
    return await run(action as "install" | "remove" | "status", values);
  } catch (e) {
    if (e instanceof InterceptError || e instanceof UnknownAccountError) {
      process.stderr.write(`oci2gcp intercept ${action}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

async function run(action: "install" | "remove" | "status", values: Record<string, unknown>): Promise<number> {
  const hostsFile = (values["hosts-file"] as string | undefined) ?? "/etc/hosts";
  const { nft, iptables } = backends(values.backend as string | undefined);
  const out = (s: string) => process.stdout.write(`${s}\n`);

  if (action === "status") {
    let installed = false;
    if (nft) {
      const table = nftInstalled(nft.bin);
      out(table ? `nftables: table ip ${NFT_TABLE} installed:\n${table.trimEnd()}` : `nftables: no table ip ${NFT_TABLE}`);
      installed ||= !!table;
    }
    if (iptables) {
      const has = iptablesInstalled(iptables.bin);
      out(
        has
          ? `iptables: chain ${IPT_CHAIN} installed:\n${must(iptables.bin, ["-t", "nat", "-S", IPT_CHAIN]).trimEnd()}`
          : `iptables: no chain ${IPT_CHAIN}`,
      );
      installed ||= has;
    }
    if (!nft && !iptables) out("neither nft nor iptables is installed: no redirection");
    const hosts = fs.existsSync(hostsFile) && hasBlock(fs.readFileSync(hostsFile, "utf8"));
    out(hosts ? `${hostsFile}: metadata.google.internal block present` : `${hostsFile}: no block of ours`);
    // 0: installed; 3 (as for a stopped service): not, or only in part.
    return installed && hosts ? 0 : 3;
  }

  if (process.getuid?.() !== 0) {
    throw new InterceptError("must run as root: it changes the firewall's nat rules and the hosts file");
  }
  if (action === "remove") {
    const removed: string[] = [];
    if (nft && nftInstalled(nft.bin)) {
      must(nft.bin, ["-f", "-"], nftRemoveScript());
      removed.push(`nftables table ip ${NFT_TABLE}`);
    }
    if (iptables && iptablesRemove(iptables.bin)) removed.push(`iptables chain ${IPT_CHAIN}`);
    if (fs.existsSync(hostsFile) && removeHosts(hostsFile)) removed.push(`the block in ${hostsFile}`);
    out(removed.length ? `removed ${removed.join(", ")}` : "nothing of ours was installed");
    return 0;
  }

  const backend = nft ?? iptables;
  if (!backend) {
    throw new InterceptError(
      values.backend
        ? `${values.backend as string} is not on PATH`
        : "neither nft nor iptables is on PATH: install nftables (apt-get install nftables, dnf install nftables)",
    );
  }
  const port = Number((values.port as string | undefined) ?? "8181");
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InterceptError(`--port ${String(values.port)}: not a TCP port`);
  const db = await AccountsDatabase.read();
  const r: Redirection = {
    port,
    daemonUid: db.resolveUser(asId((values["daemon-user"] as string | undefined) ?? "oci2gcp"), "--daemon-user"),
    onlyUids: list(values["only-users"]).map((u) => db.resolveUser(asId(u), "--only-users")),
    onlyGids: list(values["only-groups"]).map((g) => db.resolveGroup(asId(g), "--only-groups")),
  };
  if (backend.name === "nft") must(backend.bin, ["-f", "-"], nftInstallScript(r));
  else iptablesInstall(backend.bin, r);
  const wrote = installHosts(hostsFile);
  out(
    `installed: ${backend.name === "nft" ? `nftables table ip ${NFT_TABLE}` : `iptables chain ${IPT_CHAIN}`} redirects 169.254.169.254:80 ` +
      `to 127.0.0.1:${port} (uid ${r.daemonUid} exempt); ${hostsFile} ${wrote ? "now names" : "already named"} metadata.google.internal`,
  );
  return 0;
}
