import { SETTINGS } from "../config/settings.js";
import { UsageError } from "./args.js";

const COMMANDS: Record<string, { summary: string; run: (argv: string[]) => Promise<number> }> = {
  serve: {
    summary: "run the daemon: subject-token endpoint and GCE-compatible metadata API on loopback",
    run: async (a) => (await import("./serve.js")).serve(a),
  },
  "subject-token": {
    summary: "print the domain JWT as a Google executable-source response (for credential_source.executable)",
    run: async (a) => (await import("./subject-token.js")).subjectToken(a),
  },
  "cred-config": {
    summary: "write a Google external-account credential file aimed at this daemon",
    run: async (a) => (await import("./cred-config.js")).credConfig(a),
  },
  doctor: {
    summary: "check every hop of the chain and say what is wrong and how to fix it",
    run: async (a) => (await import("./doctor.js")).doctor(a),
  },
  status: {
    summary: "show what the running daemon has cached: kinds, scopes or audiences, time left",
    run: async (a) => (await import("./status.js")).status(a),
  },
  demo: {
    summary: "run the daemon against built-in emulated OCI and Google clouds",
    run: async (a) => (await import("./demo.js")).demo(a),
  },
  intercept: {
    summary: "install, remove or show the redirection of 169.254.169.254:80 to the daemon (as root)",
    run: async (a) => (await import("./intercept.js")).intercept(a),
  },
  "config-reference": {
    summary: "print every setting as a Markdown table (--update FILE rewrites the README's copy)",
    run: async (a) => (await import("./config-reference.js")).configReferenceCommand(a),
  },
};

export function usage(): string {
  const cmds = Object.entries(COMMANDS)
    .map(([n, c]) => `  ${n.padEnd(17)} ${c.summary}`)
    .join("\n");
  const flags = SETTINGS.filter((s) => s.flag)
    .map((s) => `  ${`${s.flag}${s.type === "bool" ? "" : " VALUE"}`.padEnd(26)} ${s.doc} [$${s.env[0]}]`)
    .join("\n");
  return `oci2gcp: Google Cloud credentials for OCI workloads, without a Google key

Usage: oci2gcp <command> [options]

Commands:
${cmds}

Options of serve, cred-config, doctor (also settable in the config file and the environment):
  --config FILE              JSON config file [$OCI2GCP_CONFIG]
${flags}

Run 'oci2gcp <command> --help' for a command's own options.
`;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(usage());
    return 0;
  }
  if (cmd === "--version" || cmd === "version") {
    const { createRequire } = await import("node:module");
    process.stdout.write(`${(createRequire(import.meta.url)("../../package.json") as { version: string }).version}\n`);
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    process.stderr.write(`oci2gcp: unknown command ${JSON.stringify(cmd)}\n\n${usage()}`);
    return 2;
  }
  try {
    return await c.run(rest);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`oci2gcp: ${e.message}; see 'oci2gcp ${cmd} --help'\n`);
    return 2;
  }
}
