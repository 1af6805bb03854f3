import { SETTINGS } from "../config/settings.js";
import { EmulatorServer } from "./core.js";
import { type GoogleEmulator, type GoogleEmulatorOptions, registerGoogle } from "./google/index.js";
import { type OciEmulator, type OciEmulatorOptions, registerOci } from "./oci/index.js";

export { EmulatorServer } from "./core.js";
export type { GoogleEmulator, OciEmulator };

export const DEMO_SERVICE_ACCOUNT = "oci-workload@demo-project.iam.gserviceaccount.com";
export const DEMO_PROJECT_ID = "demo-project";

/**
 * The settings (by setting path) that point a daemon at these emulators with an
 * instance principal: what the demo runs with, and what the tests start from.
 */
export function daemonSettingsFor(emu: Emulators, serviceAccounts: string[] = [DEMO_SERVICE_ACCOUNT]): Record<string, unknown> {
  return {
    "oci.principal": "instance",
    "oci.metadataUrl": emu.oci.metadataBaseUrl,
    "oci.federationUrl": emu.oci.federationEndpoint,
    "identityDomain.url": emu.oci.domainUrl,
    "google.audience": emu.google.audience,
    "google.stsUrl": emu.google.stsUrl,
    "google.iamCredentialsUrl": emu.google.iamCredentialsUrl,
    "google.serviceAccounts": serviceAccounts,
    "google.projectId": DEMO_PROJECT_ID,
  };
}

/**
 * The same settings as environment variables (each setting's first variable in
 * the settings table, lists comma-separated): for a daemon started as a process.
 */
export function daemonEnvFor(emu: Emulators, serviceAccounts: string[] = [DEMO_SERVICE_ACCOUNT]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [p, v] of Object.entries(daemonSettingsFor(emu, serviceAccounts))) {
    const name = SETTINGS.find((s) => s.path === p)?.env[0];
    if (name === undefined) throw new Error(`the setting ${p} has no environment variable`);
    env[name] = Array.isArray(v) ? v.join(",") : String(v);
  }
  return env;
}

export interface EmulatorsOptions {
  host?: string;
  port?: number;
  oci?: OciEmulatorOptions;
  google?: Partial<GoogleEmulatorOptions>;
}

export interface Emulators {
  server: EmulatorServer;
  url: string;
  oci: OciEmulator;
  google: GoogleEmulator;
  close(): Promise<void>;
}

/**
 * Both clouds on one loopback port: OCI instance metadata, federation and the
 * identity domain, and Google STS and IAM Credentials, with the Google provider
 * trusting the emulated identity domain's issuer, audience and keys.
 */
export async function startEmulators(opts: EmulatorsOptions = {}): Promise<Emulators> {
  const server = new EmulatorServer();
  const url = await server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1");
  const oci = await registerOci(server, opts.oci);
  const google = await registerGoogle(server, {
    issuer: oci.domainIssuer,
    allowedAudiences: [oci.domainUrl],
    jwksUrl: oci.domainJwksUrl,
    serviceAccounts: [DEMO_SERVICE_ACCOUNT],
    ...opts.google,
  });
  return {
    server,
    url,
    oci,
    google,
    async close() {
      await oci.close();
      await server.close();
    },
  };
}
