import fs from "node:fs";
import os from "node:os";

const BEGIN = "<!-- bench:begin (written by npm run bench; edits between these markers are overwritten) -->";
const END = "<!-- bench:end -->";

export function machine(): string[] {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? os.cpus()[0]?.model ?? "?";
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
  return [
    `- Machine: ${os.availableParallelism()} cores (nproc), ${cpu}, ${(memKb / 1024 / 1024).toFixed(1)} GiB memory, ${os.type()} ${os.release()}`,
    `- Node ${process.version}`,
  ];
}

export const f = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : "n/a");
export const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : "n/a");
export const verdict = (ok: boolean) => (ok ? "met" : "**missed**");

/** Prose wider than this is wrapped; a table row cannot be, so its cells are kept short. */
const WIDTH = 100;
/** Words that would start a list, a heading, a quote or a fence at the start of a line: never wrapped onto one. */
const OPENS_BLOCK = /^(#{1,6}|[-+*>]|\d+[.)]|=+|-{2,}|`{3,}|~{3,})$/;

/**
 * Wraps the Markdown prose of `lines` (paragraphs and list items, each on one
 * line) at WIDTH columns; tables, headings, comments and fenced code stay as
 * they are. Lines that fit are left alone, so wrapping twice changes nothing.
 */
export function wrapMarkdown(lines: string[]): string[] {
  const out: string[] = [];
  let fenced = false;
  for (const line of lines.flatMap((l) => l.split("\n"))) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced || line.length <= WIDTH || /^\s*(\||#|<!--|```|~~~)/.test(line)) {
      out.push(line);
      continue;
    }
    const [, lead = "", text = ""] = /^(\s*(?:[-+*] |\d+[.)] )?)(.*)$/.exec(line)!;
    const words: string[] = [];
    for (const w of text.split(" ").filter(Boolean)) {
      if (words.length && OPENS_BLOCK.test(w)) words[words.length - 1] += ` ${w}`;
      else words.push(w);
    }
    let cur = lead;
    for (const [i, w] of words.entries()) {
      if (i > 0 && cur.length + 1 + w.length > WIDTH) {
        out.push(cur);
        cur = " ".repeat(lead.length) + w;
      } else {
        cur += i > 0 ? ` ${w}` : w;
      }
    }
    out.push(cur);
  }
  return out;
}

export function table(head: string[], rows: (string | number)[][]): string[] {
  return [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
}

/** Puts `lines` between the bench markers of `file`, keeping what is around them. */
export function writeReport(file: string, lines: string[]): void {
  const body = `${BEGIN}\n${wrapMarkdown(lines).join("\n")}\n${END}`;
  const old = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const i = old.indexOf(BEGIN);
  const j = old.indexOf(END);
  const text = i >= 0 && j > i ? `${old.slice(0, i)}${body}${old.slice(j + END.length)}` : `# Benchmarks\n\n${body}\n`;
  fs.writeFileSync(file, text);
}
