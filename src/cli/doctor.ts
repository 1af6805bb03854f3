import { renderReport, runDoctor } from "../doctor/doctor.js";
import { createLogger, routeConsoleToLogger } from "../log.js";
import { parse, settingFlagOptions } from "./args.js";
import { configFromArgs } from "./serve.js";

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...settingFlagOptions(), json: { type: "boolean" } });
  if (values.help) {
    process.stdout.write(
      "Usage: oci2gcp doctor [--config FILE] [--json] [options]\n\nChecks every hop of the chain with the configured settings and says what is wrong and how to fix it.\n",
    );
    return 0;
  }
  const config = configFromArgs(values);
  if (!config) return 2;
  // oci-common prints status lines; keep stdout for the report.
  routeConsoleToLogger(createLogger("silent"));
  const report = await runDoctor(config);
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
  return report.ok ? 0 : 1;
}
