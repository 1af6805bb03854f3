/**
 * The log serializer bounds every error's message and string fields: a library
 * that puts a whole upstream answer into an error cannot make one log line of it.
 */
import { Writable } from "node:stream";
import t from "tap";
import { createLogger } from "../src/log.js";

function capture(): { log: ReturnType<typeof createLogger>; lines: () => string[] } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  return { log: createLogger("trace", sink), lines: () => chunks.join("").split("\n").filter(Boolean) };
}

const big = () => Object.assign(new Error(`upstream said: ${"Z".repeat(900_000)} END`), { code: "E".repeat(50_000) });

t.test("an error of 900 KB makes a log line of at most a few KB, start and end kept", async (t) => {
  const { log, lines } = capture();
  log.warn({ err: big() }, "refresh failed");
  log.error(big());
  log.info({ error: big(), nested: { err: big() } }, "with other fields");
  const all = lines();
  t.equal(all.length, 3);
  for (const l of all) {
    t.ok(l.length < 4000, `line of ${l.length} characters`);
    const o = JSON.parse(l) as Record<string, unknown>;
    const err = (o.err ?? o.error) as { message: string; code: string };
    t.match(err.message, /^upstream said: Z+ … \[\d+ characters left out\] … Z+ END$/);
    t.ok(err.code.length <= 200, "its code too");
  }
  const second = JSON.parse(all[1]!) as { msg: string };
  t.ok(second.msg.length <= 1000, "log.error(err) takes a bounded message from the error");
});
