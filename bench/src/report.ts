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

export function table(head: string[], rows: (string | number)[][]): string[] {
  return [`| ${head.join(" | ")} |`, `| ${head.map(() => "---").join(" | ")} |`, ...rows.map((r) => `| ${r.join(" | ")} |`)];
}

/** Puts `lines` between the bench markers of `file`, keeping what is around them. */
export function writeReport(file: string, lines: string[]): void {
  const body = `${BEGIN}\n${lines.join("\n")}\n${END}`;
  const old = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
  const i = old.indexOf(BEGIN);
  const j = old.indexOf(END);
  const text = i >= 0 && j > i ? `${old.slice(0, i)}${body}${old.slice(j + END.length)}` : `# Benchmarks\n\n${body}\n`;
  fs.writeFileSync(file, text);
}
