import { type ParseArgsConfig, parseArgs } from "node:util";
import { SETTINGS } from "../config/settings.js";

export type Flags = Record<string, string | boolean | string[] | undefined>;

/** The setting flags every command that loads the configuration accepts. */
export function settingFlagOptions(): NonNullable<ParseArgsConfig["options"]> {
  const opts: NonNullable<ParseArgsConfig["options"]> = { config: { type: "string" } };
  for (const s of SETTINGS) {
    if (!s.flag) continue;
    const name = s.flag.slice(2);
    opts[name] = s.type === "bool" ? { type: "boolean" } : s.type === "list" ? { type: "string", multiple: true } : { type: "string" };
  }
  return opts;
}

/** A mistake on the command line: the command exits 2 with this one-line message. */
export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Edits (insert, delete, change, swap two neighbours) that turn a into b. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The known flag closest to a mistyped one, if any is close enough to be a likely typo. */
export function nearestFlag(given: string, known: string[]): string | undefined {
  const name = given.replace(/^-+/, "").split("=")[0]!;
  let best: { flag: string; d: number } | undefined;
  for (const k of known) {
    const d = k.startsWith(name) && name.length >= 3 ? 0.5 : editDistance(name, k);
    if (!best || d < best.d) best = { flag: k, d };
  }
  return best && best.d <= Math.max(1, Math.floor(name.length / 3)) ? `--${best.flag}` : undefined;
}

/** Parses argv; a mistake is a UsageError that names the flag and the nearest known one. */
export function parse(argv: string[], options: NonNullable<ParseArgsConfig["options"]>): { values: Flags; positionals: string[] } {
  const all: NonNullable<ParseArgsConfig["options"]> = { help: { type: "boolean", short: "h" }, ...options };
  try {
    const { values, positionals } = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
    return { values: values as Flags, positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const flag = /'([^']+)'/.exec(err.message)?.[1] ?? "?";
      const near = nearestFlag(flag, Object.keys(all));
      throw new UsageError(`unknown option ${flag}${near ? ` (did you mean ${near}?)` : ""}`);
    }
    if (err.code?.startsWith("ERR_PARSE_ARGS_")) throw new UsageError(err.message.replace(/\.$/, ""));
    throw e;
  }
}

/** Setting flags keyed as config.ts expects ("--port"), lists joined. */
export function settingFlags(values: Flags): Record<string, string | boolean | string[]> {
  const out: Record<string, string | boolean | string[]> = {};
  for (const s of SETTINGS) {
    if (!s.flag) continue;
    const v = values[s.flag.slice(2)];
    if (v !== undefined) out[s.flag] = v;
  }
  return out;
}
