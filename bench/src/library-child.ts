// A fresh node process timing what a program (an OCI Function's cold start)
// pays for one entry point: the dynamic import of "oci2gcp" (the library),
// "oci2gcp/daemon" or google-auth-library alone, and for "oci2gcp" also its
// first access token in-process, from the environment the bench gives it
// (the emulators). Prints one line, `bench-result {...}`, with times in ms
// and resident set sizes in MiB.
const kind = process.argv[2];
const rss = () => process.memoryUsage.rss() / 2 ** 20;
// performance.now() counts from the start of this process: node's own start-up is in it.
const result: Record<string, number> = { startedMs: performance.now(), rssStart: rss() };
const t0 = performance.now();
if (kind === "google-auth-library") {
  const m = await import("google-auth-library");
  if (typeof m.GoogleAuth !== "function") throw new Error("google-auth-library did not load");
} else if (kind === "oci2gcp/daemon") {
  const m = await import("oci2gcp/daemon");
  if (typeof m.startDaemon !== "function") throw new Error("oci2gcp/daemon did not load");
} else if (kind === "oci2gcp") {
  const { OciGoogleCredentials } = await import("oci2gcp");
  result.importMs = performance.now() - t0;
  result.rssImport = rss();
  const t1 = performance.now();
  const creds = OciGoogleCredentials.fromEnvironment();
  const token = await creds.getAccessToken();
  if (!token.value) throw new Error("no token");
  result.tokenMs = performance.now() - t1;
  result.rssToken = rss();
  result.sinceStartMs = performance.now();
  creds.close();
} else {
  throw new Error(`unknown kind ${kind}`);
}
result.importMs ??= performance.now() - t0;
result.rssImport ??= rss();
const u = process.cpuUsage();
result.cpuMs = (u.user + u.system) / 1000;
process.stdout.write(`\nbench-result ${JSON.stringify(result)}\n`);
process.exit(0);
