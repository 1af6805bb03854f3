/**
 * Loading the configuration: read the sources (the JSON config file, the
 * environment, flags), resolve them without touching the filesystem
 * (resolve.ts), and check the files the result names (files.ts).
 */
import fs from "node:fs";
import { ConfigError } from "./config-error.js";
import type { Config } from "./config-type.js";
import { checkConfigFiles } from "./files.js";
import { resolveConfig } from "./resolve.js";

export { ConfigError } from "./config-error.js";
export type { Config } from "./config-type.js";
export { checkConfigFiles } from "./files.js";
export { isLoopbackHost } from "./host.js";
export { expandHome, readOciProfile } from "./oci-config-file.js";
export { type RawConfigSources, resolveConfig } from "./resolve.js";

export interface ConfigSources {
  /** Path of a JSON config file. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Flag values by flag name (e.g. "--port"), as given on the command line. */
  flags?: Record<string, string | boolean | string[]>;
  /** Values that win over everything (used by the demo and by tests), by setting path. */
  overrides?: Record<string, unknown>;
}

/** Reads a JSON config file, with errors that say what is wrong with it. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([
      `cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; ` +
        "check the path given with --config or $OCI2GCP_CONFIG",
    ]);
  }
  try {
    const parsed = JSON.parse(text);
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("the top level must be a JSON object");
    return parsed as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError([`config file ${file} is not valid JSON: ${(e as Error).message}`]);
  }
}

/**
 * Merges defaults, the config file, the environment and flags (later wins),
 * then validates the values and checks the files they name. Throws
 * ConfigError listing every problem at once.
 */
export function loadConfig(src: ConfigSources = {}): Config {
  const env = src.env ?? process.env;
  const fileName = src.file ?? env.OCI2GCP_CONFIG;
  const file = fileName ? { name: fileName, content: readConfigFile(fileName) } : undefined;
  return resolveConfig({ file, env, flags: src.flags, overrides: src.overrides }, checkConfigFiles);
}
