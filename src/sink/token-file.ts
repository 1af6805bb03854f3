import fs from "node:fs";
import path from "node:path";
import type { Chain } from "../chain.js";
import type { Logger } from "../log.js";

/**
 * Keeps the subject token (the domain JWT) in a file, for tools that only read
 * `credential_source.file`. Each new token replaces the file atomically (write
 * a private temporary file beside it, then rename), so a reader sees the old
 * token or the new one, never a partial write; the file is mode 0600.
 */
export class TokenFileSink {
  private last?: string;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  constructor(
    private readonly chain: Chain,
    readonly file: string,
    private readonly log: Logger,
    private readonly everyMs: number,
  ) {}

  /** Writes the first token, then keeps the file fresh. */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Asks the cache (which renews ahead of expiry) and rewrites the file when the token changed. */
  tick(): Promise<void> {
    this.running ??= (async () => {
      try {
        const t = await this.chain.subjectToken();
        if (t.value !== this.last) {
          writeAtomically(this.file, t.value);
          this.last = t.value;
          this.log.debug({ file: this.file, validForSeconds: Math.round((t.expiresAt - Date.now()) / 1000) }, "token file refreshed");
        }
      } catch (e) {
        this.log.warn({ file: this.file, err: e }, "could not refresh the token file; the previous token stays until it expires");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }
}

export function writeAtomically(file: string, content: string): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const fd = fs.openSync(tmp, "wx", 0o600);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
