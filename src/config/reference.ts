/**
 * The configuration reference: SETTINGS rendered as a Markdown table. The
 * README carries the same table between two markers; `npm run docs`
 * (`oci2gcp config-reference --update README.md`) rewrites it, and a test fails
 * when the two differ.
 */
import { SETTINGS, type Setting } from "./settings.js";

export const REFERENCE_START = "<!-- config-reference:start -->";
export const REFERENCE_END = "<!-- config-reference:end -->";

/** Text safe inside one Markdown table cell. */
function cell(s: string): string {
  return s.replace(/\\/g, "\\\\").replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
}

function code(s: string): string {
  return `\`${s}\``;
}

function typeOf(s: Setting): string {
  switch (s.type) {
    case "int":
      return "integer";
    case "bool":
      return "boolean";
    case "list":
      return "list";
    case "enum":
      return "enum";
    case "string":
      return "string";
    case "json":
      return "JSON";
  }
}

function defaultOf(s: Setting): string {
  const d = s.default;
  if (d === undefined) return "";
  if (Array.isArray(d)) return d.length ? d.map(code).join(", ") : "(empty)";
  return code(String(d));
}

function descriptionOf(s: Setting): string {
  const parts = [s.doc];
  if (s.type === "enum" && s.values) parts.push(`One of: ${s.values.map(code).join(", ")}.`);
  if (s.type === "list") parts.push("A JSON array in the config file, comma separated in the environment.");
  if (s.type === "json") parts.push("In the config file only.");
  return parts.join(" ");
}

/** Every setting as a Markdown table, one row per setting, ending with a newline. */
export function configReference(): string {
  const rows = [
    "| setting | environment | flag | type | default | description |",
    "|---|---|---|---|---|---|",
    ...SETTINGS.map((s) =>
      [code(s.path), s.env.map(code).join(", "), s.flag ? code(s.flag) : "", typeOf(s), defaultOf(s), descriptionOf(s)]
        .map(cell)
        .join(" | "),
    ).map((r) => `| ${r} |`),
  ];
  return `${rows.join("\n")}\n`;
}

/** The text between the markers (the table as it was last written), or undefined without markers. */
export function referenceBlock(markdown: string): string | undefined {
  const start = markdown.indexOf(REFERENCE_START);
  const end = markdown.indexOf(REFERENCE_END);
  if (start < 0 || end < start) return undefined;
  return markdown.slice(start + REFERENCE_START.length, end).replace(/^\r?\n/, "");
}

/** `markdown` with the block between the markers replaced by `table`; throws without the markers. */
export function replaceReferenceBlock(markdown: string, table: string = configReference()): string {
  const start = markdown.indexOf(REFERENCE_START);
  const end = markdown.indexOf(REFERENCE_END);
  if (start < 0 || end < start) {
    throw new Error(`no ${REFERENCE_START} ... ${REFERENCE_END} block found`);
  }
  return `${markdown.slice(0, start + REFERENCE_START.length)}\n${table}${markdown.slice(end)}`;
}
