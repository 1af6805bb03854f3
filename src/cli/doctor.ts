import fs from "node:fs";
import { renderReport, runDoctor } from "../doctor/doctor.js";
import { type Jwks, jwksFrom } from "../doctor/keys.js";
import { createLogger, routeConsoleToLogger } from "../log.js";
import { parse, settingFlagOptions } from "./args.js";
import { configFromArgs } from "./serve.js";

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...settingFlagOptions(), json: { type: "boolean" }, "provider-jwks": { type: "string" } });
  if (values.help) {
    process.stdout.write(
      "Usage: oci2gcp doctor [--config FILE] [--json] [--provider-jwks FILE] [options]\n\n" +
        "Checks every hop of the chain with the configured settings and says what is wrong and how to fix it.\n\n" +
        "  --provider-jwks FILE  the keys the Google provider holds, to check them against the domain's token: a JWKS,\n" +
        "                        or the provider as `gcloud iam workload-identity-pools providers describe --format=json` prints it\n",
    );
    return 0;
  }
  const config = configFromArgs(values);
  if (!config) return 2;
  let providerJwks: Jwks | undefined;
  if (typeof values["provider-jwks"] === "string") {
    const file = values["provider-jwks"];
    try {
      providerJwks = jwksFrom(JSON.parse(fs.readFileSync(file, "utf8")));
    } catch (e) {
      process.stderr.write(`oci2gcp doctor: --provider-jwks ${file}: ${(e as Error).message}\n`);
      return 2;
    }
  }
  // oci-common prints status lines; keep stdout for the report.
  routeConsoleToLogger(createLogger("silent"));
  const report = await runDoctor(config, { providerJwks });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
  return report.ok ? 0 : 1;
}
