// The floor of a short-lived client: start node and load google-auth-library, no request.
import { GoogleAuth } from "google-auth-library";

// Reports the CPU time this process used (all its threads) as the last line of its output.
process.on("exit", () => {
  const u = process.cpuUsage();
  process.stdout.write(`\ncpu-ms ${(u.user + u.system) / 1000}\n`);
});

if (typeof GoogleAuth !== "function") throw new Error("google-auth-library did not load");
