#!/usr/bin/env node
import("../dist/cli/main.js")
  .then((m) => m.main(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (e) => {
      process.stderr.write(`oci2gcp: ${e?.message ? e.message : e}\n`);
      process.exitCode = 1;
    },
  );
