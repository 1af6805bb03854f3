import fs from "node:fs";
import { configReference, REFERENCE_END, REFERENCE_START, replaceReferenceBlock } from "../config/reference.js";
import { parse } from "./args.js";

export const CONFIG_REFERENCE_HELP = `Usage: oci2gcp config-reference [--update FILE]

Prints every setting as a Markdown table: its path in the JSON config file,
its environment variables, its flag, type, default and description.

  --update FILE   rewrite the table between ${REFERENCE_START} and
                  ${REFERENCE_END} in FILE instead of printing it
                  ('npm run docs' does this for README.md)
`;

export async function configReferenceCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { update: { type: "string" } });
  if (values.help) {
    process.stdout.write(CONFIG_REFERENCE_HELP);
    return 0;
  }
  if (positionals.length) {
    process.stderr.write(`oci2gcp config-reference: unexpected argument ${JSON.stringify(positionals[0])}\n\n${CONFIG_REFERENCE_HELP}`);
    return 2;
  }
  const file = values.update as string | undefined;
  if (file === undefined) {
    process.stdout.write(configReference());
    return 0;
  }
  let before: string;
  try {
    before = fs.readFileSync(file, "utf8");
  } catch (e) {
    process.stderr.write(`oci2gcp config-reference: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}\n`);
    return 1;
  }
  let after: string;
  try {
    after = replaceReferenceBlock(before);
  } catch (e) {
    process.stderr.write(`oci2gcp config-reference: ${file}: ${(e as Error).message}; add the two marker lines where the table belongs\n`);
    return 1;
  }
  if (after !== before) fs.writeFileSync(file, after);
  process.stdout.write(`${file}: configuration reference ${after === before ? "already up to date" : "updated"}\n`);
  return 0;
}
