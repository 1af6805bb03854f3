import { ConfigError } from "../config/config-error.js";
import { type AccountFiles, AccountsDatabase, isId, UnknownAccountError } from "./accounts.js";

/**
 * Which local users may have which service accounts' tokens: the rules of
 * `access.rules` in the config file, compiled once into a matcher.
 *
 * The first rule naming the caller's uid, or one of its groups, applies; its
 * first service account is what `default` means for that caller. Without
 * rules there is no policy at all: every caller gets everything, as before
 * rules existed, and that is a Policy too (Policy.open) rather than an absent
 * one, so callers never have to ask whether a policy is there.
 */

/** One entry of `access.rules`, as written in the config file. */
export interface AccessRule {
  /** User names and numeric uids. */
  users?: (string | number)[];
  /** Group names and numeric gids: members (primary or supplementary) match. */
  groups?: (string | number)[];
  /** Accounts the caller may have; the first is its `default`. Each must be in google.serviceAccounts. */
  serviceAccounts: string[];
  /** Whether the caller may have the subject token (which reaches every account the federated identity may impersonate). */
  subjectToken?: boolean;
  /** A name for logs, refusals and `access.socketRule`. */
  name?: string;
}

export interface AccessSettings {
  rules: AccessRule[];
  /** The rule the Unix socket serves (Node cannot tell who is on a Unix socket): its index in `rules`, or its name. */
  socketRule?: number | string;
}

/** What a caller may have. */
export interface Grant {
  /** The index of the rule in `access.rules`; undefined when there are no rules. */
  readonly ruleIndex?: number;
  readonly ruleName?: string;
  /**
   * The account `default` stands for: the rule's first. Undefined only with no
   * rules and no service accounts configured, when `default` is the federated identity.
   */
  readonly defaultAccount?: string;
  /** The accounts the caller may have, its default first. */
  readonly accounts: readonly string[];
  /** Whether the caller may have the subject token. */
  readonly subjectToken: boolean;
  /** Whether the caller may have this account's tokens. */
  allows(account: string): boolean;
}

const RULE_KEYS = ["users", "groups", "serviceAccounts", "subjectToken", "name"];
const EXAMPLE = '{ "users": ["alice", 1001], "groups": ["etl"], "serviceAccounts": ["etl@PROJECT.iam.gserviceaccount.com"] }';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A rule's users or groups: a list of names and ids, each checked for its type. */
function ids(rule: Record<string, unknown>, key: "users" | "groups", at: string, problems: string[]): (string | number)[] {
  const v = rule[key];
  if (v === undefined) return [];
  const what = key === "users" ? "user names and numeric uids" : "group names and numeric gids";
  const example = key === "users" ? '["alice", 1001]' : '["etl", 2000]';
  if (!Array.isArray(v)) {
    problems.push(`${at}.${key} must be a list of ${what}, e.g. ${example}`);
    return [];
  }
  const out: (string | number)[] = [];
  v.forEach((x, j) => {
    if ((typeof x === "string" && x.trim() !== "" && x.trim() === x) || isId(x)) out.push(x);
    else {
      const fix = typeof x === "number" ? "a whole number from 0 to 4294967294" : `a name without spaces or a number, e.g. ${example}`;
      problems.push(`${at}.${key}[${j}] is ${JSON.stringify(x)}: give ${fix}`);
    }
  });
  return out;
}

/**
 * Checks `access.rules` and `access.socketRule` as read from the config file
 * (types exact; no I/O: names are looked up by Policy.compile). Every problem
 * names the setting and says how to fix it. The settings returned are fit for
 * Policy.compile only when there is no problem.
 */
export function validateAccess(
  access: { rules?: unknown; socketRule?: unknown },
  serviceAccounts: readonly string[],
): { settings: AccessSettings; problems: string[] } {
  const problems: string[] = [];
  const rules: AccessRule[] = [];
  const configured = new Set(serviceAccounts);
  if (access.rules !== undefined && !Array.isArray(access.rules)) {
    problems.push(`access.rules must be a list of rules like ${EXAMPLE}`);
  }
  const raw = Array.isArray(access.rules) ? access.rules : [];
  const names = new Map<string, number>();
  raw.forEach((r: unknown, i) => {
    const at = `access.rules[${i}]`;
    if (!isObject(r)) {
      problems.push(`${at} must be an object like ${EXAMPLE}`);
      return;
    }
    for (const k of Object.keys(r)) {
      if (!RULE_KEYS.includes(k)) problems.push(`${at}: unknown setting "${k}"; a rule has ${RULE_KEYS.join(", ")}`);
    }
    const users = ids(r, "users", at, problems);
    const groups = ids(r, "groups", at, problems);
    const listed = (x: unknown) => Array.isArray(x) && x.length > 0;
    const mistyped = (x: unknown) => x !== undefined && !Array.isArray(x);
    if (!listed(r.users) && !listed(r.groups) && !mistyped(r.users) && !mistyped(r.groups)) {
      problems.push(`${at} names no user and no group: add "users" (names or uids) or "groups" (names or gids)`);
    }
    const accounts: string[] = [];
    const sa = r.serviceAccounts;
    if (!Array.isArray(sa) || sa.length === 0) {
      problems.push(
        `${at}.serviceAccounts must list at least one service account (the first is the caller's default), ` +
          'e.g. "serviceAccounts": ["etl@PROJECT.iam.gserviceaccount.com"]',
      );
    } else {
      sa.forEach((a: unknown, j) => {
        if (typeof a !== "string") {
          problems.push(`${at}.serviceAccounts[${j}] must be a service account email, got ${JSON.stringify(a)}`);
        } else if (!configured.has(a)) {
          problems.push(
            `${at}.serviceAccounts: ${JSON.stringify(a)} is not in google.serviceAccounts; ` +
              (serviceAccounts.length ? "add it there or remove it from the rule" : "access rules need service accounts configured there"),
          );
        } else if (accounts.includes(a)) {
          problems.push(`${at}.serviceAccounts lists ${a} twice; list each account once`);
        } else accounts.push(a);
      });
    }
    if (r.subjectToken !== undefined && typeof r.subjectToken !== "boolean") {
      problems.push(`${at}.subjectToken must be true or false, got ${JSON.stringify(r.subjectToken)}`);
    }
    let name: string | undefined;
    if (r.name !== undefined) {
      if (typeof r.name !== "string" || r.name.trim() === "") {
        problems.push(`${at}.name must be a non-empty string, got ${JSON.stringify(r.name)}`);
      } else if (names.has(r.name)) {
        problems.push(
          `${at}.name ${JSON.stringify(r.name)} is also the name of access.rules[${names.get(r.name)}]; give each rule its own name`,
        );
      } else {
        name = r.name;
        names.set(name, i);
      }
    }
    rules.push({
      users,
      groups,
      serviceAccounts: accounts,
      subjectToken: r.subjectToken === true,
      ...(name !== undefined && { name }),
    });
  });
  const socketRule = access.socketRule;
  if (socketRule !== undefined) {
    if (raw.length === 0) {
      problems.push("access.socketRule is set but access.rules is empty; remove access.socketRule, or add the rules it refers to");
    } else if (typeof socketRule === "number") {
      if (!Number.isInteger(socketRule) || socketRule < 0 || socketRule >= raw.length) {
        problems.push(
          `access.socketRule is ${socketRule}, but access.rules has rules 0 to ${raw.length - 1}; give one of those indexes or a rule's name`,
        );
      }
    } else if (typeof socketRule === "string") {
      if (!names.has(socketRule)) {
        const hint = /^\d+$/.test(socketRule) ? `; to give an index write ${socketRule} without quotes` : "";
        problems.push(`access.socketRule: no rule is named ${JSON.stringify(socketRule)}; give a rule's "name" or its index${hint}`);
      }
    } else {
      problems.push(
        `access.socketRule must be a rule's index in access.rules (a number) or its name (a string), got ${JSON.stringify(socketRule)}`,
      );
    }
  }
  const settings: AccessSettings = { rules };
  if (typeof socketRule === "number" || typeof socketRule === "string") settings.socketRule = socketRule;
  return { settings, problems };
}

function grant(accounts: readonly string[], subjectToken: boolean, ruleIndex?: number, ruleName?: string): Grant {
  const set = new Set(accounts);
  return Object.freeze({
    ...(ruleIndex !== undefined && { ruleIndex }),
    ...(ruleName !== undefined && { ruleName }),
    ...(accounts[0] !== undefined && { defaultAccount: accounts[0] }),
    accounts: Object.freeze([...accounts]),
    subjectToken,
    allows: (account: string) => set.has(account),
  });
}

interface CompiledRule {
  uids: ReadonlySet<number>;
  gids: ReadonlySet<number>;
  grant: Grant;
}

/** How a grant is named in logs and refusals: `rule 1 ("web")`, or `no access rules`. */
export function describeGrant(g: Grant): string {
  if (g.ruleIndex === undefined) return "no access rules";
  return g.ruleName === undefined ? `rule ${g.ruleIndex}` : `rule ${g.ruleIndex} (${JSON.stringify(g.ruleName)})`;
}

export class Policy {
  private constructor(
    private readonly rules: readonly CompiledRule[] | undefined,
    private readonly everything: Grant | undefined,
    private readonly socket: Grant | undefined,
    private readonly groupsOf: (uid: number) => ReadonlySet<number>,
    private readonly nameOf: (uid: number) => string | undefined = () => undefined,
    /** The user and group databases the rules' names were looked up in; undefined without rules. */
    readonly accounts?: AccountsDatabase,
  ) {}

  /** The user name of a uid, as the user database read for the rules lists it (for log lines); undefined without rules. */
  userName(uid: number): string | undefined {
    return this.nameOf(uid);
  }

  /** No rules: every caller may have every configured account and the subject token. */
  static open(serviceAccounts: readonly string[]): Policy {
    const all = grant(serviceAccounts, true);
    return new Policy(undefined, all, all, () => new Set());
  }

  /**
   * The policy of validated settings, with user and group names looked up in
   * `db`. No rules make the open policy. Unknown names are problems.
   */
  static compile(
    settings: AccessSettings,
    serviceAccounts: readonly string[],
    db: AccountsDatabase,
  ): { policy?: Policy; problems: string[] } {
    if (settings.rules.length === 0) return { policy: Policy.open(serviceAccounts), problems: [] };
    const problems: string[] = [];
    const resolve = (list: (string | number)[], setting: string, by: (x: string | number, s: string) => number) => {
      const out = new Set<number>();
      for (const x of list) {
        try {
          out.add(by(x, setting));
        } catch (e) {
          if (!(e instanceof UnknownAccountError)) throw e;
          problems.push(e.message);
        }
      }
      return out;
    };
    const rules = settings.rules.map((r, i) => ({
      uids: resolve(r.users ?? [], `access.rules[${i}].users`, (x, s) => db.resolveUser(x, s)),
      gids: resolve(r.groups ?? [], `access.rules[${i}].groups`, (x, s) => db.resolveGroup(x, s)),
      grant: grant(r.serviceAccounts, r.subjectToken === true, i, r.name),
    }));
    if (problems.length) return { problems };
    const s = settings.socketRule;
    const socket = s === undefined ? undefined : rules.find((r, i) => (typeof s === "number" ? i === s : r.grant.ruleName === s))?.grant;
    return {
      policy: new Policy(
        rules,
        undefined,
        socket,
        (uid) => db.groupsOf(uid),
        (uid) => db.userName(uid),
        db,
      ),
      problems: [],
    };
  }

  /**
   * The policy of the config file's `access` settings, checked against the
   * configured service accounts, with names looked up in the system's user
   * and group files (read only when there are rules). Throws ConfigError
   * listing every problem.
   */
  static async fromConfig(
    access: { rules?: unknown; socketRule?: unknown } | undefined,
    serviceAccounts: readonly string[],
    files: AccountFiles = {},
  ): Promise<Policy> {
    const { settings, problems } = validateAccess(access ?? {}, serviceAccounts);
    if (problems.length) throw new ConfigError(problems);
    if (settings.rules.length === 0) return Policy.open(serviceAccounts);
    const compiled = Policy.compile(settings, serviceAccounts, await AccountsDatabase.read(files));
    if (!compiled.policy) throw new ConfigError(compiled.problems);
    return compiled.policy;
  }

  /** True when there are no rules and every caller may have everything. */
  get isOpen(): boolean {
    return this.rules === undefined;
  }

  /** What the caller with this uid may have: the first matching rule's grant, or undefined (refused). */
  forUid(uid: number): Grant | undefined {
    if (!this.rules) return this.everything;
    let groups: ReadonlySet<number> | undefined;
    for (const r of this.rules) {
      if (r.uids.has(uid)) return r.grant;
      if (r.gids.size === 0) continue;
      groups ??= this.groupsOf(uid);
      for (const g of groups) if (r.gids.has(g)) return r.grant;
    }
    return undefined;
  }

  /** What callers on the Unix socket may have: the rule of `access.socketRule`, or undefined (refused) when rules exist without it. */
  forSocket(): Grant | undefined {
    return this.socket;
  }

  /** One sentence for the start-up log and doctor; `unixSocket` when the daemon also listens on one. */
  describe(o: { unixSocket?: boolean } = {}): string {
    if (!this.rules) return "no access rules: every local user may obtain every configured account's tokens and the subject token";
    const n = this.rules.length;
    const socket = !o.unixSocket
      ? ""
      : this.socket
        ? `; the Unix socket serves ${describeGrant(this.socket)}`
        : "; the Unix socket serves nobody (access.socketRule is not set)";
    return (
      `${n} access rule${n === 1 ? "" : "s"}: each local user may obtain only the accounts of the first rule naming it or one of its groups ` +
      `(the subject token only where that rule has subjectToken), and every other caller is refused${socket}`
    );
  }
}
