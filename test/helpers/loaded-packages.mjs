// node test/helpers/loaded-packages.mjs SPECIFIER|PATH
//
// Imports one module in a fresh process and prints, as JSON, every module that
// importing it loaded: { modules, ours, packages: [npm package names] }. ES
// modules are seen by a loader hook; CommonJS modules that other CommonJS
// modules require never reach the hooks on Node 20, so Node's CommonJS cache
// is read as well.
import { createRequire, register } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { MessageChannel } from "node:worker_threads";

const HOOKS = `let port;
export function initialize(data) { port = data.port; }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }`;

const target = process.argv[2];
if (!target) {
  process.stderr.write("usage: node test/helpers/loaded-packages.mjs SPECIFIER|PATH\n");
  process.exit(2);
}
const urls = new Set();
const { port1, port2 } = new MessageChannel();
port1.on("message", (url) => urls.add(url));
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, { data: { port: port2 }, transferList: [port2] });

await import(/^[./]/.test(target) ? pathToFileURL(path.resolve(target)).href : target);
// The hooks run on their own thread: their last messages may still be on the way.
await new Promise((resolve) => setTimeout(resolve, 200));
port1.close();

const files = new Set(Object.keys(createRequire(import.meta.url).cache));
for (const url of urls) if (url.startsWith("file:")) files.add(fileURLToPath(url));
files.delete(fileURLToPath(import.meta.url));
const packageOf = (file) => /.*node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(file)?.[1]?.replace("\\", "/");
const packages = [...new Set([...files].map(packageOf).filter(Boolean))].sort();
const ours = [...files].filter((f) => !packageOf(f)).length;
process.stdout.write(`${JSON.stringify({ modules: files.size, ours, packages })}\n`);
