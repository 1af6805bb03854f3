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

/** Parses argv; unknown options are an error that names them. */
export function parse(argv: string[], options: NonNullable<ParseArgsConfig["options"]>): { values: Flags; positionals: string[] } {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { help: { type: "boolean", short: "h" }, ...options },
    allowPositionals: true,
    strict: true,
  });
  return { values: values as Flags, positionals };
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
