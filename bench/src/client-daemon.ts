// One short-lived process getting a Google access token the way an application
// on the daemon's machine does: google-auth-library finding the metadata server
// at $GCE_METADATA_HOST.
import { GoogleAuth } from "google-auth-library";

// Reports the CPU time this process used (all its threads) as the last line of its output.
process.on("exit", () => {
  const u = process.cpuUsage();
  process.stdout.write(`\ncpu-ms ${(u.user + u.system) / 1000}\n`);
});

const token = await new GoogleAuth().getAccessToken();
if (!token) throw new Error("no token");
