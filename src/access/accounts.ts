import { readFile } from "node:fs/promises";
import { ConfigError } from "../config/config-error.js";

/**
 * Linux users and groups as the files databases list them (/etc/passwd and
 * /etc/group), for access rules that name users and groups.
 *
 * Only the files are read: users and groups that live only in a directory
 * (LDAP, SSSD) have no entry here and are given to a rule by number. A uid's
 * groups are what `id -G` would list for it: the primary gid of its passwd
 * entry and every group whose member list names that entry's user. As
 * getpwuid() does, the first entry of a uid decides when several share it.
 * The databases are read once; an edit takes effect when they are read again.
 */

export interface AccountFiles {
  /** Default /etc/passwd. */
  passwd?: string;
  /** Default /etc/group. */
  group?: string;
}

interface Entry {
  name: string;
  id: number;
}

/** A name in a rule that the user or group database does not know. */
export class UnknownAccountError extends Error {
  readonly code: "UNKNOWN_USER" | "UNKNOWN_GROUP";

  constructor(
    readonly kind: "user" | "group",
    readonly account: string,
    readonly setting: string,
    readonly file: string,
  ) {
    super(
      `${setting}: no ${kind} named ${JSON.stringify(account)} in ${file}; ` +
        `fix the name, create the ${kind}, or give its ${kind === "user" ? "uid" : "gid"} as a number (no quotes)`,
    );
    this.name = "UnknownAccountError";
    this.code = kind === "user" ? "UNKNOWN_USER" : "UNKNOWN_GROUP";
  }
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "no id" to the kernel

/** A uid or gid as a rule may give it: a whole number the kernel can hold. */
export function isId(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= MAX_ID;
}

/** name:password:id:... lines; comments, NIS "+"/"-" lines and malformed lines are skipped. */
function entries(text: string): { fields: string[]; entry: Entry }[] {
  const out: { fields: string[]; entry: Entry }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) continue;
    const fields = line.split(":");
    const id = /^\d+$/.test(fields[2] ?? "") ? Number(fields[2]) : Number.NaN;
    if (!fields[0] || !isId(id)) continue;
    out.push({ fields, entry: { name: fields[0], id } });
  }
  return out;
}

export class AccountsDatabase {
  private readonly uidByName = new Map<string, number>();
  private readonly gidByName = new Map<string, number>();
  private readonly userByUid = new Map<number, { name: string; gid?: number }>();
  private readonly groupsByUser = new Map<string, number[]>();

  private constructor(
    passwd: string,
    group: string,
    readonly files: Required<AccountFiles>,
  ) {
    for (const { fields, entry } of entries(passwd)) {
      if (!this.uidByName.has(entry.name)) this.uidByName.set(entry.name, entry.id);
      const gid = /^\d+$/.test(fields[3] ?? "") ? Number(fields[3]) : undefined;
      if (!this.userByUid.has(entry.id)) this.userByUid.set(entry.id, { name: entry.name, gid: isId(gid) ? gid : undefined });
    }
    for (const { fields, entry } of entries(group)) {
      if (!this.gidByName.has(entry.name)) this.gidByName.set(entry.name, entry.id);
      for (const member of (fields[3] ?? "").split(",")) {
        const m = member.trim();
        if (!m) continue;
        const list = this.groupsByUser.get(m) ?? [];
        list.push(entry.id);
        this.groupsByUser.set(m, list);
      }
    }
  }

  /** The databases from their text (for tests, and for files read elsewhere). */
  static parse(passwd: string, group: string, files: AccountFiles = {}): AccountsDatabase {
    return new AccountsDatabase(passwd, group, { passwd: files.passwd ?? "/etc/passwd", group: files.group ?? "/etc/group" });
  }

  /** Reads both files. A file that does not exist is an empty database (a minimal container); numeric ids still work. */
  static async read(files: AccountFiles = {}): Promise<AccountsDatabase> {
    const paths = { passwd: files.passwd ?? "/etc/passwd", group: files.group ?? "/etc/group" };
    const text = async (p: string) => {
      try {
        return await readFile(p, "utf8");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return "";
        throw e;
      }
    };
    return new AccountsDatabase(await text(paths.passwd), await text(paths.group), paths);
  }

  uidOf(name: string): number | undefined {
    return this.uidByName.get(name);
  }

  gidOf(name: string): number | undefined {
    return this.gidByName.get(name);
  }

  /** The user name of a uid (its first passwd entry), for log lines; undefined for a uid with no entry. */
  userName(uid: number): string | undefined {
    return this.userByUid.get(uid)?.name;
  }

  /** The gids of a uid: its primary group and the groups that list its user name. None for a uid with no passwd entry. */
  groupsOf(uid: number): Set<number> {
    const user = this.userByUid.get(uid);
    const groups = new Set<number>();
    if (!user) return groups;
    if (user.gid !== undefined) groups.add(user.gid);
    for (const gid of this.groupsByUser.get(user.name) ?? []) groups.add(gid);
    return groups;
  }

  /** A rule's user (a name or a uid) as a uid; `setting` (e.g. `access.rules[0].users`) names where it was given. */
  resolveUser(user: string | number, setting: string): number {
    if (typeof user === "number") return user;
    const uid = this.uidOf(user);
    if (uid === undefined) throw new UnknownAccountError("user", user, setting, this.files.passwd);
    return uid;
  }

  /** A rule's group (a name or a gid) as a gid. */
  resolveGroup(group: string | number, setting: string): number {
    if (typeof group === "number") return group;
    const gid = this.gidOf(group);
    if (gid === undefined) throw new UnknownAccountError("group", group, setting, this.files.group);
    return gid;
  }
}

/**
 * The gid of `server.socketGroup` (a name or digits); a name the group file does
 * not know is a ConfigError. `read`: the databases already read at start (for the
 * access rules), else they are read from `files`.
 */
export async function socketGid(group: string, files: AccountFiles = {}, read?: AccountsDatabase): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const db = read ?? (await AccountsDatabase.read(files));
  const gid = db.gidOf(group);
  if (gid === undefined) {
    throw new ConfigError([
      `server.socketGroup: no group named ${JSON.stringify(group)} in ${db.files.group}; fix the name or give its gid`,
    ]);
  }
  return gid;
}
